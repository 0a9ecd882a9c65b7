"""Jobs on Modal: each job a spawned call of the app's ``run_job`` function.

The job id is the call's id, so any container of the web function can
answer for any job, and a job survives the container that started it.
Modal keeps a call's result for about 7 days after it finishes. The ids
issued and the jobs not finished yet are kept in the environment's named
Dicts, so every container sees the same jobs and the same count under
``MAX_PENDING_JOBS``.

Any function call of the workspace, in any environment, can be looked up by
its id, so an id is answered only if this environment's app recorded it
with its mark, and a result only if ``run_job`` returned it with the mark:
an id of another app, or of this app in another environment, is a 404,
never that call's result. A job id is a capability: whoever has it can read
the answer (never the request), so share it as you would the answer.

``modal`` is imported where it is used: the package imports without it.
"""

import logging
import os
import re
import time
import uuid
from typing import Any

from policyengine_backend._errors import (
    BackendError,
    Bug,
    CalculationTimeout,
    Unavailable,
)
from policyengine_backend._jobs.local import too_many, unknown_job
from policyengine_backend._jobs.run import failed, run
from policyengine_backend._settings import APP_NAME

logger = logging.getLogger(__name__)

# A function call's id, as Modal makes them ("fc-" and letters and digits).
CALL_ID = re.compile(r"fc-[0-9A-Za-z]+")


def environment() -> str:
    """The Modal environment this runs in (main, staging, testing): Modal
    sets MODAL_ENVIRONMENT in its containers. "local" elsewhere."""
    return os.environ.get("MODAL_ENVIRONMENT") or "local"


def job_mark(in_environment: str | None = None) -> str:
    return f"{APP_NAME}.run_job@{in_environment or environment()}"


def issued_jobs():
    """Job id -> this environment's mark. Modal drops an entry after 7 days
    without a read or write, about as long as it keeps a call's result."""
    import modal

    return modal.Dict.from_name(f"{APP_NAME}-jobs", create_if_missing=True)


def pending_jobs():
    """Slot -> submission time, for each job not finished yet."""
    import modal

    return modal.Dict.from_name(f"{APP_NAME}-pending-jobs", create_if_missing=True)


async def run_job(engine, request: dict, pending: Any = None) -> tuple[str, bytes]:
    """What ``run_job`` on Modal does: the job's answer, marked as this
    environment's, and its place under MAX_PENDING_JOBS freed."""
    answer = await run(
        engine, {"endpoint": request["endpoint"], "body": request["body"]}
    )
    if slot := request.get("slot"):
        # If this fails, the entry expires instead: the answer must not be
        # lost for it.
        try:
            await (pending or pending_jobs()).pop.aio(slot, None)
        except Exception:
            logger.exception("could not free the job's place")
    return job_mark(), answer


class ModalJobs:
    """The web function's jobs (``_jobs/local.py`` has the interface).

    ``issued`` and ``pending`` are Modal's named Dicts unless given (the
    tests give stand-ins); an entry in ``pending`` older than
    ``expiry_seconds`` is a job Modal stopped at its timeout, or whose
    container died before it could free its place: no longer counted.
    """

    def __init__(
        self,
        function,
        *,
        max_pending: int,
        expiry_seconds: float,
        issued: Any = None,
        pending: Any = None,
        from_id: Any = None,
        clock=time.time,
    ):
        self.function = function
        self.max_pending = max_pending
        self.expiry_seconds = expiry_seconds
        self.issued = issued if issued is not None else issued_jobs()
        self.pending = pending if pending is not None else pending_jobs()
        if from_id is None:
            import modal

            from_id = modal.FunctionCall.from_id
        self.from_id = from_id
        self.clock = clock  # wall time: entries are compared across containers

    async def submit(self, request: dict) -> str:
        # Checked, then reserved: two containers submitting at the same
        # moment may both pass, so the cap can be exceeded by a job or two.
        if await self.count_pending() >= self.max_pending:
            raise too_many(self.max_pending)
        # The place is taken before the job exists, under a name the job
        # frees when it ends: a job that ends at once leaves nothing behind.
        slot = f"slot-{uuid.uuid4().hex}"
        await self.pending.put.aio(slot, self.clock())
        try:
            call = await self.function.spawn.aio({**request, "slot": slot})
        except Exception:
            await self.pending.pop.aio(slot, None)
            logger.exception("could not start a job on Modal")
            raise Unavailable("the job could not be started; send it again") from None
        await self.issued.put.aio(call.object_id, job_mark())
        return call.object_id

    async def count_pending(self) -> int:
        """Jobs submitted and not finished; expired entries are removed."""
        now = self.clock()
        expired, count = [], 0
        async for slot, submitted in self.pending.items.aio():
            if now - submitted > self.expiry_seconds:
                expired.append(slot)
            else:
                count += 1
        for slot in expired:
            await self.pending.pop.aio(slot, None)
        return count

    def close(self) -> None:
        """Nothing to end here: jobs run, and are kept, in Modal."""

    async def answer(self, job_id: str) -> bytes | None:
        import modal

        # Only ids recorded here reach Modal: nothing is fetched for others.
        if (
            not CALL_ID.fullmatch(job_id)
            or await self.issued.get.aio(job_id) != job_mark()
        ):
            raise unknown_job(job_id)
        try:
            result = await self.from_id(job_id).get.aio(timeout=0)
        except TimeoutError:  # Python's own: no answer yet
            return None
        except (
            modal.exception.OutputExpiredError,
            modal.exception.NotFoundError,
            modal.exception.InvalidError,
        ):
            raise unknown_job(job_id) from None
        except modal.exception.FunctionTimeoutError:
            return failed(
                CalculationTimeout(
                    f"the job did not finish within {self.expiry_seconds:g} s "
                    "(Modal's timeout for run_job)"
                )
            )
        except Exception as error:
            if not isinstance(error, BackendError):
                logger.exception("job %s failed in Modal", job_id)
            return failed(Bug("the job failed in Modal; its log has the details"))
        if not (
            isinstance(result, tuple) and len(result) == 2 and result[0] == job_mark()
        ):
            raise unknown_job(job_id)  # not run_job's answer here
        return result[1]
