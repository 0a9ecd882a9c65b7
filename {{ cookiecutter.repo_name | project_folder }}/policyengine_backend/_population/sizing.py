"""How many chunks an impact is split into: enough for the processes (or
containers) that run them, and small enough for a chunk's memory.

A chunk's peak memory, measured by `make bench-population`'s chunk row (one
process simulating the current law and a reform of synthetic data, on a
2-core machine), is a fixed part (the model, its tax-benefit systems) plus
a part per household:
{%- if cookiecutter.country == "us" %}
policyengine-us 2.68: 1,989 MB + 0.10 MB per household (250 households:
2,015 MB; 500: 2,040 MB; 1,000: 2,091 MB).
{%- else %}
policyengine-uk 2.162: 532 MB + 0.019 MB per household (250 households:
536 MB; 500: 542 MB; 1,000: 551 MB; again later, 4,000: 585 MB).
{%- endif %}
A real dataset has many more columns than the synthetic one, and the line is
a measurement, not a bound: a chunk is given at most ``MEMORY_SHARE`` of its
memory by that line. Only a deploy can measure the real file's chunks
(docs/population.md).
"""

import math

from policyengine_backend._errors import Unavailable
from policyengine_backend._settings import get_settings
{%- if cookiecutter.country == "us" %}

FIXED_MB = 1989.0
MB_PER_HOUSEHOLD = 0.10
{%- else %}

FIXED_MB = 532.0
MB_PER_HOUSEHOLD = 0.019
{%- endif %}
MEMORY_SHARE = 0.75


def households_per_chunk(memory_mb: float) -> int:
    """The most households one chunk may hold within ``memory_mb``."""
    room = memory_mb * MEMORY_SHARE - FIXED_MB
    return max(0, math.floor(room / MB_PER_HOUSEHOLD))


def least_memory_mb(households: int = 1) -> float:
    """The memory a chunk of ``households`` needs by the line above."""
    return (FIXED_MB + households * MB_PER_HOUSEHOLD) / MEMORY_SHARE


def chunk_count(households: int) -> int:
    """At least POPULATION_CHUNKS (unset: one per local process), enough that
    each chunk fits in POPULATION_CHUNK_MEMORY_MB (when set), and at most
    one per household. A memory too small for any household is an error
    that names the setting, raised before anything is simulated (never a
    chunk killed for its memory)."""
    settings = get_settings()
    count = settings.population_chunks or settings.population_processes
    memory = settings.population_chunk_memory_mb
    if memory is not None:
        most = households_per_chunk(memory)
        if most < 1:
            share = round(MEMORY_SHARE * 100)
            raise Unavailable(
                f"POPULATION_CHUNK_MEMORY_MB={memory:g} is too small for a chunk "
                f"of even one household: a chunk needs about {FIXED_MB:,.0f} MB "
                f"before its households and is given {share}% of its memory, "
                f"so set at least {math.ceil(least_memory_mb()):,} "
                "(in modal_app.py on Modal)"
            )
        count = max(count, math.ceil(households / most))
    return max(1, min(count, households))
