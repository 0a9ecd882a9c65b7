"""How much memory the backend uses, read where it runs.

A container past its memory is killed, so the figure that counts is the
container's own. Where it can be read, in the order ``auto`` tries them:

- ``cgroup``: a Linux container with a memory limit. The cgroup's
  ``memory.current`` (v2) or ``memory.usage_in_bytes`` (v1), less the
  inactive file cache (``memory.stat``), which the kernel drops before it
  kills anything: the working set that container runtimes report.
- ``gvisor``: gVisor, Modal's container runtime. It writes ``/proc/meminfo``
  from the sandbox's own accounting, so ``MemTotal - MemFree`` is the
  container's use (gVisor ``pkg/sentry/fsimpl/proc/meminfo.go``). Its
  per-process files cannot give it: gVisor has ``/proc/<pid>/smaps``,
  ``statm``, ``status`` and ``stat`` but no ``smaps_rollup`` (gVisor issue
  7000; ``pkg/sentry/fsimpl/proc/task.go``), and its ``smaps`` reports each
  page as the process's own (``Pss`` equal to ``Rss``,
  ``pkg/sentry/mm/procfs.go``), which would count the model the server and
  its worker share twice.
- ``processes``: anywhere else (a laptop, CI), the proportional set sizes
  of the backend's processes from ``/proc/<pid>/smaps_rollup``: a page
  shared by the server and its worker counts half to each, so the sum is
  what they really use.

``smaps_rollup`` walks the process's page tables, about 25 ms for a warm
worker; the other files cost microseconds. ``Watch`` spends at most
``BUDGET`` of the time on readings, and between readings looks at the
processes' resident sizes (``statm``, O(1)), reading early when they have
grown past the room left under the limit.
"""

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

MB = 1024 * 1024
# The kernel version gVisor reports wherever it runs (its syscall table,
# ``pkg/sentry/syscalls/linux/linux64.go``); the release varies (Modal's is
# "4.19.0-gvisor"), this does not.
GVISOR_KERNEL_VERSION = "#1 SMP Sun Jan 10 15:06:54 PST 2016"
# A cgroup v1 "no limit" is a huge number rather than "max".
NO_LIMIT = 1 << 60
# The share of one core that readings may take while a job runs.
BUDGET = 0.02
# The longest time between two readings, however costly they are.
LONGEST_GAP_SECONDS = 5.0
SOURCES = ("auto", "cgroup", "gvisor", "processes", "off")


def _text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _fields(text: str, separator: str | None = None) -> dict[str, int]:
    """``name value`` lines (``memory.stat``) or ``Name: value kB`` lines
    (``meminfo``, ``smaps_rollup``) as numbers."""
    values = {}
    for line in text.splitlines():
        parts = line.split(separator) if separator else line.split()
        if len(parts) >= 2:
            name = parts[0].rstrip(":")
            try:
                values[name] = int(parts[1].split()[0])
            except ValueError:
                continue
    return values


@dataclass(frozen=True)
class Cgroup:
    """A memory cgroup: v2 (``memory.current``) or v1 (``memory.usage_in_bytes``)."""

    folder: Path
    version: int

    @property
    def description(self) -> str:
        name = "memory.current" if self.version == 2 else "memory.usage_in_bytes"
        return (
            f"the container's cgroup ({self.folder / name}, less inactive file cache)"
        )

    cheap = True

    def read_mb(self, pids: Sequence[int]) -> float | None:
        usage_file = "memory.current" if self.version == 2 else "memory.usage_in_bytes"
        usage = _text(self.folder / usage_file)
        stat = _text(self.folder / "memory.stat")
        if usage is None or stat is None:
            return None
        stats = _fields(stat)
        inactive = stats.get(
            "inactive_file" if self.version == 2 else "total_inactive_file", 0
        )
        return (int(usage) - inactive) / MB


@dataclass(frozen=True)
class SandboxMeminfo:
    """gVisor's ``/proc/meminfo``: the sandbox's own total."""

    path: Path
    cheap = True

    @property
    def description(self) -> str:
        return f"gVisor's account of the container ({self.path}: MemTotal - MemFree)"

    def read_mb(self, pids: Sequence[int]) -> float | None:
        text = _text(self.path)
        if text is None:
            return None
        values = _fields(text)
        if "MemTotal" not in values or "MemFree" not in values:
            return None
        return (values["MemTotal"] - values["MemFree"]) / 1024


@dataclass(frozen=True)
class ProportionalSets:
    """The processes' proportional set sizes (``smaps_rollup``), summed."""

    proc: Path
    cheap = False

    @property
    def description(self) -> str:
        return f"the backend's processes ({self.proc}/<pid>/smaps_rollup, proportional set sizes)"

    def read_mb(self, pids: Sequence[int]) -> float | None:
        total = 0.0
        for pid in pids:
            text = _text(self.proc / str(pid) / "smaps_rollup")
            if text is None or "Pss" not in (values := _fields(text)):
                return None
            total += values["Pss"] / 1024
        return total


Source = Cgroup | SandboxMeminfo | ProportionalSets


def _own_cgroup(proc: Path, cgroup_root: Path) -> Cgroup | None:
    """This process's memory cgroup, if it has a limit: a container of its
    own. A laptop's or CI runner's cgroup (no limit, or shared with
    everything else the user runs) is not the backend's figure."""
    text = _text(proc / "self" / "cgroup") or ""
    for line in text.splitlines():
        hierarchy, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        relative = path.lstrip("/")
        if hierarchy == "0" and controllers == "":  # v2, alone or beside v1
            for folder in (cgroup_root / relative, cgroup_root / "unified" / relative):
                limit = (_text(folder / "memory.max") or "").strip()
                if limit and limit != "max" and (folder / "memory.current").exists():
                    return Cgroup(folder, 2)
        elif "memory" in controllers.split(","):  # v1
            folder = cgroup_root / "memory" / relative
            limit = (_text(folder / "memory.limit_in_bytes") or "").strip()
            if limit.isdigit() and int(limit) < NO_LIMIT:
                return Cgroup(folder, 1)
    return None


def in_gvisor(version: str | None = None) -> bool:
    return (
        version if version is not None else os.uname().version
    ) == GVISOR_KERNEL_VERSION


def find_source(
    setting: str = "auto",
    proc: Path = Path("/proc"),
    cgroup_root: Path = Path("/sys/fs/cgroup"),
    kernel_version: str | None = None,
) -> Source | None:
    """Where to read memory (MEMORY_SOURCE); None where nothing can be read
    ("off" asks for no reading at all)."""
    if setting == "off":
        return None
    if setting in ("auto", "cgroup") and (cgroup := _own_cgroup(proc, cgroup_root)):
        return cgroup
    meminfo = SandboxMeminfo(proc / "meminfo")
    if setting == "gvisor" or (setting == "auto" and in_gvisor(kernel_version)):
        return meminfo if meminfo.read_mb([]) is not None else None
    if setting in ("auto", "processes"):
        rollup = ProportionalSets(proc)
        if rollup.read_mb([os.getpid()]) is not None:
            return rollup
    return None


def resident_mb(pids: Sequence[int], proc: Path = Path("/proc")) -> float:
    """The processes' resident sizes summed (``statm``, O(1) per process;
    shared pages count in each)."""
    pages = 0
    for pid in pids:
        text = _text(proc / str(pid) / "statm")
        if text:
            pages += int(text.split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / MB


@dataclass
class Watch:
    """Readings of ``source`` while a job runs, at most ``budget`` of the
    time; between them a cheap look at resident sizes decides whether the
    processes have grown enough to read again at once."""

    source: Source
    limit_mb: float
    budget: float = BUDGET
    longest_gap: float = LONGEST_GAP_SECONDS
    proc: Path = Path("/proc")
    last_mb: float | None = None
    _last_at: float = field(default=0.0, init=False)
    _gap: float = field(default=0.0, init=False)
    _resident_at_last: float = field(default=0.0, init=False)

    def read(self, pids: Sequence[int]) -> float | None:
        """A reading now; its cost sets how long until the next one."""
        started_cpu, started = time.thread_time(), time.monotonic()
        self.last_mb = self.source.read_mb(pids)
        cost = time.thread_time() - started_cpu
        self._last_at = started
        self._gap = min(self.longest_gap, cost / self.budget)
        if not self.source.cheap:
            self._resident_at_last = resident_mb(pids, self.proc)
        return self.last_mb

    def poll(self, pids: Sequence[int]) -> float | None:
        """A reading if one is due, else None."""
        due = time.monotonic() - self._last_at >= self._gap
        if not due and not self.source.cheap and self.last_mb is not None:
            grown = resident_mb(pids, self.proc) - self._resident_at_last
            due = self.last_mb + grown > self.limit_mb
        return self.read(pids) if due else None
