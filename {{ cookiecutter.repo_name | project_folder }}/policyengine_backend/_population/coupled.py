"""Model variables read from the whole population, made chunk-safe.

Almost every value in a microsimulation depends on one household alone, so a
chunk's simulation gives each household the values a simulation of everyone
would. A few variables instead read the whole simulated population (totals
of weights, weighted ranks); in a chunk they would be computed from the chunk
and the answer would change with the number of chunks.
{%- if cookiecutter.country == "uk" %}

policyengine-uk has such variables that change every household's net income
under current law:

- ``shareholding``, ``consumption_shareholding`` and
  ``corporate_land_value``: a household's share of the population's
  corporate wealth (consumption), which business rates and corporate stamp
  duty (in ``gov_tax``) are allocated by;
- ``months_since_last_birthday``: birthdays spread over the year by weight,
  which places state pension age;
- ``attends_private_school``: imputed from the household's percentile of
  net income under the simulated policy (private school VAT follows).

They are computed once over the whole (region-filtered) population and set
as inputs in every chunk (``prepare``, ``apply``). The first four read only
inputs, so a simulation of everyone gives them cheaply by the model's own
formulas. Attendance needs every household's income under the policy, which
only the chunks compute: each chunk returns the income components it ranks
(``chunk_arrays``); ``settle`` sets them in the whole-population simulation,
lets the model impute attendance, and names the chunks that were given
other values, which are run again (the components do not depend on
attendance, so once suffices). A reform starts from the baseline's values.
{%- endif %}

Other population-wide variables matter only under particular policies
{%- if cookiecutter.country == "us" %} (Medicaid cost, when
``gov.simulation.include_health_benefits_in_net_income`` is on)
{%- else %} (a
carbon tax, employer NI incidence, ``gov.contrib.policyengine.budget``
spending)
{%- endif %}. They are not made chunk-safe: ``check`` refuses a chunked
result that used any of them (``CoupledPolicy``), and the job runs such a
policy in one chunk.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from policyengine_backend._errors import CoupledPolicy
from policyengine_backend._population.economy import values

PREFIX = "population__"

{%- if cookiecutter.country == "us" %}
# None in policyengine-us under current law.
FROM_INPUTS: dict[str, str] = {}
RANKED: dict[str, str] = {}
RANKED_COMPONENTS: dict[str, str] = {}
# Read from the whole population; "computed": any use couples the chunk.
UNSUPPORTED: dict[str, str] = {
    "medicaid_slcsp_state_denominator": "computed",
    "medicaid_slcsp_state_average_cost_index": "computed",
    "household_income_decile": "computed",
    "spm_unit_income_decile": "computed",
}
{%- else %}
# Set from a whole-population simulation that computes only these, by
# entity: only inputs feed them.
FROM_INPUTS: dict[str, str] = {
    "shareholding": "household",
    "consumption_shareholding": "household",
    "corporate_land_value": "household",
    "months_since_last_birthday": "person",
}
# Imputed from ranks of income under the policy, and the components of
# that income each chunk returns.
RANKED: dict[str, str] = {"attends_private_school": "person"}
RANKED_COMPONENTS: dict[str, str] = {
    "income_tax": "person",
    "national_insurance": "person",
    "household_market_income": "household",
    "household_benefits": "household",
}
# Read from the whole population and not made chunk-safe. "computed": any
# use couples the chunk; "nonzero": computed routinely, but zero unless a
# policy switches the mechanism on.
UNSUPPORTED: dict[str, str] = {
    "carbon_tax": "nonzero",
    "consumer_incident_tax_revenue_change": "nonzero",
    "employer_ni_response_capital_incidence": "nonzero",
    "employer_ni_response_consumer_incidence": "nonzero",
    "nhs_budget_change": "nonzero",
    "education_budget_change": "nonzero",
    "other_public_spending_budget_change": "nonzero",
    "pre_budget_change_ons_household_income_decile": "computed",
    "household_income_decile": "computed",
    "household_income_decile_ahc": "computed",
    "household_wealth_decile": "computed",
    "in_relative_poverty_bhc": "computed",
    "in_relative_poverty_ahc": "computed",
}
{%- endif %}
# Rounds of settle before giving up (one re-run suffices; see above).
MAX_ROUNDS = 3


@dataclass
class PopulationInputs:
    """Whole-population values to set in every chunk, each lined up with
    ``ids`` of its entity. ``baseline_values`` are for the baseline branch a
    reform simulation carries (None: the same as ``values``)."""

    year: int
    ids: dict[str, np.ndarray] = field(default_factory=dict)
    values: dict[str, np.ndarray] = field(default_factory=dict)
    baseline_values: dict[str, np.ndarray] | None = None
    # Ranked variables the dataset itself carries (nothing to settle).
    fixed: set[str] = field(default_factory=set)


def entity_of(variable: str) -> str:
    return {**FROM_INPUTS, **RANKED}[variable]


def needed() -> bool:
    return bool(FROM_INPUTS or RANKED)


def ids(simulation: Any, entity: str, year: int) -> np.ndarray:
    return values(simulation, f"{entity}_id", year).astype(np.int64)


def align(from_ids: np.ndarray, array: np.ndarray, to_ids: np.ndarray) -> np.ndarray:
    """``array`` (one value per ``from_ids``) reordered to ``to_ids``."""
    positions = pd.Index(from_ids).get_indexer(to_ids)
    if (positions < 0).any():
        raise ValueError("population inputs do not cover every entity of the chunk")
    return np.asarray(array)[positions]


# The whole-population simulation of the last (dataset, policy): prepare and
# every settle round read it, and it holds everyone's inputs, so only one.
_whole: dict[tuple, tuple[Any, Any]] = {}


def whole_population(data: Any, policy: Mapping[str, Any] | None, build) -> Any:
    key = (id(data), repr(sorted((policy or {}).items())))
    if key not in _whole:
        _whole.clear()
        _whole[key] = (data, build(data, policy))
    return _whole[key][1]


def prepare(
    data: Any,
    year: int,
    policy: Mapping[str, Any] | None,
    build,
    start: PopulationInputs | None = None,
) -> PopulationInputs | None:
    """Whole-population values for ``data`` (already region-filtered);
    ``build(data, policy)`` makes a simulation. Ranked values start from
    ``start`` (a baseline's settled inputs) or "no one"; ``settle`` fixes them."""
    if not needed():
        return None
    from policyengine_backend._population.dataset import tables

    simulation = whole_population(data, policy, build)
    inputs = PopulationInputs(
        year=year, ids={e: ids(simulation, e, year) for e in ("person", "household")}
    )
    for variable in FROM_INPUTS:
        inputs.values[variable] = values(simulation, variable, year)
    for variable, entity in RANKED.items():
        if variable in tables(data)[entity].columns:
            inputs.values[variable] = values(simulation, variable, year)
            inputs.fixed.add(variable)
        elif start is not None and variable in start.values:
            inputs.values[variable] = align(
                start.ids[entity], start.values[variable], inputs.ids[entity]
            )
        else:
            inputs.values[variable] = np.zeros(len(inputs.ids[entity]), dtype=bool)
    if policy:
        baseline = simulation.baseline
        inputs.baseline_values = {v: values(baseline, v, year) for v in FROM_INPUTS}
        for variable, entity in RANKED.items():
            if variable in inputs.fixed:
                inputs.baseline_values[variable] = inputs.values[variable]
            elif start is not None and variable in start.values:
                inputs.baseline_values[variable] = align(
                    start.ids[entity], start.values[variable], inputs.ids[entity]
                )
    return inputs


def branches(simulation: Any) -> list[tuple[Any, bool]]:
    """The simulation and the baseline branch it carries, if another."""
    result = [(simulation, False)]
    baseline = getattr(simulation, "baseline", None)
    if baseline is not None and baseline is not simulation:
        result.append((baseline, True))
    return result


def apply(
    simulation: Any, year: int, inputs: PopulationInputs | None, chunked: bool
) -> None:
    """Set the whole-population values as inputs, before anything is computed."""
    if inputs is None:
        if chunked and needed():
            raise ValueError("a chunked run needs population inputs (coupled.prepare)")
        return
    if inputs.year != year:
        raise ValueError(f"population inputs are for {inputs.year}, not {year}")
    for branch, is_baseline in branches(simulation):
        chosen = inputs.values
        if is_baseline and inputs.baseline_values is not None:
            chosen = inputs.baseline_values
        for variable, array in chosen.items():
            entity = entity_of(variable)
            target = ids(branch, entity, year)
            branch.set_input(variable, year, align(inputs.ids[entity], array, target))


def chunk_arrays(simulation: Any, year: int) -> dict[str, np.ndarray]:
    """The income components ``settle`` ranks (computing them does not
    compute attendance)."""
    arrays = {
        PREFIX + v: values(simulation, v, year).astype(np.float64)
        for v in RANKED_COMPONENTS
    }
    # Whose they are, and whose ranked values they decide.
    for entity in {*RANKED_COMPONENTS.values(), *RANKED.values()}:
        arrays[f"{PREFIX}{entity}_id"] = ids(simulation, entity, year)
    return arrays


def check(simulation: Any, chunked: bool) -> None:
    """Refuse a chunked result that used an unsupported population-wide
    variable, or an injected one for a year it was not given."""
    if not chunked:
        return
    watched = dict(UNSUPPORTED)
    watched.update({variable: "computed" for variable in {**FROM_INPUTS, **RANKED}})
    for branch, _ in branches(simulation):
        for variable, mode in watched.items():
            if variable not in branch.tax_benefit_system.variables:
                continue
            holder = branch.get_holder(variable)
            given = {str(p) for p in holder.get_input_periods(branch.branch_name)}
            for period in holder.get_known_periods():
                if str(period) in given:
                    continue
                array = np.asarray(holder.get_array(period))
                if mode == "nonzero" and not np.any(array.astype(float) != 0):
                    continue
                raise CoupledPolicy(
                    f"{variable} was computed from one chunk's households; it "
                    "depends on the whole population, so this policy runs in one chunk"
                )


def settle(
    data: Any,
    year: int,
    policy: Mapping[str, Any] | None,
    inputs: PopulationInputs | None,
    results: Sequence[Mapping[str, np.ndarray]],
    build,
) -> tuple[PopulationInputs | None, list[int]]:
    """Impute the ranked variables from the chunks' incomes; the corrected
    inputs and the chunks that were given other values (to run again)."""
    if inputs is None:
        return inputs, []
    ranked = {v: e for v, e in RANKED.items() if v not in inputs.fixed}
    if not ranked:
        return inputs, []
    simulation = whole_population(data, policy, build)
    for variable, entity in RANKED_COMPONENTS.items():
        got_ids = np.concatenate([r[f"{PREFIX}{entity}_id"] for r in results])
        got = np.concatenate([np.asarray(r[PREFIX + variable]) for r in results])
        target = ids(simulation, entity, year)
        simulation.set_input(
            variable, year, align(got_ids, got, target).astype(np.float32)
        )
    stale: set[int] = set()
    for variable, entity in ranked.items():
        fresh = values(simulation, variable, year)
        simulation.delete_arrays(variable, year)
        changed = inputs.ids[entity][fresh != inputs.values[variable]]
        for index, arrays in enumerate(results):
            if np.isin(arrays[f"{PREFIX}{entity}_id"], changed).any():
                stale.add(index)
        inputs.values[variable] = fresh
    for variable in RANKED_COMPONENTS:
        simulation.delete_arrays(variable, year)
    return inputs, sorted(stale)
