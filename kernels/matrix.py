"""make test-kernels: the kernel-dependent tests on every kernel of the matrix.

    python3 kernels/matrix.py [KERNEL ...]      # default: running 6.1 6.12

`running` is the machine's own kernel, tested natively; 6.1 and 6.12 are
Debian 12's cloud kernels, booted under QEMU (kernels/vm.py). On each,
kernels/guest.py mounts iterfs, reads /.status and runs `pytest -m kernel`.
Prints a table (kernel, views served / unsupported (reason) / rejected, tests
passed / failed / skipped, seconds), writes it with the details to
build/kernels/matrix.json, and exits non-zero if any kernel could not be
tested, rejected a view of ours or failed a test.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import guest  # noqa: E402
import vm  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
RESULTS = ROOT / "build" / "kernels" / "matrix.json"
DEFAULT_KERNELS = ("running", "6.1", "6.12")
# A VM's whole run: boot, mount, the tests, under TCG.
VM_TIMEOUT = 1200


def result_of(output):
    for line in reversed(output.splitlines()):
        if line.startswith(guest.MARKER):
            return json.loads(line[len(guest.MARKER):])
    return None


def test_kernel(kernel):
    start = time.monotonic()
    command = [str(PYTHON), str(ROOT / "kernels" / "guest.py")]
    print(f"== {kernel}", flush=True)
    if kernel == "running":
        completed = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, check=False)
        sys.stdout.write(completed.stdout)
        output = completed.stdout
    else:
        try:
            _, output = vm.run(kernel, command, timeout=VM_TIMEOUT)
        except vm.VMError as error:
            return {"kernel": kernel, "error": str(error), "views": {}, "failed": [],
                    "tests": {}, "seconds": round(time.monotonic() - start)}
    result = result_of(output) or {"kernel": kernel, "views": {}, "tests": {}, "failed": [],
                                   "error": "no result line from kernels/guest.py"}
    result["seconds"] = round(time.monotonic() - start)     # with the boot, for a VM
    if kernel == "running":
        result["kernel"] += " (host)"
    return result


def views_column(views, state):
    return sorted(view for view, (view_state, _) in views.items() if view_state == state)


def table(results):
    rows = [("kernel", "served", "unsupported", "rejected", "passed", "failed", "skipped",
             "seconds")]
    notes = []
    for result in results:
        views, tests = result["views"], result["tests"]
        unsupported = views_column(views, "unsupported")
        rejected = guest.failed_views(views)
        rows.append((result["kernel"], str(len(views_column(views, "serving"))),
                     ", ".join(unsupported) or "-", ", ".join(rejected) or "-",
                     str(tests.get("passed", "-")), str(tests.get("failed", "-")),
                     str(tests.get("skipped", "-")), str(result["seconds"])))
        for view in unsupported + rejected:
            notes.append(f"{result['kernel']}: {view} {views[view][0]}: {views[view][1]}")
        notes += [f"{result['kernel']}: failed {name}" for name in result["failed"]]
        if "error" in result:
            notes.append(f"{result['kernel']}: {result['error']}")
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
             for row in rows]
    return "\n".join(lines + [""] + notes)


def passed(result):
    return not (guest.failed_views(result["views"]) or result["failed"] or "error" in result
                or not result["tests"].get("passed"))


def main(argv):
    kernels = argv or list(DEFAULT_KERNELS)
    unknown = [k for k in kernels if k != "running" and k not in vm.KERNELS]
    if unknown:
        print(f"test-kernels: unknown kernel {', '.join(unknown)} "
              f"(known: running, {', '.join(vm.KERNELS)})", file=sys.stderr)
        return 2
    if any(kernel != "running" for kernel in kernels):
        try:
            vm.ensure_host()
        except vm.VMError as error:
            print(f"test-kernels: QEMU cannot run here: {error}", file=sys.stderr)
            return 1
    results = [test_kernel(kernel) for kernel in kernels]
    text = table(results)
    print("\n" + text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"results": results, "table": text}, indent=1) + "\n")
    return 0 if all(passed(result) for result in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
