"""The calculation engine: one per process.

It loads the country model, keeps the tax-benefit systems and a cache of
finished results, and knows whether it has warmed up. The HTTP layer
(``api/main.py``) and the Modal wiring (``modal_app.py``) both talk to the
single instance returned by ``get_engine()``.
"""

import importlib
import importlib.metadata
import json
import threading
from collections import OrderedDict
from functools import lru_cache

from policyengine_core.errors import SituationParsingError

from api.household import fill_household
from api.models import EXAMPLE_HOUSEHOLD
from api.settings import COUNTRY, COUNTRY_PACKAGE, Settings, get_settings
from api.validation import (
    RequestProblem,
    check_household,
    check_limits,
    check_policy,
    problem,
)

PACKAGE_VERSION = importlib.metadata.version(COUNTRY_PACKAGE)


class Engine:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._systems = None
        self._results: OrderedDict[str, dict] = OrderedDict()
        self._results_lock = threading.Lock()
        self._warm_up_lock = threading.Lock()
        self._ready = threading.Event()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def systems(self):
        self.warm_up()
        return self._systems

    def warm_up(self) -> None:
        """Load the country model and run one calculation; safe to call often.

        Importing the model takes tens of seconds and the first calculation
        several more, as variables and parameters are first touched. Doing
        both before the first request (and inside a Modal memory snapshot)
        keeps that cost off every user.
        """
        if self._ready.is_set():
            return
        with self._warm_up_lock:
            if self._ready.is_set():
                return
            from api.systems import TaxBenefitSystems

            country = importlib.import_module(f"policyengine_{COUNTRY}")
            self._systems = TaxBenefitSystems(
                country, COUNTRY, max_cached=self.settings.policy_cache_size
            )
            self._simulate(EXAMPLE_HOUSEHOLD, None)
            self._ready.set()

    def calculate(self, household: dict, policy: dict | None = None) -> dict:
        """The household with every null filled, under ``policy`` if given."""
        key = json.dumps([household, policy or {}], sort_keys=True)
        with self._results_lock:
            if key in self._results:
                self._results.move_to_end(key)
                return self._results[key]
        if problems := check_limits(household, policy, self.settings):
            raise RequestProblem(problems, status=422)
        system = self.systems.baseline
        problems = check_household(system, household)
        if policy:
            problems += check_policy(system, policy)
        if problems:
            raise RequestProblem(problems)
        try:
            result = self._simulate(household, policy)
        except SituationParsingError as error:
            # Inputs the checks above let through but the model refuses.
            raise RequestProblem(list(parsing_problems(error.error))) from error
        with self._results_lock:
            self._results[key] = result
            while len(self._results) > self.settings.result_cache_size:
                self._results.popitem(last=False)
        return result

    def clear_result_cache(self) -> None:
        with self._results_lock:
            self._results.clear()

    def _simulate(self, household: dict, policy: dict | None) -> dict:
        simulation = self._systems.simulation(household, policy)
        return fill_household(simulation, household)


def parsing_problems(tree: dict, location: tuple = ("household",)):
    """Flatten policyengine's nested {path: {...: message}} error."""
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from parsing_problems(value, (*location, key))
        else:
            yield problem((*location, key), str(value))


@lru_cache
def get_engine() -> Engine:
    return Engine(get_settings())
