"""Check a request against the country model before simulating it.

The request models check shapes; this module checks meaning: that each
variable exists and belongs to the group it is given for, that members are
real people, that periods and policy parameters parse, and that the request
stays within the limits in ``api/settings.py``. Every problem becomes an
entry with the path to the offending field, so the client can fix it
without reading a traceback.
"""

import re
from datetime import date

from policyengine_core.periods import period as parse_period

from api.household import AXES, MEMBERS, entity_groups
from api.settings import Settings

# Years the country models hold parameters for, with some room either side.
FIRST_YEAR, LAST_YEAR = 2000, 2100
POLICY_PERIOD = re.compile(r"^(\d{4}-\d{2}-\d{2})\.(\d{4}-\d{2}-\d{2})$")


class RequestProblem(Exception):
    """Raised with every problem found; answered as HTTP ``status``.

    400 for inputs the model does not know, 422 for requests over a limit.
    """

    def __init__(self, problems: list[dict], status: int = 400):
        self.problems = problems
        self.status = status
        super().__init__(summarise(problems))


def problem(location: tuple, message: str) -> dict:
    return {"loc": list(location), "msg": message}


def summarise(problems: list[dict]) -> str:
    first = problems[0]
    where = ".".join(str(part) for part in first["loc"])
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{where}: {first['msg']}{more}"


def over_limit(location: tuple, count: int, what: str, limit: int, variable: str):
    return problem(
        location, f"{count} {what} is over the limit of {limit} ({variable})"
    )


def check_limits(
    household: dict, policy: dict | None, settings: Settings
) -> list[dict]:
    """Size limits, checked first: they bound the cost of everything else."""
    problems = []
    people = len(household.get("people", {}))
    if people > settings.max_people:
        problems.append(
            over_limit(
                ("household", "people"),
                people,
                "people",
                settings.max_people,
                "MAX_PEOPLE",
            )
        )
    points = 1
    for parallel in household.get(AXES) or []:
        points *= max((axis["count"] for axis in parallel), default=1)
    if points > settings.max_axis_points:
        problems.append(
            over_limit(
                ("household", AXES),
                points,
                "axis points",
                settings.max_axis_points,
                "MAX_AXIS_POINTS",
            )
        )
    parameters = len(policy or {})
    if parameters > settings.max_policy_parameters:
        problems.append(
            over_limit(
                ("policy",),
                parameters,
                "parameters",
                settings.max_policy_parameters,
                "MAX_POLICY_PARAMETERS",
            )
        )
    return problems


def check_period(text, location: tuple) -> list[dict]:
    try:
        parsed = parse_period(str(text))
    except Exception:
        return [problem(location, f"{text!r} is not a period such as 2025 or 2025-01")]
    if not FIRST_YEAR <= parsed.start.year <= LAST_YEAR:
        return [
            problem(
                location,
                f"year {parsed.start.year} is outside {FIRST_YEAR}-{LAST_YEAR}",
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
    elif kind is str:
        ok = isinstance(value, str)
    elif getattr(variable, "possible_values", None) is not None:  # an enum
        names = list(variable.possible_values.__members__)
        ok = isinstance(value, str) and value in names
        if not ok:
            shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
            return [problem(location, f"{value!r} is not one of {shown}")]
    else:
        ok = True
    if ok:
        return []
    return [problem(location, f"{value!r} is not a valid {kind.__name__}")]


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
            for name, periods in variables.items():
                where = ("household", group, member_id, name)
                if name == MEMBERS:
                    if entity.is_person:
                        problems.append(problem(where, "people have no members"))
                    problems += [
                        problem(where, f"{person!r} is not in household.people")
                        for person in periods
                        if person not in people
                    ]
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
    axes = household.get(AXES) or []
    for i, parallel in enumerate(axes):
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
            if axis["max"] < axis["min"]:
                problems.append(problem((*where, "max"), "max is below min"))
    return problems


def check_policy(system, policy: dict) -> list[dict]:
    problems = []
    for name, changes in policy.items():
        where = ("policy", name)
        try:
            parameter = system.parameters.get_child(name)
        except Exception:
            problems.append(problem(where, "unknown parameter"))
            continue
        if not hasattr(parameter, "values_list"):
            problems.append(
                problem(where, "names a group of parameters, not one parameter")
            )
            continue
        if not changes:
            problems.append(problem(where, "give at least one {'start.stop': value}"))
        for period_text, value in changes.items():
            match = POLICY_PERIOD.match(period_text)
            try:
                start, stop = (date.fromisoformat(part) for part in match.groups())
            except (AttributeError, ValueError):
                problems.append(
                    problem(
                        (*where, period_text),
                        "expected 'YYYY-MM-DD.YYYY-MM-DD', e.g. 2025-01-01.2100-12-31",
                    )
                )
                continue
            if start > stop:
                problems.append(problem((*where, period_text), "start is after stop"))
            if not (FIRST_YEAR <= start.year and stop.year <= LAST_YEAR):
                problems.append(
                    problem(
                        (*where, period_text),
                        f"dates must fall in {FIRST_YEAR}-{LAST_YEAR}",
                    )
                )
            current = parameter.values_list[-1].value if parameter.values_list else None
            if isinstance(current, bool) != isinstance(value, bool):
                kind = "true or false" if isinstance(current, bool) else "a number"
                problems.append(problem((*where, period_text), f"expected {kind}"))
    return problems
