"""Concurrent mixed load on a real local server: right answers, live health.

One uvicorn server on a free loopback port receives LOAD_REQUESTS (10 in
`make test`, 50 in `make test-ci`, what CI runs) requests at once: plain households, two different policies and sweeps.
Each answer must equal the one the same request gets alone, which also
shows that requests do not leak into one another, and /health must keep
answering while the calculations run: no /health answer may wait for a
whole calculation. That is checked by the order in which answers arrive,
not by a clock, so a slow or busy machine cannot fail it (a calculation
then takes longer, and so does the wait it would take to sit behind one).
"""

import asyncio
import copy
import os
import threading
import time

import httpx
import pytest
import uvicorn

from policyengine_backend.examples import EXAMPLE_HOUSEHOLD, EXAMPLE_POLICY
from policyengine_backend.testing import free_port

REQUESTS = int(os.environ.get("LOAD_REQUESTS", "10"))
PARAMETER, PERIODS = next(iter(EXAMPLE_POLICY.items()))
PERIOD, VALUE = next(iter(PERIODS.items()))
OTHER_POLICY = {PARAMETER: {PERIOD: VALUE * 1.5}}


def request_body(i: int) -> dict:
    household = copy.deepcopy(EXAMPLE_HOUSEHOLD)
    person = next(iter(household["people"].values()))
    person["employment_income"] = {"2025": 20_000 + 1_000 * (i % 10)}
    kind = i % 5
    if kind == 3:
        household["axes"] = [
            [
                {
                    "name": "employment_income",
                    "count": 20,
                    "min": 0,
                    "max": 100_000,
                    "period": "2025",
                }
            ]
        ]
    policy = {1: EXAMPLE_POLICY, 2: OTHER_POLICY}.get(kind)
    return {"household": household, "policy": policy}


@pytest.fixture(scope="module")
def server(engine):
    from api.main import app

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "the server stopped before it started"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_concurrent_mixed_requests(server, engine):
    bodies = [request_body(i) for i in range(REQUESTS)]
    # No client timeouts: on a busy machine requests are slow, not wrong.
    with httpx.Client(base_url=server, timeout=None) as client:
        # What each distinct request gets when it is alone.
        expected = {}
        for body in bodies:
            key = repr(body)
            if key not in expected:
                expected[key] = client.post("/calculate", json=body).json()
    engine.answers.cache.clear()

    async def load() -> tuple[list, list]:
        # One client thread (an event loop), so the load generator does not
        # compete with the server for the GIL more than real clients would.
        async with httpx.AsyncClient(base_url=server, timeout=None) as client:
            done = asyncio.Event()
            # Distinct requests answered so far, in order of arrival.
            answered: list[str] = []
            # Per /health call: which of those had been answered when it was
            # sent and when it came back, its latency and status.
            health = []

            async def calculate(body):
                response = await client.post("/calculate", json=body)
                if repr(body) not in answered:
                    answered.append(repr(body))
                return response

            async def watch_health():
                while not done.is_set():
                    sent, start = len(answered), time.monotonic()
                    status = (await client.get("/health")).status_code
                    health.append(
                        (sent, len(answered), time.monotonic() - start, status)
                    )
                    await asyncio.sleep(0.1)

            watcher = asyncio.create_task(watch_health())
            responses = await asyncio.gather(*(calculate(body) for body in bodies))
            done.set()
            await watcher
            return responses, health

    responses, health = asyncio.run(load())

    # On a busy machine the last in the queue may pass its deadline: a 504
    # is then the right answer (never a wrong value, nor any other error).
    statuses = [r.status_code for r in responses]
    assert 200 in statuses and set(statuses) <= {200, 504}, statuses
    for body, response in zip(bodies, responses, strict=True):
        if response.status_code == 200:
            assert response.json() == expected[repr(body)]
        else:
            assert "CALCULATION_TIMEOUT_SECONDS" in response.json()["message"]
    assert all(status == 200 for *_, status in health)
    distinct = len(expected)
    during_load = [(sent, back) for sent, back, *_ in health if sent < distinct]
    # Not vacuous: /health was asked several times while work was queued.
    assert len(during_load) >= 3, health
    # A /health call queued behind the calculations would come back only
    # after the one running when it was sent and at least the next had been
    # answered: at most one may be answered while it waits.
    assert all(back - sent <= 1 for sent, back in during_load), health
    slowest = max(latency for *_, latency, _ in health)
    print(
        f"\n{REQUESTS} requests ({distinct} distinct); /health asked "
        f"{len(health)} times, slowest {slowest:.3f} s"
    )
