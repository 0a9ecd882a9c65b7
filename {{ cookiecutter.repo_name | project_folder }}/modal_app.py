"""Modal wiring: the app, its images, its two web functions and its jobs.

Deploy with `make deploy` (it checks the workspace first), never by hand.
Nothing here knows about households or policies: that is in
`policyengine_backend/` and the project's own `api/`.
"""

import os
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
    from policyengine_backend._web.app import get_engine

    get_engine().warm_up()


# The backend's settings (policyengine_backend/_settings.py) that follow from the above.
BACKEND_ENV: dict[str, str | None] = {
    "MEMORY_LIMIT_MB": str(MEMORY_LIMIT_MB),
    "MEMORY_RECYCLE_MB": str(MEMORY_RECYCLE_MB),
    "JOB_TIMEOUT_SECONDS": str(JOB_TIMEOUT_SECONDS),
}


# --- Society-wide impacts (POST /jobs/impact; docs/population.md) ----------
# The dataset lives in a Volume, filled once per environment by `make data
# ENV=...` (fetch_population_data) and checked against its pinned digest;
# run_job (the coordinator) and population_chunk read it from there. The web
# function never mounts it: it only checks requests.
POPULATION_VOLUME = modal.Volume.from_name(
    f"{APP_NAME}-population-data", create_if_missing=True
)
POPULATION_DATA_DIR = "/population-data"
POPULATION_VOLUMES = {POPULATION_DATA_DIR: POPULATION_VOLUME}
{%- if cookiecutter.country == "us" %}
# Sized by measurement: a chunk's peak memory is 1,989 MB + 0.10 MB per
# household (synthetic data; _population/sizing.py has the figures, and
# makes more chunks if one would not fit), 80-90 s per chunk for baseline and
# reform. Populace (~57,000 households) in 16 chunks is ~3,600 households a
# chunk, ~2.4 GB by that line; 4 GB leaves room for the real file's many
# more columns, which only a deploy can measure.
POPULATION_CHUNKS = 16
POPULATION_CHUNK_MEMORY_MB = 4096
{%- else %}
# Sized by measurement: a chunk's peak memory is 532 MB + 0.019 MB per
# household (synthetic data; _population/sizing.py has the figures, and
# makes more chunks if one would not fit), 55-60 s per chunk for baseline
# and reform. The enhanced FRS (~25,000 households) in 8 chunks is ~3,100
# households a chunk, ~600 MB by that line; 2 GB leaves room for the real
# file's many more columns, which only a deploy can measure.
POPULATION_CHUNKS = 8
POPULATION_CHUNK_MEMORY_MB = 2048
{%- endif %}
# Each chunk is CPU-bound Python in one process: one core.
POPULATION_CHUNK_CPU = 1.0
POPULATION_CHUNK_TIMEOUT_SECONDS = 1800
POPULATION_MAX_CONTAINERS = 2 * POPULATION_CHUNKS
BACKEND_ENV.update(
    {
        "POPULATION_DATASET": "{{ "populace" if cookiecutter.country == "us" else "enhanced_frs" }}",
        "POPULATION_DATA_DIR": POPULATION_DATA_DIR,
        "POPULATION_CHUNKS": str(POPULATION_CHUNKS),
        # More chunks than that if one would not fit (_population/sizing.py).
        "POPULATION_CHUNK_MEMORY_MB": str(POPULATION_CHUNK_MEMORY_MB),
    }
)
# The chunks' image: the backend's, without the household model's warm-up.
population_image = (
    locked_image("--no-dev")
    .env({"NUMEXPR_MAX_THREADS": "4"})
    .add_local_python_source("api", "policyengine_backend")
)
# --- end of society-wide impacts -------------------------------------------

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
    from policyengine_backend._jobs.modal import ModalJobs
    from policyengine_backend._settings import get_settings

    # Jobs as spawned calls of run_job (policyengine_backend/_jobs/modal.py).
    api.state.jobs = ModalJobs(
        run_job,
        max_pending=get_settings().max_pending_jobs,
        expiry_seconds=JOB_FUNCTION_TIMEOUT_SECONDS,
    )
    return api


@app.function(
    **BACKEND_CONTAINER,
    timeout=JOB_FUNCTION_TIMEOUT_SECONDS,
    max_containers=JOB_MAX_CONTAINERS,
    volumes=POPULATION_VOLUMES,  # society-wide impacts: the dataset
)
async def run_job(request: dict) -> tuple[str, bytes]:
    """One job: the JSON body its endpoint would answer for ``request``
    (``{"endpoint": name, "body": {...}, "slot": ...}``)."""
    import api.main  # noqa: F401 - registers the project's endpoints
    from policyengine_backend._jobs import modal as jobs
    from policyengine_backend._population import impact  # society-wide impacts
    from policyengine_backend._web.app import get_engine

    # Society-wide impacts: their chunks run as population_chunk calls.
    impact.use_remote(population_chunk, on_write=POPULATION_VOLUME.commit)

    return await jobs.run_job(get_engine(), request)


# --- Society-wide impacts: the chunk function and the data step ------------
@app.function(
    image=population_image,
    volumes=POPULATION_VOLUMES,
    memory=POPULATION_CHUNK_MEMORY_MB,
    cpu=POPULATION_CHUNK_CPU,
    timeout=POPULATION_CHUNK_TIMEOUT_SECONDS,
    max_containers=POPULATION_MAX_CONTAINERS,
    env=BACKEND_ENV,
)
def population_chunk(task):
    """One chunk of households, simulated: the arrays the figures need
    (policyengine_backend/_population/chunks.py). run_job calls it with
    ``.map`` over the chunks."""
    import api.main  # noqa: F401 - declares the project's population endpoints
    from policyengine_backend._population.chunks import run_chunk

    if not Path(task.path).is_file():
        POPULATION_VOLUME.reload()  # written since this container started
    return run_chunk(task)


@app.function(
    image=population_image,
    volumes=POPULATION_VOLUMES,
    timeout=3600,
    env=BACKEND_ENV,
{%- if cookiecutter.country == "uk" %}
    # The enhanced FRS is in a private Hugging Face repository.
    secrets=[modal.Secret.from_name("huggingface-token")],
{%- endif %}
)
def fetch_population_data() -> str:
    """`make data ENV=...`: the country's default dataset into the Volume,
    checked against its pinned digest; a file already there and right is
    kept."""
    from policyengine_backend._population.dataset import file_sha256
    from policyengine_backend._population.fetch import fetch

    path = fetch(POPULATION_DATA_DIR)
    POPULATION_VOLUME.commit()
    return f"{path} in volume {APP_NAME}-population-data, sha256 {file_sha256(path)}"


# --- end of society-wide impacts -------------------------------------------


@app.function(image=health_image)
@modal.fastapi_endpoint(method="GET")
def health() -> dict:
    return {"status": "ok"}
