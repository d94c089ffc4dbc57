"""progs/text.h's number writer, built for the host from the header's own text
and checked against Python's formatting: every width the views use and more,
both bases, with and without a lead, at every power of ten and at random."""

import random
import subprocess
from pathlib import Path

import pytest

HARNESS = r"""
#include <stdint.h>
#include <stdio.h>
#include <string.h>
typedef uint64_t __u64;
typedef uint32_t __u32;
#undef __always_inline
#define __always_inline inline __attribute__((always_inline))
#define __noinline
%s
int main(void)
{
	unsigned long long value;
	unsigned width, base, lead;
	struct line line;
	__u32 end;

	while (scanf("%%llu %%u %%u %%u", &value, &width, &base, &lead) == 4) {
		line_clear(&line);
		end = put_number(&line, 3, value, NUMBER(width, base, lead));
		printf("[%%.*s]\n", (int)(end - 3), line.text + 3);
	}
	return 0;
}
"""


@pytest.fixture(scope="module")
def put_number(tmp_path_factory):
    directory = tmp_path_factory.mktemp("text")
    source = (Path(__file__).parent.parent / "progs" / "text.h").read_text()
    begin = source.index("/* --- host-testable")
    end = source.index("/* --- end of host-testable --- */")
    (directory / "text.c").write_text(HARNESS % source[begin:end])
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-o", directory / "text",
                    directory / "text.c"], check=True)

    def run(cases):
        lines = "".join(f"{value} {width} {base} {ord(lead) if lead else 0}\n"
                        for value, width, base, lead in cases)
        out = subprocess.run([directory / "text"], input=lines, capture_output=True,
                             text=True, check=True).stdout
        return [line[1:-1] for line in out.splitlines()]
    return run


def expected(value, width, base, lead):
    digits = f"{value:o}" if base == 8 else f"{value}"
    return f"{lead}{digits}".rjust(width) + " "


def test_numbers_are_written_as_printf_writes_them(put_number):
    top = 2 ** 64 - 1
    values = [0, top, 2 ** 32 - 1, 2 ** 32, 2 ** 63]
    for power in range(20):
        values += [10 ** power - 1, 10 ** power, 10 ** power + 1, 10 ** power * 9 + 7]
    rng = random.Random(0)
    values += [rng.randrange(0, 2 ** rng.randrange(1, 65)) for _ in range(3000)]
    values = [v for v in values if 0 <= v <= top]
    cases = [(value, width, base, lead) for value in values
             for width in (0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 12, 19, 20, 21, 25)
             for base in (8, 10) for lead in ("", "-", "0")]
    got = put_number(cases)
    assert len(got) == len(cases)
    wrong = [(case, text) for case, text in zip(cases, got) if text != expected(*case)]
    assert wrong[:5] == []
