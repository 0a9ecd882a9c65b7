"""Checks of ``/calculate-many``: many households, each checked as
``/calculate`` checks its one, with its errors located at
``households.<name>``, and limits on the batch as a whole.

A batch runs in one vectorised Simulation (``_model/batch/``), so its cost
grows with the households' people and the values they ask for, summed: the
batch limits count those sums, and a batch over one is refused before it
waits for the worker (422, naming the limit and its variable).
"""

from policyengine_backend._engine.checks import (
    axis_points,
    check_household,
    check_limits,
)
from policyengine_backend._errors import field_error
from policyengine_backend._model.household import requested_values
from policyengine_backend._settings import Settings

HOUSEHOLDS = "households"


def at_household(errors: list[dict], name: str) -> list[dict]:
    """``errors`` about one household (located at ``household...``) located
    at ``households.<name>...`` instead."""
    moved = []
    for error in errors:
        location = list(error["loc"])
        if location[:1] == ["household"]:
            location = [HOUSEHOLDS, name, *location[1:]]
        moved.append({**error, "loc": location})
    return moved


def check_many_limits(
    households: dict[str, dict], policy: dict | None, settings: Settings
) -> list[dict]:
    """Each household's own limits (as ``/calculate``'s), the policy's, and
    the batch's: households, people and values summed over households."""
    errors = check_limits({}, policy, settings)  # the policy's only
    for name, household in households.items():
        errors += check_limits(household, None, settings, at=(HOUSEHOLDS, name))
    people = sum(len(household.get("people", {})) for household in households.values())
    values = sum(
        sum(1 for _ in requested_values(household))
        * len(household.get("people", {}))
        * axis_points(household)
        for household in households.values()
    )
    counts = [
        (len(households), "households", settings.max_households, "MAX_HOUSEHOLDS"),
        (people, "people in all", settings.max_batch_people, "MAX_BATCH_PEOPLE"),
        (
            values,
            "values in all (requested values x people x axis points, summed)",
            settings.max_values,
            "MAX_VALUES",
        ),
    ]
    errors += [
        field_error(
            (HOUSEHOLDS,), f"{count} {what} is over the limit of {limit} ({variable})"
        )
        for count, what, limit, variable in counts
        if count > limit
    ]
    return errors


def check_many_households(system, households: dict[str, dict]) -> list[dict]:
    """Each household checked against the model, as ``/calculate`` checks one."""
    errors = []
    for name, household in households.items():
        errors += at_household(check_household(system, household), name)
    return errors
