"""Where memory is read (policyengine_backend/_worker/memory.py), from
recorded copies of the files each place has: a Linux container's cgroup (v1
and v2), gVisor's /proc (Modal's runtime: meminfo, smaps, statm, no
smaps_rollup), a plain Linux machine's /proc, and none of them."""

import os
from pathlib import Path

import pytest

from policyengine_backend._worker.memory import (
    GVISOR_KERNEL_VERSION,
    Cgroup,
    ProportionalSets,
    SandboxMeminfo,
    Watch,
    find_source,
)

LINUX_VERSION = "#1 SMP PREEMPT_DYNAMIC Debian 6.1.158-1 (2025-11-10)"

# Recorded on Linux 6.x (values in kB).
SMAPS_ROLLUP = """55e4166f5000-7fff684ff000 ---p 00000000 00:00 0                          [rollup]
Rss:             1596000 kB
Pss:              512000 kB
Pss_Dirty:        112000 kB
Pss_Anon:         112000 kB
Pss_File:            140 kB
Shared_Clean:       1444 kB
Private_Dirty:    112000 kB
Anonymous:        112000 kB
Swap:                  0 kB
"""
# gVisor's /proc/meminfo, in the layout of pkg/sentry/fsimpl/proc/meminfo.go.
GVISOR_MEMINFO = """MemTotal:        4194304 kB
MemFree:         1048576 kB
MemAvailable:    1048576 kB
Buffers:               0 kB
Cached:           204800 kB
SwapCache:             0 kB
Active:          2969600 kB
Inactive:         102400 kB
Active(anon):    2867200 kB
"""
# gVisor's smaps reports every page as the process's own (Pss = Rss).
GVISOR_SMAPS = """00400000-00452000 r-xp 00000000 00:0d 3 /usr/bin/python3
Size:               328 kB
Rss:             1500000 kB
Pss:             1500000 kB
Shared_Clean:          0 kB
Shared_Dirty:          0 kB
"""
CGROUP_V2_STAT = (
    "anon 2147483648\nfile 524288000\nactive_file 209715200\ninactive_file 314572800\n"
)
CGROUP_V1_STAT = (
    "cache 11218944\nrss 5324800\ninactive_file 53248\ntotal_inactive_file 353906688\n"
)


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def linux_proc(root: Path, cgroup: str = "0::/\n") -> Path:
    pid = os.getpid()
    return write(
        root / "proc",
        {
            "self/cgroup": cgroup,
            f"{pid}/smaps_rollup": SMAPS_ROLLUP,
            f"{pid}/statm": "400000 390000 1000 5 0 123 0\n",
            "meminfo": "MemTotal: 24683784 kB\nMemFree: 21867152 kB\n",
        },
    )


def test_a_container_with_a_v2_memory_limit_reads_its_cgroup(tmp_path):
    proc = linux_proc(tmp_path, "0::/modal/task\n")
    cgroups = write(
        tmp_path / "cgroup",
        {
            "modal/task/memory.max": "4294967296\n",
            "modal/task/memory.current": str(3 * 1024**3) + "\n",
            "modal/task/memory.stat": CGROUP_V2_STAT,
        },
    )
    source = find_source("auto", proc, cgroups, LINUX_VERSION)
    assert source == Cgroup(cgroups / "modal/task", 2)
    # 3 GiB in use, less 300 MiB of inactive file cache the kernel drops first.
    assert source.read_mb([]) == 3 * 1024 - 300
    assert "memory.current" in source.description


def test_a_container_with_a_v1_memory_limit_reads_its_cgroup(tmp_path):
    proc = linux_proc(tmp_path, "4:memory:/task\n0::/\n")
    cgroups = write(
        tmp_path / "cgroup",
        {
            "memory/task/memory.limit_in_bytes": "4294967296\n",
            "memory/task/memory.usage_in_bytes": "2426056704\n",
            "memory/task/memory.stat": CGROUP_V1_STAT,
        },
    )
    source = find_source("auto", proc, cgroups, LINUX_VERSION)
    assert source == Cgroup(cgroups / "memory/task", 1)
    assert source.read_mb([]) == pytest.approx((2426056704 - 353906688) / 1024**2)


@pytest.mark.parametrize(
    ("cgroup", "files"),
    [
        # A laptop's or CI runner's cgroup: no limit, shared with everything else.
        (
            "0::/user.slice\n",
            {"user.slice/memory.max": "max\n", "user.slice/memory.current": "1\n"},
        ),
        ("4:memory:/\n", {"memory/memory.limit_in_bytes": "9223372036854771712\n"}),
    ],
)
def test_a_cgroup_without_a_limit_is_not_the_backends_figure(tmp_path, cgroup, files):
    proc = linux_proc(tmp_path, cgroup)
    cgroups = write(tmp_path / "cgroup", files)
    source = find_source("auto", proc, cgroups, LINUX_VERSION)
    assert source == ProportionalSets(proc)
    assert source.read_mb([os.getpid()]) == 500  # the recorded Pss


def test_gvisor_reads_its_own_account_of_the_container(tmp_path):
    # gVisor has smaps and statm but no smaps_rollup; /proc/meminfo is the
    # sandbox's own total.
    pid = os.getpid()
    proc = write(
        tmp_path / "proc",
        {
            "self/cgroup": "0::/\n",
            "meminfo": GVISOR_MEMINFO,
            f"{pid}/smaps": GVISOR_SMAPS,
            f"{pid}/statm": "400000 375000 0 5 0 123 0\n",
        },
    )
    source = find_source("auto", proc, tmp_path / "no-cgroup", GVISOR_KERNEL_VERSION)
    assert source == SandboxMeminfo(proc / "meminfo")
    assert source.read_mb([pid]) == (4194304 - 1048576) / 1024
    # Asked for the processes' figure, gVisor has none to give.
    assert find_source("processes", proc, tmp_path, GVISOR_KERNEL_VERSION) is None


def test_where_nothing_can_be_read_there_is_no_source(tmp_path):
    proc = write(tmp_path / "proc", {"self/cgroup": "0::/\n"})
    assert find_source("auto", proc, tmp_path / "cgroup", LINUX_VERSION) is None
    assert find_source("off", linux_proc(tmp_path)) is None


def test_the_rollup_of_a_process_that_has_gone_is_no_reading(tmp_path):
    proc = linux_proc(tmp_path)
    assert ProportionalSets(proc).read_mb([os.getpid(), 999_999_999]) is None


class Costly:
    """A source whose readings cost what the rollup's do, counted."""

    cheap = False
    description = "costly"

    def __init__(self, value: float):
        self.value = value
        self.readings = 0

    def read_mb(self, pids):
        self.readings += 1
        deadline = os.times().elapsed  # spend CPU, measured by thread_time
        while os.times().elapsed - deadline < 0.02:
            pass
        return self.value


def test_a_costly_source_is_read_within_its_budget(tmp_path):
    source = Costly(100)
    # Readings may take a millionth of the time, up to an hour apart.
    watch = Watch(
        source, 1_000, budget=1e-6, longest_gap=3600, proc=linux_proc(tmp_path)
    )
    assert watch.read([os.getpid()]) == 100
    # A reading costs about 20 ms of CPU, so the next is not due for the
    # longest gap: polling reads nothing.
    assert watch.poll([os.getpid()]) is None
    assert source.readings == 1


def test_growth_seen_in_resident_sizes_brings_the_next_reading_forward(tmp_path):
    proc = linux_proc(tmp_path)
    source = Costly(900)
    watch = Watch(source, 1_000, budget=1e-6, longest_gap=3600, proc=proc)
    watch.read([os.getpid()])
    # Resident memory grows by 200 MB: 900 + 200 would pass the limit.
    pages = 390_000 + 200 * 1024 * 1024 // os.sysconf("SC_PAGE_SIZE")
    (proc / str(os.getpid()) / "statm").write_text(f"400000 {pages} 1000 5 0 123 0\n")
    assert watch.poll([os.getpid()]) == 900
    assert source.readings == 2
