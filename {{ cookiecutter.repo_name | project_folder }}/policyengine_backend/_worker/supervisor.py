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
  before a calculation, the child is replaced if it is past
  ``memory_recycle_mb`` or if what the job may add would take it past the
  limit, which returns everything it had cached.

The worker is checked, never trusted: it can be killed at any moment (the
kernel's out-of-memory killer, an operator). A worker found dead, whether
idle or mid-job, is reaped, logged at WARNING with how it ended, and
replaced; a job it was running is run once more in the fresh one.

A fork shares the loaded model with the parent page by page (copy on
write), so starting a worker takes milliseconds and little memory.

Why not a process pool from a library: neither multiprocessing's ``Pool``
nor ``concurrent.futures.ProcessPoolExecutor`` can stop one running task at
its deadline (the task runs on, or killing its process breaks the whole
pool), and no pool watches the memory of parent and child together or
replaces its worker before a job by what the job may add. Those rules are
the point of this module, so it is a small one of its own.
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
# A fresh worker is a fork: it says it is ready in milliseconds. Past this
# something is wrong with the machine, and the job is not sent.
START_SECONDS = 60
READY = "ready"

logger = logging.getLogger(__name__)


class WorkerStopped(Exception):
    """The calculation was stopped and the worker replaced."""


class TimedOut(WorkerStopped):
    pass


class OutOfMemory(WorkerStopped):
    pass


class Crashed(WorkerStopped):
    """The worker ended on its own (killed, or crashed): not the job's doing
    as far as anyone can tell, so the job may be tried once more."""


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


def how_it_ended(exitcode: int | None) -> str:
    """A process's end in words: "killed by SIGKILL", "exit code 3"."""
    if exitcode is None:
        return "unknown"
    if exitcode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-exitcode).name}"
        return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


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
        code_version: Callable[[], object] = lambda: None,
    ):
        self.handle = handle
        # What the worker's code depends on that can change after a fork
        # (the functions registered): a worker forked before a change is
        # replaced before its next job.
        self.code_version = code_version
        self.started_with: object = None
        self.memory_limit_mb = memory_limit_mb
        self.memory_recycle_mb = memory_recycle_mb
        self.process: multiprocessing.process.BaseProcess | None = None
        self.connection: Connection | None = None
        self.ready = False
        self.jobs_done = 0  # by the current worker process
        self.fresh_at_last_job = True
        # Why no worker could be started, while that lasts (for /health).
        self.start_failure: str | None = None
        # One job at a time, even if a caller gives up waiting before the
        # job is done: the pipe carries one conversation.
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def run(
        self,
        job: tuple,
        deadline: float,
        ceiling: float | None = None,
        growth_mb: float = 0,
    ) -> tuple:
        """The job's reply; raises a WorkerStopped if it passes ``deadline``
        (time.monotonic), the memory limit, or the worker dies twice.

        ``growth_mb`` is what the job may add to the worker's memory: a
        worker that could not take that much more is replaced first. A job
        stopped through no fault of its own (its worker died, or was full
        of what earlier jobs left) runs once more in a fresh worker, with
        the time it lost added to its deadline, up to ``ceiling``.
        """
        if not self._lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise TimedOut  # an abandoned job still holds the worker
        try:
            started = time.monotonic()
            try:
                return self._run_once(job, deadline, growth_mb)
            except OutOfMemory as error:
                if self.fresh_at_last_job:
                    raise  # too big for any worker
                stopped: WorkerStopped = error.with_traceback(None)
            except Crashed as error:
                stopped = error.with_traceback(None)  # no frames kept alive
            # The time the failed try took, given back within the ceiling.
            lost = time.monotonic() - started
            limit = deadline if ceiling is None else max(ceiling, deadline)
            retry_deadline = min(deadline + lost, limit)
            if retry_deadline <= time.monotonic():
                raise stopped
            return self._run_once(job, retry_deadline, growth_mb)
        finally:
            self._lock.release()

    def _run_once(self, job: tuple, deadline: float, growth_mb: float) -> tuple:
        self.prepare(deadline, growth_mb)
        assert self.connection is not None
        self.fresh_at_last_job = self.jobs_done == 0
        try:
            self.connection.send(job)
        except OSError:  # BrokenPipeError: it died since prepare looked
            sent = False  # raised below, for the reason given in wait()
        else:
            sent = True
        if not sent:
            raise self._crashed("before its job")
        self.ready = False
        reply = self.wait(deadline)
        self.jobs_done += 1
        return reply

    def prepare(self, deadline: float, growth_mb: float = 0) -> None:
        """A started, live, idle worker with room for the job."""
        if self.process is not None and not self.process.is_alive():
            self._crashed("while idle")
        if self.process is None:
            self.start()
        if not self.ready:
            try:
                self.wait(deadline, "after its last job")  # its clean-up
            except Crashed:  # a fresh one instead
                self.start()
                self.wait(deadline, "while starting")
            self.ready = True
        used = self.container_memory_mb() or 0
        if self.started_with != self.code_version():
            self.recycle(used, "code registered since it started")
        elif used > self.memory_recycle_mb:
            self.recycle(used, f"over MEMORY_RECYCLE_MB={self.memory_recycle_mb:g}")
        elif used + growth_mb > self.memory_limit_mb:
            self.recycle(
                used,
                f"the next job may add {growth_mb:.0f} MB, which would pass "
                f"MEMORY_LIMIT_MB={self.memory_limit_mb:g}",
            )

    def recycle(self, used: float, reason: str) -> None:
        logger.info(
            "replacing the calculation worker: %.0f MB in use, %s",
            used,
            reason,
            extra={
                "worker_event": "recycled",
                "memory_mb": round(used),
                "worker_pid": self.pid,
            },
        )
        self.restart()

    def start(self) -> None:
        """A fresh worker, forked from this process (not yet known ready)."""
        self.stop()
        connection, child_end = FORK.Pipe()
        process = FORK.Process(
            target=serve, args=(child_end, self.handle), name="calculation", daemon=True
        )
        with warnings.catch_warnings():
            # Python warns that forking a process with threads (the server's)
            # can copy a lock another thread holds. The child runs only
            # `serve`: the model's code and this pipe, no lock of the server.
            warnings.filterwarnings(
                "ignore", message=".*fork", category=DeprecationWarning
            )
            try:
                process.start()
            except OSError as error:  # no memory or no process slot for a fork
                connection.close()
                child_end.close()
                self.start_failure = f"cannot start the calculation worker: {error}"
                raise Crashed(self.start_failure) from error
        child_end.close()
        self.process, self.connection = process, connection
        self.started_with = self.code_version()
        self.start_failure = None
        self.ready = False
        self.jobs_done = 0

    def restart(self) -> None:
        self.start()
        self.wait(time.monotonic() + START_SECONDS, "while starting")
        self.ready = True

    def stop(self) -> None:
        """End the worker, if there is one, and reap it."""
        if self.process is not None:
            self.process.kill()
            self.process.join()
        if self.connection is not None:
            self.connection.close()
        self.process = self.connection = None
        self.ready = False

    def check(self) -> str | None:
        """None if the worker can take the next job, else why not (/health).

        A worker that died while idle is replaced here already, so the next
        request does not find it dead. Never waits: a worker busy with a
        job is one that is alive.
        """
        if not self._lock.acquire(blocking=False):
            return None
        try:
            if self.process is not None and not self.process.is_alive():
                self._crashed("while idle")
            if self.process is None:
                with contextlib.suppress(Crashed):
                    self.start()
            return self.start_failure
        finally:
            self._lock.release()

    def _crashed(self, when: str) -> Crashed:
        """Reap a worker that ended on its own, say so, and the error to raise."""
        assert self.process is not None
        self.process.join(timeout=5)
        ended = how_it_ended(self.process.exitcode)
        logger.warning(
            "the calculation worker ended %s (%s); a fresh one takes over",
            when,
            ended,
            extra={
                "worker_event": "crashed",
                "worker_ended": ended,
                "worker_pid": self.pid,
                "when": when,
            },
        )
        self.stop()
        return Crashed(f"the calculation worker ended unexpectedly ({ended})")

    def wait(self, deadline: float, during: str = "during a job"):
        """The next message from the worker, watching time and memory;
        ``during`` says what it was doing, for the log if it dies."""
        assert self.process is not None and self.connection is not None
        while True:
            if self.connection.poll(
                max(0.0, min(POLL_SECONDS, deadline - time.monotonic()))
            ):
                try:
                    return self.connection.recv()
                except (EOFError, OSError):  # closed, or reset by the kill
                    # Raised outside this block, so the new error does not
                    # keep this one (and the pipe's buffers in its frames)
                    # as its context: the garbage collector can free such
                    # a cycle in an order that crashes the interpreter.
                    pass
                raise self._crashed(during)
            if not self.process.is_alive():
                raise self._crashed(during)
            used = self.container_memory_mb()
            if used is not None and used > self.memory_limit_mb:
                logger.warning(
                    "stopping the calculation: %.0f MB in use, over MEMORY_LIMIT_MB=%g",
                    used,
                    self.memory_limit_mb,
                    extra={
                        "worker_event": "memory_stop",
                        "memory_mb": round(used),
                        "worker_pid": self.pid,
                    },
                )
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
