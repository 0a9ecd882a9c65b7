"""docs/population.md's own population job, as written: served, run as a
job in chunks, and its answer equal to the same figures computed from
direct Microsimulations of the whole file. Also what ``population_endpoint``
promises: its request is checked at its fields before the job starts, a
result that breaks ``result_model`` is never served, and a wrong
declaration is refused where it is made."""

import re
from pathlib import Path

import numpy as np
import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from microdf import MicroSeries
from pydantic import BaseModel

from policyengine_backend import (
    PopulationRequest,
    create_app,
    population_endpoint,
    unweighted,
)
from policyengine_backend._errors import Bug
from policyengine_backend._population import chunks, datasets, impact, synthetic
from policyengine_backend._population import dataset as ds
from policyengine_backend._population.metrics import Metric
from policyengine_backend._settings import COUNTRY, get_settings
from policyengine_backend.testing import finished
from tests.backend.conftest import module_from

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "population.md").read_text()
(EXAMPLE,) = re.findall(r"```python\n(.*?)```", PAGE, re.S)
# The example's path, the variable it compares, what it groups by, and a
# policy that changes that variable for some households.
PATH, VARIABLE, PLACE, POLICY = {
    "us": (
        "/jobs/snap-changes",
        "snap",
        "state_code_str",
        {
            "gov.usda.snap.income.deductions.earned_income": {
                "2025-01-01.2100-12-31": 0.5
            }
        },
    ),
    "uk": (
        "/jobs/uc-changes",
        "universal_credit",
        "country",
        {
            "gov.dwp.universal_credit.means_test.reduction_rate": {
                "2025-01-01.2100-12-31": 0.4
            }
        },
    ),
}[COUNTRY]
YEAR = 2025


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    """A small synthetic dataset, served as the default, in two chunks."""
    folder = tmp_path_factory.mktemp("own-population")
    path = synthetic.write(folder / datasets.SYNTHETIC_FILE, 150, seed=11)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POPULATION_DATA_DIR", str(folder))
        patch.setenv("POPULATION_DATASET", "synthetic")
        patch.setenv("POPULATION_CHUNKS", "2")
        patch.setenv("POPULATION_PROCESSES", "2")
        get_settings.cache_clear()
        yield path
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def served(client, population, tmp_path_factory):
    """The page's module, served next to the backend's own endpoints."""
    module = module_from(
        EXAMPLE, tmp_path_factory.mktemp("routes"), "own_population_job"
    )
    with TestClient(create_app("t", "d", routers=[module.router])) as served:
        yield served


def direct_shares(path: Path) -> tuple[float, dict[str, float]]:
    """The weighted share of households whose VARIABLE the policy changes,
    overall and by PLACE, from two whole-file Microsimulations and their
    own weighted series."""
    data = ds.load(path)
    before = chunks.direct_simulation(data, None)
    after = chunks.direct_simulation(data, POLICY)
    old = before.calculate(VARIABLE, YEAR, map_to="household")
    new = after.calculate(VARIABLE, YEAR, map_to="household")
    changed = MicroSeries(~np.isclose(old.values, new.values), weights=old.weights)
    places = np.asarray(before.calculate(PLACE, YEAR, decode_enums=True).values)
    by_place = {
        str(place): float(
            MicroSeries(
                changed.values[places == place],
                weights=changed.weights.values[places == place],
            ).mean()
        )
        for place in np.unique(places)
    }
    return float(changed.mean()), by_place


def test_the_example_equals_direct_microsimulations(served, population):
    submitted = served.post(PATH, json={"policy": POLICY, "year": YEAR})
    assert submitted.status_code == 202, submitted.text
    answer = finished(served, submitted.json()["job_id"])

    assert answer["status"] == "ok", answer
    result = answer["result"]
    share, by_place = direct_shares(population)
    assert share > 0  # the policy changes someone's: the comparison means something
    assert result["share_changed"] == pytest.approx(share, rel=1e-6)
    ((field, places),) = [(k, v) for k, v in result.items() if k.startswith("by_")]
    assert places == pytest.approx(by_place, rel=1e-6), field
    # Where the figures came from, as /jobs/impact says it.
    assert result["dataset"]["synthetic"] is True
    assert (result["year"], result["region"]) == (YEAR, None)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"region": "ATLANTIS"}, "region"),
        ({"year": 1990}, "year"),
        ({"yeer": 1}, "yeer"),
    ],
)
def test_a_bad_request_is_refused_at_its_field(served, change, field):
    response = served.post(PATH, json={"policy": POLICY, **change})

    assert response.status_code == 422, response.text
    assert [field] in [error["loc"] for error in response.json()["errors"]]


class Shares(BaseModel):
    share: float


def test_a_result_that_breaks_its_model_is_never_served():
    metric = Metric(
        "shares", lambda s, y: {}, lambda b, r, q: {}, PopulationRequest, Shares
    )

    assert impact.checked(metric, {"share": 0.5}) == {"share": 0.5}
    with pytest.raises(Bug, match=r"result_model at result\['share'\]"):
        impact.checked(metric, {"share": "half"})
    with pytest.raises(Bug, match="JSON object"):
        impact.checked(
            Metric(
                "list", lambda s, y: {}, lambda b, r, q: [], PopulationRequest, list
            ),
            [0.5],
        )


def test_a_wrong_declaration_is_refused_where_it_is_made():
    router = APIRouter()

    class NotAPopulation(BaseModel):
        policy: dict

    with pytest.raises(TypeError, match="PopulationRequest"):
        population_endpoint(
            router,
            "/wrong",
            arrays=lambda s, y: {},
            result_model=dict,
            request_model=NotAPopulation,
        )

    def weights(simulation, year):
        return {"weight": unweighted(simulation, "household_weight", year)}

    @population_endpoint(router, "/twice", arrays=weights, result_model=dict)
    def first(baseline, reform, request):
        return {}

    with pytest.raises(ValueError, match="declared twice"):

        @population_endpoint(router, "/twice", arrays=weights, result_model=dict)
        def second(baseline, reform, request):
            return {}
