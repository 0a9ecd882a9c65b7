"""What the calculation worker runs for a request: one household, one policy.

The request has been checked already (``api/validation.py``). What the
model still refuses is turned into a problem with the path to the field, so
the client gets a 400 that says what to send, not a 500:

- a situation policyengine cannot parse (a person in two tax units, say);
- a value the model cannot calculate for this household, with the model's
  own message (a year it has no parameters for, or an input it needs).

Replies are plain tuples, since they cross a pipe from the worker process:
``("ok", result, details)`` or ``("problem", status, problems)``.
"""

import time

from policyengine_core.errors import SituationParsingError

from api.household import ModelError, fill_household
from api.validation import problem

# The model's messages can be long; the client gets the start.
MESSAGE_LIMIT = 300


def calculate(systems, household: dict, policy: dict | None) -> tuple:
    started = time.perf_counter()
    try:
        simulation = systems.simulation(household, policy or None)
        result = fill_household(simulation, household)
    except SituationParsingError as error:
        return "problem", 400, list(parsing_problems(error.error))
    except ModelError as error:
        message = f"the model could not calculate this: {short(str(error))}"
        return "problem", 400, [problem(error.location, message)]
    details = {"seconds": round(time.perf_counter() - started, 3)}
    return "ok", result, details


def short(message: str) -> str:
    first = message.strip().splitlines()[0] if message.strip() else "no reason given"
    return first if len(first) <= MESSAGE_LIMIT else first[: MESSAGE_LIMIT - 3] + "..."


def parsing_problems(tree, location: tuple = ("household",)):
    """Flatten policyengine's nested {path: {...: message}} error."""
    if not isinstance(tree, dict):
        yield problem(location, short(str(tree)))
        return
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from parsing_problems(value, (*location, key))
        else:
            yield problem((*location, key), short(str(value)))
