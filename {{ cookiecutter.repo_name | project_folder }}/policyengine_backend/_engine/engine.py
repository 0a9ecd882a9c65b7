"""The calculation engine: one per server process.

It loads the country model and warms it up, checks each request, keeps a
cache of finished answers, and hands calculations to the worker process
(``policyengine_backend/_worker/supervisor.py``), one at a time. The HTTP layer (``policyengine_backend/_web/app.py``) and the
Modal wiring (``modal_app.py``) both use the instance from ``get_engine()``.

A request's path: limits (422 at once) -> checks against the model (400)
-> the answer cache -> the same request already running? wait for it ->
the worker, within the request's deadline (504 past it). ``/compare`` takes
that path twice (current law, then the policy) within one deadline; a job
(``policyengine_backend/_jobs/local.py``) takes it once, with its own time limit.

Each stage is a trace span (sent to Logfire when it is set up, see
``policyengine_backend/_logs.py``), and what the request took (the cache? which policy path?
how long waiting for the worker?) goes on its log line through
``logs.note``.
"""

import asyncio
import gc
import importlib
import importlib.metadata
import json
import logging
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from policyengine_backend._cache import BytesCache
from policyengine_backend._engine.checks import (
    RequestProblem,
    axis_points,
    check_household,
    check_limits,
    check_policy,
    problem,
    years_named,
)
from policyengine_backend._logs import (
    add_to_note,
    configure_logging,
    note,
    record_span,
    tracer,
)
from policyengine_backend._model import calculation, comparison
from policyengine_backend._model import functions as worker_functions
from policyengine_backend._model.household import fill_household
from policyengine_backend._model.policy import policy_key
from policyengine_backend._settings import (
    COUNTRY,
    COUNTRY_PACKAGE,
    MAX_CALCULATION_TIMEOUT_SECONDS,
    Settings,
    get_settings,
)
from policyengine_backend._worker.supervisor import (
    Crashed,
    OutOfMemory,
    TimedOut,
    Worker,
)
from policyengine_backend.examples import EXAMPLE_HOUSEHOLD

PACKAGE_VERSION = importlib.metadata.version(COUNTRY_PACKAGE)
# On every response (a header) and every request's log line.
MODEL_VERSION = f"{COUNTRY_PACKAGE}/{PACKAGE_VERSION}"
MB = 1024 * 1024

logger = logging.getLogger(__name__)


class CalculationTimeout(Exception):
    """The request passed its deadline; the message says where it was."""


class RunnerGone(Exception):
    """The request whose calculation others had joined went away first."""


class WorkerUnavailable(Exception):
    """The calculation worker died under the request and no time was left
    to run it again (503): the request itself may well be fine."""


@dataclass(frozen=True)
class TimeLimit:
    """How long a request may take, waiting included, and the setting
    that says so (named in the 504's message).

    ``ceiling_seconds`` is the most it may take when the backend itself
    lost time (its worker died, or was full of what earlier requests left):
    the lost time is given back up to it, never past what the platform
    allows a request (Modal ends a web request at 150 s).
    """

    seconds: float
    variable: str
    ceiling_seconds: float


def encode_answer(result: dict) -> bytes:
    body = {"status": "ok", "message": None, "result": result}
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


class Engine:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._systems: Any = (
            None  # policyengine_backend._model.systems.TaxBenefitSystems once warm
        )
        self.answers = BytesCache(settings.result_cache_mb * MB)
        # Policies policyengine could not build, with the 400 they got:
        # refused at once next time, not after another full build.
        self.failed_policies = BytesCache(MB)
        self._running: dict[str, asyncio.Future] = {}
        self._warm_up_lock = threading.Lock()
        self._ready = threading.Event()
        self.worker = Worker(
            self._handle_job,
            memory_limit_mb=settings.memory_limit_mb,
            memory_recycle_mb=settings.memory_recycle_mb,
            code_version=worker_functions.registered,
        )
        self._worker_lock: asyncio.Lock | None = None

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def systems(self):
        self.warm_up()
        return self._systems

    async def baseline(self):
        """Current law's tax-benefit system, once the model is loaded."""
        if not self.ready:
            await asyncio.to_thread(self.warm_up)
        return self._systems.baseline

    def warm_up(self) -> None:
        """Load the country model and run one calculation; safe to call often.

        Importing the model takes tens of seconds and the first calculation
        several more, as variables and parameters are first touched. Doing
        both before the first request (and, on Modal, before the memory
        snapshot) keeps that cost off every user, and every worker forked
        from this process starts warm.
        """
        if self._ready.is_set():
            return
        with self._warm_up_lock:
            if self._ready.is_set():
                return
            from policyengine_backend._model.systems import TaxBenefitSystems

            started = time.monotonic()
            logger.info("warming up %s", MODEL_VERSION)
            country = importlib.import_module(f"policyengine_{COUNTRY}")
            self._systems = TaxBenefitSystems.from_settings(country, self.settings)
            fill_household(
                self._systems.simulation(EXAMPLE_HOUSEHOLD), EXAMPLE_HOUSEHOLD
            )
            # The loaded model is millions of long-lived objects. Frozen out
            # of garbage collection, no collection walks them again: not the
            # server's, and not the worker's after each calculation.
            gc.collect()
            gc.freeze()
            self._ready.set()
            seconds = time.monotonic() - started
            logger.info(
                "ready: %s loaded and warmed up in %.1f s",
                MODEL_VERSION,
                seconds,
                extra={"model": MODEL_VERSION, "warm_up_seconds": round(seconds, 1)},
            )

    def time_limit(self) -> TimeLimit:
        """The limit of a request answered while the client waits."""
        return TimeLimit(
            self.settings.calculation_timeout_seconds,
            "CALCULATION_TIMEOUT_SECONDS",
            MAX_CALCULATION_TIMEOUT_SECONDS,
        )

    def job_time_limit(self) -> TimeLimit:
        """The limit of a job (``policyengine_backend/_jobs/local.py``). On Modal, run_job's own
        timeout is JOB_TIMEOUT_SECONDS + 60 s (modal_app.py)."""
        seconds = self.settings.job_timeout_seconds
        return TimeLimit(seconds, "JOB_TIMEOUT_SECONDS", seconds + 30)

    def worker_problem(self) -> str | None:
        """None when the warm backend can calculate, else why not (/health)."""
        return self.worker.check()

    async def calculate(
        self, household: dict, policy: dict | None, limit: TimeLimit | None = None
    ) -> bytes:
        """The answer to ``/calculate`` as JSON bytes.

        ``limit`` counts from now, waiting included (``time_limit()`` unless
        given: jobs have their own). Raises RequestProblem (4xx) or
        CalculationTimeout (504).
        """
        return await self.call(
            "calculate", {"household": household, "policy": policy}, limit
        )

    async def call(
        self, name: str, body: dict, limit: TimeLimit | None = None
    ) -> bytes:
        """The answer of the worker function registered as ``name``
        (``_model/functions.py``) to a request body, as JSON bytes.

        The body's ``household`` and ``policy``, if it has them, are checked
        first. ``limit`` counts from now, waiting included (``time_limit()``
        unless given: jobs have their own). Raises RequestProblem (4xx),
        CalculationTimeout (504) or WorkerUnavailable (503).
        """
        limit = limit or self.time_limit()
        deadline = time.monotonic() + limit.seconds
        await self.check(body.get("household"), body.get("policy"))
        return await self._answer(name, body, deadline, limit)

    async def compare(
        self, household: dict, policy: dict, limit: TimeLimit | None = None
    ) -> bytes:
        """The answer to ``/compare``: the household under current law and
        under ``policy``, and the change, as JSON bytes.

        Both calculations go through the answer cache, so they share it with
        ``/calculate`` (a dashboard's baseline is usually cached already),
        and together they get one request's time limit.
        """
        limit = limit or self.time_limit()
        deadline = time.monotonic() + limit.seconds
        await self.check(household, policy)
        answers = [
            json.loads(
                await self._answer(
                    "calculate",
                    {"household": household, "policy": each},
                    deadline,
                    limit,
                    label,
                )
            )
            for each, label in ((None, "baseline_answer"), (policy, "reform_answer"))
        ]
        baseline, reform = (answer["result"] for answer in answers)
        result = {
            "baseline": baseline,
            "reform": reform,
            "change": comparison.change(household, baseline, reform),
        }
        return encode_answer(result)

    async def check(self, household: dict | None, policy: dict | None) -> None:
        """Raise RequestProblem unless the request is within the limits (422)
        and the model knows everything it names (400)."""
        if household is None and not policy:
            return  # nothing of the model's to check
        note(axis_points=axis_points(household or {}))
        with tracer.start_as_current_span("check request"):
            if problems := check_limits(household or {}, policy, self.settings):
                raise RequestProblem(problems, status=422)
            if not self.ready:
                await asyncio.to_thread(self.warm_up)
            await asyncio.to_thread(self._check, household, policy)
            if policy and (failed := self.failed_policies.get(policy_key(policy))):
                status, problems = json.loads(failed)
                raise RequestProblem(problems, status=status)

    async def _answer(
        self,
        name: str,
        body: dict,
        deadline: float,
        limit: TimeLimit,
        label: str = "answer",
    ) -> bytes:
        """The answer to a checked request: from the cache, from the same
        request already running, or from the worker. ``label`` names the
        answer's source on the log line.

        A request that joins a running one keeps its own deadline: it stops
        waiting at its own limit, and if the running one fails for reasons
        of its own (its shorter limit, its worker, its client leaving), it
        runs the calculation itself while its own time lasts.
        """
        household = body.get("household") or {}
        # Equal for policies policyengine applies alike. The household's own
        # order is kept: member order decides which person an axis varies,
        # and the answer echoes what was sent.
        rest = {field: value for field, value in body.items() if field != "policy"}
        key = json.dumps(
            [name, policy_key(body.get("policy")), rest], separators=(",", ":")
        )
        while True:
            with tracer.start_as_current_span("answer cache lookup") as span:
                answer = self.answers.get(key)
                running = self._running.get(key)
                if answer is not None:
                    source = "cached"
                elif running is not None:
                    source = "joined"  # the same request, already running
                else:
                    source = "calculated"
                span.set_attribute("answer", source)
                note(**{label: source})
            if answer is not None:
                return answer
            if running is None:
                break
            try:
                async with asyncio.timeout_at(self._loop_deadline(deadline)):
                    return await asyncio.shield(running)
            except TimeoutError:
                raise CalculationTimeout(
                    self._timeout_message(limit, household, waited=0)
                ) from None
            except (CalculationTimeout, WorkerUnavailable, RunnerGone):
                if time.monotonic() >= deadline:
                    raise
        self._running[key] = future = asyncio.get_running_loop().create_future()
        try:
            answer = await self._run(("call", name, body), deadline, limit, household)
            self.answers.put(key, answer)
            future.set_result(answer)
            return answer
        except asyncio.CancelledError:
            future.set_exception(RunnerGone())
            future.exception()
            raise
        except Exception as error:
            future.set_exception(error)
            future.exception()  # marked as seen: no warning when nobody waited
            raise
        finally:
            del self._running[key]

    def _check(self, household: dict | None, policy: dict | None) -> None:
        system = self.systems.baseline
        problems = check_household(system, household) if household is not None else []
        if policy:
            problems += check_policy(system, policy)
        if problems:
            raise RequestProblem(problems)

    async def _run(
        self, job: tuple, deadline: float, limit: TimeLimit, household: dict
    ) -> bytes:
        """Run ``job`` in the worker when it is free, within ``deadline``.
        ``household`` is the request's ({} if it has none), for messages and
        the memory its years may take."""
        if self._worker_lock is None:
            self._worker_lock = asyncio.Lock()
        arrived = time.monotonic()
        try:
            with tracer.start_as_current_span("wait for the worker"):
                async with asyncio.timeout_at(self._loop_deadline(deadline)):
                    await self._worker_lock.acquire()
        except TimeoutError:
            waited = time.monotonic() - arrived
            add_to_note(worker_wait_ms=round(waited * 1000, 1))
            raise CalculationTimeout(
                self._timeout_message(limit, household, waited)
            ) from None
        waited = time.monotonic() - arrived
        add_to_note(worker_wait_ms=round(waited * 1000, 1))
        ceiling = deadline - limit.seconds + limit.ceiling_seconds
        growth_mb = self.settings.memory_per_year_mb * (
            len(years_named(household)) or 1
        )
        try:
            with tracer.start_as_current_span("calculation"):
                reply = await asyncio.to_thread(
                    self.worker.run, job, deadline, ceiling, growth_mb
                )
                if reply[0] == "ok":
                    self._record(reply[2])
        except TimedOut:
            raise CalculationTimeout(
                self._timeout_message(limit, household, waited)
            ) from None
        except Crashed as error:
            raise WorkerUnavailable(
                f"{error}, twice or with no time left to run the calculation "
                "again; the request may be fine: send it again"
            ) from None
        except OutOfMemory as error:
            raise RequestProblem(
                [
                    problem(
                        ("household",),
                        f"the calculation needed more memory than the backend allows "
                        f"(MEMORY_LIMIT_MB={self.settings.memory_limit_mb}, {error}); "
                        "ask for fewer periods, people, axis points or values",
                    )
                ],
                status=422,
            ) from None
        finally:
            self._worker_lock.release()
        if reply[0] == "ok":
            return encode_answer(reply[1])
        if reply[0] == "problem":
            if reply[3:] == (calculation.POLICY_FAILED,):
                self.failed_policies.put(
                    policy_key(job[2].get("policy")),
                    json.dumps([reply[1], reply[2]]).encode(),
                )
            raise RequestProblem(reply[2], status=reply[1])
        raise RuntimeError(f"calculation failed in the worker:\n{reply[1]}")

    @staticmethod
    def _record(details: dict) -> None:
        """The worker's account of a calculation, on the log line and the trace."""
        # None when the function built no simulation.
        path = {"policy_path": details["policy_path"]} if details["policy_path"] else {}
        note(**path)  # /compare: the reform's
        for stage, (start_ns, end_ns) in details["stages"].items():
            record_span(stage, start_ns, end_ns, **path)
        start_ns = min(start for start, _ in details["stages"].values())
        end_ns = max(end for _, end in details["stages"].values())
        add_to_note(calculation_ms=round((end_ns - start_ns) / 1e6, 1))

    @staticmethod
    def _loop_deadline(deadline: float) -> float:
        loop = asyncio.get_running_loop()
        return loop.time() + (deadline - time.monotonic())

    @staticmethod
    def _timeout_message(limit: TimeLimit, household: dict, waited: float) -> str:
        message = f"the calculation did not finish within {limit.seconds:g} s ({limit.variable})"
        if waited >= 1:
            message += f", {waited:.0f} s of it waiting for earlier calculations"
        if household.get("axes"):
            message += "; try fewer axis points"
        return message

    def _handle_job(self, job: tuple) -> tuple:
        """In the worker process: run one job."""
        _, name, body = job
        return calculation.run(self._systems, name, body)

    def close(self) -> None:
        self.worker.stop()


@lru_cache
def get_engine() -> Engine:
    """The process's engine. Its first use (by the server, the Modal
    warm-up or the tests) also sets up logging, so all three log alike."""
    settings = get_settings()
    configure_logging(settings.log_level)
    return Engine(settings)
