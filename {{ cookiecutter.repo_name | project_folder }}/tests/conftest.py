"""Shared fixtures. The country model is loaded once per test session.

``reference`` is the yardstick: it runs policyengine's own ``Simulation``
directly, with none of this backend's code, so the API is checked against
policyengine itself rather than against numbers pasted into a test.
"""

import copy
import importlib
import json
import os
import socket
import time

import pytest
import uvicorn
from fastapi.testclient import TestClient

from policyengine_backend._engine.engine import Engine, get_engine
from policyengine_backend._model.household import requested_values
from policyengine_backend._settings import (
    COUNTRY,
    MAX_CALCULATION_TIMEOUT_SECONDS,
    Settings,
)

# The suite checks answers, not deadlines or memory budgets: this process
# also holds the reference simulations, and a loaded machine is slow. So
# requests get the longest limit the backend allows (140 s; the slowest
# request here, a full policy build, takes a fraction of it) and no memory
# limit. The limits have tests of their own, with small values
# (tests/test_worker.py, tests/test_faults.py).
# Settings are read when api.main is first imported, after this.
os.environ.setdefault(
    "CALCULATION_TIMEOUT_SECONDS", str(MAX_CALCULATION_TIMEOUT_SECONDS)
)
os.environ.setdefault("MEMORY_LIMIT_MB", "1000000")
os.environ.setdefault("MEMORY_RECYCLE_MB", "1000000")


@pytest.fixture(scope="session")
def engine():
    engine = get_engine()
    engine.warm_up()
    return engine


@pytest.fixture(scope="session")
def client(engine):
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
def modal_app():
    """modal_app.py, imported as `modal deploy` imports it. Deprecated Modal
    APIs are errors here, so they are replaced before Modal removes them."""
    import sys
    import warnings

    import modal

    with warnings.catch_warnings():
        warnings.simplefilter("error", modal.exception.DeprecationError)
        sys.modules.pop("modal_app", None)
        return importlib.import_module("modal_app")


@pytest.fixture
def web_function_app(modal_app, engine):
    """The app as Modal's web function serves it (``fastapi_app``).

    It is this process's one app, and the web function gives it Modal's
    jobs: the local ones are put back afterwards for the other tests.
    """
    from api.main import app

    local_jobs = app.state.jobs
    yield modal_app.fastapi_app.local()
    app.state.jobs = local_jobs


@pytest.fixture(scope="session")
def country_package():
    return importlib.import_module(f"policyengine_{COUNTRY}")


@pytest.fixture(scope="session")
def reference_system(country_package):
    """Current law as policyengine's own Simulation builds it."""
    from policyengine_backend.examples import EXAMPLE_HOUSEHOLD

    return country_package.Simulation(situation=EXAMPLE_HOUSEHOLD).tax_benefit_system


@pytest.fixture(scope="session")
def reference(country_package):
    """Compute every null of a household with policyengine alone.

    Answers are kept for the session: a reform's system takes policyengine
    half a minute to build, and several tests check the same request.
    """
    from policyengine_core.reforms import Reform

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


@pytest.fixture
def make_engine(engine):
    """An Engine with its own settings, sharing the session's warm model.

    Its worker is forked from this process when it first calculates, so it
    runs whatever the test has patched by then.
    """
    made = []

    def make(**settings) -> Engine:
        new = Engine(Settings(**settings))
        new._systems = engine.systems
        new._ready.set()
        made.append(new)
        return new

    yield make
    for new in made:
        new.close()


@pytest.fixture
def patch_calculate(monkeypatch):
    """Replace what /calculate runs in the worker (its registered worker
    function) with ``wrap(real)``, for this test only. The registry changes,
    so the next calculation runs in a worker forked after the change."""
    import dataclasses

    from policyengine_backend._model.functions import WORKER_FUNCTIONS

    def patch(wrap) -> None:
        real = WORKER_FUNCTIONS["calculate"]
        patched = dataclasses.replace(real, function=wrap(real.function))
        monkeypatch.setitem(WORKER_FUNCTIONS, "calculate", patched)

    return patch


def household_with(person: str | None = None, earnings: int = 40_000) -> dict:
    """The example household at other earnings, and with one more person
    (whom a test's patched calculation may know) if ``person`` is given."""
    from policyengine_backend.examples import EXAMPLE_HOUSEHOLD

    household = copy.deepcopy(EXAMPLE_HOUSEHOLD)
    first = next(iter(household["people"].values()))
    first["employment_income"] = {"2025": earnings}
    if person:
        household["people"][person] = {"age": {"2025": 30}}
    return household


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
