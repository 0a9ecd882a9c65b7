"""Jobs: a request to a worker-backed endpoint (``/calculate``,
``/compare``, ``/earnings-chart``, ...) whose answer the client collects later.

For work that takes longer than a client should wait on one request
(a large grid of households, a long sweep under a new policy):

- ``POST /jobs/<endpoint>`` (``POST /jobs`` for ``/calculate``) checks the
  request at once, with the same 4xx answers as the endpoint, and answers
  202 with a ``job_id``;
- ``GET /jobs/{job_id}`` says ``pending`` until the job is done, then gives
  exactly the body the endpoint would have given: its ``result``, or its
  error ``message`` (and ``status_code``, the status the endpoint would
  have answered with).

A job gets ``JOB_TIMEOUT_SECONDS`` from submission. ``run`` is what a job
does, wherever it runs. Two places implement the interface (``Jobs``):

- ``LocalJobs``, below: in this process, behind the same worker as every
  request (``make dev`` and the tests);
- ``ModalJobs`` in ``modal_app.py``: each job is a spawned call of its own
  Modal function, and the job id is the call's id.
"""

import asyncio
import contextvars
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Protocol

from policyengine_backend._cache import BytesCache
from policyengine_backend._engine.checks import RequestProblem, problem
from policyengine_backend._engine.engine import (
    MB,
    CalculationTimeout,
    Engine,
    TimeLimit,
    WorkerUnavailable,
)

logger = logging.getLogger(__name__)


class UnknownJob(Exception):
    """No job of that id, or its result is no longer kept."""


class TooManyJobs(Exception):
    """Over the limit of jobs waiting here (429)."""


class Jobs(Protocol):
    async def submit(self, request: dict) -> str:
        """Start a job, ``{"endpoint": name, "body": checked body}``; its id."""
        ...

    async def answer(self, job_id: str) -> bytes | None:
        """The finished job's body, or None while it runs. Raises UnknownJob."""
        ...


def failed(status_code: int, message: str, errors: list[dict] | None = None) -> bytes:
    body = {
        "status": "error",
        "message": message,
        "result": None,
        "errors": errors or [],
        "status_code": status_code,
    }
    return json.dumps(body, separators=(",", ":")).encode()


# How a job of each endpoint is done, by endpoint name (filled in by
# ``endpoints.add_job_route``): the endpoint's answer for a request body.
JOB_RUNNERS: dict[str, Callable[[Engine, dict, TimeLimit], Awaitable[bytes]]] = {}


async def run(engine: Engine, request: dict) -> bytes:
    """Do one job: the body its endpoint would answer, or its error.

    ``request`` is ``{"endpoint": name, "body": {...}}``. Never raises:
    whatever happens becomes the job's answer, since nobody is waiting on
    this call to hear of an exception.
    """
    started = time.monotonic()
    limit = engine.job_time_limit()
    try:
        runner = JOB_RUNNERS[request["endpoint"]]
        answer = await runner(engine, request["body"], limit)
        outcome = "ok"
    except RequestProblem as error:
        answer, outcome = failed(error.status, str(error), error.problems), "error"
    except CalculationTimeout as error:
        answer, outcome = failed(504, str(error)), "error"
    except WorkerUnavailable as error:
        answer, outcome = failed(503, str(error)), "error"
    except Exception:
        logger.exception("job failed")
        answer = failed(500, "internal error; the server log has the details")
        outcome = "error"
    seconds = time.monotonic() - started
    logger.info(
        "job %s in %.1f s",
        outcome,
        seconds,
        extra={"job_outcome": outcome, "duration_ms": round(seconds * 1000, 1)},
    )
    return answer


class LocalJobs:
    """Jobs in this process, for ``make dev`` and the tests.

    They share the server's one calculation worker with every other request,
    so a job waits behind them (within its time limit). Finished answers
    are kept until ``JOB_RESULTS_MB`` of newer ones push them out, or the
    server stops; at most ``MAX_PENDING_JOBS`` wait at once.
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        self._pending: dict[str, asyncio.Task] = {}
        self._finished = BytesCache(engine.settings.job_results_mb * MB)

    async def submit(self, request: dict) -> str:
        limit = self.engine.settings.max_pending_jobs
        if len(self._pending) >= limit:
            raise TooManyJobs(
                f"{limit} jobs are already waiting (MAX_PENDING_JOBS); "
                "try again when one has finished"
            )
        job_id = f"local-{uuid.uuid4().hex}"
        # A fresh context: the job outlives the request that started it, and
        # must not write to that request's log line.
        self._pending[job_id] = asyncio.create_task(
            self._run(job_id, request), context=contextvars.Context()
        )
        return job_id

    async def _run(self, job_id: str, request: dict) -> None:
        try:
            answer = await run(self.engine, request)
            if not self._finished.put(job_id, answer):
                answer = failed(
                    422,
                    "the answer is larger than the local job store keeps "
                    "(JOB_RESULTS_MB); ask for fewer values or axis points",
                    [problem(("household",), "answer too large to keep")],
                )
                self._finished.put(job_id, answer)
        finally:
            del self._pending[job_id]

    async def answer(self, job_id: str) -> bytes | None:
        if job_id in self._pending:
            return None
        answer = self._finished.get(job_id)
        if answer is None:
            raise UnknownJob(job_id)
        return answer

    def close(self) -> None:
        for task in self._pending.values():
            task.cancel()
