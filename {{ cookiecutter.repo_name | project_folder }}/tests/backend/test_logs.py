"""What production shows: a JSON log line per request, the model version on
every response, and Logfire only when its token is set.

Log lines are read from stdout, where Modal (and `make dev`) see them.
"""

import asyncio
import copy
import importlib
import json
import logging
import socket

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import api.main
import policyengine_backend._model.calculation
from policyengine_backend import _logs as logs
from policyengine_backend._engine.engine import Engine
from policyengine_backend._model.functions import POLICY_PATHS
from policyengine_backend._settings import (
    APP_NAME,
    COUNTRY_PACKAGE,
    MODEL_VERSION,
    PACKAGE_VERSION,
    Settings,
    get_settings,
)
from policyengine_backend.examples import EXAMPLE_HOUSEHOLD, EXAMPLE_POLICY
from tests.backend.conftest import calculate

PERSON = next(iter(EXAMPLE_HOUSEHOLD["people"]))


def household_earning(amount: float) -> dict:
    """The example household with its own earnings: a request no other test
    sends, so its answer is not in the cache yet."""
    household = copy.deepcopy(EXAMPLE_HOUSEHOLD)
    household["people"][PERSON]["employment_income"] = {"2025": amount}
    return household


def json_lines(text: str) -> list[dict]:
    """Every stdout line parsed; fails on a line that is not JSON."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def access_lines(text: str) -> list[dict]:
    return [
        line
        for line in json_lines(text)
        if line["logger"] == "policyengine_backend.access"
    ]


@pytest.fixture
def stdout(capsys):
    """Read what was logged to stdout since the last read, as JSON lines."""
    capsys.readouterr()
    return lambda: capsys.readouterr().out


def test_model_version_is_the_package_version():
    assert MODEL_VERSION == f"{COUNTRY_PACKAGE}/{PACKAGE_VERSION}"


def test_a_fresh_calculation_then_the_cached_answer(client, stdout):
    household = household_earning(31_337)

    fresh = client.post("/calculate", json={"household": household})
    cached = client.post("/calculate", json={"household": household})

    assert fresh.status_code == cached.status_code == 200
    assert fresh.content == cached.content
    first, second = access_lines(stdout())
    for line in first, second:
        assert line["level"] == "INFO"
        assert line["method"] == "POST" and line["path"] == "/calculate"
        assert line["status"] == 200
        assert line["duration_ms"] > 0
        assert line["axis_points"] == 1
        assert line["model"] == MODEL_VERSION
        assert "error" not in line
    assert first["answer"] == "calculated"
    assert first["policy_path"] == "baseline"
    assert first["worker_wait_ms"] >= 0
    assert 0 < first["calculation_ms"] <= first["duration_ms"]
    assert second["answer"] == "cached"
    # A cached answer never reached the worker.
    for field in ("policy_path", "worker_wait_ms", "calculation_ms"):
        assert field not in second


def test_the_policy_path_comes_from_the_worker(client, engine, stdout):
    household = household_earning(31_338)
    household["axes"] = [
        [{"name": "employment_income", "count": 3, "min": 0, "max": 1, "period": 2025}]
    ]

    response = client.post(
        "/calculate", json={"household": household, "policy": EXAMPLE_POLICY}
    )

    assert response.status_code == 200, response.text
    (line,) = access_lines(stdout())
    # How this process's copy of the systems says the policy's system is
    # made; the worker is a fork, so it made it the same way.
    expected = POLICY_PATHS[engine.systems.path_for(EXAMPLE_POLICY)]
    assert expected != "baseline"
    assert line["policy_path"] == expected
    assert line["axis_points"] == 3


def test_a_bad_request_logs_its_reason_but_not_the_body(client, stdout):
    household = household_earning(98_765.25)
    household["people"][PERSON]["not_a_variable"] = {"2025": 1}

    response = client.post("/calculate", json={"household": household})

    assert response.status_code == 400
    text = stdout()
    (line,) = access_lines(text)
    assert line["level"] == "WARNING"
    assert line["status"] == 400
    assert line["error"] == response.json()["message"]
    assert "unknown variable" in line["error"]
    assert line["model"] == MODEL_VERSION
    assert "98765" not in text  # the household's values are never logged


def test_a_body_over_the_limit_is_logged_and_answered_with_the_version(client, stdout):
    too_big = b"x" * (get_settings().max_body_bytes + 1)

    response = client.post(
        "/calculate", content=too_big, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 413
    assert response.headers["PolicyEngine-Model"] == MODEL_VERSION
    (line,) = access_lines(stdout())
    assert line["status"] == 413 and "MAX_BODY_BYTES" in line["error"]


def test_an_unhandled_error_is_a_500_with_its_traceback_in_the_log(
    engine, monkeypatch, stdout
):
    async def broken(name, body, limit=None):
        raise RuntimeError("a bug")

    # /calculate is a worker function: every route reaches the engine by `call`.
    monkeypatch.setattr(engine, "call", broken)
    # No lifespan (no `with`): the session's engine keeps running.
    client = TestClient(api.main.app, raise_server_exceptions=False)

    response = client.post("/calculate", json={"household": EXAMPLE_HOUSEHOLD})

    assert response.status_code == 500
    assert "a bug" not in response.text  # the client gets no internals
    assert response.headers["PolicyEngine-Model"] == MODEL_VERSION
    lines = json_lines(stdout())
    (line,) = [
        line for line in lines if line["logger"] == "policyengine_backend.access"
    ]
    assert line["level"] == "ERROR" and line["status"] == 500
    assert "RuntimeError" in line["error"]
    (trace,) = [line for line in lines if "exception" in line]
    assert (
        trace["logger"] == "policyengine_backend._web.responses"
        and trace["level"] == "ERROR"
    )
    assert "RuntimeError: a bug" in trace["exception"]


def test_every_response_names_the_model(client):
    answers = [
        client.get("/health"),
        client.post("/calculate", json={"household": EXAMPLE_HOUSEHOLD}),
        client.post("/calculate", json={}),
        client.get("/no-such-page"),
    ]

    assert [answer.status_code for answer in answers] == [200, 200, 422, 404]
    for answer in answers:
        assert answer.headers["PolicyEngine-Model"] == MODEL_VERSION


def test_a_browser_frontend_may_read_the_model_header(client):
    response = client.get("/health", headers={"Origin": "http://localhost:3000"})

    exposed = response.headers["Access-Control-Expose-Headers"]
    assert "policyengine-model" in exposed.lower()


def test_logs_from_the_worker_process_reach_stdout(engine, monkeypatch, capfd):
    """The worker is a fork: its records go to the same stdout, as JSON."""
    # Wrapped inside the registered /calculate function, which the worker
    # looks up by name (a module attribute patched here would not be it).
    real = policyengine_backend._model.calculation.fill_household

    def fill_household(simulation, household):
        logging.getLogger("policyengine_backend._model.calculation").warning(
            "hello from the worker"
        )
        return real(simulation, household)

    monkeypatch.setattr(
        policyengine_backend._model.calculation, "fill_household", fill_household
    )
    worker_engine = Engine(Settings())
    worker_engine._systems = engine.systems
    worker_engine._ready.set()
    try:
        answer = asyncio.run(calculate(worker_engine, household_earning(31_339)))
    finally:
        worker_engine.shut_down()

    assert json.loads(answer)["status"] == "ok"
    lines = json_lines(capfd.readouterr().out)
    (line,) = [line for line in lines if line["message"] == "hello from the worker"]
    assert line["process"] == "calculation"
    assert line["level"] == "WARNING"


def test_warming_up_says_when_the_model_is_ready(engine, stdout):
    fresh = Engine(Settings())

    fresh.warm_up()

    messages = [line["message"] for line in json_lines(stdout())]
    assert any(m.startswith(f"ready: {MODEL_VERSION} loaded") for m in messages)


def test_log_level_is_a_setting(monkeypatch, stdout):
    monkeypatch.setenv("LOG_LEVEL", "warning")
    level = Settings().log_level
    root = logging.getLogger()
    before = root.level
    try:
        logs.configure_logging(level)
        logging.getLogger("api.test").info("not shown")
        logging.getLogger("api.test").warning("shown")
    finally:
        logs.configure_logging(logging.getLevelName(before))

    assert level == "WARNING"
    assert [line["message"] for line in json_lines(stdout())] == ["shown"]
    # Configured once: calling it again adds no second handler.
    handlers = [h for h in root.handlers if isinstance(h, logs.StdoutHandler)]
    assert len(handlers) == 1


def test_an_unknown_log_level_names_the_variable(monkeypatch):
    monkeypatch.setenv("LOG_LEVEL", "chatty")

    with pytest.raises(ValueError, match="log_level"):
        Settings()


# --- Logfire ----------------------------------------------------------------


@pytest.fixture
def connections(monkeypatch):
    """Every network connection attempted during the test (none are made)."""
    attempts = []

    def refuse(sock, address):
        attempts.append(address)
        raise OSError("no network in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


def test_without_a_token_logfire_is_not_set_up(client, monkeypatch, connections):
    monkeypatch.delenv("LOGFIRE_TOKEN", raising=False)
    app = FastAPI()

    assert logs.configure_logfire(app, service_name=APP_NAME, model=MODEL_VERSION) is (
        False
    )
    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
    response = client.post("/calculate", json={"household": household_earning(1)})
    assert response.status_code == 200
    assert connections == []


@pytest.fixture
def traced(monkeypatch):
    """A fresh copy of the app, set up for Logfire with a (fake) token.

    Spans are kept in memory and nothing is sent (send_to_logfire=False).
    Afterwards the module is reloaded again, so later tests get an app
    that is not traced.
    """
    logfire = pytest.importorskip("logfire")
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
        InMemorySpanExporter,
    )

    monkeypatch.delenv("LOGFIRE_TOKEN", raising=False)
    module = importlib.reload(api.main)  # a new app that has not served yet
    exporter = InMemorySpanExporter()
    with monkeypatch.context() as env:
        env.setenv("LOGFIRE_TOKEN", "fake-token-for-tests")
        env.setenv("MODAL_ENVIRONMENT", "testing")
        assert logs.configure_logfire(
            module.app,
            service_name=APP_NAME,
            model=MODEL_VERSION,
            send_to_logfire=False,
            additional_span_processors=[SimpleSpanProcessor(exporter)],
        )
    yield module.app, exporter
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logfire.LogfireLoggingHandler):
            root.removeHandler(handler)
    importlib.reload(api.main)


def test_with_a_token_requests_and_engine_stages_are_traced(traced, connections):
    app, exporter = traced
    household = household_earning(54_321.5)
    # As in production, the worker is forked after Logfire is set up.
    app.state.engine.worker.stop()

    response = TestClient(app).post("/calculate", json={"household": household})

    assert response.status_code == 200, response.text
    spans = {span.name: span for span in exporter.get_finished_spans()}
    request = spans["POST /calculate"]
    stages = [
        "check request",
        "answer cache lookup",
        "wait for the worker",
        "calculation",
        "build simulation",
        "calculate values",
    ]
    for stage in stages:
        assert spans[stage].context.trace_id == request.context.trace_id, stage
        assert request.start_time <= spans[stage].start_time, stage
        assert spans[stage].end_time <= request.end_time, stage
    # Timed in the worker process, recorded under the calculation's span.
    for stage in ("build simulation", "calculate values"):
        assert spans[stage].parent.span_id == spans["calculation"].context.span_id
        assert spans[stage].attributes["policy_path"] == "baseline"
    assert spans["answer cache lookup"].attributes["answer"] == "calculated"
    # The request's log-line fields are on its span too.
    assert request.attributes["answer"] == "calculated"
    assert request.attributes["model"] == MODEL_VERSION
    resource = request.resource.attributes
    assert resource["service.name"] == APP_NAME
    assert resource["deployment.environment.name"] == "testing"
    assert resource["policyengine.model"] == MODEL_VERSION
    # Never the household: no attribute of any span holds its values.
    recorded = json.dumps(
        [dict(span.attributes) for span in exporter.get_finished_spans()],
        default=str,
    )
    assert "54321" not in recorded
    assert connections == []
