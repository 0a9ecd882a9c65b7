"""Fill in the values a household asks for.

A household in PolicyEngine's JSON format marks each value to compute with
``null``. This module finds those, runs them through a simulation and writes
the answers back, in the shape policyengine-api's ``/calculate`` returns.
"""

import copy
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from policyengine_backend._errors import Problem
from policyengine_backend.examples import EXAMPLE_HOUSEHOLD

AXES = "axes"
MEMBERS = "members"


def entity_groups(household: dict) -> Iterator[tuple[str, dict]]:
    """Each entity group (``people``, ``households``...) with its members."""
    for group, members in household.items():
        if group != AXES:
            yield group, members


def requested_values(household: dict) -> Iterator[tuple[str, str, str, str]]:
    """(group, member, variable, period) for every ``null`` in the household."""
    for group, members in entity_groups(household):
        for member_id, variables in members.items():
            for variable, periods in variables.items():
                if variable == MEMBERS or not isinstance(periods, dict):
                    continue  # not a value (checks refuse a misplaced list)
                for period, value in periods.items():
                    if value is None:
                        yield group, member_id, variable, period


def json_value(value: Any) -> Any:
    """A numpy or enum value as plain JSON, matching policyengine-api.

    JSON has no infinity, so infinite amounts (uncapped limits, for
    instance) travel as the strings "Infinity" and "-Infinity".
    """
    if hasattr(value, "name") and not isinstance(value, (str, bytes)):
        return value.name  # an enum item
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        # Most variables are float32: str() gives their shortest decimal form
        # (3265.33, not 3265.330078125), as policyengine-api returns them.
        value = float(str(value))
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def _as_items(array) -> np.ndarray:
    """Enum arrays hold codes; decode them to enum items."""
    return array.decode() if hasattr(array, "decode") else array


def fill_household(simulation, household: dict) -> dict:
    """A copy of ``household`` with every ``null`` replaced by its value.

    With ``axes`` the simulation holds one copy of the household per point
    (copy-major), so each requested value becomes a list with one entry per
    point.
    """
    result = copy.deepcopy(household)
    has_axes = bool(household.get(AXES))
    for group, member_id, variable, period in requested_values(household):
        try:
            values = _as_items(simulation.calculate(variable, period))
        except Exception as error:
            reason = (
                str(error).strip().splitlines()[0]
                if str(error).strip()
                else type(error).__name__
            )
            raise Problem(
                ("household", group, member_id, variable, period),
                f"the model could not calculate this: {reason[:300]}",
            ) from error
        if has_axes:
            position = list(household[group]).index(member_id)
            per_point = values.reshape(-1, len(household[group]))[:, position]
            answer = [json_value(v) for v in per_point]
        else:
            index = simulation.get_population(group).get_index(member_id)
            answer = json_value(values[index])
        result[group][member_id][variable][period] = answer
    return result


def in_year(household: dict, year: str) -> dict:
    """``household`` with every period it names moved to ``year``."""
    moved = copy.deepcopy(household)
    for _, members in entity_groups(moved):
        for variables in members.values():
            for name, periods in variables.items():
                if name != MEMBERS and isinstance(periods, dict) and periods:
                    variables[name] = {year: list(periods.values())[-1]}
    return moved


def warm_year(systems, year: str) -> None:
    """Prepare the model's parameters for ``year``: the example household
    calculated in it. A year the model has not prepared costs seconds on
    the first calculation in it; the worker does this once per year and
    keeps it (``_worker/child.py``). A year the model cannot calculate is
    left to the request, which says why."""
    household = in_year(EXAMPLE_HOUSEHOLD, year)
    try:
        fill_household(systems.simulation(household), household)
    except Exception:  # noqa: BLE001 - the request that names it will say why
        return
