"""The calculation worker: each job in a process of its own, stopped at its
deadline or memory limit, and nothing it does outliving it.

These tests give the worker functions that never finish, grow without
bound, change what later jobs would read, exit, or kill their process, and
check what the server sees and what the next job finds. None depends on
how fast the machine is: a job that never ends always passes its deadline,
and moments are agreed through files, not clocks.
"""

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from policyengine_backend._errors import (
    JobCancelled,
    JobOutOfMemory,
    JobTimedOut,
    WorkerCrashed,
)
from policyengine_backend._model.functions import WorkerFunction, register
from policyengine_backend._worker.memory import ProportionalSets
from policyengine_backend._worker.messages import Outcome
from policyengine_backend._worker.supervisor import Deadline, Worker, how_it_ended

MB = 1024 * 1024
PROC = Path("/proc")
needs_proc = pytest.mark.skipif(
    ProportionalSets(PROC).read_mb([os.getpid()]) is None,
    reason="needs /proc/<pid>/smaps_rollup (Linux)",
)


class Payload(BaseModel):
    model_config = ConfigDict(extra="allow")
    value: Any = None
    marker: str | None = None


# What later jobs read: a job that changes it must not change it for them.
SHARED = {"answer": 42}


def job_function(name: str):
    def decorate(function):
        register(WorkerFunction(name, f"POST /{name}", function, Payload, Any))
        return function

    return decorate


@job_function("test-echo")
def echo(request, simulations):
    return {"value": request.value, "pid": os.getpid(), "parent": os.getppid()}


@job_function("test-read-shared")
def read_shared(request, simulations):
    return dict(SHARED)


@job_function("test-change-shared")
def change_shared(request, simulations):
    SHARED["answer"] = 0
    SHARED["added"] = True
    if request.value == "then raise":
        raise RuntimeError("changed the shared state, then failed")
    return "changed"


@job_function("test-spin")
def spin(request, simulations):
    if request.marker:
        Path(request.marker).write_text(str(os.getpid()))
    while True:
        pass


@job_function("test-grow")
def grow(request, simulations):
    chunks = []
    while True:
        chunks.append(b"\x01" * (20 * MB))  # written, so resident


@job_function("test-exit")
def exit_three(request, simulations):
    Path(request.marker).open("a").write("ran\n")
    os._exit(3)


@job_function("test-killed")
def killed(request, simulations):
    """Killed as the kernel's out-of-memory killer would: once, or always."""
    marker = Path(request.marker)
    runs = marker.read_text().count("ran") if marker.exists() else 0
    marker.open("a").write("ran\n")
    if request.value == "always" or runs == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    return "second try"


@job_function("test-block-once")
def block_once(request, simulations):
    """The first try blocks (until its worker is killed); the second answers."""
    marker = Path(request.marker)
    if not marker.exists():
        marker.write_text(str(os.getppid()))  # the worker's pid
        while True:
            pass
    return "second try"


@job_function("test-grandchild")
def start_grandchild(request, simulations):
    """Start a process that would run forever, and answer at once."""
    grandchild = subprocess.Popen(["sleep", "600"])
    forked = os.fork()
    if forked == 0:
        time.sleep(600)
        os._exit(0)
    return {"started": [grandchild.pid, forked]}


def calls_deep_and_back(times: int) -> int:
    """Calls 600 deep and back ``times`` times, as the model's formulas
    call one another; the page faults that cost."""
    import resource

    def down(depth: int) -> int:
        return down(depth - 1) if depth else 0

    down(600)
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for _ in range(times):
        down(600)
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before


@job_function("test-deep-calls")
def deep_calls(request, simulations):
    return calls_deep_and_back(1000)


class Systems:
    """Stands in for the tax-benefit systems: "building" a policy's system
    keeps the memory the policy names, as a real build keeps its system."""

    kept: list = []

    def path_for(self, policy):
        if policy and "keep_mb" in policy:
            self.kept.append(b"\x01" * (policy["keep_mb"] * MB))
        if policy and "refuse" in policy:
            raise ValueError("no such parameter")
        return "fast"


def settings(**changes) -> SimpleNamespace:
    values = dict(memory_limit_mb=1_000_000, memory_recycle_mb=1_000_000)
    return SimpleNamespace(**{**values, **changes})


@pytest.fixture
def worker():
    worker = Worker(Systems, settings(), ProportionalSets(PROC))
    yield worker
    worker.close()


def later(seconds: float = 600) -> Deadline:
    return Deadline(time.monotonic() + seconds)


def run(worker, function: str, deadline=None, growth=0, **body):
    job = worker.new_job(function, {"value": None, **body}, f"POST /{function}")
    return worker.run(job, deadline or later(), growth)


def answer(reply) -> Any:
    import json

    assert reply.outcome is Outcome.OK, reply
    return json.loads(reply.answer)["result"]


def gone(pid: int) -> bool:
    """Whether a process has ended (a zombie counts as ended)."""
    try:
        state = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def until(condition, bound_seconds: float = 120) -> bool:
    """Wait for ``condition``; the bound only keeps a broken test from
    hanging the suite."""
    end = time.monotonic() + bound_seconds
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


def worker_events(caplog, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "worker_event", None) == event]


def settled_memory(worker) -> float:
    run(worker, "test-echo")
    worker.prepare(later())
    return worker.memory_mb()


# --- Each job in a process of its own -----------------------------------------


def test_each_job_runs_in_a_process_of_its_own_forked_from_the_worker(worker):
    first, second = (
        answer(run(worker, "test-echo", value=1)),
        answer(run(worker, "test-echo", value=2)),
    )
    assert first["value"] == 1 and second["value"] == 2
    assert first["parent"] == second["parent"] == worker.pid != os.getpid()
    assert first["pid"] != second["pid"]
    assert worker.pid not in (first["pid"], second["pid"])


def test_a_jobs_deep_calls_map_no_memory(worker):
    """CPython maps a chunk for frames that do not fit in the thread's
    current one, and unmaps it when they return: in an ordinary thread,
    each dive faults fresh pages in. A job's thread has room for them
    (``_worker/stack.py``)."""
    import threading

    ordinary: list[int] = []
    thread = threading.Thread(target=lambda: ordinary.append(calls_deep_and_back(1000)))
    thread.start()
    thread.join()
    assert ordinary[0] >= 1000  # what the test would see without the room
    assert answer(run(worker, "test-deep-calls")) < 100


@pytest.mark.parametrize("how", ["answers", "then raise"])
def test_nothing_a_job_changes_outlives_it(worker, how):
    before = answer(run(worker, "test-read-shared"))
    reply = run(worker, "test-change-shared", value=how)
    assert reply.outcome is (Outcome.OK if how == "answers" else Outcome.BUG)
    assert answer(run(worker, "test-read-shared")) == before == {"answer": 42}


def test_a_job_past_its_deadline_is_stopped_and_the_worker_carries_on(worker, tmp_path):
    import threading

    run(worker, "test-echo")
    prepared = worker.pid
    marker = tmp_path / "started"
    deadline = later()

    def passes_once_started():
        until(marker.exists)
        deadline.at = time.monotonic()

    threading.Thread(target=passes_once_started, daemon=True).start()
    with pytest.raises(JobTimedOut):
        run(worker, "test-spin", deadline, marker=str(marker))

    # The spinning process is gone (no more CPU spent on it); the worker,
    # with whatever it had prepared, takes the next job.
    assert until(lambda: marker.exists() and gone(int(marker.read_text())))
    assert answer(run(worker, "test-echo", value=2))["value"] == 2
    assert worker.pid == prepared


def test_a_cancelled_job_is_stopped(worker, tmp_path):
    import threading

    marker = tmp_path / "started"
    job = worker.new_job("test-spin", {"marker": str(marker)}, "POST /test-spin")
    threading.Thread(
        target=lambda: until(marker.exists) and worker.cancel(job), daemon=True
    ).start()
    with pytest.raises(JobCancelled):
        worker.run(job, later())
    assert until(lambda: gone(int(marker.read_text())))
    assert answer(run(worker, "test-echo", value=3))["value"] == 3


@needs_proc
def test_a_job_over_the_memory_limit_is_stopped(worker, caplog):
    worker.settings.memory_limit_mb = settled_memory(worker) + 300
    # A worker that kept nothing: what it holds now is its fresh figure
    # (this test process, counted with it, has grown since it started).
    worker.fresh_mb = worker.memory_mb()
    prepared = worker.pid

    with pytest.raises(JobOutOfMemory):
        run(worker, "test-grow")

    # Stopped once, in a worker that had kept nothing, which carries on.
    (stop,) = worker_events(caplog, "memory_stop")
    assert stop.levelno == logging.WARNING
    assert stop.memory_mb > worker.limit_mb
    assert answer(run(worker, "test-echo", value=2))["value"] == 2
    assert worker.pid == prepared


@needs_proc
def test_a_worker_over_the_recycle_mark_is_replaced_before_the_next_job(worker, caplog):
    caplog.set_level(logging.INFO, logger="policyengine_backend._worker.supervisor")
    before = settled_memory(worker)
    worker.settings.memory_recycle_mb = before + 150
    first = worker.pid

    # Preparing this job's policy keeps 300 MB in the worker.
    job = worker.new_job(
        "test-echo", {}, "POST /test-echo", policies=({"keep_mb": 300},)
    )
    worker.run(job, later())
    assert worker.pid == first
    # The next job finds it over the mark, and gets a fresh copy of this
    # process, without what it kept.
    answer(run(worker, "test-echo"))
    assert worker.pid != first and gone(first)
    assert worker.memory_mb() < before + 150
    (recycled,) = worker_events(caplog, "recycled")
    assert "MEMORY_RECYCLE_MB" in recycled.getMessage()


@needs_proc
def test_a_worker_without_room_for_the_jobs_years_is_replaced_first(worker, caplog):
    caplog.set_level(logging.INFO, logger="policyengine_backend._worker.supervisor")
    worker.settings.memory_limit_mb = settled_memory(worker) + 400
    worker.run(
        worker.new_job(
            "test-echo", {}, "POST /test-echo", policies=({"keep_mb": 200},)
        ),
        later(),
    )
    first = worker.pid

    # Room for a job that may add 100 MB: the worker stays.
    answer(run(worker, "test-echo", growth=100))
    assert worker.pid == first
    # Not for one that may add 300 MB: a fresh worker takes it.
    answer(run(worker, "test-echo", growth=300))
    assert worker.pid != first and gone(first)
    (recycled,) = worker_events(caplog, "recycled")
    assert "MEMORY_LIMIT_MB" in recycled.getMessage()


def test_a_policy_that_cannot_be_built_is_refused_by_the_worker(worker):
    job = worker.new_job("test-echo", {}, "POST /test-echo", policies=({"refuse": 1},))
    reply = worker.run(job, later())
    assert reply.outcome is Outcome.POLICY_FAILED
    assert reply.errors[0]["loc"] == ["policy"]
    assert "no such parameter" in reply.errors[0]["msg"]


# --- Bugs and kills -------------------------------------------------------------


def test_a_function_that_exits_is_a_bug_said_once_and_not_retried(worker, tmp_path):
    marker = tmp_path / "runs"
    run(worker, "test-echo")
    prepared = worker.pid

    reply = run(worker, "test-exit", marker=str(marker))

    assert reply.outcome is Outcome.BUG
    assert reply.message == (
        "POST /test-exit: the function ended its process before answering (exit code 3)"
    )
    assert marker.read_text() == "ran\n"  # not tried again
    assert worker.pid == prepared  # the worker is not replaced at all
    assert answer(run(worker, "test-echo", value=5))["value"] == 5


def test_a_job_killed_from_outside_runs_once_more(worker, tmp_path, caplog):
    marker = tmp_path / "runs"
    assert answer(run(worker, "test-killed", marker=str(marker))) == "second try"
    assert marker.read_text() == "ran\n" * 2
    (killed,) = worker_events(caplog, "job_killed")
    assert killed.worker_ended == "killed by SIGKILL"


def test_a_job_killed_every_time_raises_crashed_after_one_more_try(worker, tmp_path):
    marker = tmp_path / "runs"
    with pytest.raises(WorkerCrashed, match="SIGKILL"):
        run(worker, "test-killed", value="always", marker=str(marker))
    assert marker.read_text() == "ran\n" * 2
    assert answer(run(worker, "test-echo", value=3))["value"] == 3


def test_a_worker_killed_while_idle_is_replaced_before_the_next_job(worker, caplog):
    run(worker, "test-echo")
    dead = worker.pid
    os.kill(dead, signal.SIGKILL)
    assert until(lambda: gone(dead))

    assert answer(run(worker, "test-echo", value=2))["value"] == 2
    assert worker.pid != dead
    (crash,) = worker_events(caplog, "crashed")
    assert crash.when == "while idle" and crash.worker_ended == "killed by SIGKILL"


def test_a_worker_killed_mid_job_runs_the_job_again_in_a_fresh_one(
    worker, tmp_path, caplog
):
    marker = tmp_path / "first-worker"
    run(worker, "test-echo")
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
    assert answer(run(worker, "test-block-once", marker=str(marker))) == "second try"
    assert killer.wait() == 0
    (crash,) = worker_events(caplog, "crashed")
    assert crash.when == "during a job"


def test_a_stopped_worker_is_found_by_the_health_check_and_replaced(worker, caplog):
    run(worker, "test-echo")
    stopped = worker.pid
    os.kill(stopped, signal.SIGSTOP)
    try:
        problem = worker.check()
        assert (
            problem
            == "the calculation worker stopped answering; a fresh one was started"
        )
        assert worker.pid != stopped
        assert worker.check() is None
        assert answer(run(worker, "test-echo", value=4))["value"] == 4
    finally:
        with contextlib.suppress(ProcessLookupError):  # replaced: killed already
            os.kill(stopped, signal.SIGKILL)
    assert worker_events(caplog, "silent")


def test_a_job_sent_to_a_stopped_worker_ends_at_its_own_deadline(worker):
    run(worker, "test-echo")
    stopped = worker.pid
    os.kill(stopped, signal.SIGSTOP)
    try:
        with pytest.raises(JobTimedOut):
            run(worker, "test-echo", Deadline(time.monotonic() + 1))
        # The next job finds it silent and gets a fresh one.
        assert answer(run(worker, "test-echo", value=6))["value"] == 6
        assert worker.pid != stopped
    finally:
        with contextlib.suppress(ProcessLookupError):  # replaced: killed already
            os.kill(stopped, signal.SIGKILL)


def test_the_health_check_replaces_a_dead_idle_worker(worker):
    run(worker, "test-echo")
    dead = worker.pid
    os.kill(dead, signal.SIGKILL)
    assert until(lambda: gone(dead))

    assert worker.check() is None
    assert worker.pid != dead and not gone(worker.pid)


def test_the_health_check_says_when_no_worker_can_start(worker, monkeypatch):
    run(worker, "test-echo")
    os.kill(worker.pid, signal.SIGKILL)

    def no_fork(process):
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(Worker, "_fork", staticmethod(no_fork))
    problem = worker.check()
    assert problem is not None and "Cannot allocate memory" in problem
    with pytest.raises(WorkerCrashed, match="cannot start"):
        run(worker, "test-echo")
    monkeypatch.undo()
    assert worker.check() is None
    assert answer(run(worker, "test-echo", value=3))["value"] == 3


# --- Owning nothing of the server's ---------------------------------------------


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in (PROC / str(pid) / "fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


@needs_proc
def test_the_worker_and_its_jobs_hold_none_of_the_servers_sockets(worker, tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as listening:
        port_inode = os.fstat(listening.fileno()).st_ino
        run(worker, "test-echo")  # a worker forked while the port is open
        assert port_inode in socket_inodes(os.getpid())
        assert port_inode not in socket_inodes(worker.pid)
        marker = tmp_path / "started"
        job = worker.new_job("test-spin", {"marker": str(marker)}, "POST /test-spin")
        import threading

        def look_then_cancel():
            until(marker.exists)
            held.extend(socket_inodes(int(marker.read_text())))
            worker.cancel(job)

        held: list[int] = []
        threading.Thread(target=look_then_cancel, daemon=True).start()
        with pytest.raises(JobCancelled):
            worker.run(job, later())
        assert port_inode not in held


def test_what_a_job_starts_ends_with_it(worker):
    started = answer(run(worker, "test-grandchild"))["started"]
    assert all(until(lambda pid=pid: gone(pid)) for pid in started)


@pytest.mark.parametrize(
    ("exitcode", "words"),
    [(-9, "killed by SIGKILL"), (3, "exit code 3"), (None, "unknown")],
)
def test_how_a_process_ended_is_said_in_words(exitcode, words):
    assert how_it_ended(exitcode) == words
