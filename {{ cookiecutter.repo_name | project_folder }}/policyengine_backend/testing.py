"""Fixtures and helpers for this project's tests: a pytest plugin.

``tests/conftest.py`` loads it (``pytest_plugins``), so every test file can
ask for its fixtures. The country model is loaded once per test process.

- ``client``: the app (``api.main.app``), answering in this process;
  ``served``: the same app served for real by uvicorn, its base URL.
- ``reference``: the yardstick. It runs policyengine's own ``Simulation``
  directly, with none of this backend's code, so answers are checked
  against policyengine itself rather than against numbers pasted into a
  test. ``assert_same_values`` compares them.
- ``finished``: a job's final answer, polled as a frontend would.

Tests check answers, not deadlines or memory budgets: this process also
holds the reference simulations, and a loaded machine is slow. So requests
get the longest limit the backend allows (140 s) and no memory limit, unless
a test sets its own. The settings are read when the app is first made,
after this module sets them.
"""

import copy
import importlib
import json
import os
import socket
import time

import pytest

from policyengine_backend._settings import MAX_CALCULATION_TIMEOUT_SECONDS

os.environ.setdefault(
    "CALCULATION_TIMEOUT_SECONDS", str(MAX_CALCULATION_TIMEOUT_SECONDS)
)
os.environ.setdefault("MEMORY_LIMIT_MB", "1000000")
os.environ.setdefault("MEMORY_RECYCLE_MB", "1000000")


@pytest.fixture(scope="session")
def engine():
    """The process's engine, warm."""
    from policyengine_backend._web.app import get_engine

    engine = get_engine()
    engine.warm_up()
    return engine


@pytest.fixture(scope="session")
def client(engine):
    """A test client of ``api.main.app``, started (and stopped) once."""
    from fastapi.testclient import TestClient

    from api.main import app

    with TestClient(app) as client:
        yield client


def free_port() -> int:
    """A loopback port that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def served(client):
    """The base URL of this session's app, served for real by uvicorn on the
    test client's event loop (no lifespan: the client owns startup and
    shutdown)."""
    import uvicorn

    from api.main import app

    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    running = client.portal.start_task_soon(server.serve)
    while not server.started:  # waits for the socket, asserts nothing
        if running.done():
            running.result()  # raises what stopped it
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    running.result()


@pytest.fixture(scope="session")
def country_package():
    from policyengine_backend._settings import COUNTRY

    return importlib.import_module(f"policyengine_{COUNTRY}")


@pytest.fixture(scope="session")
def reference(country_package):
    """Compute every null of a household with policyengine alone.

    Answers are kept for the session: a reform's system takes policyengine
    half a minute to build, and several tests check the same request.
    """
    from policyengine_core.reforms import Reform

    from policyengine_backend._model.household import requested_values
    from policyengine_backend._settings import COUNTRY

    computed: dict[str, dict] = {}

    def compute(household: dict, policy: dict | None = None) -> dict:
        key = json.dumps([household, policy])
        if key not in computed:
            computed[key] = calculate(household, policy)
        return copy.deepcopy(computed[key])

    def calculate(household: dict, policy: dict | None) -> dict:
        reform = Reform.from_dict(policy, country_id=COUNTRY) if policy else None
        simulation = country_package.Simulation(situation=household, reform=reform)
        answers = copy.deepcopy(household)
        for group, member, variable, period in requested_values(household):
            values = simulation.calculate(variable, period)
            if hasattr(values, "decode_to_str"):
                values = values.decode_to_str()
            if household.get("axes"):
                position = list(household[group]).index(member)
                column = values.reshape(-1, len(household[group]))[:, position]
                answer = column.tolist()
            else:
                index = simulation.get_population(group).get_index(member)
                answer = values[index].item()
            answers[group][member][variable][period] = answer
        return answers

    return compute


def finished(client, job_id: str) -> dict:
    """A job's final body. Polls as a frontend would; the bound only stops
    a job that never ends from hanging the suite."""
    for _ in range(36_000):
        response = client.get(f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        if response.json()["status"] != "pending":
            return response.json()
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still pending")


def assert_same_values(actual, expected, path="result"):
    """Same structure and text; numbers equal to float32 precision."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), path
        for key in expected:
            assert_same_values(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same_values(a, e, f"{path}[{i}]")
    elif isinstance(expected, float) and not isinstance(expected, bool):
        assert actual == pytest.approx(expected, rel=1e-6, abs=1e-3), path
    else:
        assert actual == expected, path
