"""Kernel config values for programs' `__kconfig` externs when the kernel's own
config cannot be read.

libbpf resolves `extern ... CONFIG_X __kconfig` from /boot/config-<release> or
/proc/config.gz, and fails to load the object (EINVAL) when neither is
readable, even for weak externs: containers and minimal VMs have neither. There
iterfs hands libbpf the values below instead, each read off the running system
rather than assumed, so that the programs print what /proc prints:

    CONFIG_HZ                  jiffies counted over 100 ms (/proc/schedstat or
                               /proc/timer_list); 250, Debian's, if neither is there
    CONFIG_PAGE_SHIFT          sysconf(_SC_PAGESIZE)
    CONFIG_X86_VSYSCALL_EMULATION, CONFIG_LEGACY_VSYSCALL_NONE,
    CONFIG_LEGACY_VSYSCALL_XONLY
                               the [vsyscall] line of /proc/self/maps: absent,
                               --xp (xonly) or r-xp (emulate)
    CONFIG_COMPAT              compat system calls in /proc/kallsyms
    CONFIG_VIRT_CPU_ACCOUNTING_NATIVE
                               vtime_flush() in /proc/kallsyms (only where the
                               architecture times each mode itself)

A program of one's own with another CONFIG_ extern still needs the kernel's
config: libbpf then says it could not open it.
"""

import functools
import logging
import os
import re
import time

log = logging.getLogger("iterfs.kconfig")

HZ_CHOICES = (100, 250, 300, 1000)     # kernel/Kconfig.hz
DEFAULT_HZ = 250
HZ_SAMPLE_SECONDS = 0.1
COMPAT_SYMBOL = r"compat_sys_"          # __ia32_compat_sys_*, __do_compat_sys_*
NATIVE_VTIME_SYMBOL = r"^vtime_flush$"


def config_paths(release=None):
    """Where libbpf looks for the kernel's config, in its order."""
    release = release or os.uname().release
    return (f"/boot/config-{release}", "/proc/config.gz")


def system_config_readable():
    for path in config_paths():
        try:
            with open(path, "rb") as f:
                if f.read(1):
                    return True
        except OSError:
            continue
    return False


@functools.lru_cache(maxsize=1)
def fallback():
    """What to give libbpf as kconfig: None where it can read the kernel's
    config itself, else the derived values as config lines."""
    if system_config_readable():
        return None
    values = derived()
    log.info("no kernel config readable (%s): using %s", " or ".join(config_paths()),
             ", ".join(f"{name}={value}" for name, value in values.items()))
    return "".join(f"{name}={value}\n" for name, value in values.items())


def derived():
    """Every CONFIG_ value the built-in views read, from the running system."""
    vsyscall = _vsyscall_mode()
    symbols = _kallsyms_having((COMPAT_SYMBOL, NATIVE_VTIME_SYMBOL))
    return {
        "CONFIG_HZ": measured_hz(),
        "CONFIG_PAGE_SHIFT": (os.sysconf("SC_PAGE_SIZE")).bit_length() - 1,
        "CONFIG_X86_VSYSCALL_EMULATION": _yes(vsyscall is not None),
        "CONFIG_LEGACY_VSYSCALL_NONE": _yes(vsyscall is None),
        "CONFIG_LEGACY_VSYSCALL_XONLY": _yes(vsyscall == "--x"),
        "CONFIG_COMPAT": _yes(COMPAT_SYMBOL in symbols),
        "CONFIG_VIRT_CPU_ACCOUNTING_NATIVE": _yes(NATIVE_VTIME_SYMBOL in symbols),
    }


def _yes(flag):
    return "y" if flag else "n"


def measured_hz():
    """The kernel's tick rate: jiffies counted against the monotonic clock."""
    first = _jiffies()
    if first is None:
        log.warning("no jiffies counter readable (/proc/schedstat, /proc/timer_list): "
                    "CONFIG_HZ taken as %d", DEFAULT_HZ)
        return DEFAULT_HZ
    start = time.monotonic()
    time.sleep(HZ_SAMPLE_SECONDS)
    second = _jiffies()
    rate = (second - first) / (time.monotonic() - start)
    return min(HZ_CHOICES, key=lambda hz: abs(hz - rate))


def _jiffies():
    try:
        with open("/proc/schedstat") as f:
            for line in f:
                if line.startswith("timestamp "):
                    return int(line.split()[1])
    except OSError:
        pass
    try:
        with open("/proc/timer_list") as f:
            for line in f:
                if line.startswith("jiffies: "):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _vsyscall_mode():
    """The permissions of the [vsyscall] mapping, or None where there is none."""
    with open("/proc/self/maps") as f:
        for line in f:
            if line.rstrip().endswith("[vsyscall]"):
                return line.split()[1][:3]
    return None


def _kallsyms_having(patterns):
    """Which of `patterns` (regular expressions) match some name in /proc/kallsyms."""
    found = set()
    compiled = {pattern: re.compile(pattern) for pattern in patterns}
    try:
        with open("/proc/kallsyms") as f:
            for line in f:
                name = line.split(maxsplit=3)[2]
                for pattern, regex in compiled.items():
                    if pattern not in found and regex.search(name):
                        found.add(pattern)
                if len(found) == len(patterns):
                    break
    except OSError:
        pass
    return found
