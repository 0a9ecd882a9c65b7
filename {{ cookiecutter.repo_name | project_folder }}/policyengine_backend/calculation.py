"""What the calculation worker runs for a request: one household, one policy.

The request has been checked already (``policyengine_backend/validation.py``). What the
model still refuses is turned into a problem with the path to the field, so
the client gets a 400 that says what to send, not a 500:

- a situation policyengine cannot parse (a person in two tax units, say);
- a value the model cannot calculate for this household, with the model's
  own message (a year it has no parameters for, or an input it needs).

Replies are plain tuples, since they cross a pipe from the worker process:
``("ok", result, details)`` or ``("problem", status, problems)``, with
``POLICY_FAILED`` after the problems when no household could use the policy. The
details say how the policy's tax-benefit system was made and when each
stage ran, for the request's log line and trace (``policyengine_backend/engine.py``).
"""

import time

from policyengine_core.errors import SituationParsingError

from policyengine_backend.household import ModelError, fill_household
from policyengine_backend.validation import problem

# The model's messages can be long; the client gets the start.
MESSAGE_LIMIT = 300
# The mark on a problem reply that says the policy itself cannot be built.
POLICY_FAILED = "policy failed"


# How a policy's system was made (``systems.path_for``), as the logs say it:
# current law; derived from the baseline by copying only the changed
# parameters; or a full build of the country's system.
POLICY_PATHS = {"baseline": "baseline", "fast": "derived", "slow": "full_build"}


def calculate(systems, household: dict, policy: dict | None) -> tuple:
    # Wall-clock nanoseconds: the server records them as trace spans, and
    # both processes share the clock.
    started = time.time_ns()
    try:
        systems.path_for(policy or None)  # builds the policy's system, once
    except Exception as error:  # noqa: BLE001 - policyengine's own build refuses it
        # The policy was checked: every path and value is one the model
        # knows. What fails here fails in policyengine's own Simulation too
        # (two structural reforms defining one variable, say), for every
        # household: a 400 about the policy, which the server remembers.
        message = (
            "policyengine cannot apply this policy: "
            f"{type(error).__name__}: {short(str(error))}"
        )
        return "problem", 400, [problem(("policy",), message)], POLICY_FAILED
    try:
        simulation = systems.simulation(household, policy or None)
        built = time.time_ns()
        result = fill_household(simulation, household)
    except SituationParsingError as error:
        return "problem", 400, list(parsing_problems(error.error))
    except ModelError as error:
        message = f"the model could not calculate this: {short(str(error))}"
        return "problem", 400, [problem(error.location, message)]
    details = {
        "policy_path": POLICY_PATHS[systems.path_for(policy or None)],
        "stages": {
            "build simulation": (started, built),
            "calculate values": (built, time.time_ns()),
        },
    }
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
