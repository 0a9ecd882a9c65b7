"""How far a running job has got: ``{"done": n, "total": m}`` units of work.

The job reports it where it runs; ``GET /jobs/{job_id}`` reads it while the
job is pending. Locally the job runs under this server, so a dict here
holds it (``LocalJobs`` names the job in ``current_job``). On Modal the job
runs in another container than the one asked, so it is a named
``modal.Dict`` of the environment, keyed by the job's function call id.
"""

import contextvars
from typing import Any

from policyengine_backend._settings import APP_NAME

# The local job being run (set by LocalJobs for the job's task).
current_job: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "current_job", default=None
)
_local: dict[str, dict[str, int]] = {}
# Local entries kept at most, oldest out first (a job's ends with it).
LOCAL_LIMIT = 1_000


def on_modal() -> bool:
    try:
        import modal
    except ImportError:
        return False
    return not modal.is_local()


def remote_store() -> Any:
    import modal

    return modal.Dict.from_name(f"{APP_NAME}-job-progress", create_if_missing=True)


def job_id() -> str | None:
    """The running job's id: LocalJobs', or on Modal the function call's."""
    if (local := current_job.get()) is not None:
        return local
    if on_modal():
        import modal

        return modal.current_function_call_id()
    return None


def report(job: str | None, done: int, total: int) -> None:
    """Record progress (blocking: on Modal a Dict write; call it from a thread)."""
    if job is None:
        return
    value = {"done": done, "total": total}
    if job.startswith("local-"):
        _local.pop(job, None)
        _local[job] = value
        while len(_local) > LOCAL_LIMIT:
            _local.pop(next(iter(_local)))
    else:
        remote_store().put(job, value)


def forget(job: str) -> None:
    _local.pop(job, None)


async def read(job: str) -> dict[str, int] | None:
    """The progress a pending job last reported, or None."""
    if job in _local:
        return _local[job]
    if job.startswith("local-") or not on_modal():
        return None
    return await remote_store().get.aio(job)
