"""Faults are input too: the calculation worker killed (as the kernel's
out-of-memory killer would) while idle or mid-calculation, requests that
share one calculation but not one deadline, and worker functions that try
to change what later requests compute, or break their own declaration.

After each fault the next request is answered, equal to policyengine's own
``Simulation``, and ``/health`` tells the truth. Kills are made at known
moments (a calculation that says it has started, then waits until killed
or released), so no outcome depends on how fast the machine is.
"""

import asyncio
import io
import json
import logging
import os
import signal
import sys
import threading
from typing import Any

import numpy as np
import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from pydantic import BaseModel

from policyengine_backend import Problem, create_app, worker_endpoint
from policyengine_backend._engine.scheduler import TimeLimit
from policyengine_backend._errors import CalculationTimeout, Unavailable
from policyengine_backend._settings import Settings
from policyengine_backend.examples import EXAMPLE_HOUSEHOLD, EXAMPLE_PARAMETER
from policyengine_backend.testing import assert_same_values, finished
from tests.backend.conftest import Moments, calculate, ends, gone, household_with

KILLED = "killed-every-time"  # a person whose calculation kills its process
BLOCKED = "blocked-until-released"  # ... whose calculation waits for the test


@pytest.fixture
def moments(tmp_path, patch_calculate) -> Moments:
    """Calculations of a household with a KILLED or BLOCKED person misbehave
    (in workers forked after this)."""
    moments = Moments(tmp_path)

    def misbehaving(real):
        def calculate(request, simulations):
            if KILLED in request.household.people:
                os.kill(os.getpid(), signal.SIGKILL)
            if BLOCKED in request.household.people:
                moments.start()
            return real(request, simulations)

        return calculate

    patch_calculate(misbehaving)
    return moments


def events(caplog, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "worker_event", "") == event]


# --- The worker killed ------------------------------------------------------------


def test_a_worker_killed_while_idle_is_replaced_and_health_stays_true(
    client, engine, reference, caplog
):
    assert client.post("/calculate", json={"household": household_with()}).is_success
    dead = engine.worker.pid
    os.kill(dead, signal.SIGKILL)

    # /health finds it dead, replaces it, and can say ok truthfully.
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert engine.worker.pid != dead

    # Killed again, with no /health in between: the next request replaces it.
    os.kill(engine.worker.pid, signal.SIGKILL)
    household = household_with(earnings=43_000)
    response = client.post("/calculate", json={"household": household})
    assert response.status_code == 200, response.text
    assert_same_values(response.json()["result"], reference(household))
    crashes = events(caplog, "crashed")
    assert len(crashes) == 2 and all(r.levelno == logging.WARNING for r in crashes)


def test_a_worker_killed_mid_calculation_answers_from_a_fresh_one(
    make_engine, moments, reference, caplog
):
    engine = make_engine()
    household = household_with(BLOCKED, earnings=44_000)

    async def scenario():
        request = asyncio.create_task(calculate(engine, household))
        await moments.started_pid()
        moments.started.write_text("")
        os.kill(engine.worker.pid, signal.SIGKILL)  # the worker, not the job
        await moments.started_pid()  # again, from a fresh worker
        moments.let_go()
        return await request

    answer = asyncio.run(scenario())
    assert_same_values(json.loads(answer)["result"], reference(household))
    (crash,) = events(caplog, "crashed")
    assert crash.when == "during a job" and crash.worker_ended == "killed by SIGKILL"


def test_a_calculation_killed_every_time_answers_503_and_health_says_degraded(
    client, engine, moments, caplog
):
    engine.scheduler.failures_in_a_row = 0
    limit = engine.settings.degraded_after_failures
    for i in range(limit):
        response = client.post(
            "/calculate",
            json={"household": household_with(KILLED, earnings=60_000 + i)},
        )
        assert response.status_code == 503
        assert "SIGKILL" in response.json()["message"]
        assert "send it again" in response.json()["message"]
    access = [r for r in caplog.records if r.name == "policyengine_backend.access"]
    assert access[-1].status == 503 and access[-1].levelno == logging.WARNING

    health = client.get("/health")
    assert health.status_code == 503 and health.json()["status"] == "degraded"
    assert f"the last {limit} calculations failed" in health.json()["message"]
    # One that works, and the backend is healthy again.
    next_one = {"household": household_with(earnings=47_000)}
    assert client.post("/calculate", json=next_one).is_success
    assert client.get("/health").json()["status"] == "ok"


def test_a_job_whose_calculation_dies_every_time_ends_503(client, moments):
    submitted = client.post(
        "/jobs/calculate", json={"household": household_with(KILLED, earnings=61_000)}
    )
    body = finished(client, submitted.json()["job_id"])
    assert body["status"] == "error" and body["status_code"] == 503
    client.post("/calculate", json={"household": household_with(earnings=61_500)})


def test_with_every_worker_killed_at_birth_calculations_and_health_say_503(
    client, engine, monkeypatch
):
    from policyengine_backend._worker import child

    engine.worker.stop()
    monkeypatch.setattr(child, "serve", lambda *args: os._exit(1))
    response = client.post(
        "/calculate", json={"household": household_with(earnings=49_000)}
    )
    health = client.get("/health")
    monkeypatch.undo()

    assert response.status_code == 503
    assert "no calculation worker could start" in response.json()["message"]
    assert health.status_code == 503 and health.json()["status"] == "unavailable"
    assert client.post(
        "/calculate", json={"household": household_with(earnings=49_500)}
    ).is_success
    assert client.get("/health").status_code == 200


def test_health_says_unavailable_when_no_worker_can_start(client, engine, monkeypatch):
    from policyengine_backend._worker.supervisor import Worker

    engine.worker.stop()

    def no_fork(process):
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(Worker, "_fork", staticmethod(no_fork))
    health = client.get("/health")
    response = client.post(
        "/calculate", json={"household": household_with(earnings=48_000)}
    )
    monkeypatch.undo()

    assert health.status_code == 503
    assert health.json()["status"] == "unavailable"
    assert "Cannot allocate memory" in health.json()["message"]
    assert response.status_code == 503
    assert client.get("/health").status_code == 200


def test_health_says_so_when_memory_cannot_be_read(client, engine, monkeypatch):
    monkeypatch.setattr(engine, "memory", None)
    health = client.get("/health")
    assert health.status_code == 503 and health.json()["status"] == "unavailable"
    assert "MEMORY_SOURCE=off" in health.json()["message"]
    monkeypatch.setattr(
        engine, "settings", engine.settings.model_copy(update={"memory_source": "off"})
    )
    assert client.get("/health").status_code == 200


def test_a_request_during_warm_up_waits_no_longer_than_its_own_limit(monkeypatch):
    """A request sent while the model loads waits within its own limit,
    then is told to come back (503), rather than waiting for the warm-up."""
    from policyengine_backend._engine.engine import Engine

    engine = Engine(Settings(calculation_timeout_seconds=1))
    monkeypatch.setattr(
        engine, "start_warm_up", lambda: None
    )  # a warm-up that never ends
    with pytest.raises(Unavailable, match="still starting"):
        asyncio.run(calculate(engine, household_with()))


# --- Deadlines shared by joined requests ------------------------------------------


def limit(seconds: float) -> TimeLimit:
    return TimeLimit(seconds, "TEST_LIMIT", seconds)


def test_a_long_request_that_joined_a_short_one_keeps_the_calculation_going(
    make_engine, moments, reference
):
    engine = make_engine()
    household = household_with(BLOCKED, earnings=45_000)
    body = {"household": household, "policy": None}

    async def scenario():
        short = asyncio.create_task(engine.call("calculate", body, limit(5)))
        job = await moments.started_pid()
        long = asyncio.create_task(engine.call("calculate", body, limit(600)))
        with pytest.raises(CalculationTimeout):
            await short  # a calculation that waits passes any deadline
        # The long one's deadline is the calculation's now: it goes on.
        still_running = not gone(job)
        moments.let_go()
        return still_running, await long

    still_running, answer = asyncio.run(scenario())
    assert still_running
    assert_same_values(json.loads(answer)["result"], reference(household))


def test_a_short_request_that_joined_a_long_one_leaves_at_its_own_limit(
    make_engine, moments, reference
):
    engine = make_engine()
    household = household_with(BLOCKED, earnings=46_000)
    body = {"household": household, "policy": None}

    async def scenario():
        long = asyncio.create_task(engine.call("calculate", body, limit(600)))
        await moments.started_pid()
        with pytest.raises(CalculationTimeout, match="TEST_LIMIT"):
            await engine.call("calculate", body, limit(1))
        still_running = not long.done()
        moments.let_go()
        return still_running, await long

    still_running, answer = asyncio.run(scenario())
    assert still_running
    assert_same_values(json.loads(answer)["result"], reference(household))


def test_a_policy_policyengine_cannot_build_is_a_400_and_remembered(
    make_engine, monkeypatch
):
    from policyengine_backend.examples import EXAMPLE_POLICY

    engine = make_engine()
    systems = engine.systems
    real_path_for = systems.path_for

    def path_for(policy):
        if policy == EXAMPLE_POLICY:  # as policyengine fails on some policies
            raise ValueError("two reforms define one variable")
        return real_path_for(policy)

    monkeypatch.setattr(systems, "path_for", path_for)  # the worker forks after
    runs = []
    real_run = engine.worker.run
    monkeypatch.setattr(
        engine.worker, "run", lambda *args: runs.append(args) or real_run(*args)
    )

    async def twice():
        refusals = []
        for earnings in (50_000, 51_000):  # two households, one policy
            with pytest.raises(Problem) as refused:
                await calculate(
                    engine, household_with(earnings=earnings), EXAMPLE_POLICY
                )
            refusals.append(refused.value)
        return refusals

    first, second = asyncio.run(twice())
    assert first.status == second.status == 400
    assert first.errors == second.errors
    (refusal,) = first.errors
    assert refusal["loc"] == ["policy"]
    assert "two reforms define one variable" in refusal["msg"]
    assert len(runs) == 1  # the second was refused without the worker


# --- Forked at a bad moment ------------------------------------------------------


class HeldWrites(io.RawIOBase):
    """A file whose writes wait at ``gate``: a stream over it holds its
    buffer's lock while a write waits, as a line being written does."""

    def __init__(self, fd: int):
        self.fd = fd
        self.gate = threading.Event()
        self.entered = threading.Event()

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd

    def write(self, data) -> int:
        self.entered.set()
        self.gate.wait()
        return os.write(self.fd, data)


def test_a_worker_forked_while_another_thread_writes_the_log_answers(
    client, engine, patch_calculate, monkeypatch, reference, tmp_path
):
    """A fork copies a stream's lock as it is: a worker forked while one of
    the server's threads is halfway through a line must still write its own
    lines, and answer."""
    from policyengine_backend._logs import StdoutHandler

    log = tmp_path / "stdout"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    held = HeldWrites(fd)
    stdout = io.TextIOWrapper(io.BufferedWriter(held), write_through=True)
    monkeypatch.setattr(sys, "stdout", stdout)
    # The server's own log goes elsewhere meanwhile (it would wait at the
    # gate too); the function's logger writes to stdout.
    others = [h for h in logging.root.handlers if not isinstance(h, StdoutHandler)]
    monkeypatch.setattr(logging.root, "handlers", others)
    functions = logging.getLogger("a.worker.function")
    monkeypatch.setattr(functions, "handlers", [StdoutHandler()])
    monkeypatch.setattr(functions, "propagate", False)
    # multiprocessing flushes the streams just before it forks, and another
    # thread can take the lock again between that flush and the fork: here,
    # certainly.
    monkeypatch.setattr("multiprocessing.util._flush_std_streams", lambda: None)
    writer = threading.Thread(target=lambda: print("the server's line", flush=True))
    writer.start()
    held.entered.wait()  # its buffer's lock is held from here until the gate opens

    def printing(real):
        def calculate(request, simulations):
            print("the calculation's own line", flush=True)
            logging.getLogger("a.worker.function").warning("and its log")
            return real(request, simulations)

        return calculate

    patch_calculate(printing)  # the next calculation forks a fresh worker
    household = household_with(earnings=44_000)
    try:
        response = client.post("/calculate", json={"household": household})
    finally:
        held.gate.set()
        writer.join()
        os.close(fd)

    assert response.status_code == 200, response.text
    assert_same_values(response.json()["result"], reference(household))
    written = log.read_text()
    assert "the calculation's own line" in written and "and its log" in written


# --- Worker functions that misbehave ----------------------------------------------

hostile = APIRouter()


class Anything(BaseModel):
    then: str = "answer"


@worker_endpoint(hostile, "/edits-the-model", request_model=Anything, result_model=str)
def edits_the_model(request: Anything, simulations) -> str:
    """Sets current law's example parameter to something absurd."""
    baseline = simulations._systems.baseline
    baseline.parameters.get_child(EXAMPLE_PARAMETER).update(
        period="year:2000:100", value=123_456
    )
    if request.then == "raise":
        raise RuntimeError("edited the model, then failed")
    return "edited"


@worker_endpoint(hostile, "/patches-a-global", request_model=Anything, result_model=str)
def patches_a_global(request: Anything, simulations) -> str:
    """Replaces the function that fills every household's answer."""
    from policyengine_backend._model import household

    household.fill_household = lambda simulation, situation: {"poisoned": True}
    return "patched"


def returns(value: Any, declared: Any = Any):
    def function(request: Anything, simulations):
        return value

    return function


RESULTS = {
    "/returns-nan": (float("nan"), float, "nan at result"),
    "/returns-infinity": ([1.0, float("inf")], list[float], "inf at result[1]"),
    "/returns-numpy-array": (
        {"values": np.zeros(3)},
        dict[str, Any],
        "a numpy ndarray at result.values",
    ),
    "/returns-float32": (
        {"x": [np.float32(1.5)]},
        dict[str, Any],
        "a numpy float32 at result.x[0]",
    ),
    "/returns-a-function": (
        {"f": print},
        dict[str, Any],
        "a builtin_function_or_method at result.f",
    ),
    "/returns-the-wrong-shape": (
        {"not": "a list"},
        list[float],
        "does not match its result_model at result",
    ),
}
for path, (value, declared, _) in RESULTS.items():
    function = returns(value)
    function.__name__ = path.strip("/").replace("-", "_")
    worker_endpoint(hostile, path, request_model=Anything, result_model=declared)(
        function
    )


class Marked(BaseModel):
    mark: str


@worker_endpoint(hostile, "/deadlocks-once", request_model=Marked, result_model=str)
def deadlocks_once(request: Marked, simulations) -> str:
    """The first time, waits for a lock that nothing will release, as a job
    forked holding a lock of the server's would."""
    if not os.path.exists(request.mark):
        open(request.mark, "w").close()
        lock = threading.Lock()
        lock.acquire()
        lock.acquire()
    return "answered"


@worker_endpoint(hostile, "/exits", request_model=Anything, result_model=str)
def exits(request: Anything, simulations) -> str:
    os._exit(3)


@pytest.fixture(scope="module")
def hostile_client(client):
    """An app with the project's endpoints and the hostile ones (sharing the
    session's engine and worker)."""
    from api.routes import ROUTERS

    with TestClient(
        create_app("hostile", "hostile", [*ROUTERS, hostile])
    ) as hostile_client:
        yield hostile_client


@pytest.mark.parametrize("then", ["answer", "raise"])
def test_a_function_that_edits_the_model_changes_no_later_answer(
    hostile_client, reference, then
):
    hostile_client.post("/edits-the-model", json={"then": then})
    for household in (EXAMPLE_HOUSEHOLD, household_with(earnings=52_000)):
        response = hostile_client.post("/calculate", json={"household": household})
        assert response.status_code == 200
        assert_same_values(response.json()["result"], reference(household))


def test_a_function_that_patches_a_global_changes_no_later_answer(
    hostile_client, reference
):
    assert (
        hostile_client.post("/patches-a-global", json={}).json()["result"] == "patched"
    )
    household = household_with(earnings=53_000)
    response = hostile_client.post("/calculate", json={"household": household})
    assert_same_values(response.json()["result"], reference(household))


@pytest.mark.parametrize("path", RESULTS)
def test_a_result_that_breaks_its_declaration_is_a_500_naming_the_endpoint(
    hostile_client, engine, path
):
    runs = []
    real_run = engine.worker.run
    engine.worker.run = lambda *args: runs.append(args) or real_run(*args)
    try:
        response = hostile_client.post(path, json={})
        again = hostile_client.post(path, json={})
    finally:
        del engine.worker.run
    message = response.json()["message"]
    assert response.status_code == 500
    assert message.startswith(f"POST {path}: ") and RESULTS[path][2] in message
    assert again.status_code == 500  # never cached...
    assert len(runs) == 2  # ...and each request ran once, not retried


def test_a_function_that_exits_is_a_500_run_once(hostile_client, engine):
    engine.scheduler.failures_in_a_row = 0
    assert hostile_client.post("/patches-a-global", json={}).is_success
    worker = engine.worker.pid
    response = hostile_client.post("/exits", json={})
    assert response.status_code == 500
    assert response.json()["message"] == (
        "POST /exits: the function ended its process before answering (exit code 3)"
    )
    assert engine.worker.pid == worker  # the worker itself carries on
    assert hostile_client.get("/health").status_code == 200


def test_a_job_that_waits_for_ever_on_a_lock_runs_again_in_a_fresh_worker(
    hostile_client, engine, tmp_path, caplog
):
    assert hostile_client.post("/patches-a-global", json={}).is_success
    worker = engine.worker.pid
    mark = tmp_path / "deadlocked"
    response = hostile_client.post("/deadlocks-once", json={"mark": str(mark)})
    assert response.status_code == 200, response.text
    assert response.json()["result"] == "answered"
    assert mark.exists()  # the first try did wait
    assert events(caplog, "deadlocked")
    assert engine.worker.pid != worker
    assert hostile_client.get("/health").status_code == 200


def test_where_locks_cannot_be_read_a_job_stuck_on_one_ends_at_its_limit_and_its_worker_is_replaced(
    hostile_client, engine, tmp_path, caplog, monkeypatch
):
    """On gVisor (Modal) there is no /proc/<pid>/syscall: the job ends at
    its deadline, and the worker it came from is not trusted again."""
    from policyengine_backend._worker import supervisor

    monkeypatch.setattr(supervisor, "waits_for_ever", lambda pid: False)
    monkeypatch.setattr(engine, "settings", Settings(calculation_timeout_seconds=30))
    assert hostile_client.post("/patches-a-global", json={}).is_success
    worker = engine.worker.pid
    mark = tmp_path / "deadlocked"
    response = hostile_client.post("/deadlocks-once", json={"mark": str(mark)})
    assert mark.exists(), response.text  # it started (on a slow machine, it may not)
    assert response.status_code == 504, response.text
    # Queued behind the stuck job until its worker has dealt with it.
    again = hostile_client.post("/deadlocks-once", json={"mark": str(mark)})
    assert again.status_code == 200 and again.json()["result"] == "answered"
    assert events(caplog, "stalled")
    assert engine.worker.pid != worker


def test_a_worker_endpoint_past_its_limit_gets_504_while_health_answers(
    client, engine, moments, monkeypatch
):
    """The road for the project's own endpoints has the same guard rails:
    its function runs in the worker, so a heavy one is stopped at the
    request's limit and the server keeps answering meanwhile."""
    from concurrent.futures import ThreadPoolExecutor

    router = APIRouter()

    class Heavy(BaseModel):
        points: int

    @worker_endpoint(router, "/heavy-chart", request_model=Heavy, result_model=int)
    def heavy_chart(request: Heavy, simulations) -> int:
        moments.start()  # never released: passes any deadline
        return 0

    # Long enough for the job to start on a busy machine: the test waits for
    # it, then for the limit.
    monkeypatch.setattr(engine, "settings", Settings(calculation_timeout_seconds=20))
    with TestClient(create_app("heavy", "heavy", [router])) as heavy_client:
        with ThreadPoolExecutor(1) as pool:
            heavy = pool.submit(
                heavy_client.post, "/heavy-chart", json={"points": 1001}
            )
            heavy_pid = moments.wait_until_started(unless=heavy.done)
            health = heavy_client.get("/health")  # while the worker is busy
            response = heavy.result()

    assert heavy_pid is not None, response.text
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert response.status_code == 504
    assert "CALCULATION_TIMEOUT_SECONDS" in response.json()["message"]
    assert ends(heavy_pid)  # stopped, not spinning
