"""What the calculation worker runs for a job: a registered worker
function (``_model/functions.py``), given the request and simulations.

The request has been checked already (``policyengine_backend/_engine/checks.py``).
What the model still refuses is turned into a problem with the path to the
field, so the client gets a 400 that says what to send, not a 500:

- a situation policyengine cannot parse (a person in two tax units, say);
- a value the model cannot calculate for this household, with the model's
  own message (a year it has no parameters for, or an input it needs);
- a policy policyengine itself cannot build (marked ``POLICY_FAILED``, so
  the server refuses it at once next time);
- any other error raised inside policyengine's own code while a function
  runs (a year the model has no parameters for, say): a 400 at
  ``household``; an error raised elsewhere is a bug, and a 500;
- whatever the function refuses itself (``Problem``).

Replies are plain tuples, since they cross a pipe from the worker process:
``("ok", result, details)`` or ``("problem", status, problems)``, with
``POLICY_FAILED`` after the problems when no household could use the policy.
The details say how the policy's tax-benefit system was made and when each
stage ran, for the request's log line and trace (``_engine/engine.py``).
"""

import os
import time
import traceback

from policyengine_core.errors import SituationParsingError

from policyengine_backend._engine.checks import problem
from policyengine_backend._model.functions import (
    WORKER_FUNCTIONS,
    PolicyFailed,
    Problem,
    Simulations,
)
from policyengine_backend._model.household import ModelError, fill_household

# The model's messages can be long; the client gets the start.
MESSAGE_LIMIT = 300
# The mark on a problem reply that says the policy itself cannot be built.
POLICY_FAILED = "policy failed"


def run(systems, name: str, body: dict) -> tuple:
    """Run the worker function registered as ``name`` on a request body."""
    function = WORKER_FUNCTIONS[name]
    simulations = Simulations(systems)
    started = time.time_ns()
    try:
        request = function.request_model.model_validate(body)
        result = function.function(request, simulations)
    except PolicyFailed as error:
        message = f"policyengine cannot apply this policy: {short(str(error))}"
        return "problem", 400, [problem(("policy",), message)], POLICY_FAILED
    except Problem as error:
        return "problem", error.status, error.problems
    except SituationParsingError as error:
        return "problem", 400, list(parsing_problems(error.error))
    except ModelError as error:
        message = f"the model could not calculate this: {short(str(error))}"
        return "problem", 400, [problem(error.location, message)]
    except Exception as error:
        if not raised_by_the_model(error):
            raise  # a bug: a 500, with its traceback in the log
        # The request was checked, so what policyengine refuses now is this
        # household in this period (a year it has no parameters for, say).
        message = f"the model could not calculate this: {short(f'{type(error).__name__}: {error}')}"
        return "problem", 400, [problem(("household",), message)]
    stages = dict(simulations.stages)
    built = stages.get("build simulation", (started, started))[1]
    stages["calculate values"] = (built, time.time_ns())
    details = {"policy_path": simulations.policy_path, "stages": stages}
    return "ok", result, details


def calculate(request, simulations: Simulations) -> dict:
    """Fill every null in the household, under the policy if one is given."""
    # Only what was sent: the answer echoes the request with nulls filled.
    household = request.household.model_dump(exclude_unset=True)
    simulation = simulations.simulation(household, request.policy)
    return fill_household(simulation, household)


def raised_by_the_model(error: Exception) -> bool:
    """Whether the error came from policyengine's own code."""
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and f"{os.sep}policyengine_" in frames[-1].filename


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
