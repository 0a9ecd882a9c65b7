"""POST /jobs/impact: a policy's effect on a whole (synthetic) population.

Every figure is checked against policyengine's own ``Microsimulation`` of the
same file (``population_reference.py``, which shares no code with the
backend's), to 1e-6 relative. The dataset is small (a few hundred
households): a US simulation costs tens of seconds whatever its size, so
the longer checks (another policy, a region) are marked ``ci``.
"""

import logging
import time
from pathlib import Path

import numpy as np
import pytest

import api.main  # noqa: F401 - registers the endpoints, and so their jobs
from policyengine_backend._population import chunks, datasets, synthetic
from policyengine_backend._population import dataset as ds
from policyengine_backend._settings import COUNTRY, MODEL_VERSION, get_settings
from policyengine_backend.testing import finished
from tests.backend import population_reference as reference

HOUSEHOLDS = 120
SEED = 7
YEAR = 2025
CHUNKS = 2
POLICIES = {
    "us": {
        "parametric": {
            "gov.irs.credits.ctc.amount.base[0].amount": {"2025-01-01.2100-12-31": 3000}
        },
        # Switched on by an in_effect parameter: policyengine-us replaces a
        # formula with a structural reform.
        "structural": {
            "gov.contrib.streamlined_eitc.in_effect": {"2025-01-01.2100-12-31": True}
        },
    },
    "uk": {
        "parametric": {
            "gov.hmrc.income_tax.rates.uk[0].rate": {"2025-01-01.2100-12-31": 0.22}
        },
        # The household-based High Income Child Benefit Charge.
        "structural": {
            "gov.contrib.conservatives.cb_hitc_household": {
                "2025-01-01.2100-12-31": True
            }
        },
    },
}[COUNTRY]
REGION = {"us": "CA", "uk": "WALES"}[COUNTRY]


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    """A small synthetic dataset, served as the default, in CHUNKS chunks
    run by two processes."""
    folder = tmp_path_factory.mktemp("population")
    path = synthetic.write(folder / datasets.SYNTHETIC_FILE, HOUSEHOLDS, SEED)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POPULATION_DATA_DIR", str(folder))
        patch.setenv("POPULATION_DATASET", "synthetic")
        patch.setenv("POPULATION_CHUNKS", str(CHUNKS))
        patch.setenv("POPULATION_PROCESSES", "2")
        get_settings.cache_clear()
        yield path
    get_settings.cache_clear()


class Direct:
    """policyengine's own whole-file simulations, each made once."""

    def __init__(self, path: Path):
        self.data = ds.load(path)
        self.economies: dict = {}

    def economy(
        self, policy_name: str | None, region: str | None = None, year: int = YEAR
    ) -> dict:
        key = (policy_name, region, year)
        if key not in self.economies:
            policy = POLICIES[policy_name] if policy_name else None
            data = ds.filter_region(self.data, region)
            simulation = chunks.direct_simulation(data, policy)
            self.economies[key] = reference.single_economy(simulation, year)
        return self.economies[key]

    def impact(
        self, policy_name: str, region: str | None = None, year: int = YEAR
    ) -> dict:
        return reference.compare(
            self.economy(None, region, year), self.economy(policy_name, region, year)
        )


@pytest.fixture(scope="module")
def direct(population) -> Direct:
    return Direct(population)


def run_job(client, body: dict) -> tuple[dict, list[dict]]:
    """The job's final answer, and the progress seen while it ran."""
    submitted = client.post("/jobs/impact", json=body)
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["job_id"]
    seen = []
    while (status := client.get(f"/jobs/{job_id}").json())["status"] == "pending":
        if status["progress"] and status["progress"] not in seen:
            seen.append(status["progress"])
        time.sleep(0.2)
    return finished(client, job_id), seen


def figures(result: dict) -> dict:
    """The answer's figures, without where they came from."""
    keys = ("budget", "decile", "intra_decile", "poverty", "inequality")
    return {key: result[key] for key in keys}


def test_every_figure_equals_direct_microsimulations(client, population, direct):
    answer, seen = run_job(client, {"policy": POLICIES["parametric"], "year": YEAR})

    assert answer["status"] == "ok", answer
    result = answer["result"]
    reference.assert_close(figures(result), direct.impact("parametric"))
    assert result["budget"]["budgetary_impact"] != 0
    # Where the numbers come from.
    assert result["dataset"] == {
        "name": "synthetic",
        "sha256": ds.file_sha256(population),
        "file": str(population),
        "synthetic": True,
    }
    assert result["model_version"] == MODEL_VERSION
    assert (result["year"], result["region"]) == (YEAR, None)
    # Progress: chunks done of the baseline's and the reform's chunks.
    assert seen and all(p["total"] == 2 * CHUNKS for p in seen)
    assert [p["done"] for p in seen] == sorted(p["done"] for p in seen)
    # The baseline is kept beside the data, for the next reform.
    assert list(population.parent.glob(".baselines/*.pkl"))

    # The same request again (its policy spelled otherwise) is answered
    # from the kept answer: nothing is simulated, so no baseline is kept.
    kept = population.parent / ".baselines"
    aside = kept.rename(kept.with_name(".baselines-aside"))
    try:
        ((path, periods),) = POLICIES["parametric"].items()
        respelled = {path.replace("[0]", "[00]"): periods}
        again, _ = run_job(client, {"policy": respelled, "year": YEAR})
        assert not kept.exists()
    finally:
        aside.rename(kept)
    assert again["result"] == result


@pytest.mark.ci
def test_a_structural_reform_reusing_the_baseline(client, population, direct):
    kept = list(population.parent.glob(".baselines/*.pkl"))

    answer, seen = run_job(client, {"policy": POLICIES["structural"], "year": YEAR})

    assert answer["status"] == "ok", answer
    reference.assert_close(figures(answer["result"]), direct.impact("structural"))
    if kept:  # the test above kept the baseline: only the reform ran
        assert seen and all(p["done"] >= CHUNKS for p in seen)


@pytest.mark.ci
def test_a_budget_window_gives_each_year_and_the_total(client, population, direct):
    years = [YEAR, YEAR + 1]
    answer, seen = run_job(client, {"policy": POLICIES["parametric"], "years": years})

    assert answer["status"] == "ok", answer
    result = answer["result"]
    window = result["budget_window"]
    budgets = {year: direct.impact("parametric", year=year)["budget"] for year in years}
    reference.assert_close(window["years"], {str(y): b for y, b in budgets.items()})
    assert budgets[YEAR + 1] != budgets[YEAR]
    flows = set(window["total"])
    assert flows == set(budgets[YEAR]) - {"households"}
    reference.assert_close(
        window["total"],
        {flow: sum(b[flow] for b in budgets.values()) for flow in flows},
    )
    # The other figures are the first year's (kept from the first test, or
    # computed here).
    assert result["year"] == YEAR
    reference.assert_close(figures(result), direct.impact("parametric"))


@pytest.mark.ci
def test_a_region_is_its_own_population(client, population, direct, caplog):
    body = {"policy": POLICIES["parametric"], "year": YEAR, "region": REGION.lower()}
    with caplog.at_level(logging.INFO, "policyengine_backend._population.impact"):
        jobs = [client.post("/jobs/impact", json=body).json()["job_id"] for _ in "12"]
        answer, twin = (finished(client, job) for job in jobs)
    # The same request, sent while the first ran, joined it.
    assert "joined a running impact job with the same request" in caplog.messages
    assert twin["result"] == answer["result"]

    assert answer["status"] == "ok", answer
    result = answer["result"]
    assert result["region"] == REGION
    reference.assert_close(figures(result), direct.impact("parametric", REGION))
    national = sum(direct.economy(None)["household_weight"])
    assert result["budget"]["households"] < 0.5 * national


def test_a_region_keeps_only_its_households(population):
    data = ds.load(population)
    region = ds.filter_region(data, REGION)
    kept = ds.household_regions(region)
    assert len(kept) and set(kept) == {REGION}
    people = ds.tables(region)["person"]["person_household_id"]
    assert set(people) == set(ds.tables(region)["household"]["household_id"])


@pytest.mark.ci
def test_the_answer_does_not_depend_on_the_number_of_chunks(population):
    """The map step: one chunk and three give the same household and person
    values (baseline; the reform goes through the same code). Without ``ci``
    the job's two chunks are checked against a whole-file simulation."""
    data = ds.load(population)

    def arrays(count: int) -> dict:
        tasks = [
            chunks.Chunk(str(population), None, None, i, count, YEAR, None)
            for i in range(count)
        ]
        return chunks.simulate(data, tasks, chunks.map_local(data, 2))[0]

    one, three = arrays(1), arrays(3)
    assert one.keys() == three.keys()
    for key in one:
        np.testing.assert_array_equal(three[key], one[key], err_msg=key)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"region": "ATLANTIS"}, "region"),
        ({"year": 1990}, "year"),
        ({"dataset": "nope"}, "dataset"),
        ({"colour": "red"}, "colour"),
        ({"years": [YEAR, 1990]}, "years"),
        ({"years": [YEAR, YEAR]}, "years"),
        ({"years": list(range(YEAR, YEAR + 11))}, "years"),
        ({"years": [YEAR, YEAR + 1], "year": YEAR + 1}, "years"),
    ],
)
def test_bad_input_is_refused_at_its_field(client, population, change, field):
    response = client.post(
        "/jobs/impact", json={"policy": POLICIES["parametric"], **change}
    )

    assert response.status_code == 422, response.text
    assert [field] in [error["loc"] for error in response.json()["errors"]]


def test_an_unbuildable_policy_is_refused_at_its_field(client, population):
    response = client.post(
        "/jobs/impact", json={"policy": {"gov.no.such.parameter": {"2025": 1}}}
    )

    assert response.status_code == 400, response.text
    locations = [error["loc"] for error in response.json()["errors"]]
    assert any(location[:1] == ["policy"] for location in locations), locations


def test_a_policy_is_required(client, population):
    response = client.post("/jobs/impact", json={})

    assert response.status_code == 422
    assert ["policy"] in [e["loc"] for e in response.json()["errors"]]


def test_a_wrong_digest_is_an_error_naming_the_file(client, population, monkeypatch):
    """A configured dataset whose file is not the pinned build: the job
    fails at once, and says which file."""
    wrong = datasets.DatasetSpec(
        datasets.REAL, datasets.SYNTHETIC_FILE, "0" * 64, False, None, 2024
    )
    monkeypatch.setattr(datasets, "real_dataset", lambda: wrong)

    answer, _ = run_job(
        client,
        {"policy": POLICIES["parametric"], "year": YEAR, "dataset": datasets.REAL},
    )

    assert answer["status"] == "error"
    assert answer["status_code"] == 503
    assert str(population) in answer["message"]
    assert "SHA-256" in answer["message"]
