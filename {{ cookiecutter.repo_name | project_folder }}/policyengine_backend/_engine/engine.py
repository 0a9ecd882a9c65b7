"""The calculation engine: a request's path, from its checks to its answer.

``create_app`` (``_web/app.py``) builds one per server and hands it to what
needs it; importing this module builds nothing. A request's path:

1. limits (422 at once) and checks against the model (400), ``checks.py``;
   a policy policyengine could not build before is refused at once;
2. the answer cache: the same request answered before, or being answered
   now (joined), ``answers.py``;
3. the worker's queue, within the request's deadline (504 past it),
   ``scheduler.py``, and the worker itself, ``_worker/``.

``/compare`` takes that path twice (current law, then the policy) within
one deadline; a job (``_jobs/``) takes it once, with its own time limit.

Each stage is a trace span (sent to Logfire when it is set up, see
``_logs.py``), and what the request took (the cache? which policy path?
how long waiting for the worker?) goes on its log line through ``note``.
"""

import asyncio
import gc
import importlib
import json
import logging
import threading
import time
from typing import Any

from policyengine_backend._cache import BytesCache
from policyengine_backend._engine.answers import Answers
from policyengine_backend._engine.checks import (
    axis_points,
    check_household,
    check_limits,
    check_policy,
    years_named,
)
from policyengine_backend._engine.scheduler import Scheduler, TimeLimit
from policyengine_backend._errors import (
    CalculationTimeout,
    OverLimit,
    Problem,
    Unavailable,
)
from policyengine_backend._logs import note, tracer
from policyengine_backend._model import comparison
from policyengine_backend._model.functions import WORKER_FUNCTIONS, registered
from policyengine_backend._model.household import fill_household
from policyengine_backend._model.policy import policy_key
from policyengine_backend._settings import (
    COUNTRY,
    MAX_CALCULATION_TIMEOUT_SECONDS,
    MODEL_VERSION,
    Settings,
)
from policyengine_backend._worker.memory import find_source
from policyengine_backend._worker.messages import Outcome
from policyengine_backend._worker.supervisor import Deadline, Worker
from policyengine_backend.examples import EXAMPLE_HOUSEHOLD

MB = 1024 * 1024

logger = logging.getLogger(__name__)


def encode_answer(result: Any) -> bytes:
    body = {"status": "ok", "message": None, "result": result}
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


def years_of(body: dict) -> tuple[str, ...]:
    """The years a request names: its household's periods, and a ``year``
    or ``years`` field. The worker prepares each year's parameters once
    and keeps them."""
    years = (
        years_named(body["household"])
        if isinstance(body.get("household"), dict)
        else set()
    )
    # /calculate-many's households.
    for household in (body.get("households") or {}).values():
        years |= years_named(household) if isinstance(household, dict) else set()
    named = body["years"] if isinstance(body.get("years"), list) else [body.get("year")]
    years |= {
        str(year) for year in named if isinstance(year, int) and 1000 <= year <= 9999
    }
    return tuple(sorted(years))


def request_key(name: str, key: str, body: dict) -> str:
    """The answer cache's key of a request to worker function ``name``
    under the policy whose key is ``key``. A ``/calculate-many`` household
    is cached under its ``/calculate`` key, so each reuses the other's."""
    rest = {field: value for field, value in body.items() if field != "policy"}
    return json.dumps([name, key, rest], separators=(",", ":"))


class Engine:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._systems: Any = None  # _model.systems.TaxBenefitSystems once warm
        self._warm_up_lock = threading.Lock()
        self._warming: threading.Thread | None = None
        self._ready = threading.Event()
        self.closing = False
        self._users = 0  # apps serving with this engine
        self.memory = find_source(settings.memory_source)
        self.worker = Worker(
            lambda: self._systems,
            settings,
            self.memory,
            code_version=registered,
            warmed_years=lambda: years_of({"household": EXAMPLE_HOUSEHOLD}),
        )
        self.scheduler = Scheduler(self.worker)
        self.answers = Answers(settings.result_cache_mb * MB)
        # Policies policyengine could not build, with the 400 they got:
        # refused at once next time, not after another full build.
        self.failed_policies = BytesCache(MB)

    # --- Starting and stopping -----------------------------------------------

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def systems(self):
        self.warm_up()
        return self._systems

    def start_warm_up(self) -> None:
        """Warm up in a thread of its own (once), so the server answers
        ``/health`` (503 "starting") at once."""
        with self._warm_up_lock:
            if self._warming is None and not self.ready:
                self._warming = threading.Thread(
                    target=self.warm_up, name="warm-up", daemon=True
                )
                self._warming.start()

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
            # server's, and not the worker's.
            gc.collect()
            gc.freeze()
            self._say_how_memory_is_read()
            self._ready.set()
            seconds = time.monotonic() - started
            logger.info(
                "ready: %s loaded and warmed up in %.1f s",
                MODEL_VERSION,
                seconds,
                extra={"model": MODEL_VERSION, "warm_up_seconds": round(seconds, 1)},
            )

    def _say_how_memory_is_read(self) -> None:
        setting = self.settings.memory_source
        if self.memory is not None:
            logger.info(
                "memory: reading %s; limit %g MB, recycle mark %g MB",
                self.memory.description,
                self.settings.memory_limit_mb,
                self.settings.memory_recycle_mb,
                extra={"memory_source": type(self.memory).__name__},
            )
        elif setting == "off":
            logger.warning(
                "memory: not read (MEMORY_SOURCE=off); no memory limit applies"
            )
        else:
            logger.warning("memory: %s", self.memory_unreadable())

    def memory_unreadable(self) -> str:
        return (
            f"cannot be read here (MEMORY_SOURCE={self.settings.memory_source}: no "
            "container cgroup, gVisor /proc/meminfo or /proc/<pid>/smaps_rollup), so "
            "no memory limit applies; set MEMORY_SOURCE=off to run without one"
        )

    async def baseline(self):
        """Current law's tax-benefit system, once the model is loaded."""
        await self._until_ready(self.time_limit().deadline(time.monotonic()))
        return self._systems.baseline

    async def _until_ready(self, deadline: Deadline) -> None:
        if self.ready:
            return
        self.start_warm_up()
        if not await asyncio.to_thread(self._ready.wait, max(0.0, deadline.left())):
            raise Unavailable(
                f"still starting: {MODEL_VERSION} is loading; send the request again shortly"
            )

    def open(self) -> None:
        """An app starts serving with this engine (apps may share one)."""
        self._users += 1
        if self.closing:
            self.closing = self.scheduler.closing = False
            self.worker.reopen()

    def close(self) -> None:
        """An app stops serving; the last one shuts the engine down."""
        self._users = max(0, self._users - 1)
        if self._users == 0:
            self.shut_down()

    def shut_down(self) -> None:
        """Take no more calculations: queued and running ones answer 503 at
        once, nothing is retried, and the worker ends."""
        self.closing = self.scheduler.closing = True
        self.worker.close()

    # --- Health --------------------------------------------------------------

    def health(self) -> tuple[str, str | None]:
        """("ok", None), or a status and why: "starting", "unavailable" (no
        calculation can run), "degraded" (the last ones failed)."""
        if not self.ready:
            return "starting", None
        if self.closing:
            return "unavailable", "the server is shutting down"
        if problem := self.worker.check():
            return "unavailable", problem
        if self.memory is None and self.settings.memory_source != "off":
            return "unavailable", f"memory {self.memory_unreadable()}"
        failures = self.scheduler.failures_in_a_row
        if failures >= self.settings.degraded_after_failures:
            return "degraded", (
                f"the last {failures} calculations failed (their worker died, or "
                "their function broke); the log says why"
            )
        return "ok", None

    # --- Time limits ---------------------------------------------------------

    def time_limit(self) -> TimeLimit:
        """The limit of a request answered while the client waits."""
        return TimeLimit(
            self.settings.calculation_timeout_seconds,
            "CALCULATION_TIMEOUT_SECONDS",
            MAX_CALCULATION_TIMEOUT_SECONDS,
        )

    def job_time_limit(self) -> TimeLimit:
        """The limit of a job (``_jobs/``). On Modal, run_job's own timeout
        is JOB_TIMEOUT_SECONDS + 60 s (modal_app.py)."""
        seconds = self.settings.job_timeout_seconds
        return TimeLimit(seconds, "JOB_TIMEOUT_SECONDS", seconds + 30)

    # --- Requests ------------------------------------------------------------

    async def call(
        self, name: str, body: dict, limit: TimeLimit | None = None
    ) -> bytes:
        """The answer of the worker function registered as ``name`` to a
        request body, as JSON bytes.

        The body's ``household`` and ``policy``, if it has them, are checked
        first. ``limit`` counts from now, waiting included (``time_limit()``
        unless given: jobs have their own). Raises a ``BackendError``.
        """
        limit = limit or self.time_limit()
        deadline = limit.deadline(time.monotonic())
        key = await self.check(body.get("household"), body.get("policy"), deadline)
        return await self._answer(name, body, key, deadline, limit)

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
        deadline = limit.deadline(time.monotonic())
        key = await self.check(household, policy, deadline)
        sides = []
        for side_policy, side_key, label in (
            (None, policy_key(None), "baseline_answer"),
            (policy, key, "reform_answer"),
        ):
            body = {"household": household, "policy": side_policy}
            answer = await self._answer(
                "calculate", body, side_key, deadline, limit, label
            )
            sides.append(json.loads(answer)["result"])
        baseline, reform = sides
        return encode_answer(
            {
                "baseline": baseline,
                "reform": reform,
                "change": comparison.change(household, baseline, reform),
            }
        )

    async def check(
        self,
        household: dict | None,
        policy: dict | None,
        deadline: Deadline | None = None,
    ) -> str:
        """The policy's key, once the request is within the limits (else a
        422) and the model knows everything it names (else a 400)."""
        if household is None and not policy:
            return policy_key(None)  # nothing of the model's to check
        note(axis_points=axis_points(household or {}))
        with tracer.start_as_current_span("check request"):
            if errors := check_limits(household or {}, policy, self.settings):
                raise OverLimit.of(errors)
            await self._until_ready(
                deadline or self.time_limit().deadline(time.monotonic())
            )
            await asyncio.to_thread(self._check, household, policy)
            key = policy_key(policy)  # its paths are known good now
            if policy and (failed := self.failed_policies.get(key)):
                status, errors = json.loads(failed)
                raise Problem.of(errors, status)
        return key

    # --- Many households: /calculate-many -------------------------------------

    async def calculate_many(
        self,
        households: dict[str, dict],
        policy: dict | None,
        limit: TimeLimit | None = None,
    ) -> bytes:
        """The answer to ``/calculate-many``: each household filled in, by
        its name, as JSON bytes.

        Each household is cached under its own ``/calculate`` key: those
        answered before (by either endpoint) come from the cache, and the
        rest are calculated together in one worker job (one vectorised
        Simulation, usually), then cached one by one.
        """
        limit = limit or self.time_limit()
        deadline = limit.deadline(time.monotonic())
        key = await self.check_many(households, policy, deadline)
        keys = {
            name: request_key("calculate", key, {"household": household})
            for name, household in households.items()
        }
        results: dict[str, Any] = {}
        for name in households:
            if (cached := self.answers.cache.get(keys[name])) is not None:
                results[name] = json.loads(cached)["result"]
        missing = {name: h for name, h in households.items() if name not in results}
        note(households=len(households), households_cached=len(results))
        if missing:
            body = {"households": missing, "policy": policy}
            answer = await self._calculate("calculate-many", body, key, deadline, limit)
            for name, result in json.loads(answer)["result"].items():
                self.answers.cache.put(keys[name], encode_answer(result))
                results[name] = result
        return encode_answer({name: results[name] for name in households})

    async def check_many(
        self,
        households: dict[str, dict],
        policy: dict | None,
        deadline: Deadline | None = None,
    ) -> str:
        """``check`` for many households: the policy's key, once the batch is
        within the limits (else a 422) and every household and the policy
        are ones the model takes (else a 400 at ``households.<name>...``)."""
        from policyengine_backend._engine.many import (
            check_many_households,
            check_many_limits,
        )

        with tracer.start_as_current_span("check request"):
            if errors := check_many_limits(households, policy, self.settings):
                raise OverLimit.of(errors)
            await self._until_ready(
                deadline or self.time_limit().deadline(time.monotonic())
            )

            def check() -> None:
                system = self.systems.baseline
                errors = check_many_households(system, households)
                if policy:
                    errors += check_policy(system, policy)
                if errors:
                    raise Problem.of(errors)

            await asyncio.to_thread(check)
            key = policy_key(policy)
            if policy and (failed := self.failed_policies.get(key)):
                status, errors = json.loads(failed)
                raise Problem.of(errors, status)
        return key

    # --- end of many households ------------------------------------------------

    def _check(self, household: dict | None, policy: dict | None) -> None:
        system = self.systems.baseline
        errors = check_household(system, household) if household is not None else []
        if policy:
            errors += check_policy(system, policy)
        if errors:
            raise Problem.of(errors)

    async def _answer(
        self,
        name: str,
        body: dict,
        key: str,
        deadline: Deadline,
        limit: TimeLimit,
        label: str = "answer",
    ) -> bytes:
        # Equal for policies policyengine applies alike. The household's own
        # order is kept: member order decides which person an axis varies,
        # and the answer echoes what was sent.
        key_of_request = request_key(name, key, body)

        async def calculate(shared: Deadline) -> bytes:
            return await self._calculate(name, body, key, shared, limit)

        try:
            return await self.answers.answer(key_of_request, calculate, deadline, label)
        except TimeoutError:
            raise CalculationTimeout(
                f"the calculation did not finish within {limit.seconds:g} s ({limit.variable})"
            ) from None

    async def _calculate(
        self, name: str, body: dict, key: str, deadline: Deadline, limit: TimeLimit
    ) -> bytes:
        policy = body.get("policy")
        job = self.worker.new_job(
            name,
            body,
            WORKER_FUNCTIONS[name].route,
            policies=(policy,) if policy else (),
            years=years_of(body),
        )
        reply = await self.scheduler.run(job, deadline, limit)
        if reply.outcome is Outcome.POLICY_FAILED:
            self.failed_policies.put(
                key, json.dumps([reply.status, reply.errors]).encode()
            )
            raise Problem.of(reply.errors, reply.status)
        return reply.answer
