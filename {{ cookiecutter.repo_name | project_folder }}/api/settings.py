"""Settings, read once from environment variables.

Every tunable of the backend lives here, with its default and the
environment variable that overrides it, so there is one place to look.
"""

import os
from dataclasses import dataclass, field
from functools import lru_cache

COUNTRY = "{{ cookiecutter.country }}"
COUNTRY_PACKAGE = "policyengine-{{ cookiecutter.country }}"


def from_env(name: str, default, parse=str):
    """A dataclass field read from environment variable ``name`` when a
    Settings is made, or ``default`` when it is not set."""

    def read():
        raw = os.environ.get(name)
        return default if raw is None else parse(raw)

    return field(default_factory=read)


def comma_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


# Browsers on these origins may call the API: local frontends and
# PolicyEngine's own sites. CORS_ALLOW_ORIGINS replaces the list.
DEFAULT_ORIGINS = (
    "http://localhost:3000",
    "http://localhost:5173",
    "http://127.0.0.1:3000",
    "http://127.0.0.1:5173",
    "https://policyengine.org",
    "https://www.policyengine.org",
)


DEFAULT_ORIGIN_REGEX = r"https://[a-z0-9-]+-policy-engine\.vercel\.app"


@dataclass(frozen=True)
class Settings:
    # Reformed tax-benefit systems kept in memory, least recently used first
    # out. Each costs little (it shares the baseline's unchanged parameters).
    policy_cache_size: int = from_env("POLICY_CACHE_SIZE", 32, int)
    # Of those, systems that needed a full build (policies that switch on a
    # structural reform): each holds a whole parameter tree, about 870 MB.
    policy_full_build_cache_size: int = from_env("POLICY_FULL_BUILD_CACHE_SIZE", 1, int)
    # Finished results kept in memory, keyed by the exact request.
    result_cache_size: int = from_env("RESULT_CACHE_SIZE", 256, int)
    # Request limits. Over one, the answer is a 413 (body size) or 422 (the
    # rest) whose message names the limit and its variable.
    max_body_bytes: int = from_env("MAX_BODY_BYTES", 1_000_000, int)
    max_people: int = from_env("MAX_PEOPLE", 50, int)
    max_axis_points: int = from_env("MAX_AXIS_POINTS", 2_001, int)
    max_policy_parameters: int = from_env("MAX_POLICY_PARAMETERS", 200, int)
    # A calculation that runs longer than this answers 504; the container's
    # own Modal timeout is longer, so the client hears why.
    calculation_timeout_seconds: float = from_env(
        "CALCULATION_TIMEOUT_SECONDS", 120, float
    )
    # Calculations are CPU-bound Python: the GIL runs one at a time, so a
    # second thread adds no speed, only garbage-collection pauses that
    # /health then waits behind (measured: 1.9 s under load with two).
    calculation_workers: int = from_env("CALCULATION_WORKERS", 1, int)
    cors_allow_origins: tuple[str, ...] = from_env(
        "CORS_ALLOW_ORIGINS", DEFAULT_ORIGINS, comma_list
    )
    # Vercel deployments of the policy-engine team get a new host each time,
    # so they are allowed by pattern. CORS_ALLOW_ORIGIN_REGEX="" turns it off.
    cors_allow_origin_regex: str | None = from_env(
        "CORS_ALLOW_ORIGIN_REGEX", DEFAULT_ORIGIN_REGEX, lambda raw: raw or None
    )


@lru_cache
def get_settings() -> Settings:
    return Settings()
