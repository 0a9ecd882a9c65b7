"""Society-wide figures of a reform, as a map/reduce pair.

``impact_arrays`` (the map) reads from one chunk's simulation only the
per-household and per-person values the statistics need. ``impact`` (the
reduce) takes every chunk's arrays, concatenated in chunk order, for the
baseline and the reform, and computes policyengine-api's economy comparison
(``compare_economic_outputs``, fed by its single-economy task), with its
field names and definitions (docs/population.md writes each one down).

Nothing that depends on the whole population (deciles, Gini, top shares) is
computed per chunk: a household's decile within its chunk is not its decile
in the population. The reduce ranks all households at once, with the
weighted ranking the model uses for ``household_income_decile``
(``microdf.MicroSeries.decile_rank``), so the answer does not depend on the
number of chunks.
"""

import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np
from microdf import MicroSeries

Arrays = Mapping[str, np.ndarray]

HOUSEHOLD_KEYS = (
    "household_id",
    "household_weight",
    "household_count_people",
    "household_net_income",
    "equiv_household_net_income",
    "decile_income",
    "total_tax",
    "total_state_tax",
    "total_benefits",
)
PERSON_KEYS = (
    "person_id",
    "person_weight",
    "person_age",
    "person_in_poverty",
    "person_in_deep_poverty",
)

# The model's variables behind the totals, as policyengine-api reads them.
{%- if cookiecutter.country == "us" %}
TOTAL_TAX = "household_tax"
TOTAL_BENEFITS = "household_benefits"
# A tax-unit variable, summed to its household (see impact_arrays).
TOTAL_STATE_TAX: str | None = "household_state_income_tax"
# What household_income_decile ranks.
DECILE_INCOME = "household_net_income"
{%- else %}
TOTAL_TAX = "gov_tax"
TOTAL_BENEFITS = "gov_spending"
# No state tax in the UK: the API reports 0.
TOTAL_STATE_TAX: str | None = None
# What household_income_decile ranks: equivalised HBAI income before
# housing costs.
DECILE_INCOME = "equiv_hbai_household_net_income"
{%- endif %}

# Bands of the relative change in net income: (lower, upper].
INTRA_DECILE_BOUNDS = (-np.inf, -0.05, -1e-3, 1e-3, 0.05, np.inf)
INTRA_DECILE_LABELS = (
    "Lose more than 5%",
    "Lose less than 5%",
    "No change",
    "Gain less than 5%",
    "Gain more than 5%",
)


def values(
    simulation: Any, variable: str, year: int, map_to: str | None = None
) -> np.ndarray:
    """A variable's unweighted values, an enum's by name. The switches are
    named differently by country (``unweighted`` or ``use_weights``), and
    the plain ``Simulation`` a reform carries as its baseline has neither;
    enums are decoded by default in some and not in others."""
    parameters = inspect.signature(simulation.calculate).parameters
    options: dict[str, Any] = {}
    if "decode_enums" in parameters:
        options["decode_enums"] = True
    if "unweighted" in parameters:
        options["unweighted"] = True
    elif "use_weights" in parameters:
        options["use_weights"] = False
    return np.asarray(simulation.calculate(variable, year, map_to=map_to, **options))


def impact_arrays(simulation: Any, year: int) -> dict[str, np.ndarray]:
    """The arrays the figures need, converted as policyengine-api converts
    them (float64 from the model's float32, ages truncated to whole years,
    poverty flags as booleans), so the reduce sees the API's numbers."""

    def floats(variable: str, map_to: str | None = None) -> np.ndarray:
        return values(simulation, variable, year, map_to).astype(np.float64)

    def ints(variable: str) -> np.ndarray:
        return values(simulation, variable, year).astype(np.int64)

    arrays = {
        "household_id": ints("household_id"),
        "household_weight": floats("household_weight"),
        "household_count_people": ints("household_count_people"),
        "household_net_income": floats("household_net_income"),
        "equiv_household_net_income": floats("equiv_household_net_income"),
        "decile_income": floats(DECILE_INCOME),
        "total_tax": floats(TOTAL_TAX),
        "total_benefits": floats(TOTAL_BENEFITS),
        "person_id": ints("person_id"),
        "person_weight": floats("person_weight"),
        "person_age": ints("age"),
        "person_in_poverty": values(simulation, "in_poverty", year, "person").astype(
            bool
        ),
        "person_in_deep_poverty": values(
            simulation, "in_deep_poverty", year, "person"
        ).astype(bool),
    }
    if TOTAL_STATE_TAX is None:
        arrays["total_state_tax"] = np.zeros_like(arrays["total_tax"])
    else:
        # policyengine weights a tax unit by its household's weight, so the
        # household sum weighted by households gives the same total.
        arrays["total_state_tax"] = floats(TOTAL_STATE_TAX, map_to="household")
    return arrays


def check_arrays(arrays: Arrays, side: str) -> None:
    missing = [k for k in HOUSEHOLD_KEYS + PERSON_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"{side} arrays lack {', '.join(missing)}")
    for keys, like in ((HOUSEHOLD_KEYS, "household_id"), (PERSON_KEYS, "person_id")):
        for key in keys:
            if len(arrays[key]) != len(arrays[like]):
                raise ValueError(f"{side} array {key} is not as long as {like}")


def household_income_decile(arrays: Arrays) -> np.ndarray:
    """Each household's income decile among all the households given, as
    the model computes ``household_income_decile``: ranked by
    ``DECILE_INCOME`` with weights of household weight times people (in
    the US, a negative net income gets -1)."""
    income = np.asarray(arrays["decile_income"], dtype=np.float64)
    weights = np.asarray(arrays["household_weight"]) * np.asarray(
        arrays["household_count_people"]
    )
    decile = np.asarray(MicroSeries(income, weights=weights).decile_rank()).astype(
        np.int64
    )
{%- if cookiecutter.country == "us" %}
    decile = np.where(income < 0, -1, decile)
{%- endif %}
    return decile


def total(arrays: Arrays, key: str) -> float:
    return float(MicroSeries(arrays[key], weights=arrays["household_weight"]).sum())


def budget(baseline: Arrays, reform: Arrays) -> dict[str, float]:
    """Each side's totals with its own weights."""
    tax = total(reform, "total_tax") - total(baseline, "total_tax")
    state_tax = total(reform, "total_state_tax") - total(baseline, "total_state_tax")
    benefits = total(reform, "total_benefits") - total(baseline, "total_benefits")
    return {
        "budgetary_impact": tax - benefits,
        "tax_revenue_impact": tax,
        "state_tax_revenue_impact": state_tax,
        "benefit_spending_impact": benefits,
        "households": float(np.sum(baseline["household_weight"])),
        "baseline_net_income": total(baseline, "household_net_income"),
    }


def decile_impact(
    baseline: Arrays, reform: Arrays, decile: np.ndarray
) -> dict[str, Any]:
    """Change in net income by baseline decile, with the baseline weights."""
    keep = decile >= 0
    weights = baseline["household_weight"][keep]
    base = MicroSeries(baseline["household_net_income"][keep], weights=weights)
    change = MicroSeries(
        reform["household_net_income"][keep] - baseline["household_net_income"][keep],
        weights=weights,
    )
    groups = decile[keep]
    change_sum = change.groupby(groups).sum()
    relative = change_sum / base.groupby(groups).sum()
    # A weighted series' count() is the sum of its weights: per household.
    average = change_sum / base.groupby(groups).count()
    return {
        "relative": {int(k): float(v) for k, v in relative.to_dict().items()},
        "average": {int(k): float(v) for k, v in average.to_dict().items()},
    }


def income_change(baseline_income: np.ndarray, reform_income: np.ndarray) -> np.ndarray:
    """Relative change, over the baseline floored at 1 (as the API)."""
    return (reform_income - baseline_income) / np.maximum(baseline_income, 1)


def intra_decile_impact(
    baseline: Arrays, reform: Arrays, decile: np.ndarray
) -> dict[str, Any]:
    """Share of people in each band of relative change, by decile; ``all``
    is the plain mean of the ten deciles' shares, as the API defines it."""
    people = baseline["household_count_people"] * baseline["household_weight"]
    change = income_change(
        baseline["household_net_income"], reform["household_net_income"]
    )
    bounds = INTRA_DECILE_BOUNDS
    deciles: dict[str, list[float]] = {}
    overall: dict[str, float] = {}
    for lower, upper, label in zip(
        bounds[:-1], bounds[1:], INTRA_DECILE_LABELS, strict=True
    ):
        in_band = (change > lower) & (change <= upper)
        shares = []
        for d in range(1, 11):
            in_decile = decile == d
            both, all_in_decile = (
                people[in_decile & in_band].sum(),
                people[in_decile].sum(),
            )
            shares.append(0.0 if all_in_decile == 0 else float(both / all_in_decile))
        deciles[label] = shares
        overall[label] = sum(shares) / 10
    return {"deciles": deciles, "all": overall}


def rate(flags: np.ndarray, weights: np.ndarray, mask: np.ndarray) -> float:
    return float(MicroSeries(flags[mask].astype(float), weights=weights[mask]).mean())


def poverty_impact(baseline: Arrays, reform: Arrays) -> dict[str, Any]:
    """Weighted share of people in poverty by age group; the baseline's
    ages and weights for both sides."""
    weights, age = baseline["person_weight"], baseline["person_age"]
    groups = {
        "child": age < 18,
        "adult": (age >= 18) & (age < 65),
        "senior": age >= 65,
        "all": np.ones(len(age), dtype=bool),
    }
    return {
        measure: {
            group: {
                "baseline": rate(baseline[key], weights, mask),
                "reform": rate(reform[key], weights, mask),
            }
            for group, mask in groups.items()
        }
        for measure, key in (
            ("poverty", "person_in_poverty"),
            ("deep_poverty", "person_in_deep_poverty"),
        )
    }


def inequality(arrays: Arrays) -> dict[str, float]:
    """Gini and top shares of one economy, as the API's single-economy task:
    equivalised net income floored at 0; people weights for the Gini and for
    who is in the top 10% and 1%; household weights for the shares."""
    income = np.maximum(
        np.asarray(arrays["equiv_household_net_income"], dtype=np.float64), 0
    )
    people = np.asarray(arrays["household_count_people"], dtype=np.float64)
    people_weight = np.asarray(arrays["household_weight"], dtype=np.float64) * people
    ranked = MicroSeries(income, weights=people_weight)
    top_10 = np.asarray(ranked.decile_rank()) == 10
    top_1 = np.asarray(ranked.percentile_rank()) == 100
    # The API divides the people weights back by the people count: doing the
    # same keeps every weight's last bit equal to its own.
    share_weight = people_weight / people
    whole = float(MicroSeries(income, weights=share_weight).sum())

    def share(mask: np.ndarray) -> float:
        return (
            float(MicroSeries(income[mask], weights=share_weight[mask]).sum()) / whole
        )

    return {
        "gini": float(ranked.gini()),
        "top_10": share(top_10),
        "top_1": share(top_1),
    }


def impact(baseline: Arrays, reform: Arrays, request: Any = None) -> dict[str, Any]:
    """The economy comparison of ``reform`` against ``baseline``: both the
    gathered ``impact_arrays`` of the same households in the same order.
    (The reduce of /jobs/impact's metric, which needs nothing of the
    request.)"""
    check_arrays(baseline, "baseline")
    check_arrays(reform, "reform")
    if not (
        np.array_equal(baseline["household_id"], reform["household_id"])
        and np.array_equal(baseline["person_id"], reform["person_id"])
    ):
        raise ValueError(
            "baseline and reform arrays are not of the same people in one order"
        )
    decile = household_income_decile(baseline)
    before, after = inequality(baseline), inequality(reform)
    return {
        "budget": budget(baseline, reform),
        "decile": decile_impact(baseline, reform, decile),
        "intra_decile": intra_decile_impact(baseline, reform, decile),
        "poverty": poverty_impact(baseline, reform),
        "inequality": {
            name: {"baseline": before[key], "reform": after[key]}
            for name, key in (
                ("gini", "gini"),
                ("top_10_pct_share", "top_10"),
                ("top_1_pct_share", "top_1"),
            )
        },
    }
