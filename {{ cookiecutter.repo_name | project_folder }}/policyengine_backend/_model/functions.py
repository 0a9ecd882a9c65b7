"""Worker functions: what an endpoint's function is given, and the registry
the worker looks it up in.

A worker function is a plain function of the request (its pydantic model)
and a ``Simulations``, returning JSON-able data that matches its declared
``result_model``. ``worker_endpoint`` (``_web/endpoints.py``) registers it
when ``api.main`` is imported, before the worker is forked, so the worker
knows every function the server does.
"""

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from policyengine_backend._errors import OverLimit, PolicyFailed
from policyengine_backend._settings import COUNTRY

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
    Each situation counts toward the request's limits (people, axis points),
    as a request's own household does.
    """

    _systems: Any
    _check_size: Callable[[dict], list[dict]] = lambda situation: []
    policy_path: str | None = None
    stages: dict[str, tuple[int, int]] = field(default_factory=dict)
    axis_points: int = 0

    def simulation(self, situation: dict, policy: dict | None = None):
        started = time.time_ns()
        if errors := self._check_size(situation):
            raise OverLimit.of(errors)
        self.axis_points = max(self.axis_points, _axis_points(situation))
        try:
            how = self._systems.path_for(policy or None)  # builds it, once
        except Exception as error:  # noqa: BLE001 - policyengine's own build refuses it
            raise PolicyFailed(f"{type(error).__name__}: {error}") from None
        simulation = self._systems.simulation(situation, policy or None)
        # The reform's path wins on a log line: it is the one worth knowing.
        if self.policy_path in (None, "baseline"):
            self.policy_path = POLICY_PATHS[how]
        self.stages.setdefault("build simulation", (started, time.time_ns()))
        return simulation

    # --- Many households ------------------------------------------------------

    def many(self, situations: Mapping[str, dict], policy: dict | None = None):
        """Many households under one policy, calculated together.

        ``situations`` maps the caller's own names to households; the answer
        (a ``Batch``, ``_model/batch/``) gives results by those names:
        ``.calculate(variable, period)`` each household's array over the
        variable's entity, ``.fill()`` each household with its nulls filled.
        Households share vectorised Simulations (one, usually), so N cost
        little more than one, yet each is answered as its own Simulation
        would. Person and group names may repeat across households.

        A household the model refuses is a 400 located at
        ``households.<name>`` and below (``BatchError``); the others are
        still calculated and kept on the error's ``results``. Each household
        counts toward the request's limits, as ``simulation``'s does.
        """
        from policyengine_backend._model.batch import Batch

        started = time.time_ns()
        for situation in situations.values():
            if errors := self._check_size(situation):
                raise OverLimit.of(errors)
            self.axis_points = max(self.axis_points, _axis_points(situation))
        try:
            how = self._systems.path_for(policy or None)
        except Exception as error:  # noqa: BLE001 - policyengine's own build refuses it
            raise PolicyFailed(f"{type(error).__name__}: {error}") from None
        if self.policy_path in (None, "baseline"):
            self.policy_path = POLICY_PATHS[how]
        batch = Batch(
            situations,
            COUNTRY,
            lambda situation: self._systems.simulation(situation, policy or None),
        )
        self.stages.setdefault("build simulation", (started, time.time_ns()))
        return batch

    # --- end of many households ------------------------------------------------


def _axis_points(situation: dict) -> int:
    points = 1
    for parallel in situation.get("axes") or []:
        points *= max((axis.get("count", 1) for axis in parallel), default=1)
    return points


@dataclass(frozen=True)
class WorkerFunction:
    name: str  # "earnings-chart"
    route: str  # "POST /earnings-chart", for messages
    function: Callable[[Any, Simulations], Any]
    request_model: type[BaseModel]
    result_model: Any


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


def locate(body: Any, value: Any) -> list[tuple]:
    """Every place in a request body that holds ``value`` (as a value of the
    same type, or as a key): where the request named what the model refused."""
    found: list[tuple] = []

    def walk(node: Any, path: tuple) -> None:
        if isinstance(node, dict):
            for key, child in node.items():
                if key == value:
                    found.append((*path, key))
                walk(child, (*path, key))
        elif isinstance(node, list):
            for index, child in enumerate(node):
                walk(child, (*path, index))
        elif type(node) is type(value) and node == value:
            found.append(path)

    walk(body, ())
    return found
