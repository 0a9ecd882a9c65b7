"""A deterministic synthetic dataset in the real dataset's file format.

The real default dataset is a large download
{%- if cookiecutter.country == "uk" %} that needs a Hugging Face token{% endif %},
not available where tests and ``make dev`` run. This writes a small stand-in
with the same layout (an HDFStore of entity tables, as the country's dataset
class saves it), so it is loaded, chunked and simulated by exactly the code
the real file goes through. The mix is realistic enough to populate every
figure: singles, couples, children, seniors, adults living with a parent,
several {{ "states" if cookiecutter.country == "us" else "countries" }}, incomes with a long right tail, and weights that
sum to a national household total.

The same households and seed give byte-identical files (HDF5 timestamps
off), so a digest can be pinned. The file is written beside its target and
renamed into place: a reader never sees half a file.

    python -m policyengine_backend._population.synthetic --households 500 --seed 1

prints the file it wrote on its last line (``make synthetic-data``).
"""

import argparse
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# The data year: that of the real default dataset
{%- if cookiecutter.country == "us" %} (Populace 2024)
{%- else %} (the enhanced FRS 2024-25, a fiscal
# year labelled by the year it starts)
{%- endif %}.
DATA_YEAR = 2024
{%- if cookiecutter.country == "us" %}
# Weights sum to about the number of US households (Census, ~131m).
NATIONAL_HOUSEHOLDS = 131_000_000
# A spread of states by FIPS code (CA, TX, NY, FL, PA, WA, MA, OH, GA, NJ),
# so state filters and state taxes are exercised.
STATE_FIPS = np.array([6, 48, 36, 12, 42, 53, 25, 39, 13, 34])
{%- else %}
# Weights sum to about the number of UK households (ONS, ~28.6m).
NATIONAL_HOUSEHOLDS = 28_600_000
# All twelve regions, with shares roughly following population; the model
# derives the four countries from them.
REGIONS = np.array(
    [
        "NORTH_EAST",
        "NORTH_WEST",
        "YORKSHIRE",
        "EAST_MIDLANDS",
        "WEST_MIDLANDS",
        "EAST_OF_ENGLAND",
        "LONDON",
        "SOUTH_EAST",
        "SOUTH_WEST",
        "WALES",
        "SCOTLAND",
        "NORTHERN_IRELAND",
    ]
)
REGION_SHARES = np.array([4, 11, 8, 7, 9, 9, 13, 14, 8, 5, 8, 4], dtype=float)
TENURES = np.array(
    [
        "RENT_FROM_COUNCIL",
        "RENT_FROM_HA",
        "RENT_PRIVATELY",
        "OWNED_OUTRIGHT",
        "OWNED_WITH_MORTGAGE",
    ]
)
{%- endif %}

# Household types and their shares, each a list of members: "adult",
# "senior", "child", and "grown_child" (an adult living with a parent, in a
# {{ "tax unit" if cookiecutter.country == "us" else "benefit unit" }} of their own).
HOUSEHOLD_TYPES: list[tuple[str, float, tuple[str, ...]]] = [
    ("single", 0.20, ("adult",)),
    ("couple", 0.17, ("adult", "adult")),
    ("couple_1_child", 0.09, ("adult", "adult", "child")),
    ("couple_2_children", 0.09, ("adult", "adult", "child", "child")),
    ("couple_3_children", 0.04, ("adult", "adult", "child", "child", "child")),
    ("single_parent_1", 0.05, ("adult", "child")),
    ("single_parent_2", 0.04, ("adult", "child", "child")),
    ("single_senior", 0.13, ("senior",)),
    ("senior_couple", 0.11, ("senior", "senior")),
    ("parent_and_grown_child", 0.05, ("adult", "grown_child")),
    ("senior_and_grown_child", 0.03, ("senior", "grown_child")),
]
AGES = {
    "adult": (22, 64),
    "senior": (65, 90),
    "child": (0, 17),
    "grown_child": (18, 30),
}


@dataclass(frozen=True)
class Person:
    household: int
    unit: int  # {{ "tax unit" if cookiecutter.country == "us" else "benefit unit" }}, numbered within the file
    kind: str
    partner_of_head: bool


def draw_people(rng: np.random.Generator, households: int) -> list[Person]:
    """Household compositions; people listed household by household (the
    order the model's chunks and person arrays rely on)."""
    shares = np.array([share for _, share, _ in HOUSEHOLD_TYPES])
    types = rng.choice(len(HOUSEHOLD_TYPES), size=households, p=shares / shares.sum())
    people: list[Person] = []
    unit = 0
    for household, type_index in enumerate(types):
        adults_seen = 0
        for kind in HOUSEHOLD_TYPES[type_index][2]:
            if kind == "grown_child":
                unit += 1
                people.append(Person(household, unit, kind, False))
                continue
            partner = kind in ("adult", "senior") and adults_seen == 1
            adults_seen += kind in ("adult", "senior")
            people.append(Person(household, unit, kind, partner))
        unit += 1
    return people


def draw_ages(rng: np.random.Generator, kinds: np.ndarray) -> np.ndarray:
    age = np.empty(len(kinds), dtype=np.int64)
    for kind, (low, high) in AGES.items():
        mask = kinds == kind
        age[mask] = rng.integers(low, high + 1, size=mask.sum())
    return age


def draw_earnings(
    rng: np.random.Generator, kinds: np.ndarray, scale: float
) -> np.ndarray:
    """Most working-age adults work, with a long right tail so the top
    decile and the top percentile are populated."""
    works = np.isin(kinds, ("adult", "grown_child")) & (rng.random(len(kinds)) < 0.78)
    earnings = scale * rng.lognormal(mean=0.0, sigma=0.95, size=len(kinds))
    top = works & (rng.random(len(kinds)) < 0.02)
    earnings[top] *= rng.uniform(5, 25, size=top.sum())
    return np.where(works, np.round(earnings, 2), 0.0)


def draw_weights(rng: np.random.Generator, households: int) -> np.ndarray:
    raw = rng.lognormal(mean=0.0, sigma=0.4, size=households)
    return raw / raw.sum() * NATIONAL_HOUSEHOLDS
{%- if cookiecutter.country == "us" %}


def draw_counties(rng: np.random.Generator, state_fips: np.ndarray) -> np.ndarray:
    """A county in each household's state, from policyengine-us's own list
    (the SPM poverty threshold is adjusted by county, as a five-digit code)."""
    from importlib.resources import files

    source = files("policyengine_us") / "data" / "county_fips_2020.csv.gz"
    with source.open("rb") as handle:
        counties = pd.read_csv(handle, compression="gzip", dtype={"county_fips": str})
    state_of_county = counties["county_fips"].str[:2].astype(int).to_numpy()
    codes = counties["county_fips"].to_numpy()
    result = np.empty(len(state_fips), dtype=object)
    for state in np.unique(state_fips):
        in_state = state_fips == state
        # A few counties per state, so several households share one.
        result[in_state] = rng.choice(
            codes[state_of_county == state][:4], size=in_state.sum()
        )
    return result.astype(str)


def synthetic_tables(households: int, seed: int) -> dict[str, pd.DataFrame]:
    """Entity tables in Populace's layout."""
    rng = np.random.default_rng(seed)
    people = draw_people(rng, households)
    n = len(people)
    household_index = np.array([p.household for p in people])
    unit_index = np.array([p.unit for p in people])
    kinds = np.array([p.kind for p in people])
    partner = np.array([p.partner_of_head for p in people])

    # Ids are not positions (they start above zero, with gaps, as survey ids
    # do), so code confusing ids with rows fails.
    household_id = 1_000 + 7 * np.arange(households)
    person_id = 100_000 + 3 * np.arange(n)
    tax_unit_ids = 50_000 + 5 * np.arange(unit_index.max() + 1)
    # One SPM unit and one family per household.
    spm_unit_ids = 20_000 + 11 * np.arange(households)
    family_ids = 30_000 + 13 * np.arange(households)
    # Couples share a marital unit; everyone else has their own.
    marital_index = np.empty(n, dtype=np.int64)
    next_unit = 0
    for i in range(n):
        if partner[i]:
            marital_index[i] = marital_index[i - 1]
        else:
            marital_index[i] = next_unit
            next_unit += 1
    marital_unit_ids = 70_000 + 2 * np.arange(next_unit)

    age = draw_ages(rng, kinds)
    employment_income = draw_earnings(rng, kinds, scale=42_000.0)
    self_employed = (kinds == "adult") & (rng.random(n) < 0.08)
    senior = kinds == "senior"
    person = pd.DataFrame(
        {
            "person_id": person_id,
            "person_household_id": household_id[household_index],
            "person_tax_unit_id": tax_unit_ids[unit_index],
            "person_spm_unit_id": spm_unit_ids[household_index],
            "person_family_id": family_ids[household_index],
            "person_marital_unit_id": marital_unit_ids[marital_index],
            "age": age,
            "is_male": rng.random(n) < 0.49,
            "employment_income": employment_income,
            "self_employment_income": np.where(
                self_employed, np.round(rng.lognormal(10.0, 1.0, n), 2), 0.0
            ),
            "social_security_retirement": np.where(
                senior,
                np.round(rng.normal(21_000, 6_000, n).clip(6_000, 45_000), 2),
                0.0,
            ),
            "taxable_interest_income": np.where(
                rng.random(n) < 0.25, np.round(rng.lognormal(6.5, 1.5, n), 2), 0.0
            ),
        }
    )
    state_fips = rng.choice(STATE_FIPS, size=households)
    household = pd.DataFrame(
        {
            "household_id": household_id,
            "household_weight": draw_weights(rng, households),
            "state_fips": state_fips,
            "county_fips": draw_counties(rng, state_fips),
        }
    )
    spm_unit = pd.DataFrame(
        {
            "spm_unit_id": spm_unit_ids,
            # Take-up is drawn once in the data, never at run time.
            "takes_up_snap_if_eligible": rng.random(households) < 0.82,
        }
    )
    return {
        "person": person,
        "household": household,
        "tax_unit": pd.DataFrame({"tax_unit_id": tax_unit_ids}),
        "spm_unit": spm_unit,
        "family": pd.DataFrame({"family_id": family_ids}),
        "marital_unit": pd.DataFrame({"marital_unit_id": marital_unit_ids}),
    }


def save(tables: dict[str, pd.DataFrame], path: str) -> None:
    """As ``USSingleYearDataset.save`` writes a file, key for key, with HDF5
    timestamps and column indexes off: the bytes are then a function of the
    tables alone. The class's reader uses neither."""
    from policyengine_us.data.dataset_schema import USSingleYearDataset

    dataset = USSingleYearDataset(**tables, time_period=DATA_YEAR)
    options: dict[str, Any] = dict(format="table", index=False, track_times=False)
    with pd.HDFStore(path, mode="w") as store:
        for name, frame in zip(dataset.table_names, dataset.tables, strict=True):
            if len(frame) > 0:
                store.put(name, frame, data_columns=True, **options)
        store.put("_time_period", pd.Series([DATA_YEAR]), **options)
{%- else %}


def synthetic_tables(households: int, seed: int) -> dict[str, pd.DataFrame]:
    """Entity tables in the enhanced FRS's layout."""
    rng = np.random.default_rng(seed)
    people = draw_people(rng, households)
    n = len(people)
    household_index = np.array([p.household for p in people])
    unit_index = np.array([p.unit for p in people])
    kinds = np.array([p.kind for p in people])

    # Ids are not positions (they start above zero, with gaps, as survey ids
    # do), so code confusing ids with rows fails.
    household_id = 2_000 + 7 * np.arange(households)
    person_id = 300_000 + 3 * np.arange(n)
    benunit_ids = 60_000 + 5 * np.arange(unit_index.max() + 1)

    age = draw_ages(rng, kinds)
    employment_income = draw_earnings(rng, kinds, scale=27_000.0)
    self_employed = (kinds == "adult") & (rng.random(n) < 0.09)
    senior = kinds == "senior"
    child = kinds == "child"
    person = pd.DataFrame(
        {
            "person_id": person_id,
            "person_benunit_id": benunit_ids[unit_index],
            "person_household_id": household_id[household_index],
            "age": age,
            "gender": np.where(rng.random(n) < 0.49, "MALE", "FEMALE"),
            "employment_income": employment_income,
            "self_employment_income": np.where(
                self_employed, np.round(rng.lognormal(9.6, 1.0, n), 2), 0.0
            ),
            "state_pension_reported": np.where(
                senior,
                np.round(rng.normal(10_500, 1_500, n).clip(4_000, 12_500), 2),
                0.0,
            ),
            "private_pension_income": np.where(
                senior & (rng.random(n) < 0.6),
                np.round(rng.lognormal(8.8, 0.9, n), 2),
                0.0,
            ),
            "savings_interest_income": np.where(
                rng.random(n) < 0.3, np.round(rng.lognormal(5.5, 1.4, n), 2), 0.0
            ),
            # Drawn in the data; the model ranks incomes across the whole
            # population to turn it into private school attendance.
            "attends_private_school_random_draw": np.where(child, rng.random(n), 1.0),
        }
    )
    benunit = pd.DataFrame(
        {
            "benunit_id": benunit_ids,
            "would_claim_uc": rng.random(len(benunit_ids)) < 0.85,
            "would_claim_child_benefit": rng.random(len(benunit_ids)) < 0.93,
        }
    )
    tenure = rng.choice(TENURES, size=households, p=[0.16, 0.1, 0.2, 0.3, 0.24])
    renting = np.char.startswith(tenure.astype(str), "RENT")
    household = pd.DataFrame(
        {
            "household_id": household_id,
            "household_weight": draw_weights(rng, households),
            "region": rng.choice(
                REGIONS, size=households, p=REGION_SHARES / REGION_SHARES.sum()
            ),
            "tenure_type": tenure,
            "rent": np.where(
                renting, np.round(rng.uniform(5_000, 16_000, households), 2), 0.0
            ),
            "council_tax": np.round(rng.uniform(1_100, 3_200, households), 2),
            # Wealth exposed to the corporate sector: the model allocates
            # business rates by each household's share of its total.
            "corporate_wealth": np.where(
                rng.random(households) < 0.55,
                np.round(rng.lognormal(10.0, 1.6, households), 2),
                0.0,
            ),
        }
    )
    return {"person": person, "benunit": benunit, "household": household}


def save(tables: dict[str, pd.DataFrame], path: str) -> None:
    """As ``UKSingleYearDataset.save`` writes a file, key for key (tables,
    year, energy price basis, ISA income contract), with HDF5 timestamps and
    column indexes off: the bytes are then a function of the tables alone.
    The class's reader uses neither."""
    import json

    import h5py
    from policyengine_uk.data.dataset_schema import UKSingleYearDataset
    from policyengine_uk.data.energy_price_basis import write_energy_price_basis
    from policyengine_uk.data.isa_income import (
        ADDITIVE_CONTRACT,
        ISA_INCOME_CONTRACT_KEY,
        validate_contract,
    )

    dataset = UKSingleYearDataset(
        **tables, fiscal_year=DATA_YEAR, isa_income_contract=dict(ADDITIVE_CONTRACT)
    )
    options: dict[str, Any] = dict(format="table", index=False, track_times=False)
    with pd.HDFStore(path, mode="w") as store:
        for name in ("person", "benunit", "household"):
            store.put(name, getattr(dataset, name), data_columns=True, **options)
        store.put("time_period", pd.Series([dataset.time_period]), **options)
    write_energy_price_basis(path, dataset.energy_price_basis)
    with h5py.File(path, "a") as handle:
        contract = validate_contract(dataset.isa_income_contract)
        handle.attrs[ISA_INCOME_CONTRACT_KEY] = json.dumps(contract)
{%- endif %}


def write(path: str | os.PathLike, households: int, seed: int) -> Path:
    """Write a synthetic dataset of ``households`` households to ``path``."""
    if households < 1:
        raise ValueError(f"households must be at least 1, got {households}")
    tables = synthetic_tables(households, seed)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(suffix=".h5", dir=target.parent)
    os.close(handle)
    try:
        save(tables, temporary)
        os.replace(temporary, target)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return target


def main(argv: list[str] | None = None) -> int:
    from policyengine_backend._population.datasets import SYNTHETIC_PATH

    parser = argparse.ArgumentParser(description="Write a synthetic dataset.")
    parser.add_argument("--households", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(SYNTHETIC_PATH))
    args = parser.parse_args(argv)
    path = write(args.out, args.households, args.seed)
    print(path.resolve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
