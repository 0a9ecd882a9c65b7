"""The engine's guarantees around the worker: a request is checked before
it waits, a slow one is stopped at its deadline while the worker carries
on, a greedy one is stopped at the memory limit, identical requests share
one calculation, and a calculation nobody waits for any more is stopped.

Slow and greedy calculations are made so on purpose (they never finish, or
never stop allocating), and moments are agreed through files, so no test
depends on how fast the machine is.
"""

import asyncio
import copy
import json

import pytest

from policyengine_backend import _logs as logs
from policyengine_backend._errors import CalculationTimeout, Problem
from policyengine_backend._settings import MAX_CALCULATION_TIMEOUT_SECONDS, Settings
from policyengine_backend.testing import assert_same_values
from tests.backend.conftest import Moments, calculate, gone, household_with

STUCK = "stuck-until-released"  # a person whose calculation waits for the test
GREEDY = "greedy-forever"  # ... or allocates memory until stopped


@pytest.fixture
def moments(tmp_path, patch_calculate) -> Moments:
    """Calculations of a household with a STUCK or GREEDY person misbehave."""
    moments = Moments(tmp_path)

    def misbehaving(real):
        def calculate(request, simulations):
            if STUCK in request.household.people:
                moments.start()
            if GREEDY in request.household.people:
                chunks = []
                while True:
                    chunks.append(b"\x01" * (20 * 1024 * 1024))
            return real(request, simulations)

        return calculate

    patch_calculate(misbehaving)
    return moments


def test_a_request_past_its_deadline_answers_504_and_the_worker_carries_on(
    make_engine, moments, reference
):
    engine = make_engine(calculation_timeout_seconds=MAX_CALCULATION_TIMEOUT_SECONDS)

    async def scenario():
        await calculate(engine, household_with())  # a worker is running
        worker = engine.worker.pid
        stuck = asyncio.create_task(calculate(engine, household_with(STUCK)))
        job = await moments.started_pid()
        # Its deadline passes now (a stuck calculation passes any deadline).
        engine.answers._in_flight[next(iter(engine.answers._in_flight))].deadline.at = 0
        with pytest.raises(CalculationTimeout) as timeout:
            await stuck
        household = household_with(earnings=41_000)
        answer = await calculate(engine, household)
        return worker, job, timeout.value, household, answer

    worker, job, timeout, household, answer = asyncio.run(scenario())
    # The stuck job's process was ended, not left running behind the 504;
    # the worker, with what it had prepared, answered the next request.
    assert gone(job)
    assert engine.worker.pid == worker
    assert "CALCULATION_TIMEOUT_SECONDS" in str(timeout)
    assert "axis" not in str(timeout)  # this request has no axes
    assert_same_values(json.loads(answer)["result"], reference(household))


def test_limits_are_checked_before_waiting_for_the_worker(make_engine, moments):
    engine = make_engine(max_people=3)

    async def scenario():
        busy = asyncio.create_task(calculate(engine, household_with(STUCK)))
        await moments.started_pid()
        crowd = household_with()
        for i in range(3):
            crowd["people"][f"extra_{i}"] = {}
        with pytest.raises(Problem) as refused:
            await calculate(engine, crowd)
        still_running = not busy.done()
        moments.let_go()
        await busy
        return refused.value, still_running

    refused, still_running = asyncio.run(scenario())
    assert refused.status == 422 and "MAX_PEOPLE" in str(refused)
    assert refused.errors[0]["loc"] == ["household", "people"]
    assert still_running


def test_a_request_over_the_memory_limit_answers_422_at_its_household(
    make_engine, moments
):
    engine = make_engine()
    if engine.memory is None:
        pytest.skip("memory cannot be read here")

    async def scenario():
        await calculate(engine, household_with())
        limit = await asyncio.to_thread(engine.worker.memory_mb) + 300
        engine.worker.settings = Settings(memory_limit_mb=int(limit))
        with pytest.raises(Problem) as refused:
            await calculate(engine, household_with(GREEDY))
        return refused.value, await calculate(engine, household_with(earnings=42_000))

    refused, answer = asyncio.run(scenario())
    assert refused.status == 422 and "MEMORY_LIMIT_MB" in str(refused)
    assert refused.errors[0]["loc"] == ["household"]
    assert b'"status":"ok"' in answer


def test_identical_requests_share_one_calculation(make_engine, moments):
    engine = make_engine()
    calls = []
    real_run = engine.worker.run

    def counting_run(job, *args, **kwargs):
        calls.append(job)
        return real_run(job, *args, **kwargs)

    engine.worker.run = counting_run
    household = household_with(STUCK)

    async def scenario():
        first = asyncio.create_task(calculate(engine, household))
        second = asyncio.create_task(calculate(engine, copy.deepcopy(household)))
        await moments.started_pid()
        moments.let_go()
        return await first, await second, await calculate(engine, household)

    first, second, third = asyncio.run(scenario())
    assert first == second == third
    assert len(calls) == 1


def test_a_calculation_nobody_waits_for_is_stopped(make_engine, moments):
    """A request cancelled (its client left) stops its calculation, unless
    another request waits for the same one."""
    engine = make_engine()
    household = household_with(STUCK, earnings=44_000)

    async def scenario():
        first = asyncio.create_task(calculate(engine, household))
        second = asyncio.create_task(calculate(engine, copy.deepcopy(household)))
        job = await moments.started_pid()
        first.cancel()  # one of the two leaves: the calculation goes on
        await asyncio.sleep(0)
        alive_with_one_waiting = not gone(job)
        second.cancel()  # the other leaves too: it is stopped
        await asyncio.gather(first, second, return_exceptions=True)
        while not gone(job):
            await asyncio.sleep(0.01)
        # The worker takes the next request.
        return alive_with_one_waiting, await calculate(
            engine, household_with(earnings=45_000)
        )

    alive_with_one_waiting, answer = asyncio.run(scenario())
    assert alive_with_one_waiting
    assert b'"status":"ok"' in answer


def test_one_engine_serves_one_event_loop_after_another(make_engine, moments):
    """Each TestClient, or a server restarted in a thread, brings its own
    event loop: a request that waits for the worker is answered in each."""
    engine = make_engine()

    async def one_waits_behind_another(earnings: int) -> list[bytes]:
        moments.started.unlink(missing_ok=True)
        moments.release.unlink(missing_ok=True)
        first = asyncio.create_task(
            calculate(engine, household_with(STUCK, earnings=earnings))
        )
        await moments.started_pid()
        second = asyncio.create_task(
            calculate(engine, household_with(earnings=earnings + 1))
        )
        # The second waits in the queue behind the first (or has failed).
        while not second.done() and not engine.scheduler._queue._waiters:
            await asyncio.sleep(0.01)
        moments.let_go()
        return list(await asyncio.gather(first, second, return_exceptions=True))

    answers = asyncio.run(one_waits_behind_another(46_000))
    answers += asyncio.run(one_waits_behind_another(47_000))
    assert all(
        isinstance(answer, bytes) and b'"status":"ok"' in answer for answer in answers
    ), answers


# Many years, each prepared in full: in `make test-ci` (what CI runs).
@pytest.mark.ci
def test_memory_stays_bounded_over_distinct_years(make_engine):
    """Each new year the model prepares costs hundreds of MB that the worker
    keeps; past the recycle mark the worker is replaced, so a sequence of
    distinct years never takes the container past its limit."""
    engine = make_engine()
    if engine.memory is None:
        pytest.skip("memory cannot be read here")
    years = ["2026", "2027", "2028"]

    def in_year(year: str) -> dict:
        return json.loads(
            json.dumps(household_with(43_000)).replace('"2025"', f'"{year}"')
        )

    async def scenario():
        await calculate(engine, household_with())
        start = await asyncio.to_thread(engine.worker.memory_mb)
        # Any year's cost takes the worker past this mark (US: hundreds of
        # MB a year; UK: less).
        engine.worker.settings = Settings(
            memory_recycle_mb=int(start) + 1, memory_limit_mb=int(start) + 2_000
        )
        workers, after = set(), []
        answers = {}
        for year in years:
            answers[year] = await calculate(engine, in_year(year))
            workers.add(engine.worker.pid)
            after.append(await asyncio.to_thread(engine.worker.memory_mb))
        engine.answers.cache.clear()
        again = await calculate(engine, in_year(years[0]))
        return start, workers, after, answers, again

    start, workers, after, answers, again = asyncio.run(scenario())
    assert len(workers) > 1  # the worker was replaced along the way
    assert all(used < start + 2_000 for used in after)
    assert again == answers[years[0]]  # a fresh worker gives the same answer


def test_each_request_notes_where_its_answer_came_from(make_engine, moments):
    """The fields of each request's log line: calculated, joined, cached."""
    engine = make_engine()
    household = household_with(STUCK, earnings=43_000)

    async def request(fields: dict) -> None:
        tokens = logs.start_request(fields, "POST /calculate")
        try:
            await calculate(engine, copy.deepcopy(household))
        finally:
            logs.end_request(tokens)

    async def scenario():
        first, second, third = {}, {}, {}
        running = asyncio.create_task(request(first))
        await moments.started_pid()
        joining = asyncio.create_task(request(second))
        while "answer" not in second:
            await asyncio.sleep(0.01)
        moments.let_go()
        await running
        await joining
        await request(third)
        return first, second, third

    first, second, third = asyncio.run(scenario())
    assert first["answer"] == "calculated" and first["policy_path"] == "baseline"
    assert first["axis_points"] == 1 and first["worker_wait_ms"] >= 0
    assert second["answer"] == "joined" and "policy_path" not in second
    assert third["answer"] == "cached" and "policy_path" not in third
