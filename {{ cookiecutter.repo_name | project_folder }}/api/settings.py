"""Settings, read once from environment variables.

Every tunable of the backend lives here, with its default and the
environment variable that overrides it, so there is one place to look.
"""

import os
from dataclasses import dataclass, field
from functools import lru_cache

COUNTRY = "{{ cookiecutter.country }}"
COUNTRY_PACKAGE = "policyengine-{{ cookiecutter.country }}"


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _list(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = os.environ.get(name)
    if raw is None:
        return default
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
    policy_cache_size: int = field(
        default_factory=lambda: _int("POLICY_CACHE_SIZE", 32)
    )
    # Of those, systems that needed a full build (policies that switch on a
    # structural reform): each holds a whole parameter tree, about 870 MB.
    policy_full_build_cache_size: int = field(
        default_factory=lambda: _int("POLICY_FULL_BUILD_CACHE_SIZE", 1)
    )
    # Finished results kept in memory, keyed by the exact request.
    result_cache_size: int = field(
        default_factory=lambda: _int("RESULT_CACHE_SIZE", 256)
    )
    # Request limits. Over one, the answer is a 413 (body size) or 422 (the
    # rest) whose message names the limit and its variable.
    max_body_bytes: int = field(
        default_factory=lambda: _int("MAX_BODY_BYTES", 1_000_000)
    )
    max_people: int = field(default_factory=lambda: _int("MAX_PEOPLE", 50))
    max_axis_points: int = field(default_factory=lambda: _int("MAX_AXIS_POINTS", 2_001))
    max_policy_parameters: int = field(
        default_factory=lambda: _int("MAX_POLICY_PARAMETERS", 200)
    )
    # A calculation that runs longer than this answers 504; the container's
    # own Modal timeout is longer, so the client hears why.
    calculation_timeout_seconds: float = field(
        default_factory=lambda: _float("CALCULATION_TIMEOUT_SECONDS", 120)
    )
    # Calculations are CPU-bound Python: the GIL runs one at a time, so a
    # second thread adds no speed, only garbage-collection pauses that
    # /health then waits behind (measured: 1.9 s under load with two).
    calculation_workers: int = field(
        default_factory=lambda: _int("CALCULATION_WORKERS", 1)
    )
    cors_allow_origins: tuple[str, ...] = field(
        default_factory=lambda: _list("CORS_ALLOW_ORIGINS", DEFAULT_ORIGINS)
    )
    # Vercel deployments of the policy-engine team get a new host each time,
    # so they are allowed by pattern. CORS_ALLOW_ORIGIN_REGEX="" turns it off.
    cors_allow_origin_regex: str | None = field(
        default_factory=lambda: (
            os.environ.get("CORS_ALLOW_ORIGIN_REGEX", DEFAULT_ORIGIN_REGEX) or None
        )
    )


@lru_cache
def get_settings() -> Settings:
    return Settings()
