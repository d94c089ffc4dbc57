"""Run one command on a Debian 12 cloud kernel under QEMU, for the kernel test matrix.

    python3 kernels/vm.py prepare KERNEL
    python3 kernels/vm.py run KERNEL [--timeout S] [-m MEM] [-p CPUS] [--rwdir DIR]... -- CMD...

KERNEL is 6.1 or 6.12. `prepare` fetches the newest Debian 12 cloud kernel of that
series into build/kernels/ and prints its directory; `run` boots it with virtme-ng
on QEMU's TCG, runs CMD as root in the current directory on the host's root file
system (shared read-only), streams its output and exits with its status: 124 if
it timed out, 125 if the VM failed. Both install what is missing first.

Why TCG: /dev/kvm may be a nested software KVM in which stock kernels die with an
emulation failure, and virtme-ng, which picks KVM by default, then hangs.
"""

import argparse
import codecs
import contextlib
import ctypes
import fcntl
import os
import re
import secrets
import selectors
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "build" / "kernels"
VNG_VENV = ROOT / "build" / "vng-venv"
# Pinned: kernels/bin/virtiofsd translates the options this version passes.
VNG = "virtme-ng==1.42"

# The newest package of each series is taken, by the numbers in its name.
KERNELS = {
    "6.1": r"linux-image-6\.1\.0-[0-9]+-cloud-amd64",
    "6.12": r"linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64",
}

# QEMU; its C virtiofsd (the cloud kernels have no 9p); udev and kmod, without
# which virtme-ng's guest init sends the command's output to the console and
# always returns 255; a static busybox for its initramfs (the virtio modules);
# python3-venv for virtme-ng's venv.
HOST_PACKAGES = ["qemu-system-x86", "qemu-system-common", "udev", "kmod",
                 "busybox-static", "python3-venv"]

# What the guest's udev would load at boot for QEMU's devices and TCG's CPU
# features, none of which the tests need: trying them took half the boot under TCG.
# modprobe.blacklist keeps kmod (udev's and the kernel's modprobe) from loading
# them for an alias; module_blacklist makes the kernel refuse whatever else asks.
BLACKLIST = ["acpi_cpufreq", "pcc_cpufreq", "powernow_k8", "kvm", "kvm_amd", "kvm_intel",
             "aesni_intel", "ghash_clmulni_intel", "polyval_clmulni", "crc32_pclmul",
             "crc32c_intel", "crct10dif_pclmul", "sha1_ssse3", "sha256_ssse3",
             "sha512_ssse3", "button", "evdev", "serio_raw", "qemu_fw_cfg", "ahci",
             "sr_mod", "sg", "i6300esb"]

TIMEOUT = 900
BOOT_ATTEMPTS = 2
PR_SET_CHILD_SUBREAPER = 36
# apt-get waits this long for another apt's lock instead of failing at once.
APT = ["-o", "DPkg::Lock::Timeout=300"]


class VMError(Exception):
    """A failure of the VM, not of the guest's command: one line for the user."""

    def __init__(self, message, output="", status=125):
        super().__init__(message)
        self.output = output  # what the VM printed, for a caller of run()
        self.status = status  # the exit status for it: 124 timed out, else 125


class NotStarted(VMError):
    """The VM stopped before the command began."""


def log(message):
    print(f"vm: {message}", file=sys.stderr, flush=True)


def quiet(argv, **kwargs):
    """Run argv; on failure, raise with the last line it printed."""
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)
    if result.returncode != 0:
        last = (result.stdout.strip().splitlines() or ["no output"])[-1]
        raise VMError(f"{shlex.join(map(str, argv))} failed ({result.returncode}): {last}")
    return result.stdout


@contextlib.contextmanager
def locked():
    """Holds build/kernels/.lock: two runs at once must not install or fetch twice."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def installed(package):
    status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return status.stdout == "install ok installed"


def ensure_host():
    """Install what the VM needs and is missing: Debian packages, then virtme-ng."""
    if os.uname().machine != "x86_64":
        raise VMError("needs an x86_64 host: the guest runs the host's binaries")
    if os.geteuid() != 0:
        raise VMError("needs root (to install packages and share / with virtiofsd)")
    missing = [p for p in HOST_PACKAGES if not installed(p)]
    vng = not (VNG_VENV / "bin" / "vng").exists()
    if missing or vng:
        with locked():
            missing = [p for p in HOST_PACKAGES if not installed(p)]
            vng = not (VNG_VENV / "bin" / "vng").exists()
            where = f"(PyPI, in {VNG_VENV.relative_to(ROOT)})"
            log("installing " + " ".join(missing + [f"{VNG} {where}"] * vng))
            if missing:
                env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
                quiet(["apt-get", *APT, "update", "-qq"], env=env)
                quiet(["apt-get", *APT, "install", "-y", "-qq", "--no-install-recommends",
                       *missing], env=env)
            if vng:
                # Debian's python: the venv must not hang on an interpreter from a PATH.
                quiet(["/usr/bin/python3", "-m", "venv", "--clear", VNG_VENV])
                quiet([VNG_VENV / "bin" / "pip", "install", "-q",
                       "--disable-pip-version-check", VNG])
    try:
        quiet(["qemu-system-x86_64", "-version"])
    except (OSError, VMError) as e:
        raise VMError(f"QEMU cannot run: {e}") from None


def newest(kernel):
    """The newest Debian 12 package of the series, or None if apt knows of none."""
    pattern = KERNELS[kernel]
    names = quiet(["apt-cache", "search", "--names-only", f"^{pattern}$"]).split()
    names = [n for n in names if re.fullmatch(pattern, n)]
    if not names:
        return None
    return max(names, key=lambda n: [int(x) for x in re.findall(r"[0-9]+", n)])


def prepare(kernel):
    """The extracted kernel package of the series (boot/, lib/modules/), fetched if missing."""
    if kernel not in KERNELS:
        raise VMError(f"unknown kernel {kernel!r}: choose one of {', '.join(KERNELS)}")
    ensure_host()
    package = newest(kernel)
    if package is None:
        quiet(["apt-get", *APT, "update", "-qq"])
        package = newest(kernel)
        if package is None:
            raise VMError(f"no Debian package for kernel {kernel} ({KERNELS[kernel]})")
    release = package.removeprefix("linux-image-")
    directory = CACHE / release
    if directory.is_dir():
        return directory
    with locked():
        if directory.is_dir():
            return directory  # fetched by another run meanwhile
        log(f"fetching {package}")
        with tempfile.TemporaryDirectory(dir=CACHE, prefix=".fetch-") as work:
            work = Path(work)
            # As root: apt's sandbox user may not write into build/.
            quiet(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", package],
                  cwd=work)
            (deb,) = work.glob("*.deb")
            tree = work / release
            quiet(["dpkg-deb", "-x", deb, tree])
            if not (tree / "boot" / f"vmlinuz-{release}").is_file():
                raise VMError(f"{deb.name} has no boot/vmlinuz-{release}")
            # modules.dep is left to the package's postinst, and modprobe needs it.
            quiet(["depmod", "-a", "-b", tree, release])
            # Renamed whole, so a directory that exists is complete.
            tree.rename(directory)
    return directory


def guest_script(argv, boot, cwd, marker):
    """The shell the guest runs: set up what the command expects, then run it."""
    return "\n".join([
        # libbpf reads /boot/config-$(uname -r); the host's /boot is shared instead.
        f"mount --bind {shlex.quote(str(boot))} /boot",
        "mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf",
        f"cd {shlex.quote(str(cwd))} || exit 1",
        # The markers tell the command's end and status from a guest that died.
        f"echo '{marker} start'",
        shlex.join(map(str, argv)),
        "status=$?",
        f"echo \"{marker} exit $status\"",
        "exit $status",
        "",
    ])


class Stream:
    """Copies the VM's output to `out` as it comes, less the markers, and keeps it."""

    def __init__(self, out, marker):
        self.out, self.marker = out, marker
        self.kept, self.held = [], ""
        self.started, self.status = False, None

    def feed(self, text):
        text = self.held + text
        # A marker may follow output that did not end its line: looked for anywhere.
        while (start := text.find(self.marker)) >= 0:
            end = text.find("\n", start)
            if end < 0:
                break
            self.write(text[:start])
            word, _, status = text[start + len(self.marker):end].strip().partition(" ")
            if word == "start":
                self.started = True
            elif word == "exit" and status.isdigit():
                self.status = int(status)
            text = text[end + 1:]
        # Held back: a marker not ended yet, or an end that may begin one. The rest
        # goes out now, not at the end of its line: pytest's progress dots.
        start = text.find(self.marker)
        if start < 0:
            start = len(text) - max(k for k in range(len(self.marker))
                                    if text.endswith(self.marker[:k]))
        self.write(text[:start])
        self.held = text[start:]

    def write(self, text):
        if text:
            self.kept.append(text)
            self.out.write(text)
            self.out.flush()

    def close(self):
        """All the output, what was held back included."""
        self.write(self.held)
        self.held = ""
        return "".join(self.kept)


def stop(proc):
    """Kill and reap what is left of the VM: vng, QEMU and virtiofsd are in vng's group.

    vng backgrounds virtiofsd, which outlives its parent shell; as the subreaper
    set by run() we are given it, and QEMU if vng dies first, and reap them here
    (PID 1 may not). The group's id cannot be reused while a member is left,
    zombies included, and killpg fails once none is.
    """
    # A second Ctrl-C must not cut the cleaning short.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            break
        proc.poll()
        try:
            while os.waitpid(-proc.pid, os.WNOHANG)[0]:
                pass  # one of vng's orphans
        except ChildProcessError:
            pass
        time.sleep(0.02)
    proc.wait()
    proc.stdout.close()
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def pump(proc, stream, timeout):
    """Copy proc's output into stream until it ends -> False if timeout came first."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    deadline = time.monotonic() + timeout
    ended = False
    # virtiofsd inherits the pipe and may outlive vng: vng's end is watched too,
    # through a pidfd, which does not reap it.
    pidfd = os.pidfd_open(proc.pid)
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            selector.register(pidfd, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return ended
                for key, _ in selector.select(left):
                    if key.fileobj == pidfd:
                        # What still holds the pipe has 2 s to finish, then is killed.
                        ended = True
                        selector.unregister(pidfd)
                        deadline = min(deadline, time.monotonic() + 2)
                        continue
                    data = os.read(proc.stdout.fileno(), 1 << 16)
                    if not data:
                        return True
                    stream.feed(decoder.decode(data))
    finally:
        os.close(pidfd)
        stream.feed(decoder.decode(b"", final=True))


def run(kernel, argv, timeout=TIMEOUT, memory="2G", cpus=2, rwdirs=(), verbose=False,
        out=None):
    """Boot the kernel, run argv as root in the current directory -> (status, output).

    The output (the command's stdout and stderr, and QEMU's or vng's complaints) is
    also written to `out` (stdout) as it arrives. A VM that fails to boot, dies, or
    outlives `timeout` seconds raises VMError; the VM is stopped in every case.
    A VM that stops before the command starts is booted once more: virtiofsd now
    and then drops its connection during boot, and nothing of the command has run.
    Makes this process a child subreaper (prctl), to reap what vng leaves behind.
    """
    for attempt in range(BOOT_ATTEMPTS):
        try:
            return boot(kernel, argv, timeout, memory, cpus, rwdirs, verbose, out)
        except NotStarted as error:
            if attempt + 1 == BOOT_ATTEMPTS:
                raise
            log(f"{error}; booting again")


def boot(kernel, argv, timeout, memory, cpus, rwdirs, verbose, out):
    """One boot of run()'s; NotStarted when the command never began."""
    out = out or sys.stdout
    directory = prepare(kernel)
    release = directory.name
    wrapper = ROOT / "kernels" / "bin" / "virtiofsd"
    if not os.access(wrapper, os.X_OK):
        raise VMError(f"{wrapper} is not executable (chmod +x it)")
    marker = f"@@vm-{secrets.token_hex(8)}"
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    stream = Stream(out, marker)
    # vng's temporary files (virtiofsd's sockets, the initramfs, the status file)
    # go to a directory of ours, removed even when vng is killed; under /tmp, whose
    # host files the guest sees (through an overlay).
    with tempfile.TemporaryDirectory(prefix="vm-", dir="/tmp") as tmp:
        # The script goes in a file: vng passes --exec on the kernel's command
        # line, which the kernel cuts at 2048 bytes.
        script = Path(tmp) / "guest.sh"
        script.write_text(guest_script(argv, directory / "boot", Path.cwd(), marker))
        blacklist = ",".join(BLACKLIST)
        command = [
            VNG_VENV / "bin" / "vng", "--disable-kvm",
            "--run", directory / "boot" / f"vmlinuz-{release}",
            "--memory", memory, "--cpus", str(cpus),
            "--append", f"modprobe.blacklist={blacklist} module_blacklist={blacklist}",
            *[f"--rwdir={os.path.abspath(d)}" for d in rwdirs],
            *["--verbose"] * verbose,
            "--exec", f"sh {script}",
        ]
        # vng finds the wrapper first on PATH, virtme-run on PATH too.
        path = [str(wrapper.parent), str(VNG_VENV / "bin"),
                os.environ.get("PATH", "/usr/bin:/bin"), "/usr/sbin:/sbin"]
        env = dict(os.environ, PATH=os.pathsep.join(path), TMPDIR=tmp)
        # A session of its own: Ctrl-C reaches us, not QEMU, and one killpg stops all.
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            timed_out = not pump(proc, stream, timeout)
        finally:
            stop(proc)
        if stream.status is None and not timed_out:
            # Why the VM failed may be in what virtiofsd said (kernels/bin/virtiofsd).
            for log in sorted(Path(tmp).glob("*.log")):
                stream.write("".join(f"virtiofsd: {line}\n"
                                     for line in log.read_text(errors="replace").splitlines()))
    output = stream.close()
    if timed_out:
        raise VMError(f"timed out after {timeout:g} s: the VM was killed", output, 124)
    if stream.status is not None:
        return stream.status, output
    last = next((l for l in reversed(output.splitlines()) if l.strip()), "no output")
    if not stream.started:
        raise NotStarted(f"the VM did not get to run the command (vng exit {proc.returncode}): "
                         f"{last.strip()}", output)
    raise VMError(f"the guest died before the command ended (vng exit {proc.returncode})",
                  output)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    command = []
    if "--" in argv:
        argv, command = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    parser = argparse.ArgumentParser(
        prog="kernels/vm.py", description="Run a command on a Debian 12 cloud kernel under QEMU.")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("prepare", help="fetch the kernel if missing, print its directory"
                       ).add_argument("kernel", choices=KERNELS)
    run_parser = actions.add_parser(
        "run", help="boot the kernel, run the command after -- as root in the current "
        "directory, exit with its status (124: timed out, 125: the VM failed)")
    run_parser.add_argument("kernel", choices=KERNELS)
    run_parser.add_argument("--timeout", type=float, default=TIMEOUT, metavar="S",
                            help=f"kill the VM after S seconds (default {TIMEOUT})")
    run_parser.add_argument("-m", "--memory", default="2G", help="guest memory (default 2G)")
    run_parser.add_argument("-p", "--cpus", type=int, default=2, help="vCPUs (default 2)")
    run_parser.add_argument("--rwdir", action="append", default=[], metavar="DIR",
                            help="a host directory the guest may write to (repeatable)")
    run_parser.add_argument("--verbose", action="store_true",
                            help="show the guest's boot console")
    args = parser.parse_args(argv)
    if args.action == "run":
        if not command:
            run_parser.error("the command goes after --")
        if args.timeout <= 0 or args.cpus < 1:
            run_parser.error("--timeout and --cpus must be positive")
        for directory in args.rwdir:
            if not os.path.isdir(directory):
                run_parser.error(f"--rwdir {directory}: not a directory")
    # A SIGTERM becomes an exception, so that run() stops the VM on its way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if args.action == "prepare":
            print(prepare(args.kernel))
            return 0
        status, _ = run(args.kernel, command, args.timeout, args.memory, args.cpus,
                        args.rwdir, args.verbose)
        return status
    except VMError as e:
        if e.output and not e.output.endswith("\n"):
            print(flush=True)  # the message on a line of its own
        log(e)
        return e.status
    except KeyboardInterrupt:
        log("interrupted: the VM was stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
