"""Concurrent mixed load on a real local server: right answers, live health.

One uvicorn server on a free loopback port receives LOAD_REQUESTS (default
50) requests at once: plain households, two different policies and sweeps.
Each answer must equal the one the same request gets alone, which also
shows that requests do not leak into one another, and /health must keep
answering within a second while the calculations run.
"""

import asyncio
import copy
import os
import socket
import threading
import time

import httpx
import pytest
import uvicorn

from api.examples import EXAMPLE_HOUSEHOLD, EXAMPLE_POLICY

REQUESTS = int(os.environ.get("LOAD_REQUESTS", "50"))
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

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_concurrent_mixed_requests(server, engine):
    bodies = [request_body(i) for i in range(REQUESTS)]
    with httpx.Client(base_url=server, timeout=300) as client:
        # What each distinct request gets when it is alone.
        expected = {}
        for body in bodies:
            key = repr(body)
            if key not in expected:
                expected[key] = client.post("/calculate", json=body).json()
    engine.answers.clear()

    async def load() -> tuple[list, list]:
        # One client thread (an event loop), so the load generator does not
        # compete with the server for the GIL more than real clients would.
        async with httpx.AsyncClient(base_url=server, timeout=300) as client:
            done = asyncio.Event()
            latencies = []

            async def watch_health():
                while not done.is_set():
                    start = time.monotonic()
                    status = (await client.get("/health")).status_code
                    latencies.append((time.monotonic() - start, status))
                    await asyncio.sleep(0.1)

            watcher = asyncio.create_task(watch_health())
            responses = await asyncio.gather(
                *(client.post("/calculate", json=body) for body in bodies)
            )
            done.set()
            await watcher
            return responses, latencies

    responses, health_latencies = asyncio.run(load())

    assert [r.status_code for r in responses] == [200] * REQUESTS
    for body, response in zip(bodies, responses, strict=True):
        assert response.json() == expected[repr(body)]
    assert health_latencies, "health was never checked"
    assert all(status == 200 for _, status in health_latencies)
    slowest = max(latency for latency, _ in health_latencies)
    print(
        f"\n{REQUESTS} requests; /health asked {len(health_latencies)} times, "
        f"slowest {slowest:.3f} s"
    )
    assert slowest < 1.0
