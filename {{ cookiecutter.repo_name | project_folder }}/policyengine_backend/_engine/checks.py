"""Check a request before it waits for the calculation worker.

The request models (``policyengine_backend/_models.py``) check shapes. This module checks the
rest, in two steps, so that nothing the model would refuse, and nothing over
a limit, ever reaches a calculation:

- ``check_limits`` counts what the request asks for (people, axis points,
  periods, values, policy parameters) against the limits in
  ``policyengine_backend/_settings.py``. It needs no model, so it runs first: a request over a
  limit is answered 422 at once, never queued.
- ``check_household`` and ``check_policy`` check meaning against the
  country model: that each variable exists and belongs to its group, that
  members are real people, that periods, values and parameters are ones the
  model takes, unchanged. They answer 400.

Every problem carries the path to the offending field, so the client can fix
it without reading a traceback.
"""

import math
import re
from datetime import date

import numpy as np
from policyengine_core.periods import period as parse_period

from policyengine_backend._errors import field_error as problem
from policyengine_backend._model.household import (
    AXES,
    MEMBERS,
    entity_groups,
    requested_values,
)
from policyengine_backend._model.policy import canonical_path, parse_path
from policyengine_backend._settings import Settings

# Years the country models hold parameters for, with some room either side;
# years inside this range that the model cannot compute are reported when
# the calculation fails (see policyengine_backend/_worker/child.py).
FIRST_YEAR, LAST_YEAR = 2000, 2100
POLICY_PERIOD = re.compile(r"^(\d{4}-\d{2}-\d{2})\.(\d{4}-\d{2}-\d{2})$")
# The model stores numbers as float32 and int32: larger values would be
# stored as something other than what was sent.
FLOAT_LIMIT = float(np.finfo(np.float32).max)
INT_RANGE = (int(np.iinfo(np.int32).min), int(np.iinfo(np.int32).max))
PERIOD_UNITS = ("year", "month", "day")


def shown(value, limit: int = 40) -> str:
    """A value for a message, cut short: a message never echoes a huge input."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


# --------------------------------------------------------------- limits


def axis_points(household: dict) -> int:
    points = 1
    for parallel in household.get(AXES) or []:
        points *= max((axis["count"] for axis in parallel), default=1)
    return points


def periods_named(household: dict) -> set[str]:
    named = {
        str(period)
        for _, members in entity_groups(household)
        for variables in members.values()
        for name, periods in variables.items()
        if name != MEMBERS and isinstance(periods, dict)
        for period in periods
    }
    for parallel in household.get(AXES) or []:
        named |= {
            str(axis["period"]) for axis in parallel if axis.get("period") is not None
        }
    return named


def years_named(household: dict) -> set[str]:
    """The years a request's periods fall in: the model prepares its
    parameters once per year, which is what costs memory."""
    return {period[:4] for period in periods_named(household)}


def check_limits(
    household: dict,
    policy: dict | None,
    settings: Settings,
    at: tuple = ("household",),
) -> list[dict]:
    """Size limits: what bounds the cost of a request, counted from its JSON.
    ``at`` is where the household is in the request (``()`` for a situation
    a worker function built: the request as a whole)."""
    people = len(household.get("people", {}))
    points = axis_points(household)
    periods = len(periods_named(household))
    values = sum(1 for _ in requested_values(household)) * people * points
    counts = [
        (
            (*at, "people") if at else (),
            people,
            "people",
            settings.max_people,
            "MAX_PEOPLE",
        ),
        (
            (*at, AXES) if at else (),
            points,
            "axis points",
            settings.max_axis_points,
            "MAX_AXIS_POINTS",
        ),
        (at, periods, "periods", settings.max_periods, "MAX_PERIODS"),
        (
            at,
            values,
            "values (requested values x people x axis points)",
            settings.max_values,
            "MAX_VALUES",
        ),
        (
            ("policy",),
            len(policy or {}),
            "parameters",
            settings.max_policy_parameters,
            "MAX_POLICY_PARAMETERS",
        ),
    ]
    return [
        problem(where, f"{count} {what} is over the limit of {limit} ({variable})")
        for where, count, what, limit, variable in counts
        if count > limit
    ]


# ------------------------------------------------------------ household


def check_period(text, location: tuple) -> list[dict]:
    try:
        parsed = parse_period(str(text))
    except Exception:
        return [
            problem(location, f"{shown(text)} is not a period such as 2025 or 2025-01")
        ]
    if parsed.size != 1 or parsed.unit not in PERIOD_UNITS:
        return [
            problem(
                location,
                f"{shown(text)} spans several periods; give one year (2025) or month (2025-01)",
            )
        ]
    if not FIRST_YEAR <= parsed.start.year <= LAST_YEAR:
        return [
            problem(
                location,
                f"year {parsed.start.year} is outside {FIRST_YEAR}-{LAST_YEAR}",
            )
        ]
    return []


def check_number(value, location: tuple, whole: bool = False) -> list[dict]:
    """A number the model stores exactly as sent (finite, in range)."""
    if isinstance(value, float) and not math.isfinite(value):
        return [problem(location, f"{shown(value)} is not a finite number")]
    if whole:
        if isinstance(value, float) and not value.is_integer():
            return [problem(location, f"{shown(value)} is not a whole number")]
        low, high = INT_RANGE
        if not low <= value <= high:
            return [problem(location, f"{shown(value)} is outside {low} to {high}")]
    elif abs(value) > FLOAT_LIMIT:
        return [
            problem(
                location, f"{shown(value)} is too large (at most {FLOAT_LIMIT:.3g})"
            )
        ]
    return []


def check_value(variable, value, location: tuple) -> list[dict]:
    """Inputs must have the variable's type; null asks for the value."""
    if value is None:
        return []
    kind = variable.value_type
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind in (int, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            return check_number(value, location, whole=kind is int)
    elif kind is str:
        ok = isinstance(value, str)
    elif getattr(variable, "possible_values", None) is not None:  # an enum
        names = list(variable.possible_values.__members__)
        if isinstance(value, str) and value in names:
            return []
        choices = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        return [problem(location, f"{shown(value)} is not one of {choices}")]
    else:
        ok = isinstance(value, str)  # dates and other text-like types
    if ok:
        return []
    return [problem(location, f"{shown(value)} is not a valid {kind.__name__}")]


def check_members(entity, members, people: dict, where: tuple) -> list[dict]:
    if entity.is_person:
        return [problem(where, "people have no members")]
    if not isinstance(members, list):
        return [problem(where, "expected a list of people")]
    if not members:
        return [problem(where, "a group needs at least one member")]
    return [
        problem(where, f"{shown(person)} is not in household.people")
        for person in members
        if person not in people
    ]


def check_household(system, household: dict) -> list[dict]:
    problems = []
    people = household.get("people", {})
    if not people:
        problems.append(
            problem(("household", "people"), "at least one person is required")
        )
    entities = {entity.plural: entity for entity in system.entities}
    for group, members in entity_groups(household):
        entity = entities.get(group)
        if entity is None:
            problems.append(problem(("household", group), "unknown entity group"))
            continue
        for member_id, variables in members.items():
            if not entity.is_person and MEMBERS not in variables:
                problems.append(
                    problem(
                        ("household", group, member_id, MEMBERS),
                        "a group needs its members",
                    )
                )
            for name, periods in variables.items():
                where = ("household", group, member_id, name)
                if name == MEMBERS:
                    problems += check_members(entity, periods, people, where)
                    continue
                variable = system.variables.get(name)
                if variable is None:
                    problems.append(problem(where, "unknown variable"))
                    continue
                if variable.entity.key != entity.key:
                    problems.append(
                        problem(
                            where, f"belongs to {variable.entity.plural}, not {group}"
                        )
                    )
                    continue
                if not isinstance(periods, dict):
                    problems.append(problem(where, "expected {period: value}"))
                    continue
                for period_text, value in periods.items():
                    problems += check_period(period_text, (*where, period_text))
                    problems += check_value(variable, value, (*where, period_text))
    problems += check_axes(system, household)
    return problems


def check_axes(system, household: dict) -> list[dict]:
    problems = []
    for i, parallel in enumerate(household.get(AXES) or []):
        if len({axis["count"] for axis in parallel}) > 1:
            problems.append(
                problem(("household", AXES, i), "parallel axes must share one count")
            )
        for j, axis in enumerate(parallel):
            where = ("household", AXES, i, j)
            variable = system.variables.get(axis["name"])
            if variable is None:
                problems.append(problem((*where, "name"), "unknown variable"))
                continue
            if variable.value_type not in (int, float):
                problems.append(
                    problem(
                        (*where, "name"),
                        "only a numeric variable can vary along an axis",
                    )
                )
            members = len(household.get(variable.entity.plural, {}))
            if axis.get("index", 0) >= members:
                problems.append(
                    problem(
                        (*where, "index"),
                        f"there are {members} {variable.entity.plural} to vary, "
                        f"so index must be below {members}",
                    )
                )
            if axis.get("period") is not None:
                problems += check_period(axis["period"], (*where, "period"))
            for bound in ("min", "max"):
                problems += check_number(axis[bound], (*where, bound))
            if axis["max"] < axis["min"]:
                problems.append(problem((*where, "max"), "max is below min"))
    return problems


# --------------------------------------------------------------- policy


def check_policy(system, policy: dict) -> list[dict]:
    problems = []
    seen: dict[str, str] = {}  # canonical path -> the spelling sent first
    for name, changes in policy.items():
        where = ("policy", name)
        try:
            parse_path(name)
        except ValueError as error:
            problems.append(problem(where, str(error)))
            continue
        canonical = canonical_path(name)
        if canonical in seen:
            problems.append(
                problem(
                    where,
                    f"names the same parameter as {seen[canonical]!r}; give each parameter "
                    "once, with all its periods",
                )
            )
            continue
        seen[canonical] = name
        try:
            parameter = system.parameters.get_child(name)
        except Exception:
            problems.append(problem(where, "unknown parameter"))
            continue
        try:
            values = parameter.values_list
        except AttributeError:
            problems.append(
                problem(where, "names a group of parameters, not one parameter")
            )
            continue
        except Exception as error:  # a parameter the model has retired says why
            problems.append(problem(where, shown(str(error), 300)))
            continue
        if not changes:
            problems.append(problem(where, "give at least one {'start.stop': value}"))
        current = values[-1].value if values else None
        for period_text, value in changes.items():
            problems += check_policy_entry(
                period_text, value, current, (*where, period_text)
            )
    return problems


def check_policy_entry(period_text: str, value, current, where: tuple) -> list[dict]:
    match = POLICY_PERIOD.match(period_text)
    try:
        if match is None:
            raise ValueError(period_text)
        start, stop = (date.fromisoformat(part) for part in match.groups())
    except ValueError:
        return [
            problem(
                where, "expected 'YYYY-MM-DD.YYYY-MM-DD', e.g. 2025-01-01.2100-12-31"
            )
        ]
    problems = []
    if start > stop:
        problems.append(problem(where, "start is after stop"))
    if not (FIRST_YEAR <= start.year and stop.year <= LAST_YEAR):
        problems.append(problem(where, f"dates must fall in {FIRST_YEAR}-{LAST_YEAR}"))
    if isinstance(current, (list, dict, str)):
        problems.append(
            problem(
                where,
                f"this parameter holds {type(current).__name__} values, which a policy cannot set",
            )
        )
    elif isinstance(current, bool) != isinstance(value, bool):
        kind = "true or false" if isinstance(current, bool) else "a number"
        problems.append(problem(where, f"expected {kind}"))
    elif not isinstance(value, bool):
        problems += check_number(value, where)
    return problems
