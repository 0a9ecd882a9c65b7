"""The engine's guarantees around the worker: a request is checked before
it waits, a slow one is stopped at its deadline and the next is served by a
fresh worker, a greedy one is stopped at the memory limit, and identical
requests share one calculation.

Slow and greedy calculations are made so on purpose (they never finish, or
never stop allocating), so no test depends on how fast the machine is.
"""

import asyncio
import copy
import json
import os
import threading
import time

import pytest

from policyengine_backend import _logs as logs
from policyengine_backend._engine.checks import RequestProblem
from policyengine_backend._engine.engine import CalculationTimeout
from policyengine_backend._settings import MAX_CALCULATION_TIMEOUT_SECONDS, Settings
from policyengine_backend._worker.supervisor import memory_mb
from tests.conftest import assert_same_values, household_with

STUCK = "stuck-forever"  # a person id that makes the calculation never end
GREEDY = "greedy-forever"  # ... or allocate memory until stopped
RELEASE = threading.Event()


@pytest.fixture(autouse=True)
def patched_calculation(patch_calculate):
    """Calculations of a household with a STUCK or GREEDY person misbehave."""
    release = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"release-{os.getpid()}")

    def misbehaving(real):
        def calculate(request, simulations):
            if STUCK in request.household.people:
                while not os.path.exists(release):
                    pass
            if GREEDY in request.household.people:
                chunks = []
                while True:
                    chunks.append(b"\x01" * (20 * 1024 * 1024))
            return real(request, simulations)

        return calculate

    patch_calculate(misbehaving)
    yield release
    if os.path.exists(release):
        os.remove(release)


def test_a_request_past_its_deadline_answers_504_and_frees_the_worker(
    make_engine, reference
):
    engine = make_engine(calculation_timeout_seconds=MAX_CALCULATION_TIMEOUT_SECONDS)

    async def scenario():
        await engine.calculate(household_with(), None)  # a worker is running
        stuck_worker = engine.worker.process
        # A stuck calculation passes any deadline; a short one keeps it brief.
        engine.settings = Settings(calculation_timeout_seconds=1)
        with pytest.raises(CalculationTimeout) as timeout:
            await engine.calculate(household_with(STUCK), None)
        # The stuck process was ended, not left running behind the 504.
        assert not stuck_worker.is_alive()
        assert "CALCULATION_TIMEOUT_SECONDS" in str(timeout.value)
        assert "axis" not in str(timeout.value)  # this request has no axes
        engine.settings = Settings(
            calculation_timeout_seconds=MAX_CALCULATION_TIMEOUT_SECONDS
        )
        household = household_with(earnings=41_000)
        answer = await engine.calculate(household, None)
        return stuck_worker, household, answer

    stuck_worker, household, answer = asyncio.run(scenario())
    assert engine.worker.process is not stuck_worker
    assert_same_values(json.loads(answer)["result"], reference(household))


def test_limits_are_checked_before_waiting_for_the_worker(
    make_engine, patched_calculation
):
    engine = make_engine(max_people=3)
    release = patched_calculation

    async def scenario():
        busy = asyncio.create_task(engine.calculate(household_with(STUCK), None))
        while engine.worker.ready or engine.worker.process is None:
            await asyncio.sleep(0.01)  # until the worker has the stuck job
        crowd = household_with()
        for i in range(3):
            crowd["people"][f"extra_{i}"] = {}
        with pytest.raises(RequestProblem) as refused:
            await engine.calculate(crowd, None)
        still_running = not busy.done()
        open(release, "w").close()
        await busy
        return refused.value, still_running

    refused, still_running = asyncio.run(scenario())
    assert refused.status == 422 and "MAX_PEOPLE" in str(refused)
    assert still_running


@pytest.mark.skipif(memory_mb(os.getpid()) is None, reason="needs /proc (Linux)")
def test_a_request_over_the_memory_limit_answers_422(make_engine):
    engine = make_engine()

    async def scenario():
        await engine.calculate(household_with(), None)
        await asyncio.to_thread(engine.worker.prepare, time.monotonic() + 600)
        limit = engine.worker.container_memory_mb() + 300
        engine.worker.memory_limit_mb = limit
        engine.settings = Settings(memory_limit_mb=int(limit))
        with pytest.raises(RequestProblem) as refused:
            await engine.calculate(household_with(GREEDY), None)
        return refused.value, await engine.calculate(
            household_with(earnings=42_000), None
        )

    refused, answer = asyncio.run(scenario())
    assert refused.status == 422 and "MEMORY_LIMIT_MB" in str(refused)
    assert b'"status":"ok"' in answer


def test_identical_requests_share_one_calculation(make_engine, patched_calculation):
    engine = make_engine()
    release = patched_calculation
    calls = []
    real_run = engine.worker.run

    def counting_run(job, *args, **kwargs):
        calls.append(job)
        return real_run(job, *args, **kwargs)

    engine.worker.run = counting_run
    household = household_with(STUCK)

    async def scenario():
        first = asyncio.create_task(engine.calculate(household, None))
        second = asyncio.create_task(engine.calculate(copy.deepcopy(household), None))
        while not calls:
            await asyncio.sleep(0.01)
        open(release, "w").close()
        return await first, await second, await engine.calculate(household, None)

    first, second, third = asyncio.run(scenario())
    assert first == second == third
    assert len(calls) == 1


# Many years, each prepared in full: in `make test-ci` (what CI runs).
@pytest.mark.ci
@pytest.mark.skipif(memory_mb(os.getpid()) is None, reason="needs /proc (Linux)")
def test_memory_stays_bounded_over_distinct_years(make_engine):
    """Each new year the model prepares costs hundreds of MB that a worker
    keeps; past the recycle mark the worker is replaced, so a sequence of
    distinct years never takes the container past its limit."""
    engine = make_engine()
    years = ["2026", "2027", "2028"]

    def in_year(year: str) -> dict:
        return json.loads(
            json.dumps(household_with(43_000)).replace('"2025"', f'"{year}"')
        )

    async def scenario():
        await engine.calculate(household_with(), None)
        await asyncio.to_thread(engine.worker.prepare, time.monotonic() + 600)
        start = engine.worker.container_memory_mb()
        # Any year's cost takes the worker past this mark (US: hundreds of
        # MB a year; UK: less).
        engine.worker.memory_recycle_mb = start + 1
        engine.worker.memory_limit_mb = start + 2_000
        workers, after = set(), []
        answers = {}
        for year in years:
            answers[year] = await engine.calculate(in_year(year), None)
            workers.add(engine.worker.pid)
            after.append(engine.worker.container_memory_mb())
        engine.answers.clear()
        again = await engine.calculate(in_year(years[0]), None)
        return start, workers, after, answers, again

    start, workers, after, answers, again = asyncio.run(scenario())
    assert len(workers) > 1  # the worker was replaced along the way
    assert all(used < start + 2_000 for used in after)
    assert again == answers[years[0]]  # a fresh worker gives the same answer


def test_each_request_notes_where_its_answer_came_from(
    make_engine, patched_calculation
):
    """The fields of each request's log line: calculated, joined, cached."""
    engine = make_engine()
    release = patched_calculation
    household = household_with(STUCK, earnings=43_000)

    async def request(fields: dict) -> None:
        token = logs.start_request(fields)
        try:
            await engine.calculate(copy.deepcopy(household), None)
        finally:
            logs.end_request(token)

    async def scenario():
        first, second, third = {}, {}, {}
        running = asyncio.create_task(request(first))
        while "answer" not in first:  # until it is running
            await asyncio.sleep(0.01)
        joining = asyncio.create_task(request(second))
        while "answer" not in second:
            await asyncio.sleep(0.01)
        open(release, "w").close()
        await running
        await joining
        await request(third)
        return first, second, third

    first, second, third = asyncio.run(scenario())
    assert first["answer"] == "calculated" and first["policy_path"] == "baseline"
    assert first["axis_points"] == 1 and first["worker_wait_ms"] >= 0
    assert second["answer"] == "joined" and "policy_path" not in second
    assert third["answer"] == "cached" and "policy_path" not in third
