"""docs/extending.md as written: its example endpoint is exact, and its
errors land at the fields that caused them, as a request and as a job.
Also what the page promises of every worker endpoint: unknown fields are
refused, a Simulation built in a route is refused, and a blocked event loop
is reported with the route that held it."""

import logging
import re
import time
from pathlib import Path

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from policyengine_backend import create_app
from policyengine_backend._settings import COUNTRY
from policyengine_backend.examples import EXAMPLE_HOUSEHOLD, EXAMPLE_POLICY
from policyengine_backend.testing import finished
from tests.backend.conftest import module_from

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "extending.md").read_text()
(EXAMPLE,) = re.findall(r"```python\n(.*?)```", PAGE, re.S)


@pytest.fixture(scope="module")
def served(client, tmp_path_factory):
    """The page's module, served next to the backend's own endpoints."""
    module = module_from(
        EXAMPLE, tmp_path_factory.mktemp("routes"), "program_totals_from_docs"
    )
    app = create_app(title="t", description="d", routers=[module.router])
    with TestClient(app) as served:
        yield served


VARIABLES = ["household_net_income", "employment_income"]


@pytest.mark.parametrize("policy", [None, EXAMPLE_POLICY])
def test_the_example_is_exact(served, country_package, policy):
    from policyengine_core.reforms import Reform

    body = {"household": EXAMPLE_HOUSEHOLD, "variables": VARIABLES, "year": 2025}
    response = served.post("/program-totals", json={**body, "policy": policy})

    assert response.status_code == 200, response.text
    reform = Reform.from_dict(policy, country_id=COUNTRY) if policy else None
    simulation = country_package.Simulation(situation=EXAMPLE_HOUSEHOLD, reform=reform)
    expected = {v: float(simulation.calculate(v, 2025).sum()) for v in VARIABLES}
    assert response.json()["result"] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    ("change", "where", "words"),
    [
        (
            {"variables": ["household_net_income", "snapp"]},
            ["variables", 1],
            "unknown variable 'snapp'",
        ),
        ({"year": 1900}, ["year"], "no parameters for 1900"),
        ({"variables": VARIABLES * 2}, ["variables"], "name each variable once"),
    ],
)
def test_errors_land_at_the_field_that_caused_them(served, change, where, words):
    body = {
        "household": EXAMPLE_HOUSEHOLD,
        "variables": VARIABLES,
        "year": 2025,
        **change,
    }

    response = served.post("/program-totals", json=body)
    job = finished(
        served, served.post("/jobs/program-totals", json=body).json()["job_id"]
    )

    for answer in (response.json(), job):
        assert answer["status"] == "error"
        assert [error["loc"] for error in answer["errors"]] == [where], answer
        assert words in answer["errors"][0]["msg"]
    assert response.status_code == job["status_code"] == 400


def test_an_unknown_field_is_refused_and_the_schema_says_so(served):
    body = {"household": EXAMPLE_HOUSEHOLD, "variables": VARIABLES, "year": 2025}
    response = served.post("/program-totals", json={**body, "yeer": 2026})
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["yeer"]
    schema = served.app.openapi()["components"]["schemas"]["ProgramTotalsRequest"]
    assert schema["additionalProperties"] is False


def test_a_simulation_built_in_a_route_is_refused_where_it_happens(
    client, country_package
):
    router = APIRouter()

    @router.post("/in-the-server")
    def in_the_server() -> float:
        simulation = country_package.Simulation(situation=EXAMPLE_HOUSEHOLD)
        return float(simulation.calculate("household_net_income", 2025).sum())

    with TestClient(create_app("t", "d", [router])) as served:
        response = served.post("/in-the-server")
    assert response.status_code == 500
    message = response.json()["message"]
    assert message.startswith("POST /in-the-server built a policyengine Simulation")
    assert "worker_endpoint" in message
    # Outside requests (here, the tests' own yardstick) it is policyengine's.
    assert country_package.Simulation(situation=EXAMPLE_HOUSEHOLD) is not None


def test_a_blocked_event_loop_is_logged_with_its_route(make_engine, caplog):
    router = APIRouter()

    @router.get("/blocks")
    async def blocks() -> str:
        time.sleep(2)  # noqa: ASYNC251 - the fault under test
        return "done"

    engine = make_engine(loop_stall_warning_seconds=0.2)
    with (
        caplog.at_level(logging.WARNING),
        TestClient(create_app("t", "d", [router], engine=engine)) as served,
    ):
        assert served.get("/blocks").json() == "done"
    held = [r for r in caplog.records if hasattr(r, "loop_held_seconds")]
    assert held and held[0].route == "GET /blocks"
    assert "blocking code in an async def route" in held[0].getMessage()
