"""The calculation worker: one child process that runs every calculation.

A calculation is CPU-bound Python over a model of millions of objects. Run
in a thread, it cannot be stopped, its garbage-collection pauses stall the
whole server, and the memory it leaves (parameters prepared for a new year,
reformed systems) stays with the server for good. Run in a child process
forked from the warm server, each of those has a simple answer:

- a calculation past its deadline is stopped by ending the process, and the
  next one runs in a fresh fork, as warm as the server it is copied from;
- the server (the parent) only parses, checks and answers, so ``/health``
  never waits behind the model;
- memory: the parent watches the container's memory (parent and child
  together) while a calculation runs and stops it past ``memory_limit_mb``;
  after a calculation, past ``memory_recycle_mb``, the child is replaced,
  which returns everything it had cached.

A fork shares the loaded model with the parent page by page (copy on
write), so starting a worker takes milliseconds and little memory.
"""

import contextlib
import ctypes
import gc
import logging
import multiprocessing
import os
import signal
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

# Fork explicitly (Python 3.14 changes the default): the point is to copy
# the warm parent, model and caches included.
FORK = multiprocessing.get_context("fork")
# How often the parent checks the deadline and the memory while it waits.
POLL_SECONDS = 0.2
READY = "ready"

logger = logging.getLogger(__name__)


class WorkerStopped(Exception):
    """The calculation was stopped and the worker replaced."""


class TimedOut(WorkerStopped):
    pass


class OutOfMemory(WorkerStopped):
    pass


class Crashed(WorkerStopped):
    pass


def memory_mb(pid: int) -> float | None:
    """Proportional set size of a process: its private memory plus its share
    of pages it shares (with the parent or child), so the sum over the two
    processes is the memory they really use. None where /proc has no such
    file (not Linux)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return None


def release_memory() -> None:
    """Free what the last calculation left and hand it back to the system.

    The loaded model is frozen out of collections (see Engine.warm_up), so a
    full collection walks only what this worker made. glibc keeps freed
    memory for reuse; malloc_trim returns it, so the container's usage falls.
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def serve(connection, handle: Callable[[tuple], tuple]) -> None:
    """The worker's loop: answer each job, then clean up before the next."""
    # Ctrl-C in `make dev` reaches the whole process group: stop at once
    # rather than run the server's handlers copied into this process.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    connection.send(READY)
    while True:
        try:
            job = connection.recv()
        except EOFError:  # the server has gone
            return
        try:
            reply = handle(job)
        except Exception:
            reply = ("error", traceback.format_exc())
        connection.send(reply)
        del job, reply
        release_memory()
        connection.send(READY)


class Worker:
    """Runs jobs one at a time in a child process; see the module docstring.

    ``run`` blocks, so the server calls it from a thread, one job at a time.
    """

    def __init__(
        self,
        handle: Callable[[tuple], tuple],
        memory_limit_mb: float,
        memory_recycle_mb: float,
    ):
        self.handle = handle
        self.memory_limit_mb = memory_limit_mb
        self.memory_recycle_mb = memory_recycle_mb
        self.process: multiprocessing.process.BaseProcess | None = None
        self.connection: Connection | None = None
        self.ready = False
        self.jobs_done = 0  # by the current worker process
        self.fresh_at_last_job = True
        # One job at a time, even if a caller gives up waiting before the
        # job is done: the pipe carries one conversation.
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def run(self, job: tuple, deadline: float) -> tuple:
        """The job's reply; raises a WorkerStopped if it passes ``deadline``
        (time.monotonic), the memory limit, or the worker dies."""
        with self._lock:
            try:
                return self._run_once(job, deadline)
            except OutOfMemory:
                if self.fresh_at_last_job:
                    raise
            # What the worker had cached may be what filled it: one more try
            # in a fresh one, so only a job too big for any worker fails.
            return self._run_once(job, deadline)

    def _run_once(self, job: tuple, deadline: float) -> tuple:
        self.prepare(deadline)
        assert self.connection is not None
        self.fresh_at_last_job = self.jobs_done == 0
        self.connection.send(job)
        self.ready = False
        reply = self.wait(deadline)
        self.jobs_done += 1
        return reply

    def prepare(self, deadline: float) -> None:
        """A started, idle worker with room to work."""
        if self.process is None:
            self.start()
        if not self.ready:
            self.wait(deadline)  # its clean-up after the last job
            self.ready = True
        used = self.container_memory_mb() or 0
        if used > self.memory_recycle_mb:
            logger.info(
                "replacing the calculation worker: %.0f MB in use, over "
                "MEMORY_RECYCLE_MB=%s",
                used,
                self.memory_recycle_mb,
            )
            self.restart()

    def start(self) -> None:
        self.connection, child_end = FORK.Pipe()
        self.process = FORK.Process(
            target=serve, args=(child_end, self.handle), name="calculation", daemon=True
        )
        with warnings.catch_warnings():
            # Python warns that forking a process with threads (the server's)
            # can copy a lock another thread holds. The child runs only
            # `serve`: the model's code and this pipe, no lock of the server.
            warnings.filterwarnings(
                "ignore", message=".*fork", category=DeprecationWarning
            )
            self.process.start()
        child_end.close()
        self.ready = False
        self.jobs_done = 0

    def restart(self) -> None:
        self.stop()
        self.start()
        self.wait(time.monotonic() + 60)
        self.ready = True

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.join()
        if self.connection is not None:
            self.connection.close()
        self.process = self.connection = None
        self.ready = False

    def wait(self, deadline: float):
        """The next message from the worker, watching time and memory."""
        assert self.process is not None and self.connection is not None
        while True:
            if self.connection.poll(
                max(0.0, min(POLL_SECONDS, deadline - time.monotonic()))
            ):
                try:
                    return self.connection.recv()
                except EOFError:
                    self.stop()
                    raise Crashed("the calculation worker ended unexpectedly") from None
            if not self.process.is_alive():
                code = self.process.exitcode
                self.stop()
                raise Crashed(
                    f"the calculation worker ended unexpectedly (exit code {code})"
                )
            used = self.container_memory_mb()
            if used is not None and used > self.memory_limit_mb:
                self.stop()
                raise OutOfMemory(f"{used:.0f} MB in use")
            if time.monotonic() >= deadline:
                self.stop()
                raise TimedOut

    def container_memory_mb(self) -> float | None:
        """Memory of this process and the worker together, or None if unknown."""
        pids = [os.getpid()] + ([self.process.pid] if self.process is not None else [])
        readings = [memory_mb(pid) for pid in pids if pid is not None]
        known = [reading for reading in readings if reading is not None]
        return sum(known) if len(known) == len(pids) else None
