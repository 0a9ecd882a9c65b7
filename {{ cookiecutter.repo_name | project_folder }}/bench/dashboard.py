"""The dashboard endpoints, against what a frontend does without them.

- ``/compare`` against two ``/calculate`` requests (current law, then the
  policy), both when neither is cached and when current law is (a dashboard
  shows it first);
- a job (submit, then poll) against the same ``/calculate``;
- ``/parameters`` lookups, first and cached, and the server's memory over
  many distinct ones (the metadata cache is bounded in bytes).
"""

import statistics
import time

from policyengine_backend.examples import EXAMPLE_PARAMETER

REPEATS = 5
DISTINCT_LOOKUPS = 20_000
POLL_SECONDS = 0.05


def measure(client, engine, household_with, policy_number) -> list[tuple]:
    """Rows of (name, ours, without, ratio text) in seconds (or MB)."""

    def post(path: str, body: dict) -> dict:
        response = client.post(path, json=body)
        assert response.status_code in (200, 202), response.text
        return response.json()

    def timed(function, *args) -> float:
        start = time.perf_counter()
        function(*args)
        return time.perf_counter() - start

    def median(function) -> float:
        return statistics.median(timed(function, i) for i in range(REPEATS))

    def two_requests(household, policy):
        post("/calculate", {"household": household})
        post("/calculate", {"household": household, "policy": policy})

    def compare(household, policy):
        post("/compare", {"household": household, "policy": policy})

    # Neither answer cached: new households, policies already built.
    for i in range(REPEATS * 2):
        post("/calculate", {"household": household_with(1), "policy": policy_number(i)})
    separate = median(
        lambda i: two_requests(household_with(70_000 + i), policy_number(i))
    )
    together = median(lambda i: compare(household_with(71_000 + i), policy_number(i)))
    # Current law already shown (cached), a new policy chosen.
    for i in range(REPEATS):
        post("/calculate", {"household": household_with(72_000 + i)})
    baseline_cached = median(
        lambda i: compare(household_with(72_000 + i), policy_number(REPEATS + i))
    )
    reform_alone = median(
        lambda i: post(
            "/calculate",
            {"household": household_with(73_000 + i), "policy": policy_number(i)},
        )
    )

    def job(i):
        job_id = post("/jobs/calculate", {"household": household_with(74_000 + i)})[
            "job_id"
        ]
        while (answer := client.get(f"/jobs/{job_id}").json())["status"] == "pending":
            time.sleep(POLL_SECONDS)
        # Timed to its answer: a lost job must not pass for a fast one.
        assert answer["status"] == "ok", answer

    job_time = median(job)
    calculate_time = median(
        lambda i: post("/calculate", {"household": household_with(75_000 + i)})
    )

    first_lookup = timed(
        lambda: client.get(f"/parameters/{EXAMPLE_PARAMETER}?date=2024-02-29")
    )
    cached_lookup = median(
        lambda i: client.get(f"/parameters/{EXAMPLE_PARAMETER}?date=2024-02-29")
    )
    # Enough distinct lookups to fill METADATA_CACHE_MB, then as many again:
    # past the bound, memory stays where it is.
    memory = [engine.worker.memory_mb() or 0]
    for half in range(2):
        for n in range(half * DISTINCT_LOOKUPS, (half + 1) * DISTINCT_LOOKUPS):
            year, rest = divmod(n, 336)
            month, day_of_month = divmod(rest, 28)
            day = f"{1900 + year}-{month + 1:02d}-{day_of_month + 1:02d}"
            client.get(f"/parameters/{EXAMPLE_PARAMETER}?date={day}")
        memory.append(engine.worker.memory_mb() or 0)

    return [
        (
            "/compare, nothing cached (s)",
            together,
            separate,
            f"{together / separate:.2f}x two",
        ),
        (
            "/compare, current law cached (s)",
            baseline_cached,
            reform_alone,
            f"{baseline_cached / reform_alone:.2f}x one",
        ),
        (
            f"job, submit + poll every {POLL_SECONDS:g} s (s)",
            job_time,
            calculate_time,
            f"{job_time / calculate_time:.2f}x one",
        ),
        ("/parameters, first lookup (s)", first_lookup, 0.0, ""),
        ("/parameters, cached (s)", cached_lookup, 0.0, ""),
        (
            f"memory, first {DISTINCT_LOOKUPS} distinct lookups (MB)",
            memory[1] - memory[0],
            0.0,
            "growth",
        ),
        (
            f"memory, next {DISTINCT_LOOKUPS} distinct lookups (MB)",
            memory[2] - memory[1],
            0.0,
            "growth",
        ),
    ]
