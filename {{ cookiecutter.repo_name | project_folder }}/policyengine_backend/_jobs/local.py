"""Jobs in this process, for ``make dev`` and the tests.

``POST /jobs/<endpoint>`` checks the request at once, with the endpoint's
own 4xx answers, and answers 202 with a ``job_id``; ``GET /jobs/{job_id}``
says ``pending`` until the job is done, then gives exactly the body the
endpoint would have given. On Modal each job is a spawned function call
instead (``_jobs/modal.py``); both keep this interface (``Jobs``).

Local jobs live in this server's memory: a restart loses them, finished or
not. They share the server's one calculation worker with every request, so
a job waits behind them (within its time limit). Finished answers are kept
until ``JOB_RESULTS_MB`` of newer ones push them out; at most
``MAX_PENDING_JOBS`` wait at once.
"""

import asyncio
import contextvars
import uuid
from typing import Protocol

from policyengine_backend._cache import BytesCache
from policyengine_backend._errors import (
    NotFound,
    OverLimit,
    TooManyJobs,
    Unavailable,
    field_error,
)
from policyengine_backend._jobs.run import failed, run
from policyengine_backend._population import progress

MB = 1024 * 1024


def unknown_job(job_id: str) -> NotFound:
    message = "unknown job, or its answer is no longer kept"
    return NotFound(message, [field_error(("path", "job_id"), message)])


def too_many(limit: int) -> TooManyJobs:
    return TooManyJobs(
        f"{limit} jobs are already waiting (MAX_PENDING_JOBS); "
        "try again when one has finished"
    )


class Jobs(Protocol):
    async def submit(self, request: dict) -> str:
        """Start a job, ``{"endpoint": name, "body": checked body}``; its id."""
        ...

    async def answer(self, job_id: str) -> bytes | None:
        """The finished job's body, or None while it runs. Raises NotFound."""
        ...

    def close(self) -> None:
        """The server is stopping."""
        ...


class LocalJobs:
    def __init__(self, engine):
        self.engine = engine
        self._pending: dict[str, asyncio.Task] = {}
        self._finished = BytesCache(engine.settings.job_results_mb * MB)

    async def submit(self, request: dict) -> str:
        limit = self.engine.settings.max_pending_jobs
        if len(self._pending) >= limit:
            raise too_many(limit)
        job_id = f"local-{uuid.uuid4().hex}"
        # A fresh context: the job outlives the request that started it, and
        # must not write to that request's log line.
        self._pending[job_id] = asyncio.create_task(
            self._run(job_id, request), context=contextvars.Context()
        )
        return job_id

    async def _run(self, job_id: str, request: dict) -> None:
        # --- Society-wide impacts: the job reports progress under its id ---
        progress.current_job.set(job_id)
        # --- end of society-wide impacts ---
        try:
            answer = await run(self.engine, request)
        except asyncio.CancelledError:
            answer = failed(
                Unavailable(
                    "the server shut down before the job finished; submit it again"
                )
            )
        finally:
            del self._pending[job_id]
        if not self._finished.put(job_id, answer):
            self._finished.put(
                job_id,
                failed(
                    OverLimit(
                        (),
                        "the answer is larger than the local job store keeps "
                        "(JOB_RESULTS_MB); ask for fewer values or axis points",
                    )
                ),
            )

    async def answer(self, job_id: str) -> bytes | None:
        if job_id in self._pending:
            return None
        answer = self._finished.get(job_id)
        if answer is None:
            raise unknown_job(job_id)
        return answer

    def close(self) -> None:
        """Shutting down: every job still running ends as failed (503)."""
        for task in list(self._pending.values()):
            task.cancel()
