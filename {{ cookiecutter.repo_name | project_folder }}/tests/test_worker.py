"""The calculation worker: deadlines and memory limits stop the work itself.

A calculation runs in a child process forked from the warm server. These
tests give the worker jobs that never finish or that grow without bound,
and check that the job is stopped (its process ended, so no CPU or memory
is spent on it any more) and that the next job runs in a fresh worker.
None of them depends on how fast the machine is: a job that never ends
always passes its deadline.
"""

import os
import time

import pytest

from api.worker import Crashed, OutOfMemory, TimedOut, Worker, memory_mb

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
def test_a_job_over_the_memory_limit_is_stopped(worker):
    worker.run(("echo", 1), later())
    worker.memory_limit_mb = settled_memory(worker) + 200
    growing = worker.process

    with pytest.raises(OutOfMemory):
        worker.run(("grow",), later())

    assert not growing.is_alive()
    assert worker.run(("echo", 2), later()) == ("ok", 2)


@pytest.mark.skipif(memory_mb(os.getpid()) is None, reason="needs /proc (Linux)")
def test_a_worker_over_the_recycle_mark_is_replaced_before_the_next_job(worker):
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


def test_a_worker_that_dies_is_replaced(worker):
    with pytest.raises(Crashed):
        worker.run(("exit",), later())
    assert worker.run(("echo", 3), later()) == ("ok", 3)


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
