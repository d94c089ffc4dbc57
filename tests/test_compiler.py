"""compiler.py on its own: what clang compiles is what was read and hashed."""

import os
import subprocess
from pathlib import Path

from iterfs import compiler
from iterfs.compiler import Compiler

ROOT = Path(__file__).resolve().parent.parent

PROGRAM = """// SPDX-License-Identifier: GPL-2.0
#include "iterfs.h"

char LICENSE[] SEC("license") = "GPL";

SEC("iter/bpf_map")
int said(struct bpf_iter__bpf_map *ctx)
{
	if (ctx->map && ctx->meta->seq_num == 0)
		BPF_SEQ_PRINTF(ctx->meta->seq, "%s\\n", "WORD");
	return 0;
}
"""


def test_a_source_changed_while_compiling_is_not_what_is_compiled(tmp_path, monkeypatch):
    """The file is rewritten as clang starts (as by someone else who could
    write it): the object is built from the content read and hashed first,
    not from the file's new content, so the cache never holds one under the
    other's key."""
    os.chmod(tmp_path, 0o755)
    programs = tmp_path / "programs"
    programs.mkdir(mode=0o755)
    source = programs / "said.bpf.c"
    source.write_text(PROGRAM.replace("WORD", "checked"))
    os.chmod(source, 0o644)
    run = subprocess.run

    def rewrite_then_run(command, **kwargs):
        if any(argument.endswith("said.bpf.c") for argument in command):
            source.write_text(PROGRAM.replace("WORD", "swapped"))
        return run(command, **kwargs)

    monkeypatch.setattr(compiler.subprocess, "run", rewrite_then_run)
    built = Compiler(ROOT / "progs", tmp_path / "cache").compile(source)
    content = built.read_bytes()
    assert b"checked" in content and b"swapped" not in content
