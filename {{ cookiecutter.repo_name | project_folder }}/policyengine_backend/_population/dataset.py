"""Reading, checking, filtering and splitting a dataset file.

The country model reads its default dataset as an *entity-level* HDF5 file:
one table per entity, one row per person or unit, one column per variable.
``load`` reads a file with the country package's own dataset class, exactly
what ``Microsimulation(dataset=path)`` does with it, and every other function
here takes and returns such objects, so each result can go straight to
``Microsimulation(dataset=...)``.

Why split by household: a household, and every unit in it, is what the model
computes on. With whole households in each chunk, every household's and
person's values equal those of a simulation of the whole file, except for the
few variables read from the whole population (``coupled.py``). Chunks keep
the original ids, so results can be matched back.

Every problem with a file raises ``DatasetError``, whose message names it.
"""

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from policyengine_backend._errors import DatasetError

# Entity tables, person first, in the order the country's dataset class
# stores them; and those it refuses to load without.
{%- if cookiecutter.country == "us" %}
ENTITIES = ("person", "household", "tax_unit", "spm_unit", "family", "marital_unit")
REQUIRED_ENTITIES = ("person", "household", "tax_unit")
{%- else %}
ENTITIES = ("person", "benunit", "household")
REQUIRED_ENTITIES = ENTITIES
{%- endif %}
GROUP_ENTITIES = ENTITIES[1:]

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
{%- if cookiecutter.country == "us" %}

# States by FIPS code, as policyengine-us maps ``state_fips`` to its state
# (variables/input/geography.py). A region is one of these codes.
STATE_FIPS: dict[str, int] = {
    "AL": 1, "AK": 2, "AZ": 4, "AR": 5, "CA": 6, "CO": 8, "CT": 9, "DE": 10,
    "DC": 11, "FL": 12, "GA": 13, "HI": 15, "ID": 16, "IL": 17, "IN": 18,
    "IA": 19, "KS": 20, "KY": 21, "LA": 22, "ME": 23, "MD": 24, "MA": 25,
    "MI": 26, "MN": 27, "MS": 28, "MO": 29, "MT": 30, "NE": 31, "NV": 32,
    "NH": 33, "NJ": 34, "NM": 35, "NY": 36, "NC": 37, "ND": 38, "OH": 39,
    "OK": 40, "OR": 41, "PA": 42, "RI": 44, "SC": 45, "SD": 46, "TN": 47,
    "TX": 48, "UT": 49, "VT": 50, "VA": 51, "WA": 53, "WV": 54, "WI": 55,
    "WY": 56,
}  # fmt: skip
REGIONS = tuple(STATE_FIPS)
REGION_KIND = "state"
{%- else %}

# A region is one of the four countries. Scotland, Wales and Northern
# Ireland are regions of their own in the data; every other known region is
# in England (policyengine-uk variables/household/demographic/country.py).
REGIONS = ("ENGLAND", "SCOTLAND", "WALES", "NORTHERN_IRELAND")
REGION_KIND = "country"
_OWN_COUNTRY = {"SCOTLAND", "WALES", "NORTHERN_IRELAND", "UNKNOWN"}
{%- endif %}


def tables(dataset: Any) -> dict[str, pd.DataFrame]:
    """The entity tables of a dataset object, as stored (an entity the file
    lacks is an empty DataFrame)."""
    return dict(zip(dataset.table_names, dataset.tables, strict=True))


def rebuild(dataset: Any, new_tables: dict[str, pd.DataFrame]) -> Any:
    """A dataset object of the same year with other tables (and, in the UK,
    the energy price basis and ISA income contract, which the model reads
    when it projects the data to later years)."""
{%- if cookiecutter.country == "us" %}
    from policyengine_us.data.dataset_schema import USSingleYearDataset

    return USSingleYearDataset(
        **{name: new_tables[name] for name in ENTITIES},
        time_period=int(dataset.time_period),
    )
{%- else %}
    from policyengine_uk.data.dataset_schema import UKSingleYearDataset

    return UKSingleYearDataset(
        person=new_tables["person"],
        benunit=new_tables["benunit"],
        household=new_tables["household"],
        fiscal_year=int(dataset.time_period),
        energy_price_basis=dataset.energy_price_basis,
        isa_income_contract=dataset.isa_income_contract,
    )


{%- endif %}


def fresh_copy(dataset: Any) -> Any:
    """A copy to hand to a Microsimulation, which keeps (and in the UK
    encodes in place) the tables it is given: the caller's stay unchanged."""
    return rebuild(dataset, {k: v.copy() for k, v in tables(dataset).items()})


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load(path: str | os.PathLike, expected_sha256: str | None = None) -> Any:
    """Read a single-year, entity-level dataset file, checked.

    Checked first, because each would otherwise surface as an obscure error
    deep in a simulation: the file exists, is HDF5, has the expected digest
    (when one is given), has the tables and id columns the model needs, and
    every person belongs to one existing unit of each kind, no unit spanning
    two households (a chunk boundary would cut it).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"Dataset file {path} does not exist.")
    with open(path, "rb") as handle:
        if handle.read(len(HDF5_SIGNATURE)) != HDF5_SIGNATURE:
            raise DatasetError(f"Dataset file {path} is not an HDF5 (.h5) file.")
    if expected_sha256 is not None:
        actual = file_sha256(path)
        if actual != expected_sha256.strip().lower():
            raise DatasetError(
                f"Dataset file {path} has SHA-256 {actual}, but {expected_sha256} "
                "was expected: it is not the certified build."
            )
    present = _hdf_keys(path)
    missing = [name for name in REQUIRED_ENTITIES if name not in present]
    if missing:
        raise DatasetError(
            f"Dataset file {path} is not an entity-level {{ cookiecutter.country | upper }} dataset: "
            f"it has no {', '.join(missing)} table (found: {sorted(present) or 'none'})."
        )
    try:
        dataset = _read(path)
    except Exception as error:  # The dataset classes raise many kinds.
        raise DatasetError(f"Dataset file {path} could not be read: {error}") from error
    validate(dataset, source=str(path))
    return dataset


def _hdf_keys(path: Path) -> set[str]:
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            return set(handle.keys())
    except OSError as error:
        raise DatasetError(
            f"Dataset file {path} is not readable HDF5: {error}"
        ) from error


def _read(path: Path) -> Any:
{%- if cookiecutter.country == "us" %}
    from policyengine_us.data.dataset_schema import USSingleYearDataset

    return USSingleYearDataset(file_path=str(path))
{%- else %}
    from policyengine_uk.data.dataset_schema import UKSingleYearDataset

    return UKSingleYearDataset(file_path=str(path))


{%- endif %}


def validate(dataset: Any, source: str = "<in memory>") -> None:
    """Check ids, memberships and weights; a DatasetError names ``source``."""
    frames = tables(dataset)
    person = frames["person"]

    def fail(message: str):
        raise DatasetError(f"Dataset file {source}: {message}")

    if len(person) == 0:
        fail("the person table is empty.")
    required: dict[str, list[str]] = {
        "person": ["person_id"],
        "household": ["household_id", "household_weight"],
    }
    for entity in GROUP_ENTITIES:
        if entity in REQUIRED_ENTITIES or len(frames[entity]):
            required.setdefault(entity, []).append(f"{entity}_id")
            required["person"].append(f"person_{entity}_id")
    for entity, columns in required.items():
        for column in columns:
            if column not in frames[entity].columns:
                fail(f"the {entity} table has no {column} column.")
        if frames[entity][f"{entity}_id"].duplicated().any():
            fail(f"the {entity} table repeats {entity}_id values.")
    weights = frames["household"]["household_weight"].to_numpy(dtype=float)
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        fail("household_weight has negative or non-finite values.")
    household_of_person = person["person_household_id"].to_numpy()
    for entity in required:
        if entity == "person":
            continue
        membership = person[f"person_{entity}_id"].to_numpy()
        known = frames[entity][f"{entity}_id"].to_numpy()
        orphans = ~np.isin(membership, known)
        if orphans.any():
            fail(
                f"{int(orphans.sum())} person(s) belong to a {entity} that is not "
                f"in the {entity} table (e.g. {entity}_id {membership[orphans][0]})."
            )
        if (~np.isin(known, membership)).any():
            fail(f"some {entity} rows have no members.")
        if entity != "household":
            spans = (
                pd.DataFrame({"unit": membership, "household": household_of_person})
                .groupby("unit")["household"]
                .nunique()
            )
            if (spans > 1).any():
                fail(
                    f"a {entity} has members in more than one household, so the "
                    "file cannot be split by household."
                )


def supported_years(start: int) -> range:
    """Years a simulation of data from year ``start`` can be run for: up to
    the last year the model projects data to. Outside them a simulation
    would silently treat every input as zero or its default."""
{%- if cookiecutter.country == "us" %}
    from policyengine_us.data.economic_assumptions import _get_default_end_year
    from policyengine_us.system import system

    end = _get_default_end_year(system)
{%- else %}
    from policyengine_uk.data.capital_gains_projection import CGT_INDEX_PATH
    from policyengine_uk.data.economic_assumptions import PROJECTION_END_YEAR
    from policyengine_uk.system import system

    projection = system.parameters.get_child(CGT_INDEX_PATH).metadata["projection"]
    end = max(
        start, min(PROJECTION_END_YEAR, projection.get("end_year", PROJECTION_END_YEAR))
    )
{%- endif %}
    return range(start, end + 1)


def household_order(dataset: Any) -> np.ndarray:
    """Household ids in the order a simulation holds them (policyengine-us
    keeps the table's order; policyengine-uk sorts group entities by id).
    Chunks follow it, so household arrays of all chunks, concatenated in
    chunk order, line up with a simulation of the whole dataset."""
    ids = tables(dataset)["household"]["household_id"].to_numpy()
{%- if cookiecutter.country == "uk" %}
    return np.sort(ids, kind="stable")
{%- else %}
    return ids


{%- endif %}


def select_households(dataset: Any, household_ids: Iterable[Any]) -> Any:
    """These households with all their people and units, rows in their
    original order and ids unchanged."""
    frames = tables(dataset)
    keep = np.asarray(list(household_ids))
    person = frames["person"]
    person = person[np.isin(person["person_household_id"].to_numpy(), keep)]
    selected = {"person": person.reset_index(drop=True)}
    for entity in GROUP_ENTITIES:
        frame = frames[entity]
        if len(frame) == 0:
            selected[entity] = frame
            continue
        members = person[f"person_{entity}_id"].to_numpy()
        rows = np.isin(frame[f"{entity}_id"].to_numpy(), members)
        selected[entity] = frame[rows].reset_index(drop=True)
    return rebuild(dataset, selected)


def chunk_bounds(household_count: int, chunk_count: int) -> list[tuple[int, int]]:
    """Start and stop positions of ``chunk_count`` near-equal parts."""
    if not 1 <= chunk_count <= household_count:
        raise ValueError(
            f"cannot split {household_count} households into {chunk_count} chunks"
        )
    edges = np.linspace(0, household_count, chunk_count + 1).round().astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))


def chunk(dataset: Any, index: int, count: int) -> Any:
    """Chunk ``index`` of ``count``: contiguous households in simulation order."""
    order = household_order(dataset)
    start, stop = chunk_bounds(len(order), count)[index]
    return select_households(dataset, order[start:stop])


def normalise_region(region: str | None) -> str | None:
    """A region as its code (any case, or "{{ "state" if cookiecutter.country == "us" else "country" }}/<code>"), or None for
    the whole country (or "{{ cookiecutter.country }}"); a ValueError names the codes."""
    if region is None:
        return None
    text = region.strip()
    if text.lower() in ("", "{{ cookiecutter.country }}"):
        return None
    kind, slash, rest = text.partition("/")
    if slash and kind.lower() == REGION_KIND:
        text = rest
    code = text.upper().replace(" ", "_")
    if code not in REGIONS:
        raise ValueError(
            f"unknown region {region!r}; expected one of {', '.join(REGIONS)}"
        )
    return code


def household_regions(dataset: Any) -> np.ndarray:
    """Each household's region code, in table order."""
    household = tables(dataset)["household"]
{%- if cookiecutter.country == "us" %}
    if "state_fips" in household.columns:
        by_fips = {fips: code for code, fips in STATE_FIPS.items()}
        fips = household["state_fips"].to_numpy()
        return np.array([by_fips.get(int(f), "UNKNOWN") for f in fips])
    for column in ("state_code", "state_code_str", "state_name"):
        if column in household.columns:
            return household[column].astype(str).str.upper().to_numpy()
    raise DatasetError("the household table has no state_fips or state_code column")
{%- else %}
    if "country" in household.columns:
        return household["country"].astype(str).str.upper().to_numpy()
    if "region" not in household.columns:
        raise DatasetError("the household table has no region or country column")
    regions = household["region"]
    if regions.dtype.kind in "iu":  # already encoded by a simulation
        from policyengine_uk.variables.household.demographic.geography import Region

        names = np.array([member.name for member in Region])
        regions = pd.Series(names[regions.to_numpy()])
    return np.array(
        [r if r in _OWN_COUNTRY else "ENGLAND" for r in regions.astype(str).str.upper()]
    )


{%- endif %}


def filter_region(dataset: Any, region: str | None) -> Any:
    """Keep one region's households (None keeps all).

    Before anything is computed, as policyengine simulates a region: its
    households are the whole simulated population, so deciles, poverty and
    population-wide values are the region's own.
    """
    code = normalise_region(region)
    if code is None:
        return dataset
    household = tables(dataset)["household"]
    keep = household_regions(dataset) == code
    if not keep.any():
        raise ValueError(f"region {region!r} has no households in this dataset")
    return select_households(dataset, household["household_id"].to_numpy()[keep])
