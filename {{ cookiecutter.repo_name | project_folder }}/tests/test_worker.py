"""The calculation worker: deadlines and memory limits stop the work itself.

A calculation runs in a child process forked from the warm server. These
tests give the worker jobs that never finish or that grow without bound,
and check that the job is stopped (its process ended, so no CPU or memory
is spent on it any more) and that the next job runs in a fresh worker.
None of them depends on how fast the machine is: a job that never ends
always passes its deadline.
"""

import logging
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from policyengine_backend._worker.supervisor import (
    Crashed,
    OutOfMemory,
    TimedOut,
    Worker,
    how_it_ended,
    memory_mb,
)

MB = 1024 * 1024


def handle(job: tuple) -> tuple:
    kind, *args = job
    if kind == "echo":
        return ("ok", args[0])
    if kind == "spin":
        while True:
            pass
    if kind == "grow":  # allocate until stopped
        chunks = []
        while True:
            chunks.append(b"\x01" * (20 * MB))  # written, so resident
    if kind == "keep":  # allocate and keep it after the job
        KEPT.append(b"\x01" * (args[0] * MB))
        return ("ok", len(KEPT))
    if kind == "grow-if-kept":  # too big only for a worker that kept memory
        if KEPT:
            return handle(("grow",))
        return ("ok", "fresh")
    if kind == "exit":
        os._exit(3)
    if kind == "killed":  # as the kernel's out-of-memory killer would
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "block-once":  # the first worker blocks until killed
        marker = Path(args[0])
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            while True:
                pass
        return ("ok", "second try")
    raise ValueError(kind)


KEPT: list = []


@pytest.fixture
def worker():
    worker = Worker(handle, memory_limit_mb=1_000_000, memory_recycle_mb=1_000_000)
    yield worker
    worker.stop()


def later(seconds: float = 600) -> float:
    return time.monotonic() + seconds


def settled_memory(worker) -> float:
    """Memory once the worker has cleaned up after its last job.

    Its first clean-up can copy many of the parent's pages (a test process
    holds far more than a server does), so measure after it.
    """
    worker.prepare(later())
    return worker.container_memory_mb()


def test_jobs_run_in_a_child_process(worker):
    assert worker.run(("echo", {"a": 1}), later()) == ("ok", {"a": 1})
    assert worker.pid not in (None, os.getpid())


def test_a_job_past_its_deadline_is_stopped_and_the_next_one_runs(worker):
    worker.run(("echo", 1), later())
    spinning = worker.process

    with pytest.raises(TimedOut):
        worker.run(("spin",), time.monotonic() + 0.5)

    # The spinning process is gone: it spends no more CPU.
    assert not spinning.is_alive() and spinning.exitcode is not None
    assert worker.run(("echo", 2), later()) == ("ok", 2)
    assert worker.process is not spinning


@pytest.mark.skipif(memory_mb(os.getpid()) is None, reason="needs /proc (Linux)")
def test_a_job_over_the_memory_limit_is_stopped(worker, caplog):
    worker.run(("echo", 1), later())
    worker.memory_limit_mb = settled_memory(worker) + 200
    growing = worker.process

    with pytest.raises(OutOfMemory):
        worker.run(("grow",), later())

    assert not growing.is_alive()
    # Stopped in this worker, and again in the fresh one it was retried in
    # (this one had run a job before): each stop is one WARNING line.
    stops = worker_events(caplog, "memory_stop")
    assert [stop.levelno for stop in stops] == [logging.WARNING] * 2
    assert all(stop.memory_mb > worker.memory_limit_mb for stop in stops)
    assert worker.run(("echo", 2), later()) == ("ok", 2)


@pytest.mark.skipif(memory_mb(os.getpid()) is None, reason="needs /proc (Linux)")
def test_a_worker_over_the_recycle_mark_is_replaced_before_the_next_job(worker, caplog):
    caplog.set_level(logging.INFO, logger="policyengine_backend._worker.supervisor")
    worker.run(("echo", 1), later())
    before = settled_memory(worker)
    worker.memory_recycle_mb = before + 150
    first = worker.process

    assert worker.run(("keep", 300), later()) == ("ok", 1)
    # The next job finds the worker over the mark and gets a fresh copy of
    # this process, without what the last one kept.
    assert worker.run(("keep", 1), later()) == ("ok", 1)
    assert worker.process is not first and not first.is_alive()
    assert worker.container_memory_mb() < before + 150
    (recycled,) = worker_events(caplog, "recycled")
    assert "MEMORY_RECYCLE_MB" in recycled.getMessage()


@pytest.mark.skipif(memory_mb(os.getpid()) is None, reason="needs /proc (Linux)")
def test_a_worker_without_room_for_the_jobs_growth_is_replaced_first(worker, caplog):
    caplog.set_level(logging.INFO, logger="policyengine_backend._worker.supervisor")
    worker.run(("echo", 1), later())
    worker.memory_limit_mb = settled_memory(worker) + 400
    assert worker.run(("keep", 200), later()) == ("ok", 1)
    first = worker.process

    # Room for a job that may add 100 MB: the worker stays.
    assert worker.run(("echo", 2), later(), growth_mb=100) == ("ok", 2)
    assert worker.process is first
    # Not for one that may add 300 MB: a fresh worker takes it.
    assert worker.run(("echo", 3), later(), growth_mb=300) == ("ok", 3)
    assert worker.process is not first and not first.is_alive()
    (recycled,) = worker_events(caplog, "recycled")
    assert "MEMORY_LIMIT_MB" in recycled.getMessage()


def worker_events(caplog, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "worker_event", None) == event]


def kill(process) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.join()  # dead, not yet reaped by the worker's owner


def test_a_job_that_kills_its_worker_every_time_raises_crashed(worker, caplog):
    # Run once more in a fresh worker, which dies too: the caller hears of
    # it (the engine answers 503), and each death is one WARNING line.
    with pytest.raises(Crashed, match="SIGKILL"):
        worker.run(("killed",), later())
    crashes = worker_events(caplog, "crashed")
    assert [r.levelno for r in crashes] == [logging.WARNING] * 2
    assert {r.worker_ended for r in crashes} == {"killed by SIGKILL"}
    assert worker.run(("echo", 3), later()) == ("ok", 3)


def test_a_worker_that_exits_is_replaced(worker):
    with pytest.raises(Crashed, match="exit code 3"):
        worker.run(("exit",), later())
    assert worker.run(("echo", 3), later()) == ("ok", 3)


def test_a_worker_killed_while_idle_is_replaced_before_the_next_job(worker, caplog):
    worker.run(("echo", 1), later())
    dead = worker.process
    kill(dead)

    assert worker.run(("echo", 2), later()) == ("ok", 2)
    assert worker.process is not dead
    assert dead.exitcode == -signal.SIGKILL  # reaped
    (crash,) = worker_events(caplog, "crashed")
    assert crash.when == "while idle" and crash.worker_ended == "killed by SIGKILL"


def test_a_broken_pipe_is_a_crash_and_the_job_runs_in_a_fresh_worker(
    worker, monkeypatch
):
    # The worker dies between the check before a job and the job's sending.
    worker.run(("echo", 1), later())
    dead = worker.process
    real_prepare = worker.prepare
    prepared = []

    def prepare_then_die(deadline, growth_mb=0):
        real_prepare(deadline, growth_mb)
        if not prepared:
            kill(worker.process)
        prepared.append(worker.process)

    monkeypatch.setattr(worker, "prepare", prepare_then_die)
    assert worker.run(("echo", 2), later()) == ("ok", 2)
    assert prepared[0] is dead and prepared[1] is not dead


def test_a_worker_killed_mid_job_runs_the_job_again_in_a_fresh_one(
    worker, tmp_path, caplog
):
    marker = tmp_path / "first-worker"
    worker.run(("echo", 1), later())

    # A process, not a thread, does the killing: a thread running while
    # the worker forks its replacement would leave half its state there.
    killer = subprocess.Popen(
        [
            "sh",
            "-c",
            'while [ ! -s "$1" ]; do sleep 0.01; done; kill -9 "$(cat "$1")"',
            "killer",
            str(marker),
        ]
    )
    assert worker.run(("block-once", str(marker)), later()) == ("ok", "second try")
    assert killer.wait() == 0
    (crash,) = worker_events(caplog, "crashed")
    assert crash.when == "during a job"


def test_the_health_check_replaces_a_dead_idle_worker(worker):
    worker.run(("echo", 1), later())
    dead = worker.process
    kill(dead)

    assert worker.check() is None
    assert worker.process is not dead and worker.process.is_alive()


def test_the_health_check_says_when_no_worker_can_start(worker, monkeypatch):
    worker.run(("echo", 1), later())
    kill(worker.process)

    def no_fork(self):
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(type(worker.process), "start", no_fork)
    problem = worker.check()
    assert problem is not None and "Cannot allocate memory" in problem
    with pytest.raises(Crashed, match="cannot start"):
        worker.run(("echo", 2), later())
    monkeypatch.undo()
    assert worker.check() is None
    assert worker.run(("echo", 3), later()) == ("ok", 3)


@pytest.mark.parametrize(
    ("exitcode", "words"),
    [(-9, "killed by SIGKILL"), (3, "exit code 3"), (None, "unknown")],
)
def test_how_a_worker_ended_is_said_in_words(exitcode, words):
    assert how_it_ended(exitcode) == words


def test_an_error_in_a_job_is_reported_not_raised(worker):
    kind, text = worker.run(("unknown",), later())
    assert kind == "error" and "ValueError" in text
    assert worker.run(("echo", 4), later()) == ("ok", 4)


@pytest.mark.skipif(memory_mb(os.getpid()) is None, reason="needs /proc (Linux)")
def test_a_job_that_fits_a_fresh_worker_is_tried_again_in_one(worker):
    worker.run(("echo", 1), later())
    worker.memory_limit_mb = settled_memory(worker) + 400
    assert worker.run(("keep", 100), later()) == ("ok", 1)
    first = worker.process

    # Too big for this worker, which kept memory: tried again in a fresh one.
    assert worker.run(("grow-if-kept",), later()) == ("ok", "fresh")
    assert worker.process is not first and not first.is_alive()
