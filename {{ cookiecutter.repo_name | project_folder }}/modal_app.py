"""Modal wiring: the app, its images, its two web functions and its jobs.

Deploy with `make deploy` (it checks the workspace first), never by hand.
Nothing here knows about households or policies: that is in
`policyengine_backend/` and the project's own `api/`.
"""

import logging
import os
import re
import time
from pathlib import Path

import modal

APP_NAME = "{{ cookiecutter.repo_name }}"
# The project's one Python version, as in .python-version, requires-python
# in pyproject.toml and uv.lock (tests/test_modal_app.py checks they agree).
PYTHON_VERSION = "{{ cookiecutter.python_version }}"
{%- set secret_names = cookiecutter.modal_secrets.split(",") | map("trim") | reject("equalto", "") | list %}
{%- if secret_names == ["none"] %}{% set secret_names = [] %}{% endif %}
# Existing secrets of the policyengine workspace, injected as environment
# variables. Add one here after `modal secret create`, never in code.
# policyengine-logfire holds LOGFIRE_TOKEN: see README, "Observability".
SECRET_NAMES: list[str] = [{% for name in secret_names %}
    {{ name | tojson }},{% endfor %}{% if secret_names %}
{% endif %}]

# Set only in the backend's image, so the model warms up at import time in
# that container (and the memory snapshot keeps the result), never when
# this file is imported locally by `modal deploy` or the tests.
WARM_UP_VARIABLE = "BACKEND_WARM_UP_ON_IMPORT"

# Sized from `make bench`: the server with its warm model plus the
# calculation worker. The backend stops a calculation that would take the
# two past MEMORY_LIMIT_MB, and replaces the worker after one that leaves
# them past MEMORY_RECYCLE_MB, so the container is never killed for memory.
# See README, "Memory and concurrency".
MEMORY_MB = 4096
MEMORY_LIMIT_MB = MEMORY_MB * 90 // 100
MEMORY_RECYCLE_MB = MEMORY_MB * 68 // 100
# A calculation is CPU-bound Python, one at a time per container (in its
# worker process), so one core per container; more load gets more
# containers instead.
CPU_CORES = 1.0
# Longer than the backend's own limit (CALCULATION_TIMEOUT_SECONDS, 120 s,
# waiting included), so a slow request gets the backend's 504 with a reason.
TIMEOUT_SECONDS = 300
# Few inputs per container for CPU-bound work: past TARGET_INPUTS in flight
# Modal starts another container; up to MAX_INPUTS wait here meanwhile
# (cached answers and /health do not wait behind calculations).
TARGET_INPUTS = 2
MAX_INPUTS = 4
# A ceiling on cost if a frontend sends far more than expected.
MAX_CONTAINERS = 10
# Keep an idle container for five minutes: dashboards send bursts.
SCALEDOWN_SECONDS = 300

# A job (POST /jobs) runs as a call of its own function, run_job: the same
# image, memory and warm model, but not the web function's time limit. The
# backend answers a job past JOB_TIMEOUT_SECONDS with an error; Modal's own
# timeout, a minute later, is only a backstop.
JOB_TIMEOUT_SECONDS = 900
JOB_FUNCTION_TIMEOUT_SECONDS = JOB_TIMEOUT_SECONDS + 60
JOB_MAX_CONTAINERS = 10

app = modal.App(APP_NAME)

# Both images install exactly what uv.lock pins: the versions the tests ran
# against, never newer ones (`uv sync --frozen` does not resolve anything).
# The same uv version as the Makefile's UV_VERSION.
UV_VERSION = "0.13.9"
PROJECT_DIR = Path(__file__).resolve().parent
if modal.is_local() and not (PROJECT_DIR / "uv.lock").is_file():
    raise RuntimeError(
        "uv.lock is missing next to modal_app.py, and the images install exactly what it pins. "
        "Restore it with `git checkout -- uv.lock`, or make it with `make lock`, "
        "then run `make test` before deploying."
    )


def locked_image(only: str) -> modal.Image:
    """A Python image with uv.lock's packages installed; ``only`` is uv sync's option."""
    return modal.Image.debian_slim(python_version=PYTHON_VERSION).uv_sync(
        str(PROJECT_DIR),
        frozen=True,
        uv_version=UV_VERSION,
        # The image's own Python, never one uv would download.
        extra_options=f"{only} --python $(command -v python)",
    )


image = (
    # The runtime dependencies, without the dev group.
    locked_image("--no-dev")
    .env({"NUMEXPR_MAX_THREADS": "4", WARM_UP_VARIABLE: "1"})
    .add_local_python_source("api", "policyengine_backend")
)

# The standalone health check needs nothing but FastAPI (the `health` group
# in pyproject.toml), so it starts fast and answers even if the backend's
# image fails to build.
health_image = locked_image("--only-group health")

if os.environ.get(WARM_UP_VARIABLE) == "1":
    # The app first: importing it registers the project's worker endpoints,
    # so the worker forked from this warm process knows all of them.
    import api.main  # noqa: F401
    from policyengine_backend._engine.engine import get_engine

    get_engine().warm_up()


# The backend's settings (policyengine_backend/_settings.py) that follow from the above.
BACKEND_ENV: dict[str, str | None] = {
    "MEMORY_LIMIT_MB": str(MEMORY_LIMIT_MB),
    "MEMORY_RECYCLE_MB": str(MEMORY_RECYCLE_MB),
    "JOB_TIMEOUT_SECONDS": str(JOB_TIMEOUT_SECONDS),
}


# The container both the web function and the jobs run in: the same image,
# memory, CPU, warm snapshot, settings and secrets.
BACKEND_CONTAINER = dict(
    image=image,
    memory=MEMORY_MB,
    cpu=CPU_CORES,
    scaledown_window=SCALEDOWN_SECONDS,
    enable_memory_snapshot=True,
    env=BACKEND_ENV,
    secrets=[modal.Secret.from_name(name) for name in SECRET_NAMES],
)


@app.function(
    **BACKEND_CONTAINER, timeout=TIMEOUT_SECONDS, max_containers=MAX_CONTAINERS
)
@modal.concurrent(max_inputs=MAX_INPUTS, target_inputs=TARGET_INPUTS)
@modal.asgi_app()
def fastapi_app():
    from api.main import app as api
    from policyengine_backend._settings import get_settings

    api.state.jobs = ModalJobs(run_job, max_pending=get_settings().max_pending_jobs)
    return api


def modal_environment() -> str:
    """The Modal environment this runs in (main, staging, testing): Modal
    sets MODAL_ENVIRONMENT in its containers. "local" elsewhere."""
    return os.environ.get("MODAL_ENVIRONMENT") or "local"


def job_mark(environment: str) -> str:
    return f"{APP_NAME}.run_job@{environment}"


# Any function call of the workspace, in any environment, can be looked up
# by its id, so an id is answered only if this environment's app recorded
# it with this mark, and a result only if run_job returned it with the
# mark: an id of another app, or of this app in another environment, is a
# 404, never that call's result.
JOB_MARK = job_mark(modal_environment())

# The ids this app issued (id -> JOB_MARK) and those not finished yet
# (id -> submission time, for MAX_PENDING_JOBS). Named Dicts belong to one
# environment; Modal drops an entry after 7 days without a read or write,
# about as long as it keeps a call's result. Nothing is fetched until a job
# is submitted or asked for, so importing this file stays offline.
ISSUED_JOBS = modal.Dict.from_name(f"{APP_NAME}-jobs", create_if_missing=True)
PENDING_JOBS = modal.Dict.from_name(f"{APP_NAME}-pending-jobs", create_if_missing=True)
# An entry older than this is a job Modal has stopped (its timeout) or one
# whose container died before it could remove itself: no longer counted.
PENDING_JOB_EXPIRY_SECONDS = JOB_FUNCTION_TIMEOUT_SECONDS


@app.function(
    **BACKEND_CONTAINER,
    timeout=JOB_FUNCTION_TIMEOUT_SECONDS,
    max_containers=JOB_MAX_CONTAINERS,
)
async def run_job(request: dict) -> tuple[str, bytes]:
    """One job: the JSON body its endpoint would answer for ``request``
    (``{"endpoint": name, "body": {...}}``), marked as this function's (see
    ``ModalJobs.answer``)."""
    import api.main  # noqa: F401 - registers the project's endpoints' jobs
    from policyengine_backend._engine.engine import get_engine
    from policyengine_backend._jobs import local as jobs

    answer = await jobs.run(get_engine(), request)
    # Done: its place under MAX_PENDING_JOBS is free. If this fails, the
    # entry expires instead (PENDING_JOB_EXPIRY_SECONDS): the answer must
    # not be lost for it. (No call id: run outside Modal, nothing to free.)
    if call_id := modal.current_function_call_id():
        try:
            await PENDING_JOBS.pop.aio(call_id, None)
        except Exception:
            logging.getLogger(__name__).exception("could not free the job's place")
    return JOB_MARK, answer


# A function call's id, as Modal makes them ("fc-" and letters and digits).
CALL_ID = re.compile(r"fc-[0-9A-Za-z]+")


class ModalJobs:
    """The web function's jobs: each a spawned call of ``run_job``.

    The job id is the call's id, so any container of the web function can
    answer for any job, and a job survives the container that started it.
    Modal keeps a call's result for 7 days after it finishes. The ids issued
    and those still pending are kept in the environment's Dicts (``issued``,
    ``pending``: Modal's by default, stand-ins in the tests), so every
    container sees the same jobs and the same count under ``max_pending``.
    (``policyengine_backend/_jobs/local.py`` has the interface, and the local stand-in.)
    """

    def __init__(
        self,
        function,
        *,
        max_pending: int,
        issued=ISSUED_JOBS,
        pending=PENDING_JOBS,
        from_id=modal.FunctionCall.from_id,
        clock=time.time,
    ):
        self.function = function
        self.max_pending = max_pending
        self.issued = issued
        self.pending = pending
        self.from_id = from_id
        self.clock = clock  # wall time: entries are compared across containers

    async def submit(self, request: dict) -> str:
        # Imported here: importing the backend loads the model's package, which
        # `modal deploy` (importing this file locally) does not need.
        from policyengine_backend._jobs.local import TooManyJobs

        # Checked, then spawned: two containers submitting at the same
        # moment may both pass, so the cap can be exceeded by a job or two.
        if await self.count_pending() >= self.max_pending:
            raise TooManyJobs(
                f"{self.max_pending} jobs are already waiting (MAX_PENDING_JOBS); "
                "try again when one has finished"
            )
        call = await self.function.spawn.aio(request)
        # Recorded once Modal has given the id. The job starts in a container
        # of its own, seconds later, so it is done after this in practice;
        # one done sooner would leave an entry that only expires.
        await self.issued.put.aio(call.object_id, JOB_MARK)
        await self.pending.put.aio(call.object_id, self.clock())
        return call.object_id

    async def count_pending(self) -> int:
        """Jobs submitted and not finished; expired entries are removed."""
        now = self.clock()
        expired, count = [], 0
        async for job_id, submitted in self.pending.items.aio():
            if now - submitted > PENDING_JOB_EXPIRY_SECONDS:
                expired.append(job_id)
            else:
                count += 1
        for job_id in expired:
            await self.pending.pop.aio(job_id, None)
        return count

    async def answer(self, job_id: str) -> bytes | None:
        from policyengine_backend._jobs.local import UnknownJob, failed

        # Only ids recorded here reach Modal: nothing is fetched for others.
        if (
            not CALL_ID.fullmatch(job_id)
            or await self.issued.get.aio(job_id) != JOB_MARK
        ):
            raise UnknownJob(job_id)
        try:
            result = await self.from_id(job_id).get.aio(timeout=0)
        except TimeoutError:  # Python's own: no answer yet
            return None
        except (
            modal.exception.OutputExpiredError,
            modal.exception.NotFoundError,
            modal.exception.InvalidError,
        ):
            raise UnknownJob(job_id) from None
        except modal.exception.FunctionTimeoutError:
            return failed(
                504,
                f"the job did not finish within {JOB_FUNCTION_TIMEOUT_SECONDS} s "
                "(Modal's timeout for run_job)",
            )
        except Exception:
            logging.getLogger(__name__).exception("job %s failed in Modal", job_id)
            return failed(500, "internal error; the job's log has the details")
        if not (
            isinstance(result, tuple) and len(result) == 2 and result[0] == JOB_MARK
        ):
            raise UnknownJob(job_id)  # not run_job's answer here
        return result[1]


@app.function(image=health_image)
@modal.fastapi_endpoint(method="GET")
def health() -> dict:
    return {"status": "ok"}
