"""Faults are input too: the calculation worker killed (as the kernel's
out-of-memory killer would) while idle or mid-calculation, and requests
that share one calculation but not one deadline.

After each fault the next request is answered and ``/health`` tells the
truth. Kills are made at known moments (a calculation that signals it has
started, then spins until killed or released), so no outcome depends on
how fast the machine is.
"""

import asyncio
import json
import logging
import os
import signal
from pathlib import Path

import pytest

from policyengine_backend._engine.checks import RequestProblem
from policyengine_backend._engine.engine import (
    CalculationTimeout,
    TimeLimit,
    WorkerUnavailable,
)
from policyengine_backend._settings import Settings
from tests.conftest import assert_same_values, household_with

KILLED = "killed-every-time"  # a person whose calculation kills its worker
BLOCKED = "blocked-until-released"  # ... whose calculation spins until released


class Moments:
    """Files through which a patched calculation (in the worker) and the
    test (in the server) agree on moments: started, released."""

    def __init__(self, folder: Path):
        self.started = folder / "started"  # holds the worker's pid
        self.release = folder / "release"

    def wait_until_started(self) -> int:
        while not self.started.exists() or not self.started.read_text():
            pass
        return int(self.started.read_text())

    async def started_pid(self) -> int:
        while not self.started.exists() or not self.started.read_text():
            await asyncio.sleep(0.01)
        return int(self.started.read_text())


@pytest.fixture
def moments(tmp_path, patch_calculate):
    """Calculations of a household with a KILLED or BLOCKED person misbehave
    (in workers forked after this)."""
    moments = Moments(tmp_path)

    def misbehaving(real):
        def calculate(request, simulations):
            if KILLED in request.household.people:
                os.kill(os.getpid(), signal.SIGKILL)
            if BLOCKED in request.household.people:
                moments.started.write_text(str(os.getpid()))
                while not moments.release.exists():
                    pass
            return real(request, simulations)

        return calculate

    patch_calculate(misbehaving)
    return moments


@pytest.fixture
def fresh_app_worker(client, engine):
    """The app's worker, forked anew before and after the test, so the test
    runs the patched calculation and later tests the real one."""
    engine.worker.stop()
    yield engine.worker
    engine.worker.stop()


def test_a_worker_killed_while_idle_is_replaced_and_health_stays_true(
    client, engine, reference, caplog
):
    assert client.post("/calculate", json={"household": household_with()}).is_success
    dead = engine.worker.process
    os.kill(dead.pid, signal.SIGKILL)
    dead.join()

    # /health finds it dead, replaces it, and can say ok truthfully.
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert engine.worker.process is not dead

    # Killed again, with no /health in between: the next request replaces it.
    os.kill(engine.worker.pid, signal.SIGKILL)
    household = household_with(earnings=43_000)
    response = client.post("/calculate", json={"household": household})
    assert response.status_code == 200, response.text
    assert_same_values(response.json()["result"], reference(household))
    crashes = [r for r in caplog.records if getattr(r, "worker_event", "") == "crashed"]
    assert len(crashes) == 2 and all(r.levelno == logging.WARNING for r in crashes)


def test_a_worker_killed_mid_calculation_answers_from_a_fresh_one(
    make_engine, moments, reference, caplog
):
    engine = make_engine()
    household = household_with(BLOCKED, earnings=44_000)

    async def scenario():
        request = asyncio.create_task(engine.calculate(household, None))
        pid = await moments.started_pid()
        moments.started.write_text("")
        os.kill(pid, signal.SIGKILL)
        await moments.started_pid()  # again, in a fresh worker
        moments.release.touch()
        return await request

    answer = asyncio.run(scenario())
    assert_same_values(json.loads(answer)["result"], reference(household))
    (crash,) = [
        r for r in caplog.records if getattr(r, "worker_event", "") == "crashed"
    ]
    assert crash.when == "during a job" and crash.worker_ended == "killed by SIGKILL"


def test_a_calculation_that_kills_every_worker_answers_503(
    client, fresh_app_worker, moments, caplog
):
    response = client.post("/calculate", json={"household": household_with(KILLED)})

    assert response.status_code == 503
    assert "SIGKILL" in response.json()["message"]
    assert "send it again" in response.json()["message"]
    access = [r for r in caplog.records if r.name == "policyengine_backend.access"]
    assert access[-1].status == 503 and access[-1].levelno == logging.WARNING
    # The next request is answered, and /health says the backend can calculate.
    next_one = {"household": household_with(earnings=47_000)}
    assert client.post("/calculate", json=next_one).is_success
    assert client.get("/health").json()["status"] == "ok"


def test_a_job_whose_worker_dies_every_time_ends_503(client, fresh_app_worker, moments):
    from tests.conftest import finished

    submitted = client.post("/jobs", json={"household": household_with(KILLED)})
    body = finished(client, submitted.json()["job_id"])

    assert body["status"] == "error" and body["status_code"] == 503


def test_health_says_unavailable_when_no_worker_can_start(
    client, fresh_app_worker, monkeypatch
):
    import multiprocessing.context

    def no_fork(self):
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(multiprocessing.context.ForkProcess, "start", no_fork)
    health = client.get("/health")
    uncached = {"household": household_with(earnings=48_000)}
    response = client.post("/calculate", json=uncached)
    monkeypatch.undo()

    assert health.status_code == 503
    assert health.json()["status"] == "unavailable"
    assert "Cannot allocate memory" in health.json()["message"]
    assert response.status_code == 503
    assert client.get("/health").status_code == 200


def limit(seconds: float) -> TimeLimit:
    return TimeLimit(seconds, "TEST_LIMIT", seconds)


def test_a_long_request_that_joined_a_short_one_outlives_its_timeout(
    make_engine, moments, reference
):
    engine = make_engine()
    household = household_with(BLOCKED, earnings=45_000)

    async def scenario():
        short = asyncio.create_task(engine.calculate(household, None, limit(5)))
        await moments.started_pid()
        long = asyncio.create_task(engine.calculate(household, None, limit(600)))
        with pytest.raises(CalculationTimeout):
            await short  # a calculation that spins passes any deadline
        # The long one runs it again itself, in a fresh worker.
        moments.started.write_text("")
        await moments.started_pid()
        moments.release.touch()
        return await long

    answer = asyncio.run(scenario())
    assert_same_values(json.loads(answer)["result"], reference(household))


def test_a_short_request_that_joined_a_long_one_leaves_at_its_own_limit(
    make_engine, moments, reference
):
    engine = make_engine()
    household = household_with(BLOCKED, earnings=46_000)

    async def scenario():
        long = asyncio.create_task(engine.calculate(household, None, limit(600)))
        await moments.started_pid()
        with pytest.raises(CalculationTimeout, match="TEST_LIMIT"):
            await engine.calculate(household, None, limit(1))
        still_running = not long.done()
        moments.release.touch()
        return still_running, await long

    still_running, answer = asyncio.run(scenario())
    assert still_running
    assert_same_values(json.loads(answer)["result"], reference(household))


def test_worker_unavailable_is_what_a_double_crash_raises(make_engine, moments):
    engine = make_engine()
    with pytest.raises(WorkerUnavailable, match="SIGKILL"):
        asyncio.run(engine.calculate(household_with(KILLED), None))


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
            with pytest.raises(RequestProblem) as refused:
                await engine.calculate(
                    household_with(earnings=earnings), EXAMPLE_POLICY
                )
            refusals.append(refused.value)
        return refusals

    first, second = asyncio.run(twice())
    assert first.status == second.status == 400
    assert first.problems == second.problems
    (refusal,) = first.problems
    assert refusal["loc"] == ["policy"]
    assert "two reforms define one variable" in refusal["msg"]
    assert len(runs) == 1  # the second was refused without the worker


def test_a_worker_endpoint_past_its_limit_gets_504_while_health_answers(
    client, engine, moments, monkeypatch
):
    """The road for the project's own endpoints has the same guard rails:
    its function runs in the worker, so a heavy one is stopped at the
    request's limit and the server keeps answering meanwhile."""
    from concurrent.futures import ThreadPoolExecutor

    from fastapi import APIRouter
    from pydantic import BaseModel

    from api.main import app
    from policyengine_backend import worker_endpoint

    router = APIRouter()

    class Heavy(BaseModel):
        points: int

    @worker_endpoint(router, "/heavy-chart", request_model=Heavy, result_model=int)
    def heavy_chart(request: Heavy, simulations) -> int:
        moments.started.write_text(str(os.getpid()))
        while True:  # never done: passes any deadline
            pass

    routes = list(app.router.routes)
    app.include_router(router)
    monkeypatch.setattr(engine, "settings", Settings(calculation_timeout_seconds=4))
    try:
        with ThreadPoolExecutor(1) as pool:
            heavy = pool.submit(client.post, "/heavy-chart", json={"points": 1001})
            heavy_pid = moments.wait_until_started()
            health = client.get("/health")  # while the worker is busy
            response = heavy.result()
    finally:
        app.router.routes[:] = routes

    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert response.status_code == 504
    assert "CALCULATION_TIMEOUT_SECONDS" in response.json()["message"]
    with pytest.raises(ProcessLookupError):  # stopped and reaped, not spinning
        os.kill(heavy_pid, 0)
