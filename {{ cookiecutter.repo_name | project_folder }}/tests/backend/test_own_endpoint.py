"""README, "Add your own endpoint", followed as written: its route module
is served next to the others and answers what policyengine's own
Simulation does, and its include step applies to api/routes/ as it is now.
The steps are followed in full, `make test` included, by the template's
own suite."""

import ast
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from policyengine_backend import create_app
from policyengine_backend._settings import COUNTRY
from policyengine_backend.examples import EXAMPLE_HOUSEHOLD, EXAMPLE_POLICY
from tests.backend.conftest import module_from
from tests.backend.readme_steps import (
    INCLUDE,
    ROUTE_MODULE,
    with_readme_include,
)

ROOT = Path(__file__).resolve().parents[2]
# api/routes/__init__.py as the template renders it.
RENDERED_ROUTES = """from fastapi import APIRouter

from api.routes import earnings_chart

ROUTERS: list[APIRouter] = [earnings_chart.router]
"""


@pytest.fixture(scope="module")
def net_income(tmp_path_factory):
    """The README's route module, imported as a module of its own."""
    return module_from(
        ROUTE_MODULE, tmp_path_factory.mktemp("routes"), "net_income_from_readme"
    )


def test_the_route_module_is_served_and_exact(client, net_income, country_package):
    from policyengine_core.reforms import Reform

    app = create_app(title="t", description="d", routers=[net_income.router])
    served = TestClient(app)  # no lifespan: the session's client owns start-up
    for policy in (None, EXAMPLE_POLICY):
        body = {"household": EXAMPLE_HOUSEHOLD, "year": 2025}
        response = served.post("/net-income", json={**body, "policy": policy})

        assert response.status_code == 200, response.text
        reform = Reform.from_dict(policy, country_id=COUNTRY) if policy else None
        simulation = country_package.Simulation(
            situation=EXAMPLE_HOUSEHOLD, reform=reform
        )
        expected = simulation.calculate("household_net_income", 2025).tolist()
        assert response.json()["result"] == pytest.approx(expected, rel=1e-6)
    paths = set(app.openapi()["paths"])
    assert {"/net-income", "/jobs/net-income", "/calculate"} <= paths


def test_the_include_lines_are_what_the_step_makes_of_a_fresh_project():
    made = with_readme_include(RENDERED_ROUTES)
    for line in INCLUDE.splitlines():
        assert line in made.splitlines()


def routes_of(text: str) -> tuple[set[str], list[str]]:
    """The modules ``api/routes/__init__.py`` imports, and ROUTERS' items."""
    tree = ast.parse(text)
    (imported,) = [
        n
        for n in tree.body
        if isinstance(n, ast.ImportFrom) and n.module == "api.routes"
    ]
    (routers,) = [n for n in tree.body if isinstance(n, ast.AnnAssign)]
    listed = [ast.unparse(item) for item in routers.value.elts]  # type: ignore[attr-defined]
    return {alias.name for alias in imported.names}, listed


def test_the_include_step_applies_to_the_routes_as_they_are_now():
    now = (ROOT / "api" / "routes" / "__init__.py").read_text()
    after = with_readme_include(now)
    modules_now, routers_now = routes_of(now)
    modules, routers = routes_of(after)
    assert modules == modules_now | {"net_income"}
    assert routers[: len(routers_now)] == routers_now  # whatever was there stays
    assert "net_income.router" in routers
    assert with_readme_include(after) == after  # a second time changes nothing
