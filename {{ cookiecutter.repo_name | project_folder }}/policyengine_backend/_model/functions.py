"""Work that runs in the calculation worker: what a worker endpoint's
function is given, and what it may raise.

A worker function is a plain function of the request (its pydantic model)
and a ``Simulations``, returning JSON-able data. ``endpoints.worker_endpoint``
registers it; the worker process looks it up here by name. Registration
happens when ``api.main`` is imported, before the worker is forked, so the
worker knows every function the server does.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from policyengine_backend._engine.checks import problem


class Problem(Exception):
    """A request the function cannot answer, at ``location`` in the request
    body (``("earner",)``, say): answered 400, or ``status``."""

    def __init__(self, location: tuple, message: str, status: int = 400):
        self.problems = [problem(location, message)]
        self.status = status
        super().__init__(message)


class PolicyFailed(Exception):
    """policyengine itself cannot build the policy's tax-benefit system."""


# How a policy's system was made (``systems.path_for``), as the logs say it:
# current law; derived from the baseline by copying only the changed
# parameters; or a full build of the country's system.
POLICY_PATHS = {"baseline": "baseline", "fast": "derived", "slow": "full_build"}


@dataclass
class Simulations:
    """How a worker function gets policyengine simulations.

    ``simulation(situation, policy)`` is policyengine's own
    ``Simulation(situation=..., reform=Reform.from_dict(policy))``, made from
    systems built once per policy and kept warm, not rebuilt per request.
    """

    systems: Any
    policy_path: str | None = None
    stages: dict[str, tuple[int, int]] = field(default_factory=dict)

    def simulation(self, situation: dict, policy: dict | None = None):
        started = time.time_ns()
        try:
            how = self.systems.path_for(policy or None)  # builds it, once
        except Exception as error:  # noqa: BLE001 - policyengine's own build refuses it
            raise PolicyFailed(f"{type(error).__name__}: {error}") from None
        simulation = self.systems.simulation(situation, policy or None)
        # The reform's path wins on a log line: it is the one worth knowing.
        if self.policy_path in (None, "baseline"):
            self.policy_path = POLICY_PATHS[how]
        self.stages.setdefault("build simulation", (started, time.time_ns()))
        return simulation


@dataclass(frozen=True)
class WorkerFunction:
    name: str
    function: Callable[[Any, Simulations], Any]
    request_model: type[BaseModel]


# By endpoint name ("calculate", "earnings-chart").
WORKER_FUNCTIONS: dict[str, WorkerFunction] = {}


def register(worker_function: WorkerFunction) -> None:
    # The latest definition wins: a module imported again (a test that
    # reloads the app) registers its function again.
    WORKER_FUNCTIONS[worker_function.name] = worker_function


def registered() -> tuple:
    """What is registered now: a worker forked when this was different
    does not know every function, and is replaced before its next job."""
    return tuple((name, id(f.function)) for name, f in WORKER_FUNCTIONS.items())
