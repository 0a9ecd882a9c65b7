"""The economy comparison computed directly from two whole simulations.

It follows policyengine-api's single-economy task and comparison step by
step, reading every figure from policyengine's own ``Microsimulation`` of the
whole (region-filtered) dataset: weighted ``calculate(...)`` results and the
model's own ``household_income_decile``. It shares no code with
``policyengine_backend/_population/``, whose chunked answer must equal it.
"""

from typing import Any

import numpy as np
from microdf import MicroSeries

from policyengine_backend._settings import COUNTRY


def single_economy(sim: Any, year: int) -> dict[str, Any]:
    def calc(variable: str, map_to: str | None = None) -> MicroSeries:
        return sim.calculate(variable, year, map_to=map_to)

    count_people = calc("household_count_people")
    if COUNTRY == "uk":
        total_tax = calc("gov_tax").sum()
        total_benefits = calc("gov_spending").sum()
        total_state_tax = 0.0
    else:
        total_tax = calc("household_tax").sum()
        total_benefits = calc("household_benefits").sum()
        total_state_tax = calc("household_state_income_tax").sum()

    income = calc("equiv_household_net_income")
    income[income < 0] = 0
    income.weights *= np.asarray(count_people)
    gini = income.gini()
    in_top_10 = income.decile_rank() == 10
    in_top_1 = income.percentile_rank() == 100
    income.weights /= np.asarray(count_people)
    top_10 = income[in_top_10].sum() / income.sum()
    top_1 = income[in_top_1].sum() / income.sum()

    def plain(variable: str, kind: type = float, map_to: str | None = None) -> list:
        return np.asarray(calc(variable, map_to)).astype(kind).tolist()

    return {
        "total_net_income": calc("household_net_income").sum(),
        "total_tax": total_tax,
        "total_state_tax": total_state_tax,
        "total_benefits": total_benefits,
        "household_net_income": plain("household_net_income"),
        "household_income_decile": plain("household_income_decile", int),
        "household_weight": plain("household_weight"),
        "household_count_people": plain("household_count_people", int),
        "person_weight": plain("person_weight"),
        "person_in_poverty": plain("in_poverty", bool, "person"),
        "person_in_deep_poverty": plain("in_deep_poverty", bool, "person"),
        "age": plain("age", int),
        "gini": float(gini),
        "top_10_percent_share": float(top_10),
        "top_1_percent_share": float(top_1),
    }


def compare(baseline: dict[str, Any], reform: dict[str, Any]) -> dict[str, Any]:
    """policyengine-api's comparison of two single-economy dicts."""
    tax = reform["total_tax"] - baseline["total_tax"]
    state_tax = reform["total_state_tax"] - baseline["total_state_tax"]
    benefits = reform["total_benefits"] - baseline["total_benefits"]
    budget = {
        "budgetary_impact": tax - benefits,
        "tax_revenue_impact": tax,
        "state_tax_revenue_impact": state_tax,
        "benefit_spending_impact": benefits,
        "households": sum(baseline["household_weight"]),
        "baseline_net_income": baseline["total_net_income"],
    }

    base_income = MicroSeries(
        baseline["household_net_income"], weights=baseline["household_weight"]
    )
    reform_income = MicroSeries(
        reform["household_net_income"], weights=base_income.weights
    )
    decile = MicroSeries(baseline["household_income_decile"])
    base_kept = base_income[decile >= 0]
    reform_kept = reform_income[decile >= 0]
    change = reform_kept - base_kept
    relative = change.groupby(decile).sum() / base_kept.groupby(decile).sum()
    average = change.groupby(decile).sum() / base_kept.groupby(decile).count()

    people = MicroSeries(
        baseline["household_count_people"], weights=base_income.weights
    )
    deciles = np.asarray(decile)
    base_values = np.asarray(base_income)
    rel_change = (np.asarray(reform_income) - base_values) / np.maximum(base_values, 1)
    bounds = [-np.inf, -0.05, -1e-3, 1e-3, 0.05, np.inf]
    labels = [
        "Lose more than 5%",
        "Lose less than 5%",
        "No change",
        "Gain less than 5%",
        "Gain more than 5%",
    ]
    groups: dict[str, list[float]] = {}
    overall: dict[str, float] = {}
    for lower, upper, label in zip(bounds[:-1], bounds[1:], labels, strict=True):
        groups[label] = []
        for i in range(1, 11):
            in_decile = deciles == i
            in_group = (rel_change > lower) & (rel_change <= upper)
            both = people[in_decile & in_group].sum()
            total = people[in_decile].sum()
            groups[label].append(
                0.0 if total == 0 and both == 0 else float(both / total)
            )
        overall[label] = sum(groups[label]) / 10

    weights = baseline["person_weight"]
    age = MicroSeries(baseline["age"])
    masks = {"child": age < 18, "adult": (age >= 18) & (age < 65), "senior": age >= 65}
    poverty: dict[str, dict] = {}
    for name, key in (
        ("poverty", "person_in_poverty"),
        ("deep_poverty", "person_in_deep_poverty"),
    ):
        b = MicroSeries(baseline[key], weights=weights)
        r = MicroSeries(reform[key], weights=weights)
        poverty[name] = {
            group: {"baseline": float(b[mask].mean()), "reform": float(r[mask].mean())}
            for group, mask in masks.items()
        }
        poverty[name]["all"] = {"baseline": float(b.mean()), "reform": float(r.mean())}

    def pair(key: str) -> dict[str, float]:
        return {"baseline": baseline[key], "reform": reform[key]}

    return {
        "budget": budget,
        "decile": {
            "relative": {str(int(k)): v for k, v in relative.to_dict().items()},
            "average": {str(int(k)): v for k, v in average.to_dict().items()},
        },
        "intra_decile": {"deciles": groups, "all": overall},
        "poverty": poverty,
        "inequality": {
            "gini": pair("gini"),
            "top_10_pct_share": pair("top_10_percent_share"),
            "top_1_pct_share": pair("top_1_percent_share"),
        },
    }


def flatten(result: Any, prefix: str = "") -> dict[str, float]:
    """Nested dicts and lists as {"a.b.3": value}."""
    flat: dict[str, float] = {}
    if isinstance(result, dict):
        for key, value in result.items():
            flat.update(flatten(value, f"{prefix}{key}."))
    elif isinstance(result, list | tuple):
        for index, value in enumerate(result):
            flat.update(flatten(value, f"{prefix}{index}."))
    else:
        flat[prefix.rstrip(".")] = float(result)
    return flat


def assert_close(actual: dict, expected: dict, rel: float = 1e-6) -> None:
    """The same figures, each equal to ``rel`` relative (NaN to NaN; a
    figure that is zero in one is zero in the other, to 1e-9)."""
    a, e = flatten(actual), flatten(expected)
    assert set(a) == set(e), f"different figures: {sorted(set(a) ^ set(e))}"
    problems = []
    for key, want in e.items():
        got = a[key]
        if np.isnan(want) or np.isnan(got):
            if not (np.isnan(want) and np.isnan(got)):
                problems.append((key, got, want))
            continue
        if abs(got - want) > max(rel * max(abs(want), abs(got)), 1e-9):
            problems.append((key, got, want))
    assert not problems, f"figures differ (key, actual, expected): {problems[:20]!r}"
