"""README, "Add your own endpoint", followed as written: its route module
is served next to the others and answers what policyengine's own
Simulation does; its include line is the real one, plus the new router."""

import ast
import importlib.util
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from policyengine_backend import create_app
from policyengine_backend._settings import COUNTRY
from policyengine_backend.examples import EXAMPLE_HOUSEHOLD, EXAMPLE_POLICY

ROOT = Path(__file__).resolve().parents[2]
SECTION = (ROOT / "README.md").read_text().split("## Add your own endpoint")[1]
SECTION = SECTION.split("\n## ")[0]
ROUTE_MODULE, INCLUDE = re.findall(r"```python\n(.*?)```", SECTION, re.S)


@pytest.fixture(scope="module")
def net_income(tmp_path_factory):
    """The README's route module, imported as a module of its own."""
    path = tmp_path_factory.mktemp("routes") / "net_income.py"
    path.write_text(ROUTE_MODULE)
    spec = importlib.util.spec_from_file_location("net_income_from_readme", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def test_the_include_line_is_the_real_one_plus_the_new_router():
    real = (ROOT / "api" / "routes" / "__init__.py").read_text()
    shown = ast.parse(INCLUDE)
    (imported,) = [node for node in shown.body if isinstance(node, ast.ImportFrom)]
    assert {alias.name for alias in imported.names} == {"earnings_chart", "net_income"}
    (routers,) = [node for node in shown.body if isinstance(node, ast.AnnAssign)]
    assert ast.unparse(routers.value) == "[earnings_chart.router, net_income.router]"
    # The real file, with the same two lines before the new router.
    assert "from api.routes import earnings_chart\n" in real
    assert "ROUTERS: list[APIRouter] = [earnings_chart.router]\n" in real
