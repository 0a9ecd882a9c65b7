"""The pieces of society-wide impacts that need no simulation: synthetic
data, loading and its checks, regions, chunk bounds and counts, and the
reduce step on arrays worked out by hand."""

import numpy as np
import pandas as pd
import pytest

from policyengine_backend._errors import DatasetError, Unavailable
from policyengine_backend._population import dataset as ds
from policyengine_backend._population import economy, sizing, synthetic
from policyengine_backend._population.datasets import SYNTHETIC_PATH
from policyengine_backend._settings import get_settings

HOUSEHOLDS = 80


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    return synthetic.write(
        tmp_path_factory.mktemp("core") / "data.h5", HOUSEHOLDS, seed=5
    )


def test_the_same_seed_writes_the_same_bytes(written, tmp_path):
    again = synthetic.write(tmp_path / "again.h5", HOUSEHOLDS, seed=5)
    other = synthetic.write(tmp_path / "other.h5", HOUSEHOLDS, seed=6)

    assert ds.file_sha256(again) == ds.file_sha256(written)
    assert ds.file_sha256(other) != ds.file_sha256(written)


def test_the_synthetic_mix(written):
    data = ds.load(written)
    tables = ds.tables(data)
    people, households = tables["person"], tables["household"]

    assert len(households) == HOUSEHOLDS
    ages = people["age"]
    assert (ages < 18).any() and (ages >= 65).any()
    sizes = people.groupby("person_household_id").size()
    assert (sizes == 1).any() and (sizes >= 4).any()
    assert len(set(ds.household_regions(data))) >= 3
    assert households["household_weight"].sum() > 1e6
    earnings = people["employment_income"]
    working = earnings[earnings > 0]
    assert (earnings == 0).any() and earnings.max() > 10 * working.median()


def test_make_synthetic_data_prints_the_file_last(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)

    assert synthetic.main(["--households", "5", "--seed", "2"]) == 0

    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == str((tmp_path / SYNTHETIC_PATH).resolve())
    assert ds.load(last)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(DatasetError, match=str(tmp_path / "none.h5")):
        ds.load(tmp_path / "none.h5")


def test_a_file_that_is_not_hdf5_is_named(tmp_path):
    path = tmp_path / "data.h5"
    path.write_text("person_id,age\n1,40\n")
    with pytest.raises(DatasetError, match=f"{path} is not an HDF5"):
        ds.load(path)


def test_a_wrong_digest_is_named(written):
    with pytest.raises(DatasetError, match=f"{written} has SHA-256 .* expected"):
        ds.load(written, expected_sha256="0" * 64)
    assert ds.load(written, expected_sha256=ds.file_sha256(written))


def test_a_file_without_the_models_tables_is_named(tmp_path):
    path = tmp_path / "other.h5"
    with pd.HDFStore(path, mode="w") as store:
        store.put("other", pd.DataFrame({"a": [1]}), format="table", track_times=False)
    with pytest.raises(DatasetError, match=f"{path} is not an entity-level"):
        ds.load(path)


def test_regions_are_normalised():
    code = ds.REGIONS[1]
    assert ds.normalise_region(code.lower()) == code
    assert ds.normalise_region(f"{ds.REGION_KIND}/{code.lower()}") == code
    assert ds.normalise_region(None) is None
    with pytest.raises(ValueError, match="unknown region"):
        ds.normalise_region("ATLANTIS")


def test_chunks_cover_every_household_once(written):
    data = ds.load(written)
    parts = [ds.chunk(data, i, 7) for i in range(7)]
    ids = np.concatenate([ds.tables(p)["household"]["household_id"] for p in parts])
    people = sum(len(ds.tables(p)["person"]) for p in parts)

    assert sorted(ids) == sorted(ds.tables(data)["household"]["household_id"])
    assert people == len(ds.tables(data)["person"])
    with pytest.raises(ValueError, match="cannot split"):
        ds.chunk_bounds(3, 4)


def toy(net_income, weight, people, tax=None) -> dict:
    """Arrays for households of one person each."""
    n = len(net_income)
    net = np.asarray(net_income, dtype=float)
    return {
        "household_id": np.arange(n),
        "household_weight": np.asarray(weight, dtype=float),
        "household_count_people": np.asarray(people),
        "household_net_income": net,
        "equiv_household_net_income": net / np.sqrt(people),
        "decile_income": net,
        "total_tax": np.asarray(tax if tax is not None else np.zeros(n), dtype=float),
        "total_state_tax": np.zeros(n),
        "total_benefits": np.zeros(n),
        "person_id": np.arange(n),
        "person_weight": np.asarray(weight, dtype=float),
        "person_age": np.full(n, 40),
        "person_in_poverty": net < 15_000,
        "person_in_deep_poverty": net < 7_500,
    }


@pytest.fixture
def settings(monkeypatch):
    """Set environment variables as settings, for this test only."""

    def set_(**values: object) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, str(value))
        get_settings.cache_clear()

    yield set_
    monkeypatch.undo()
    get_settings.cache_clear()


def test_chunks_are_one_per_process_unless_set(settings):
    settings(POPULATION_PROCESSES=3)
    assert sizing.chunk_count(1000) == 3
    assert sizing.chunk_count(2) == 2  # never more than the households
    settings(POPULATION_CHUNKS=5)
    assert sizing.chunk_count(1000) == 5


def test_a_smaller_chunk_memory_gives_more_smaller_chunks(settings):
    counts = []
    # Room for all, for a hundred, for seven households (and a megabyte more,
    # so rounding does not decide).
    for fits in (1000, 100, 7):
        memory = sizing.least_memory_mb(fits) + 1
        settings(POPULATION_CHUNKS=2, POPULATION_CHUNK_MEMORY_MB=memory)
        count = sizing.chunk_count(1000)
        largest = max(stop - start for start, stop in ds.chunk_bounds(1000, count))
        assert fits <= sizing.households_per_chunk(memory)
        assert largest <= sizing.households_per_chunk(memory), (fits, count)
        counts.append(count)
    assert counts[0] == 2  # as many as asked for, when they fit
    assert counts[0] < counts[1] < counts[2]


def test_a_chunk_memory_too_small_for_one_household_is_named(settings):
    settings(POPULATION_CHUNK_MEMORY_MB=sizing.FIXED_MB)  # nothing left over

    with pytest.raises(Unavailable) as error:
        sizing.chunk_count(1000)
    message = str(error.value)
    assert f"POPULATION_CHUNK_MEMORY_MB={sizing.FIXED_MB:g}" in message
    # ... and what would do.
    enough = int(message.rsplit("set at least ", 1)[1].split()[0].replace(",", ""))
    assert sizing.households_per_chunk(enough) >= 1


def test_the_reduce_on_arrays_worked_by_hand():
    incomes = np.arange(1, 21) * 5_000.0
    baseline = toy(incomes, np.full(20, 2.0), np.ones(20, dtype=int), tax=incomes / 10)
    # The reform gives the two poorest households 1,000 more.
    reform = toy(
        incomes + np.where(incomes <= 10_000, 1_000, 0),
        np.full(20, 2.0),
        np.ones(20, dtype=int),
        tax=incomes / 10,
    )

    result = economy.impact(baseline, reform)

    assert result["budget"]["households"] == 40
    assert result["budget"]["tax_revenue_impact"] == 0
    assert result["budget"]["baseline_net_income"] == 2 * incomes.sum()
    # Two households a decile: the poorest decile gains 1,000 each.
    assert result["decile"]["average"][1] == 1_000
    assert result["decile"]["relative"][1] == pytest.approx(2_000 / 15_000)
    assert result["decile"]["average"][2] == 0
    assert result["intra_decile"]["deciles"]["Gain more than 5%"][0] == 1
    assert result["intra_decile"]["all"]["No change"] == pytest.approx(0.9)
    poverty = result["poverty"]["poverty"]["all"]
    assert poverty == {"baseline": 0.1, "reform": pytest.approx(0.1)}
    gini = result["inequality"]["gini"]
    assert gini["reform"] < gini["baseline"]


def test_baselines_and_answers_are_kept_by_what_they_depend_on(tmp_path, monkeypatch):
    from policyengine_backend._population import impact
    from policyengine_backend._settings import get_settings

    monkeypatch.setenv("POPULATION_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        key = impact.kept_key("ab" * 32, 2025, None)
        assert impact.load_kept("baselines", key) is None
        impact.keep("baselines", key, ({"household_id": np.arange(3)}, None))
        arrays, inputs = impact.load_kept("baselines", key)
        assert impact.load_kept("answers", key) is None  # a kind of its own
        (tmp_path / ".baselines" / f"{key}.pkl").write_bytes(b"damaged")
        damaged = impact.load_kept("baselines", key)
    finally:
        get_settings.cache_clear()

    np.testing.assert_array_equal(arrays["household_id"], np.arange(3))
    assert inputs is None
    assert damaged is None  # computed again
    others = {
        impact.kept_key("cd" * 32, 2025, None),
        impact.kept_key("ab" * 32, 2026, None),
        impact.kept_key("ab" * 32, 2025, ds.REGIONS[0]),
        impact.kept_key("ab" * 32, 2025, None, "policy"),
    }
    assert key not in others and len(others) == 4
