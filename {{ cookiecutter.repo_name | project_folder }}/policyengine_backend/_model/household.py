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


class ModelError(Exception):
    """The model could not calculate a requested value for this household,
    at ``location`` (for example, a year it has no parameters for)."""

    def __init__(self, location: tuple, message: str):
        self.location = location
        super().__init__(message)


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
            raise ModelError(
                ("household", group, member_id, variable, period), str(error)
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
