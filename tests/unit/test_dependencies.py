"""compiler._parse_dependencies: the headers clang -MD lists, as files. Every
header listed is checked and hashed into the cache key, so a name read wrong
fails the compile (a header not found), or checks another file."""

import os
import shutil
import subprocess

import pytest

from iterfs.compiler import _parse_dependencies


def test_a_rule_continued_over_lines():
    text = ("/c/copy.bpf.o: /c/source/copy.bpf.c /b/vmlinux.h \\\n"
            "  /usr/include/bpf/bpf_helpers.h \\\n  /p/iterfs.h\n")
    assert _parse_dependencies(text) == [
        "/c/source/copy.bpf.c", "/b/vmlinux.h", "/usr/include/bpf/bpf_helpers.h", "/p/iterfs.h"]


def test_names_with_what_clang_escapes():
    # A space, '#' and '$' in names, as clang writes them (DependencyFile.cpp).
    text = "x.o: /d/a\\ b.h /d/c\\#d.h /d/e$$f.h /d/g\\h.h\n"
    assert _parse_dependencies(text) == ["/d/a b.h", "/d/c#d.h", "/d/e$f.h", "/d/g\\h.h"]


def test_backslashes_before_a_space():
    # 2n + 1 backslashes: n and a space in the name; 2n: n, and the name ends.
    text = "x.o: /d/a\\\\\\ b /d/c\\\\ /d/e\n"
    assert _parse_dependencies(text) == ["/d/a\\ b", "/d/c\\", "/d/e"]


def test_relative_names_are_made_absolute():
    assert _parse_dependencies("x.o: h.h\n") == [os.path.abspath("h.h")]


def test_an_empty_rule():
    assert _parse_dependencies("x.o: \n") == []


CLANG = shutil.which("clang", path="/usr/local/bin:/usr/bin")


@pytest.mark.skipif(CLANG is None, reason="no clang installed")
def test_what_clang_itself_writes(tmp_path):
    """The oracle is clang: every header it lists is found where parsed."""
    names = ["a b", "c#d", "e$f", "plain"]
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / "h.h").write_text("int x_%d;\n" % names.index(name))
    source = tmp_path / "main.c"
    source.write_text("".join(f'#include "{name}/h.h"\n' for name in names))
    rule = tmp_path / "deps"
    subprocess.run([CLANG, "-M", "-MF", str(rule), str(source)], check=True,
                   env={"PATH": "/usr/bin", "LC_ALL": "C"})
    assert _parse_dependencies(rule.read_text()) == [
        str(source), *(str(tmp_path / name / "h.h") for name in names)]
