"""bpf_prog, bpf_map, bpf_link: the kernel's BPF objects, compared with bpftool.

bpftool runs just before and just after each read of a view; an object whose
bpftool record is the same both times existed throughout the read, so the view
must list it, with the same fields. The test loads objects of its own (programs
of several types, a named map of every type whose memory /bpf_map computes,
links of every kind it can make) and requires them in both.
"""

import contextlib
import json
import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import cffi
import pytest

from iterfs import bpf

from conftest import ROOT, TEST_OBJECTS, needs_view, read_in_chunks

pytestmark = needs_view('bpf_prog', 'bpf_map', 'bpf_link')

OBJECT = TEST_OBJECTS / "bpf_objects.bpf.o"

PROG_HEADER = ["id", "type", "name", "tag", "maps", "loaded", "uid", "xlated", "jited"]
MAP_HEADER = ["id", "type", "name", "flags", "key", "value", "max_entries", "memlock"]
LINK_HEADER = ["id", "type", "prog", "attach", "target"]

# Map types whose memory /bpf_map computes; "-" for every other.
COMPUTED = {"hash", "percpu_hash", "lru_hash", "lru_percpu_hash", "hash_of_maps",
            "array", "percpu_array", "prog_array", "perf_event_array", "cgroup_array",
            "array_of_maps", "sk_storage", "inode_storage", "task_storage", "cgrp_storage",
            "ringbuf", "user_ringbuf", "bloom_filter", "queue", "stack"}
HASHES = {"hash", "percpu_hash", "lru_hash", "lru_percpu_hash", "hash_of_maps"}
BPF_F_NO_PREALLOC = 1
PERCPU_COUNTER_BATCH = 32

# The test's maps whose memory is not computed, and why.
NOT_COMPUTED = {"t_hash_big": "elements counted per CPU", "t_lpm_trie": "lpm_trie",
                "t_stack_trace": "stack_trace", "t_devmap": "devmap"}

BPF_TRACE_ITER = 28
BPF_CGROUP_INET_INGRESS = 0
BPF_SK_LOOKUP = 36

# What the binding does not offer: links other than iterators, and map elements.
ffi = cffi.FFI()
ffi.cdef("""
    struct link_create_opts {       /* the head of libbpf's bpf_link_create_opts */
        size_t sz;
        uint32_t flags;
        void *iter_info;
        uint32_t iter_info_len;
        uint32_t target_btf_id;
    };
    struct map_info_head {          /* the head of struct bpf_map_info */
        uint32_t type, id, key_size, value_size, max_entries, map_flags;
        char name[16];
    };
    int bpf_link_create(int prog_fd, int target_fd, int attach_type,
                        const struct link_create_opts *opts);
    int bpf_raw_tracepoint_open(const char *name, int prog_fd);
    int bpf_obj_get_info_by_fd(int fd, void *info, uint32_t *info_len);
    int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags);
    int bpf_map_delete_elem(int fd, const void *key);
""")
libbpf = ffi.dlopen("libbpf.so.1")


def checked(result, step):
    """libbpf's result: a negative errno is raised."""
    if result < 0:
        raise OSError(-result, f"{step}: {os.strerror(-result)}")
    return result


def add_element(map_fd, key):
    checked(libbpf.bpf_map_update_elem(map_fd, ffi.new("uint32_t *", key),
                                       ffi.new("uint32_t *", key), 0), "map update")


def fdinfo_id(fd, key):
    for line in Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"fd {fd} has no {key}")


def own_maps():
    """{name: (fd, id)} of the test's maps (named t_*) this process holds."""
    maps = {}
    for fd in map(int, os.listdir("/proc/self/fd")):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:bpf-map":
                continue
        except FileNotFoundError:
            continue
        info = ffi.new("struct map_info_head *")
        length = ffi.new("uint32_t *", ffi.sizeof(info[0]))
        checked(libbpf.bpf_obj_get_info_by_fd(fd, info, length), "map info")
        name = ffi.string(info.name).decode()
        if name.startswith("t_"):
            maps[name] = (fd, info.id)
    return maps


@dataclass
class Objects:
    programs: dict = field(default_factory=dict)     # name: id
    maps: dict = field(default_factory=dict)         # name: id
    map_fds: dict = field(default_factory=dict)      # name: fd
    links: dict = field(default_factory=dict)        # program: (type, id, attach, target)
    refused: dict = field(default_factory=dict)      # program not loaded: the kernel's reason


def cgroup2_mount():
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, mountpoint, fstype, *_ = line.split()
        if fstype == "cgroup2":
            return mountpoint
    pytest.skip("no cgroup2 mount")


@contextlib.contextmanager
def network_namespace():
    """An fd of a new network namespace, which lives as long as the fd."""
    process = subprocess.Popen(["unshare", "--net", "--", "cat"], stdin=subprocess.PIPE)
    try:
        own = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{process.pid}/ns/net") == own:
            assert time.monotonic() < deadline, "unshare --net did not start"
            time.sleep(0.01)
        fd = os.open(f"/proc/{process.pid}/ns/net", os.O_RDONLY)
    finally:
        process.kill()
        process.wait()
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def load_objects():
    """The test's object loaded, and {program: the kernel's reason} for the
    programs left out: the map element iterator where the kernel refuses any."""
    refused = {}
    with bpf.Object(OBJECT) as obj:
        with bpf.KernelTargets() as targets:
            refusal = targets.refusal("bpf_map_elem")
        if refusal:
            obj.program("objects_map_elem").set_autoload(False)
            refused["objects_map_elem"] = refusal
        for map_ in obj.maps:       # cgrp_storage is 6.2's: no program uses it
            if not map_.kernel_has_type:
                map_.set_autocreate(False)
                refused[map_.name] = f"the kernel has no map type {map_.type}"
        obj.load()
        yield obj, refused


@pytest.fixture(scope="module")
def objects():
    with contextlib.ExitStack() as stack:
        made = Objects()
        obj, made.refused = stack.enter_context(load_objects())
        for program in obj.programs:
            if program.name not in made.refused:
                made.programs[program.name] = fdinfo_id(program.fd, "prog_id")
        maps = own_maps()
        made.maps = {name: map_id for name, (_, map_id) in maps.items()}
        made.map_fds = {name: fd for name, (fd, _) in maps.items()}
        for key in range(3):        # a hash without preallocation counts its elements
            add_element(made.map_fds["t_hash_nopre"], key)

        def keep(kind, program, link_fd, attach, target):
            stack.callback(os.close, link_fd)
            made.links[program.name] = (kind, fdinfo_id(link_fd, "link_id"), attach, target)

        program = obj.program("objects_bpf_map")
        keep("iter", program, checked(libbpf.bpf_link_create(program.fd, 0, BPF_TRACE_ITER,
                                                             ffi.NULL), "iterator link"),
             "-", "bpf_map")
        if "objects_map_elem" not in made.refused:
            program = obj.program("objects_map_elem")
            info = ffi.new("uint32_t[4]", [maps["t_hash"][0], 0, 0, 0])
            opts = ffi.new("struct link_create_opts *", {
                "sz": ffi.sizeof("struct link_create_opts"), "iter_info": info,
                "iter_info_len": ffi.sizeof(info)})
            keep("iter", program,
                 checked(libbpf.bpf_link_create(program.fd, 0, BPF_TRACE_ITER, opts),
                         "map element iterator link"),
                 "-", f"bpf_map_elem:{made.maps['t_hash']}")

        program = obj.program("objects_raw_tp")
        keep("raw_tracepoint", program,
             checked(libbpf.bpf_raw_tracepoint_open(b"task_rename", program.fd),
                     "raw tracepoint link"), "-", "task_rename")

        cgroup = tempfile.mkdtemp(prefix="iterfs-test-", dir=cgroup2_mount())
        stack.callback(os.rmdir, cgroup)
        cgroup_fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
        stack.callback(os.close, cgroup_fd)
        program = obj.program("objects_cgroup")
        keep("cgroup", program, checked(libbpf.bpf_link_create(program.fd, cgroup_fd,
                                                      BPF_CGROUP_INET_INGRESS, ffi.NULL),
                               "cgroup link"),
             "cgroup_inet_ingress", str(os.stat(cgroup).st_ino))

        netns_fd = stack.enter_context(network_namespace())
        program = obj.program("objects_sk_lookup")
        keep("netns", program, checked(libbpf.bpf_link_create(program.fd, netns_fd, BPF_SK_LOOKUP,
                                                     ffi.NULL), "netns link"),
             "sk_lookup", str(os.fstat(netns_fd).st_ino))
        yield made


# --- the kernel's names for enum values: the oracle for types bpftool cannot name

@pytest.fixture(scope="module")
def kernel_enums():
    """{enum name: {enumerator: value}} from the running kernel's BTF."""
    raw = subprocess.run(["bpftool", "btf", "dump", "file", "/sys/kernel/btf/vmlinux",
                          "format", "raw"], check=True, capture_output=True,
                         text=True).stdout
    enums, current = {}, None
    for line in raw.splitlines():
        if line.startswith("["):
            match = re.match(r"\[\d+\] ENUM '(\w+)'", line)
            current = enums.setdefault(match.group(1), {}) if match else None
        elif current is not None:
            match = re.match(r"\s+'(\w+)' val=(-?\d+)", line)
            if match:
                current[match.group(1)] = int(match.group(2))
    return enums


ENUMS = {"prog": ("bpf_prog_type", "BPF_PROG_TYPE_"), "map": ("bpf_map_type", "BPF_MAP_TYPE_"),
         "link": ("bpf_link_type", "BPF_LINK_TYPE_"), "attach": ("bpf_attach_type", "BPF_")}


def same_type(ours, theirs, kind, kernel_enums):
    """bpftool names a type, or gives its number when its libbpf does not know it."""
    if isinstance(theirs, str):
        return ours == theirs
    enum, prefix = ENUMS[kind]
    return ours == str(theirs) or \
        kernel_enums[enum].get(prefix + ours.upper()) == theirs


# --- reading the views and bpftool at the same moment

def bpftool(kind):
    out = subprocess.run(["bpftool", "-j", kind, "show"], check=True,
                         capture_output=True, text=True).stdout
    return {record["id"]: record for record in json.loads(out or "[]")}


def parse(text, header):
    lines = text.splitlines()
    assert lines[0].split() == header
    rows = {}
    for line in lines[1:]:
        fields = line.split()
        assert fields != header, "the header again"
        assert len(fields) == len(header), line
        row = dict(zip(header, fields))
        assert int(row["id"]) not in rows, f"id {row['id']} listed twice"
        rows[int(row["id"])] = row
    return rows


def read_with_oracle(mount, view, kind, header, read=lambda path: Path(path).read_text()):
    """(rows, records): the view's rows, and bpftool's records of the objects that
    existed throughout the read (the same before and after it)."""
    before = bpftool(kind)
    rows = parse(read(mount.mountpoint / view), header)
    after = bpftool(kind)
    stable = {key: record for key, record in before.items() if after.get(key) == record}
    assert set(stable) <= set(rows), "objects that existed throughout the read are missing"
    return rows, stable


# --- /bpf_prog

def boot_to_epoch():
    return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


def check_program(row, record, kernel_enums):
    assert same_type(row["type"], record["type"], "prog", kernel_enums), (row, record)
    # The kernel keeps 15 characters; bpftool completes a name that long from BTF.
    assert row["name"] == (record.get("name") or "-")[:15], (row, record)
    assert row["tag"] == record["tag"]
    assert int(row["maps"]) == len(record.get("map_ids", []))
    assert int(row["uid"]) == record["uid"]
    assert int(row["xlated"]) == record["bytes_xlated"]
    assert int(row["jited"]) == (record["bytes_jited"] if record["jited"] else 0)
    # bpftool shows the load time as whole seconds of the epoch, from the clocks it reads.
    assert abs(float(row["loaded"]) + boot_to_epoch() - record["loaded_at"]) <= 2, \
        (row, record)


@pytest.mark.kernel
def test_programs_as_bpftool_shows_them(mount, objects, kernel_enums):
    rows, records = read_with_oracle(mount, "bpf_prog", "prog", PROG_HEADER)
    for prog_id, record in records.items():
        check_program(rows[prog_id], record, kernel_enums)
    expected_types = {"objects_socket": "socket_filter", "objects_kprobe": "kprobe",
                      "objects_raw_tp": "raw_tracepoint", "objects_map_elem": "tracing",
                      "objects_bpf_map": "tracing",
                      "objects_cgroup": "cgroup_skb", "objects_sk_lookup": "sk_lookup"}
    for name, prog_id in objects.programs.items():
        assert prog_id in records, name
        assert rows[prog_id]["type"] == expected_types[name]
        assert rows[prog_id]["name"] == name[:15]
    assert rows[objects.programs["objects_socket"]]["maps"] == "2"


def test_load_time_is_seconds_since_boot(mount):
    with load_objects() as (obj, _):
        loaded = time.clock_gettime(time.CLOCK_BOOTTIME)
        prog_id = fdinfo_id(obj.program("objects_kprobe").fd, "prog_id")
        rows = parse((mount.mountpoint / "bpf_prog").read_text(), PROG_HEADER)
    assert re.fullmatch(r"\d+\.\d{9}", rows[prog_id]["loaded"])
    assert loaded - 1 <= float(rows[prog_id]["loaded"]) <= loaded


# --- /bpf_map

def online_cpus():
    return os.sysconf("SC_NPROCESSORS_ONLN")


def check_map(row, record, kernel_enums):
    assert same_type(row["type"], record["type"], "map", kernel_enums), (row, record)
    assert row["name"] == (record.get("name") or "-")
    assert int(row["flags"], 16) == record["flags"]
    assert int(row["key"]) == record["bytes_key"]
    assert int(row["value"]) == record["bytes_value"]
    assert int(row["max_entries"]) == record["max_entries"]
    if row["memlock"] != "-":
        assert int(row["memlock"]) == record["bytes_memlock"], (row, record)
    else:
        # Only where the program cannot compute it: never a wrong number.
        assert not memory_computed_here() or row["type"] not in COMPUTED or (
            row["type"] in HASHES and record["flags"] & BPF_F_NO_PREALLOC
            and record["max_entries"] // 2 > online_cpus() * PERCPU_COUNTER_BATCH), \
            (row, record)


def memory_computed_here():
    """Whether the running kernel is one whose memory computation /bpf_map repeats
    (MEMORY_KERNELS_FROM <= version < MEMORY_KERNELS_TO in its source)."""
    text = (ROOT / "progs" / "bpf_map.bpf.c").read_text()
    bounds = [tuple(map(int, re.search(rf"MEMORY_KERNELS_{end} KERNEL_VERSION\((\d+), "
                                       r"(\d+), (\d+)\)", text).groups()))
              for end in ("FROM", "TO")]
    release = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", os.uname().release).groups("0")
    return bounds[0] <= tuple(map(int, release)) < bounds[1]


@pytest.mark.kernel
def test_maps_as_bpftool_shows_them(mount, objects, kernel_enums):
    rows, records = read_with_oracle(mount, "bpf_map", "map", MAP_HEADER)
    for map_id, record in records.items():
        check_map(rows[map_id], record, kernel_enums)
    if not memory_computed_here():
        # What the README says of other kernels than those the computation is for.
        assert {row["memlock"] for row in rows.values()} == {"-"}
        return
    for name, map_id in objects.maps.items():
        assert map_id in records, name
        row = rows[map_id]
        assert row["name"] == name
        if name in NOT_COMPUTED:
            assert row["memlock"] == "-", name
        else:
            assert row["type"] in COMPUTED, name
            assert row["memlock"] == str(records[map_id]["bytes_memlock"]), name
    # every type computed is one the test checked against bpftool, but prog_array
    # (see tests/progs/bpf_objects.bpf.c), whose memory is any array's
    missing = {"prog_array"} | ({"cgrp_storage"} if "t_cgrp_storage" in objects.refused else set())
    assert {rows[map_id]["type"] for map_id in objects.maps.values()} >= COMPUTED - missing
    if "t_cgrp_storage" not in objects.refused:
        assert rows[objects.maps["t_cgrp_storage"]]["type"] == "cgrp_storage"


def test_memory_counts_elements_as_they_come(mount, objects, kernel_enums):
    """A hash map without preallocation grows by each element it holds."""
    if not memory_computed_here():
        pytest.skip(f"memory is computed for other kernels than {os.uname().release}")
    map_id, map_fd = objects.maps["t_hash_nopre"], objects.map_fds["t_hash_nopre"]

    def memlock():
        rows, records = read_with_oracle(mount, "bpf_map", "map", MAP_HEADER)
        check_map(rows[map_id], records[map_id], kernel_enums)
        return int(rows[map_id]["memlock"])

    before = memlock()
    key = ffi.new("uint32_t *", 100)
    add_element(map_fd, 100)
    try:
        grown = memlock()
    finally:
        checked(libbpf.bpf_map_delete_elem(map_fd, key), "map delete")
    assert grown > before           # and each equal to bpftool's
    assert memlock() == before


# --- /bpf_link

def expected_link_columns(record):
    """(attach, target) as this view writes them, from bpftool's record."""
    kind = record["type"]
    if kind == "iter":
        target = record["target_name"]
        if "map_id" in record:
            target += f":{record['map_id']}"
        return "-", target
    if kind == "raw_tracepoint":
        return "-", record["tp_name"]
    if kind == "tracing":
        return record["attach_type"], "-"
    if kind == "cgroup":
        return record["attach_type"], str(record["cgroup_id"])
    if kind == "netns":
        return record["attach_type"], str(record["netns_ino"])
    return "-", "-"


def check_link(row, record, kernel_enums):
    assert same_type(row["type"], record["type"], "link", kernel_enums), (row, record)
    assert int(row["prog"]) == record["prog_id"]
    attach, target = expected_link_columns(record)
    assert same_type(row["attach"], attach, "attach", kernel_enums), (row, record)
    assert row["target"] == target, (row, record)


@pytest.mark.kernel
def test_links_as_bpftool_shows_them(mount, objects, kernel_enums):
    rows, records = read_with_oracle(mount, "bpf_link", "link", LINK_HEADER)
    for link_id, record in records.items():
        check_link(rows[link_id], record, kernel_enums)
    for program, (kind, link_id, attach, target) in objects.links.items():
        assert link_id in records, program
        row = rows[link_id]
        assert (row["type"], row["attach"], row["target"]) == (kind, attach, target)
        assert int(row["prog"]) == objects.programs[program]


def test_map_element_iterator_link_names_its_map(mount, objects):
    """An iterator over one map's elements shows which map: bpf_map_elem:<id>."""
    if "objects_map_elem" in objects.refused:
        pytest.skip(objects.refused["objects_map_elem"])
    rows, _ = read_with_oracle(mount, "bpf_link", "link", LINK_HEADER)
    kind, link_id, _, target = objects.links["objects_map_elem"]
    assert rows[link_id]["target"] == target == f"bpf_map_elem:{objects.maps['t_hash']}"


# --- iterfs's own objects

def test_iterfs_objects_are_told_apart(mount):
    """The daemon's programs are tracing programs named after their views, and
    every reader's link is an iter link of the view's target: /bpf_link shows the
    one reading it."""
    daemon_programs = mount.program_ids()
    programs = parse((mount.mountpoint / "bpf_prog").read_text(), PROG_HEADER)
    records = bpftool("prog")
    maps = parse((mount.mountpoint / "bpf_map").read_text(), MAP_HEADER)
    by_name = {programs[prog_id]["name"]: prog_id for prog_id in daemon_programs}
    assert {"bpf_prog", "bpf_map", "bpf_link"} <= set(by_name)
    for prog_id in daemon_programs:
        assert programs[prog_id]["type"] == "tracing"
    links = parse((mount.mountpoint / "bpf_link").read_text(), LINK_HEADER)
    reading = [row for row in links.values() if int(row["prog"]) == by_name["bpf_link"]]
    assert [(row["type"], row["target"]) for row in reading] == [("iter", "bpf_link")]
    # /bpf_map's own count of the possible CPUs
    cpus = [maps[map_id] for map_id in records[by_name["bpf_map"]]["map_ids"]
            if maps[map_id]["name"] == "possible_cpus"]
    assert [row["max_entries"] for row in cpus] == [str(possible_cpus())]


def possible_cpus():
    count = 0
    for part in Path("/sys/devices/system/cpu/possible").read_text().strip().split(","):
        first, _, last = part.partition("-")
        count += int(last or first) - int(first) + 1
    return count


# --- reads of any size, the header once

@pytest.mark.parametrize("view,kind,header", [("bpf_prog", "prog", PROG_HEADER),
                                               ("bpf_map", "map", MAP_HEADER),
                                               ("bpf_link", "link", LINK_HEADER)])
def test_small_reads_show_each_object_once(mount, objects, kernel_enums, view, kind, header):
    check = {"prog": check_program, "map": check_map, "link": check_link}[kind]
    for size in (333, 4096):
        rows, records = read_with_oracle(mount, view, kind, header,
                                         read=lambda path: read_in_chunks(path, size))
        for object_id, record in records.items():
            check(rows[object_id], record, kernel_enums)


# --- the type names: libbpf's, each the kernel's own enumerator

TABLES = [("bpf_prog.bpf.c", "prog_type_names", "prog"),
          ("bpf_map.bpf.c", "map_type_names", "map"),
          ("bpf_link.bpf.c", "link_type_names", "link"),
          ("bpf_link.bpf.c", "attach_type_names", "attach")]


@pytest.mark.parametrize("source,table,kind", TABLES)
def test_type_names_are_the_kernels(kernel_enums, source, table, kind):
    text = (ROOT / "progs" / source).read_text()
    body = re.search(table + r"\[\]\[\w+\] = \{(.*?)\n\};", text, re.S).group(1)
    names = {int(value): name for value, name in re.findall(r'\[(\d+)\] = "(\w+)"', body)}
    enum, prefix = ENUMS[kind]
    kernel = {name: value for name, value in kernel_enums[enum].items()
              if not name.startswith("__MAX")}
    for value, name in names.items():
        if prefix + name.upper() in kernel:
            assert kernel[prefix + name.upper()] == value, name
        else:       # a name newer than this kernel, for a value it does not have
            assert value not in kernel.values(), name
    assert set(kernel.values()) <= set(names), "a value of this kernel has no name"
