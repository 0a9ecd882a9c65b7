"""The worker's queue: one job at a time, first come first served, each
within its own deadline, and what came of it in the client's terms.

A job waits here for the worker (``_worker/supervisor.py``), then runs in a
thread while the event loop serves other requests. What the worker says is
turned into an answer or one of the errors in ``_errors.py``: its deadline
passed (504), it needed more memory than the backend allows (422, at the
request's own fields), its worker died with no time to run it again (503),
or the function broke its own declaration (500). The queue also counts
calculations that failed in a row, which ``/health`` reports.
"""

import asyncio
import logging
from dataclasses import dataclass

from policyengine_backend._errors import (
    Bug,
    CalculationTimeout,
    JobCancelled,
    JobOutOfMemory,
    JobTimedOut,
    OverLimit,
    Problem,
    Unavailable,
    WorkerCrashed,
)
from policyengine_backend._logs import add_to_note, note, record_span, tracer
from policyengine_backend._worker.messages import Details, Job, Outcome, Reply
from policyengine_backend._worker.supervisor import Deadline, Worker

logger = logging.getLogger(__name__)


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

    def deadline(self, now: float) -> Deadline:
        return Deadline(now + self.seconds, now + self.ceiling_seconds)


class Scheduler:
    def __init__(self, worker: Worker):
        self.worker = worker
        self.failures_in_a_row = 0
        self.closing = False
        self._queue = asyncio.Lock()
        self._queue_loop: asyncio.AbstractEventLoop | None = None

    async def run(self, job: Job, deadline: Deadline, limit: TimeLimit) -> Reply:
        """The job's reply (OK, or POLICY_FAILED for the caller to remember);
        raises the error that answers anything else."""
        loop = asyncio.get_running_loop()
        queue = self._queue_of(loop)
        waited_from = loop.time()
        with tracer.start_as_current_span("wait for the worker"):
            # The deadline can move later while this waits (a request with
            # more time joined), so each timeout is taken afresh.
            while not await self._acquire_within(queue, deadline.left()):
                if deadline.left() <= 0:
                    waited = loop.time() - waited_from
                    add_to_note(worker_wait_ms=round(waited * 1000, 1))
                    raise CalculationTimeout(timeout_message(limit, job, waited))
        waited = loop.time() - waited_from
        add_to_note(worker_wait_ms=round(waited * 1000, 1))
        try:
            if self.closing:
                raise Unavailable("the server is shutting down; send the request again")
            with tracer.start_as_current_span("calculation"):
                reply = await self._in_worker(job, deadline)
                self.record(reply.details)  # its stages under this span
        except JobTimedOut:
            raise CalculationTimeout(timeout_message(limit, job, waited)) from None
        except WorkerCrashed as error:
            self._failed()
            raise Unavailable(
                f"{error}, twice or with no time left to run the calculation "
                "again; the request may be fine: send it again"
            ) from None
        except JobCancelled:
            raise Unavailable(
                "the server is shutting down; send the request again"
            ) from None
        except JobOutOfMemory as error:
            where = ("household",) if "household" in job.body else ()
            raise OverLimit(
                where,
                "the calculation needed more memory than the backend allows "
                f"(MEMORY_LIMIT_MB={self.worker.limit_mb:g}, {error}); "
                "ask for fewer periods, people, axis points or values",
            ) from None
        finally:
            queue.release()
        if reply.outcome is Outcome.BUG:
            self._failed()
            raise Bug(reply.message)
        self.failures_in_a_row = 0
        if reply.outcome is Outcome.PROBLEM:
            raise Problem.of(reply.errors, reply.status)
        return reply

    async def _in_worker(self, job: Job, deadline: Deadline) -> Reply:
        """Run the job in a thread; if the request goes (cancelled), the job
        is stopped and the thread waited for, so the queue stays in order."""
        running = asyncio.ensure_future(
            asyncio.to_thread(
                self.worker.run, job, deadline, self.worker.settings.memory_per_year_mb
            )
        )
        try:
            return await asyncio.shield(running)
        except asyncio.CancelledError:
            self.worker.cancel(job)
            await asyncio.gather(running, return_exceptions=True)
            raise

    def _queue_of(self, loop: asyncio.AbstractEventLoop) -> asyncio.Lock:
        # An asyncio.Lock belongs to the first loop that waits on it. A
        # process serves from one loop at a time, but not always the same one
        # (each TestClient, or a server restarted in a thread, brings its
        # own): a new loop gets a new queue, as the old loop's waiters are
        # gone with it.
        if loop is not self._queue_loop:
            self._queue, self._queue_loop = asyncio.Lock(), loop
        return self._queue

    @staticmethod
    async def _acquire_within(queue: asyncio.Lock, seconds: float) -> bool:
        try:
            async with asyncio.timeout(max(0.0, seconds)):
                await queue.acquire()
        except TimeoutError:
            return False
        return True

    def _failed(self) -> None:
        self.failures_in_a_row += 1

    @staticmethod
    def record(details: Details) -> None:
        """The worker's account of a calculation, on the log line and the trace."""
        path = {"policy_path": details.policy_path} if details.policy_path else {}
        note(**path)  # /compare: the reform's
        if details.axis_points:
            note(axis_points=details.axis_points)
        if details.cpu_ms:
            add_to_note(
                job_cpu_ms=details.cpu_ms,
                job_system_ms=details.system_ms,
                job_minor_faults=details.minor_faults,
            )
        for stage, (start_ns, end_ns) in details.stages.items():
            record_span(stage, start_ns, end_ns, **path)
        if details.stages:
            start_ns = min(start for start, _ in details.stages.values())
            end_ns = max(end for _, end in details.stages.values())
            add_to_note(calculation_ms=round((end_ns - start_ns) / 1e6, 1))


def timeout_message(limit: TimeLimit, job: Job, waited: float) -> str:
    message = (
        f"the calculation did not finish within {limit.seconds:g} s ({limit.variable})"
    )
    if waited >= 1:
        message += f", {waited:.0f} s of it waiting for earlier calculations"
    if (job.body.get("household") or {}).get("axes"):
        message += "; try fewer axis points"
    return message
