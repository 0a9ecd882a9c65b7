"""Settings, read once from environment variables.

Every tunable of the backend lives here, with its default. Each field is
set by the environment variable of the same name in capitals
(``max_people`` by ``MAX_PEOPLE``); a value that does not parse stops the
server at startup with a message naming the variable.
"""

import importlib.metadata
import os
import re
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

APP_NAME = "{{ cookiecutter.repo_name }}"
COUNTRY = "{{ cookiecutter.country }}"
COUNTRY_PACKAGE = "policyengine-{{ cookiecutter.country }}"
PACKAGE_VERSION = importlib.metadata.version(COUNTRY_PACKAGE)
# On every response (a header) and every request's log line.
MODEL_VERSION = f"{COUNTRY_PACKAGE}/{PACKAGE_VERSION}"

# Browsers on these origins may call the API: local frontends and
# PolicyEngine's own sites. CORS_ALLOW_ORIGINS replaces the list.
# Modal ends a web request at 150 s (then answers a redirect, which a
# browser's CORS request cannot follow), so a request's own limit stays
# below it with room to answer; longer work is a job (POST /jobs/<endpoint>).
MAX_CALCULATION_TIMEOUT_SECONDS = 140

DEFAULT_ORIGINS = (
    "http://localhost:3000",
    "http://localhost:5173",
    "http://127.0.0.1:3000",
    "http://127.0.0.1:5173",
    "https://policyengine.org",
    "https://www.policyengine.org",
)
# This project's own Vercel deployments (the Vercel project shares the
# repository's name) in the policy-engine team: production
# <app>.vercel.app, previews <app>-<9-character id>-policy-engine.vercel.app
# and branch URLs <app>-git-<branch>-policy-engine.vercel.app.
PRODUCTION_ORIGIN_REGEX = "https://" + re.escape(APP_NAME) + r"\.vercel\.app"
PREVIEW_ORIGIN_REGEX = (
    "https://"
    + re.escape(APP_NAME)
    + r"(\.vercel\.app|(-[a-z0-9]{9}|-git-[a-z0-9-]+)-policy-engine\.vercel\.app)"
)


def default_origin_regex() -> str:
    """PRODUCTION_ORIGIN_REGEX in production (Modal environment main), else
    PREVIEW_ORIGIN_REGEX.

    The preview shapes are also the production address of a Vercel project
    named, say, <app>-git-x-policy-engine (<project>.vercel.app), which
    anyone can create. So production trusts only its own frontend; staging
    and testing, which the previews call (make vercel-env), and local runs
    accept the previews too. Modal sets MODAL_ENVIRONMENT in its containers.
    """
    if os.environ.get("MODAL_ENVIRONMENT") == "main":
        return PRODUCTION_ORIGIN_REGEX
    return PREVIEW_ORIGIN_REGEX


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    # Request limits, checked before a request waits for the calculation
    # worker. Over one, the answer is a 413 (body size) or 422 (the rest)
    # whose message names the limit and its variable.
    max_body_bytes: int = Field(1_000_000, gt=0)
    # The whole body must arrive within this, or the answer is a 408: a
    # client sending a byte a second cannot hold a request open.
    body_timeout_seconds: float = Field(10.0, gt=0)
    max_people: int = Field(50, gt=0)
    # Points in one request: the product of the axis counts.
    max_axis_points: int = Field(2_001, gt=0)
    max_policy_parameters: int = Field(200, gt=0)
    # Distinct periods a request names (inputs, outputs, axes). The model
    # prepares its parameters for each new period, which costs time and
    # memory, so this bounds both.
    max_periods: int = Field(5, gt=0)
    # Values computed for the answer: requested values x people x axis
    # points. Bounds the simulation's size and the answer's.
    max_values: int = Field(200_000, gt=0)
    # /calculate-many: households in one request, and their
    # people in all. The batch's values, summed, count against MAX_VALUES.
    max_households: int = Field(500, gt=0)
    max_batch_people: int = Field(2_500, gt=0)

    # A request gets this long from arrival to answer, waiting included;
    # past it the answer is a 504 and the calculation is stopped. At most
    # MAX_CALCULATION_TIMEOUT_SECONDS (above), Modal's web limit less room
    # to answer; if the backend itself loses time (its worker dies), the
    # calculation runs again with that time given back, up to that maximum.
    calculation_timeout_seconds: float = Field(120.0, gt=0)
    # Memory of the whole backend (server and calculation worker). Over
    # the limit mid-calculation the worker is stopped and the request
    # answers 422; over the recycle mark after a calculation the worker is
    # replaced by a fresh copy of the warm server, which returns what it
    # had cached. modal_app.py sets both from the container's MEMORY_MB
    # (these defaults are its values for 4096 MB).
    memory_limit_mb: int = Field(3_686, gt=0)
    memory_recycle_mb: int = Field(2_785, gt=0)
    # What a calculation may add to the worker's memory for each year it
    # names (the model prepares its parameters per year; `make bench`: five
    # years add up to 1.4 GB). Before a calculation, a worker whose memory
    # plus this would pass MEMORY_LIMIT_MB is replaced by a fresh one, so
    # the largest request the limits allow fits.
    memory_per_year_mb: int = Field(300, ge=0)
    # Where memory is read (policyengine_backend/_worker/memory.py): "auto"
    # picks the container's own figure (a cgroup with a limit, or gVisor's
    # /proc/meminfo on Modal), else the processes' proportional set sizes;
    # "cgroup", "gvisor" or "processes" insist on one; "off" reads nothing
    # and applies no memory limit. Where nothing can be read, /health
    # answers 503 and says so: the limits are never off silently.
    memory_source: Literal["auto", "cgroup", "gvisor", "processes", "off"] = "auto"

    # A WARNING names the request whose code held the event loop longer
    # than this (blocking code in an async def route stalls every request,
    # /health included); 0 turns the watch off.
    loop_stall_warning_seconds: float = Field(1.0, ge=0)

    # /health answers "degraded" (503) after this many calculations in a row
    # failed (their worker died, or their function broke), until one works.
    degraded_after_failures: int = Field(3, gt=0)

    # Finished answers kept by exact request, in megabytes of JSON.
    result_cache_mb: int = Field(64, ge=0)
    # Answers of /parameters and /variables, in megabytes of JSON.
    metadata_cache_mb: int = Field(8, ge=0)

    # A job (POST /jobs) gets this long from submission to answer. On Modal
    # it runs in a function of its own, whose timeout modal_app.py sets
    # from this; locally it also waits behind other requests.
    job_timeout_seconds: float = Field(900.0, gt=0)
    # Local jobs only (make dev, tests): answers kept, in megabytes of JSON,
    # newest first. On Modal, Modal keeps each job's answer for 7 days.
    job_results_mb: int = Field(64, ge=1)
    # Jobs submitted and not finished, at once (429 past that): locally, in
    # this server; on Modal, across the app's containers in one environment.
    max_pending_jobs: int = Field(20, gt=0)
    # Reformed tax-benefit systems kept by the calculation worker, least
    # recently used out first.
    policy_cache_size: int = Field(32, ge=1)
{%- if cookiecutter.country == "us" %}
    # Of those, systems that needed a full build (policies on calibration.*
    # and the few structural reforms that cannot be derived): each holds a
    # whole parameter tree, hundreds of megabytes.
    policy_full_build_cache_size: int = Field(1, ge=1)
{%- endif %}

    # --- Society-wide impacts (POST /jobs/impact; docs/population.md) ------
    # The dataset an impact uses unless the request names one: "synthetic"
    # (data/ locally, made on first use) or the country's default, which
    # modal_app.py sets on Modal (read from its Volume).
    population_dataset: str = "synthetic"
    # Where dataset files are: the project's data/ locally; the Volume's
    # mount on Modal.
    population_data_dir: str = "data"
    # Chunks of households an impact is split into, at least (unset: one per
    # local process); more if a chunk would not fit in the memory below,
    # fewer if there are fewer households. The answer is the same for any
    # number (_population/sizing.py).
    population_chunks: int | None = Field(None, ge=1)
    # Local processes running chunks at once (on Modal: containers instead).
    population_processes: int = Field(1, ge=1)
    # The memory one chunk may use, in MB: on Modal, the chunk function's
    # (modal_app.py sets it). Unset: chunks are not sized by memory.
    population_chunk_memory_mb: float | None = Field(None, gt=0)
    # --- end of society-wide impacts ------------------------------------------

    # Least severe log level written to stdout (and to Logfire, when set
    # up): DEBUG, INFO, WARNING or ERROR. See policyengine_backend/_logs.py.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    cors_allow_origins: Annotated[tuple[str, ...], NoDecode] = DEFAULT_ORIGINS
    # CORS_ALLOW_ORIGIN_REGEX replaces the default pattern (which depends on
    # the Modal environment, see default_origin_regex); "" turns it off.
    cors_allow_origin_regex: str | None = Field(default_factory=default_origin_regex)

    @field_validator("calculation_timeout_seconds")
    @classmethod
    def below_the_web_limit(cls, value: float) -> float:
        if value > MAX_CALCULATION_TIMEOUT_SECONDS:
            raise ValueError(
                f"at most {MAX_CALCULATION_TIMEOUT_SECONDS} s: Modal ends a web "
                "request at 150 s; longer work belongs in a job (POST /jobs, "
                "JOB_TIMEOUT_SECONDS)"
            )
        return value

    @field_validator("cors_allow_origins", mode="before")
    @classmethod
    def comma_separated(cls, value):
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def upper_case(cls, value):
        return value.upper() if isinstance(value, str) else value

    @field_validator("cors_allow_origin_regex")
    @classmethod
    def empty_is_none(cls, value: str | None) -> str | None:
        return value or None


@lru_cache
def get_settings() -> Settings:
    return Settings()
