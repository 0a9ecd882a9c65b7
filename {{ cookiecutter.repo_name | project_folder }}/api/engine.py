"""The calculation engine: one per process.

It loads the country model, keeps the tax-benefit systems and a cache of
finished results, and knows whether it has warmed up. The HTTP layer
(``api/main.py``) and the Modal wiring (``modal_app.py``) both talk to the
single instance returned by ``get_engine()``.
"""

import gc
import importlib
import importlib.metadata
import json
import threading
from collections import OrderedDict
from concurrent.futures import Future
from functools import lru_cache

from policyengine_core.errors import SituationParsingError

from api.examples import EXAMPLE_HOUSEHOLD
from api.household import fill_household
from api.settings import COUNTRY, COUNTRY_PACKAGE, Settings, get_settings
from api.validation import (
    RequestProblem,
    check_household,
    check_limits,
    check_policy,
    problem,
)

PACKAGE_VERSION = importlib.metadata.version(COUNTRY_PACKAGE)
# Calculations between full garbage collections (see Engine._collect_garbage).
FULL_COLLECTION_EVERY = 50


class ResultCache:
    """Finished results by request, least recently used out first.

    Identical requests that arrive together are computed once: the later
    ones wait for the first (dashboards often send the same request twice).
    Errors are not cached.
    """

    def __init__(self, size: int):
        self.size = size
        self._done: OrderedDict[str, dict] = OrderedDict()
        self._running: dict[str, Future] = {}
        self._lock = threading.Lock()

    def get_or_compute(self, key: str, compute) -> dict:
        with self._lock:
            if key in self._done:
                self._done.move_to_end(key)
                return self._done[key]
            running = self._running.get(key)
            if running is None:
                self._running[key] = mine = Future()
        if running is not None:
            return running.result()
        try:
            result = compute()
        except BaseException as error:
            with self._lock:
                del self._running[key]
            mine.set_exception(error)
            raise
        with self._lock:
            del self._running[key]
            self._done[key] = result
            while len(self._done) > self.size:
                self._done.popitem(last=False)
        mine.set_result(result)
        return result

    def clear(self) -> None:
        with self._lock:
            self._done.clear()


class Engine:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._systems = None
        self.results = ResultCache(settings.result_cache_size)
        self._warm_up_lock = threading.Lock()
        self._ready = threading.Event()
        self._calculations = 0

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
            self._systems = TaxBenefitSystems.from_settings(country, self.settings)
            self._simulate(EXAMPLE_HOUSEHOLD, None)
            # The loaded model is millions of long-lived objects, and a
            # simulation makes many more. An automatic collection that lands
            # mid-simulation walks them all while holding the GIL, for up to
            # a second, and /health waits that long. So the model is frozen
            # out of collections, and garbage is collected after each
            # calculation instead (in _collect_garbage), a short pause.
            gc.collect()
            gc.freeze()
            gc.disable()
            self._ready.set()

    def calculate(self, household: dict, policy: dict | None = None) -> dict:
        """The household with every null filled, under ``policy`` if given."""
        key = json.dumps([household, policy or {}], sort_keys=True)
        return self.results.get_or_compute(
            key, lambda: self._checked_calculation(household, policy)
        )

    def _checked_calculation(self, household: dict, policy: dict | None) -> dict:
        if problems := check_limits(household, policy, self.settings):
            raise RequestProblem(problems, status=422)
        system = self.systems.baseline
        problems = check_household(system, household)
        if policy:
            problems += check_policy(system, policy)
        if problems:
            raise RequestProblem(problems)
        try:
            return self._simulate(household, policy)
        except SituationParsingError as error:
            # Inputs the checks above let through but the model refuses.
            raise RequestProblem(list(parsing_problems(error.error))) from error
        finally:
            self._collect_garbage()

    def _collect_garbage(self) -> None:
        """Free what the last calculation left, walking only new objects.

        With automatic collection off, everything a calculation made is
        still in the youngest generation, so collecting that generation
        alone frees it without walking the rest of the heap. A full
        collection now and then catches cycles that reach older objects.
        """
        self._calculations += 1
        gc.collect(0 if self._calculations % FULL_COLLECTION_EVERY else 2)

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
