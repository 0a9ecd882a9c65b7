"""The calculation worker, seen from the server: started, watched, replaced.

A calculation is CPU-bound Python over a model of millions of objects. Run
in the server, it could not be stopped, its garbage-collection pauses would
stall every request, and what it leaves (a year's parameters, a policy's
system) would stay with the server for good. So calculations run in a
worker process forked from the warm server, which forks each job a process
of its own (``_worker/child.py``). The server only parses, checks and
answers, so ``/health`` never waits behind the model, and:

- a job past its deadline, over the memory limit, or that nobody waits for
  any more is stopped by ending its process; the worker, with what it has
  prepared, carries on;
- memory: while a job runs the server reads the container's memory
  (``_worker/memory.py``) and stops the job past ``memory_limit_mb``; before
  a job it replaces the worker if the container is past
  ``memory_recycle_mb``, or if what the job may add would take it past the
  limit;
- the worker is checked, never trusted: one found dead (the kernel's
  out-of-memory killer, an operator), or that does not answer when idle
  (stopped, or stuck), is replaced, and a job its death cut short runs once
  more; a job whose own process was killed from outside runs once more too.
  So does a job whose process (or its worker) waits for ever on a lock (see
  ``waits_for_ever``). Every wait ends at the waiting request's own
  deadline.

Why not a process pool from a library: neither multiprocessing's ``Pool``
nor ``concurrent.futures.ProcessPoolExecutor`` can stop one running task at
its deadline (the task runs on, or killing its process breaks the whole
pool), fork each task from a prepared parent, or watch the memory of the
container while replacing the worker by what a job may add. Those rules are
the point of this module, so it is a small one of its own.
"""

import contextlib
import itertools
import logging
import multiprocessing
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from policyengine_backend._errors import (
    JobCancelled,
    JobOutOfMemory,
    JobTimedOut,
    WorkerCrashed,
    WorkerStopped,
)
from policyengine_backend._worker import child
from policyengine_backend._worker.memory import Source, Watch
from policyengine_backend._worker.messages import (
    Ended,
    Job,
    Outcome,
    Ping,
    Pong,
    Ready,
    Reply,
    Started,
)
from policyengine_backend._worker.stack import DeepStackThread

# Fork explicitly (Python 3.14 changes the default): the point is to copy
# the warm parent, model and caches included.
FORK = multiprocessing.get_context("fork")
# How often the server looks at the deadline and the memory while it waits.
POLL_SECONDS = 0.2
# An idle worker answers a ping, or says it is ready, in milliseconds; one
# silent this long is stopped or stuck, and is replaced.
SILENT_SECONDS = 5
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# A worker holding this share of the memory limit more than when it was
# fresh gives a job that ran out of memory a second try in a fresh one.
HOLDS_MUCH = 0.1

logger = logging.getLogger(__name__)


def proc_stat(pid: int | None) -> list[str] | None:
    """``/proc/<pid>/stat``'s fields after the command's name (the state
    first), which gVisor has too; None if ``pid`` is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_seconds(pid: int | None) -> float | None:
    """The CPU time ``pid`` has used; None if it is stopped (SIGSTOP, a
    debugger) or gone."""
    stat = proc_stat(pid)
    if stat is None or stat[0] in ("T", "t"):
        return None
    return (int(stat[11]) + int(stat[12])) / CLOCK_TICKS


# The futex system call's number, and the bits of its operation read below.
FUTEX = {"x86_64": 202, "aarch64": 98}.get(os.uname().machine)
FUTEX_PRIVATE = 128
FUTEX_COMMAND = 127
FUTEX_WAITS = (0, 9)  # FUTEX_WAIT, FUTEX_WAIT_BITSET


def waits_for_ever(pid: int) -> bool:
    """Whether ``pid`` has one thread, and that thread waits for a lock with
    no time limit: nothing can ever release it.

    A fork copies the server's memory as it is, locks included, and only
    the forking thread. A lock another of the server's threads held at that
    moment (a C or Rust library's, halfway through its first use, say) is
    held in the copy by a thread that does not exist there, and the first
    use of it waits for ever. Seen as: one thread, in a ``futex`` wait on a
    futex private to the process (no other process can wake it), with no
    timeout. Read from ``/proc/<pid>/syscall`` (Linux; where it is missing,
    as on gVisor, this says False and the request's deadline ends the job).
    """
    stat = proc_stat(pid)
    if FUTEX is None or stat is None or stat[17:18] != ["1"]:  # num_threads
        return False
    try:
        call = Path(f"/proc/{pid}/syscall").read_text().split()
        number, operation, timeout = int(call[0]), int(call[2], 16), int(call[4], 16)
    except (OSError, IndexError, ValueError):  # gone, running, or unreadable
        return False
    return (
        number == FUTEX
        and operation & FUTEX_PRIVATE != 0
        and operation & FUTEX_COMMAND in FUTEX_WAITS
        and timeout == 0
    )


class Deadline:
    """When a job must end, by ``time.monotonic()``: ``at``, or, if the
    backend itself lost time (its worker died), up to ``ceiling``. Requests
    that join a running job extend it to their own."""

    def __init__(self, at: float, ceiling: float | None = None):
        self.at = at
        self.ceiling = at if ceiling is None else max(at, ceiling)

    def extend(self, other: "Deadline") -> None:
        self.at = max(self.at, other.at)
        self.ceiling = max(self.ceiling, other.ceiling)

    def left(self) -> float:
        return self.at - time.monotonic()


def how_it_ended(exitcode: int | None) -> str:
    """A process's end in words: "killed by SIGKILL", "exit code 3"."""
    if exitcode is None:
        return "unknown"
    if exitcode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-exitcode).name}"
        return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


def _kill_group(pid: int | None) -> None:
    """End a job's process and everything it started (its process group)."""
    if pid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def _wait_until_gone(pid: int | None, seconds: float = 5.0) -> None:
    """Wait (a little) for a killed job to end: its memory is freed as it
    exits, and a reading taken before would count what it is giving back."""
    end = time.monotonic() + seconds
    while pid is not None and time.monotonic() < end:
        stat = proc_stat(pid)
        if stat is None:
            return  # gone, and reaped
        if stat[0] in ("Z", "X"):
            return  # ended: a zombie holds no memory
        time.sleep(0.01)


class Worker:
    """Runs jobs, one at a time, in a worker process; see the module docstring.

    ``run`` blocks, so the server calls it from a thread. ``systems`` and
    ``settings`` are what the worker's code needs (the warm tax-benefit
    systems); ``memory`` is where memory is read (None: it cannot be).
    """

    def __init__(
        self,
        systems: Callable[[], Any],
        settings: Any,
        memory: Source | None,
        code_version: Callable[[], object] = lambda: None,
        warmed_years: Callable[[], tuple] = tuple,
    ):
        self.systems = systems
        self.settings = settings
        self.memory = memory
        # What the worker's code depends on that can change after a fork
        # (the functions registered): a worker forked before a change is
        # replaced before its next job.
        self.code_version = code_version
        self.warmed_years = warmed_years
        self.started_with: object = None
        self.process: multiprocessing.process.BaseProcess | None = None
        self.connection: Connection | None = None
        self.ready = False
        self.years: set[str] = set()  # the years this worker has warmed
        self.jobs_done = 0  # by the current worker process
        # The container's memory when this worker was fresh (after its first
        # job): what it holds beyond that is its own.
        self.fresh_mb: float | None = None
        self.job_pid: int | None = None  # the running job's own process
        # A job was sent and not answered. Not job_pid: the job's process
        # may start before the worker has said so.
        self.busy = False
        # Why no worker could be started, while that lasts (for /health).
        self.start_failure: str | None = None
        self.closing = False
        self._cancelled: set[int] = set()
        self._ids = itertools.count(1)
        # One job at a time, even if a caller gives up waiting before the
        # job is done: the pipe carries one conversation.
        self._lock = threading.Lock()
        self._forker: DeepStackThread | None = None
        self._forker_pid = 0

    @property
    def limit_mb(self) -> float:
        return self.settings.memory_limit_mb

    @property
    def recycle_mb(self) -> float:
        return self.settings.memory_recycle_mb

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def pids(self) -> list[int]:
        found = [os.getpid(), self.pid, self.job_pid]
        return [pid for pid in found if pid is not None]

    def memory_mb(self) -> float | None:
        """The container's memory now, or None if it cannot be read."""
        return self.memory.read_mb(self.pids()) if self.memory else None

    def new_job(self, function: str, body: dict, route: str, **prepare) -> Job:
        return Job(next(self._ids), function, body, route, **prepare)

    # --- Running a job -------------------------------------------------------

    def run(self, job: Job, deadline: Deadline, growth_per_year_mb: float = 0) -> Reply:
        """The job's reply; raises a ``WorkerStopped`` if it passes its
        deadline, the memory limit, is cancelled, or its worker dies twice.

        ``growth_per_year_mb`` is what the job may add to the worker's
        memory for each year it names that the worker has not prepared: a
        worker that could not take that much more is replaced first. A job
        stopped through no fault of its own (its worker died, its process
        was killed from outside, or the worker was full of what earlier jobs
        left) runs once more, with the time it lost added to its deadline,
        up to the deadline's ceiling.
        """
        if not self._lock.acquire(timeout=max(0.0, deadline.left())):
            raise JobTimedOut  # an abandoned job still holds the worker
        try:
            if self.closing or job.id in self._cancelled:
                raise JobCancelled
            started = time.monotonic()
            try:
                return self._run_once(job, deadline, growth_per_year_mb)
            except JobOutOfMemory as error:
                if not self._holds_much():
                    raise  # too big for any worker
                stopped: WorkerStopped = error.with_traceback(None)
                self.stop()  # full of what it prepared: a fresh one
            except WorkerCrashed as error:
                stopped = error.with_traceback(None)  # no frames kept alive
            if self.closing or job.id in self._cancelled:
                raise JobCancelled
            # The time the failed try took, given back within the ceiling.
            deadline.at = min(
                deadline.at + time.monotonic() - started, deadline.ceiling
            )
            if deadline.left() <= 0:
                raise stopped
            return self._run_once(job, deadline, growth_per_year_mb)
        finally:
            self._cancelled.discard(job.id)
            self._lock.release()

    def _run_once(
        self, job: Job, deadline: Deadline, growth_per_year_mb: float
    ) -> Reply:
        new_years = [year for year in job.years if year not in self.years]
        self.prepare(deadline, growth_per_year_mb * max(1, len(new_years)))
        assert self.connection is not None
        if not self._send(job):  # it died since prepare looked
            raise self._crashed("before its job")
        self.ready = False
        self.busy = True
        self.years.update(job.years)
        try:
            reply = self._wait_for_reply(job, deadline)
        finally:
            self.busy = False
            self.job_pid = None
        self.jobs_done += 1
        return reply

    def _wait_for_reply(self, job: Job, deadline: Deadline) -> Reply:
        watch = Watch(self.memory, self.limit_mb) if self.memory else None
        stuck: set[int] = set()  # processes seen waiting for ever at the last poll
        # CPU time (the job's, or the worker's while it prepares the job),
        # and when it last changed.
        cpu: float | None = None
        working_at = time.monotonic()
        while True:
            message = self._receive(
                time.monotonic() + min(POLL_SECONDS, max(0.0, deadline.left()))
            )
            if isinstance(message, Started) and message.job == job.id:
                self.job_pid = message.pid
            elif isinstance(message, Reply) and message.job == job.id:
                return message
            elif isinstance(message, Ended) and message.job == job.id:
                return self._ended(job, message.exitcode)
            if self.closing or job.id in self._cancelled:
                self._stop_job(idle_for=time.monotonic() - working_at)
                raise JobCancelled
            used = watch.poll(self.pids()) if watch else None
            if used is not None and used > self.limit_mb:
                logger.warning(
                    "stopping the calculation: %.0f MB in use, over MEMORY_LIMIT_MB=%g",
                    used,
                    self.limit_mb,
                    extra={"worker_event": "memory_stop", "memory_mb": round(used)},
                )
                self._stop_job()
                raise JobOutOfMemory(f"{used:.0f} MB in use")
            # Seen at two polls in a row, to be sure of what it is.
            now_stuck = {
                pid
                for pid in (self.pid, self.job_pid)
                if pid is not None and waits_for_ever(pid)
            }
            if now_stuck & stuck:
                raise self._deadlocked()
            stuck = now_stuck
            now_cpu = cpu_seconds(self.job_pid or self.pid)
            if now_cpu is not None and now_cpu != cpu:
                cpu, working_at = now_cpu, time.monotonic()
            if deadline.left() <= 0:
                self._stop_job(idle_for=time.monotonic() - working_at)
                raise JobTimedOut

    def _deadlocked(self) -> WorkerCrashed:
        """The job (or its worker) waits for ever on a lock it was forked
        holding: every job of this worker would. A fresh worker, and the job
        once more."""
        logger.warning(
            "the calculation waits for ever on a lock held when its process was "
            "forked; a fresh worker takes over and the calculation runs once more",
            extra={"worker_event": "deadlocked", "worker_pid": self.pid},
        )
        self.stop()
        return WorkerCrashed("the calculation's process waited for ever on a lock")

    def _holds_much(self) -> bool:
        """Whether the worker holds much more than it did when fresh (years
        and policies it prepared): a fresh one would give a job more room."""
        used = self.memory_mb()
        if used is None or self.fresh_mb is None:
            return False
        return used - self.fresh_mb > HOLDS_MUCH * self.limit_mb

    def _ended(self, job: Job, exitcode: int) -> Reply:
        """The job's process ended without a reply. Killed from outside
        (SIGKILL: the kernel's out-of-memory killer, an operator), it is
        tried again; any other end is the function's own doing."""
        ended = how_it_ended(exitcode)
        if exitcode == -signal.SIGKILL:
            logger.warning(
                "the job's process was %s; it runs once more",
                ended,
                extra={"worker_event": "job_killed", "worker_ended": ended},
            )
            raise WorkerCrashed(f"the calculation's process was {ended}")
        return Reply(
            job.id,
            Outcome.BUG,
            message=f"{job.route}: the function ended its process before answering ({ended})",
        )

    def _stop_job(self, idle_for: float = 0) -> None:
        """End the running job. One stopped after ``idle_for`` seconds of no
        CPU may have waited for a lock its process was forked holding, where
        ``waits_for_ever`` cannot tell (gVisor): every job of its worker
        would, so the worker is replaced too. That costs a fork; a poisoned
        worker would cost every later request its deadline."""
        _kill_group(self.job_pid)
        _wait_until_gone(self.job_pid)
        self.job_pid = None
        if idle_for > SILENT_SECONDS:
            logger.warning(
                "the calculation had used no CPU for %.0f s when it was stopped; a "
                "fresh worker takes over, in case it waited for a lock held when "
                "its process was forked",
                idle_for,
                extra={"worker_event": "stalled", "worker_pid": self.pid},
            )
            self.stop()

    def cancel(self, job: Job) -> None:
        """Stop ``job`` (nobody waits for it any more), from any thread."""
        self._cancelled.add(job.id)

    # --- The worker process --------------------------------------------------

    def prepare(self, deadline: Deadline, growth_mb: float = 0) -> None:
        """A started, live, idle worker with room for the job."""
        if self.process is not None and not self.process.is_alive():
            self._crashed("while idle")
        if self.process is None:
            self.start()
        if not self.ready:
            self._wait_until_ready(deadline)
        if self.fresh_mb is None:
            self.fresh_mb = self.memory_mb()
        if self.started_with != self.code_version():
            self.restart(deadline, "code registered since it started")
            return
        used = self.memory_mb()
        if used is None:
            return
        if used > self.recycle_mb:
            self.restart(
                deadline,
                f"{used:.0f} MB in use, over MEMORY_RECYCLE_MB={self.recycle_mb:g}",
            )
        elif used + growth_mb > self.limit_mb:
            self.restart(
                deadline,
                f"{used:.0f} MB in use, and the next job may add {growth_mb:.0f} MB, "
                f"which would pass MEMORY_LIMIT_MB={self.limit_mb:g}",
            )

    def _wait_until_ready(self, deadline: Deadline) -> None:
        """Until the worker says it is ready. One silent for SILENT_SECONDS
        without working (stopped, or blocked), or dead, is replaced, once.
        One still preparing (its CPU time grows: a new year, a policy, on a
        busy machine) is waited for, up to the deadline."""
        for attempt in range(2):
            if attempt:
                self.start()
            worked = cpu_seconds(self.pid)
            silent_until = time.monotonic() + min(deadline.left(), SILENT_SECONDS)
            try:
                while time.monotonic() < silent_until:
                    if isinstance(self._receive(silent_until), Ready):
                        self.ready = True
                        return
                    if time.monotonic() >= silent_until and deadline.left() > 0:
                        now = cpu_seconds(self.pid)
                        if now is not None and worked is not None and now > worked:
                            worked = now
                            silent_until = time.monotonic() + min(
                                deadline.left(), SILENT_SECONDS
                            )
            except WorkerCrashed:
                continue  # said in the log; a fresh one
            if deadline.left() <= 0:
                raise JobTimedOut
            logger.warning(
                "the calculation worker did not answer within %d s (stopped, or "
                "stuck); a fresh one takes over",
                SILENT_SECONDS,
                extra={"worker_event": "silent", "worker_pid": self.pid},
            )
        raise WorkerCrashed("no calculation worker could start")

    def _send(self, message: object) -> bool:
        """Send to the worker; False if the pipe is broken (it died).

        The error is dropped here, not raised from: an error raised in its
        handler keeps it (and the pipe's buffers in its frames) as context,
        and the garbage collector can free such a cycle in an order that
        crashes the interpreter.
        """
        assert self.connection is not None
        try:
            self.connection.send(message)
        except OSError:  # BrokenPipeError
            return False
        return True

    def _receive(self, until: float) -> object | None:
        """The worker's next message, or None at ``until``; WorkerCrashed
        if it died."""
        assert self.process is not None and self.connection is not None
        if self.connection.poll(max(0.0, until - time.monotonic())):
            try:
                return self.connection.recv()
            except (EOFError, OSError):  # closed, or reset by the kill
                # Raised outside this block, so the new error does not keep
                # this one (and the pipe's buffers in its frames) as its
                # context: the garbage collector can free such a cycle in
                # an order that crashes the interpreter.
                pass
            raise self._crashed("during a job" if self.busy else "while idle")
        if not self.process.is_alive():
            raise self._crashed("during a job" if self.busy else "while idle")
        return None

    def start(self) -> None:
        """A fresh worker, forked from this process (not yet known ready)."""
        if self.closing:
            raise JobCancelled
        self.stop()
        connection, child_end = FORK.Pipe()
        process = FORK.Process(
            target=child.serve,
            args=(
                child_end,
                os.getpid(),
                self.systems(),
                self.settings,
                self.warmed_years(),
            ),
            name="calculation",
            daemon=True,
        )
        try:
            self._forking_thread().submit(self._fork, process).result()
        except OSError as error:  # no memory or no process slot for a fork
            connection.close()
            child_end.close()
            self.start_failure = f"cannot start the calculation worker: {error}"
            raise WorkerCrashed(self.start_failure) from error
        child_end.close()
        self.process, self.connection = process, connection
        self.started_with = self.code_version()
        self.start_failure = None
        self.ready = False
        self.years = set(self.warmed_years())
        self.jobs_done = 0
        self.fresh_mb = None

    def _forking_thread(self) -> DeepStackThread:
        """Forks come from one thread, which lives as long as the server:
        Linux ties PR_SET_PDEATHSIG to the forking *thread*, so a worker
        forked from a short-lived thread would die with it. Its stack has
        room for the model's deep calls (``_worker/stack.py``). Made in the
        process that uses it (a server forked by `make dev` makes its own)."""
        if self._forker is None or self._forker_pid != os.getpid():
            self._forker = DeepStackThread()
            self._forker_pid = os.getpid()
        return self._forker

    @staticmethod
    def _fork(process: multiprocessing.process.BaseProcess) -> None:
        with warnings.catch_warnings():
            # Python warns that forking a process with threads (the server's)
            # can copy a lock another thread holds. The worker runs only its
            # loop: the model's code and its pipe, no lock of the server's.
            warnings.filterwarnings(
                "ignore", message=".*fork", category=DeprecationWarning
            )
            process.start()

    def restart(self, deadline: Deadline, reason: str) -> None:
        used = self.memory_mb()
        logger.info(
            "replacing the calculation worker: %s",
            reason,
            extra={
                "worker_event": "recycled",
                "memory_mb": None if used is None else round(used),
                "worker_pid": self.pid,
            },
        )
        self.start()
        self._wait_until_ready(deadline)

    def stop(self) -> None:
        """End the worker and its job, if there are any, and reap them."""
        self._stop_job()
        if self.process is not None:
            self.process.kill()
            self.process.join()
        if self.connection is not None:
            self.connection.close()
        self.process = self.connection = None
        self.ready = False

    def reopen(self) -> None:
        """Take jobs again after ``close``."""
        self.closing = False

    def close(self) -> None:
        """Shutting down: no more jobs, no retries; end what runs."""
        self.closing = True
        self._stop_job()
        with contextlib.suppress(Exception):
            if self._lock.acquire(timeout=POLL_SECONDS * 5):
                try:
                    self.stop()
                finally:
                    self._lock.release()
            elif self.process is not None:
                self.process.kill()
        if self._forker is not None:
            self._forker.shutdown()
            self._forker = None

    def check(self) -> str | None:
        """None if the worker can take the next job, else why not (/health).

        A worker that died while idle is replaced here already, so the next
        request does not find it dead; so is one that does not answer a
        ping (stopped, or stuck). A worker busy with a job is not asked.
        """
        if not self._lock.acquire(blocking=False):
            return None
        try:
            for attempt in range(2):
                try:
                    if self._answers_a_ping():
                        return None
                    break  # silent: below
                except WorkerCrashed as error:  # died: a fresh one, once
                    if attempt or self.start_failure:
                        return self.start_failure or str(error)
                except JobTimedOut:
                    break  # silent: below
                except OSError as error:
                    return self.start_failure or str(error)
            logger.warning(
                "the calculation worker did not answer a ping within %d s (stopped, "
                "or stuck); a fresh one takes over",
                SILENT_SECONDS,
                extra={"worker_event": "silent", "worker_pid": self.pid},
            )
            with contextlib.suppress(WorkerStopped):
                self.start()
            return "the calculation worker stopped answering; a fresh one was started"
        finally:
            self._lock.release()

    def _answers_a_ping(self) -> bool:
        """Start a worker if there is none, and ask it whether it is there."""
        deadline = Deadline(time.monotonic() + SILENT_SECONDS)
        if self.process is not None and not self.process.is_alive():
            self._crashed("while idle")
        if self.process is None:
            self.start()
        if not self.ready:
            self._wait_until_ready(deadline)
        if not self._send(Ping()):
            raise self._crashed("while idle")
        while deadline.left() > 0:
            if isinstance(self._receive(deadline.at), Pong):
                return True
        return False

    def _crashed(self, when: str) -> WorkerCrashed:
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
        return WorkerCrashed(f"the calculation worker ended unexpectedly ({ended})")
