"""Speed and memory of this backend against a naive one, side by side.

The naive backend is the usual first version: a new ``Simulation`` per
request, with a policy's reform built from scratch each time. Everything
runs in this one process, except the naive cold start, which needs a fresh
interpreter and so runs in a child process. Run with `make bench`.
"""

import contextlib
import copy
import gc
import importlib
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# A log line per request would bury the report; warnings still show.
os.environ.setdefault("LOG_LEVEL", "WARNING")

import dashboard  # noqa: E402
import many  # noqa: E402
import memory  # noqa: E402
import served  # noqa: E402

from policyengine_backend._model.household import fill_household  # noqa: E402
from policyengine_backend._settings import COUNTRY  # noqa: E402
from policyengine_backend._web.app import get_engine  # noqa: E402
from policyengine_backend.examples import EXAMPLE_HOUSEHOLD, EXAMPLE_POLICY  # noqa: E402
from policyengine_backend.testing import free_port  # noqa: E402

REPEATS = 7
POLICIES = 20
SWEEP_POINTS = 1000


def timed(function, *args) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def median_time(function, make_args) -> float:
    return statistics.median(timed(function, *make_args(i))[0] for i in range(REPEATS))


def household_with(earnings: float) -> dict:
    """The example household with other earnings: a request no cache has seen."""
    household = copy.deepcopy(EXAMPLE_HOUSEHOLD)
    household["people"]["parent"]["employment_income"] = {"2025": earnings}
    return household


def policy_number(i: int) -> dict:
    """A distinct parametric policy for each i, all on the same parameter."""
    ((name, periods),) = EXAMPLE_POLICY.items()
    ((period, value),) = periods.items()
    return {name: {period: value * (1 + (i + 1) / 100)}}


def naive_calculate(country, household: dict, policy: dict | None) -> dict:
    from policyengine_core.reforms import Reform

    reform = Reform.from_dict(policy, country_id=COUNTRY) if policy else None
    simulation = country.Simulation(situation=household, reform=reform)
    result = fill_household(simulation, household)
    # Pay for its own garbage, as the backend does: once warmed up, the
    # engine turns automatic collection off and collects after each
    # calculation, so without this the naive side's garbage would be
    # collected (and timed) in the backend's next request.
    del simulation
    gc.collect()
    return result


NAIVE_COLD_START = f"""
import json, sys, time
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
start = time.perf_counter()
import policyengine_{COUNTRY} as country
imported = time.perf_counter()
from policyengine_backend.examples import EXAMPLE_HOUSEHOLD
country.Simulation(situation=EXAMPLE_HOUSEHOLD).calculate("household_net_income", 2025)
print(json.dumps([imported - start, time.perf_counter() - imported]))
"""


def main() -> None:
    # Startup: what a new container does before its first request.
    start_time, _ = timed(lambda: importlib.import_module("api.main"))
    import api.main

    engine = get_engine()
    warm_up_time, _ = timed(engine.warm_up)
    # Entered, as a server runs it: one event loop for every request, so a
    # job started by one request is still running when the next one polls.
    client = contextlib.ExitStack().enter_context(TestClient(api.main.app))
    country = importlib.import_module(f"policyengine_{COUNTRY}")

    def send(household, policy=None):
        return client.post(
            "/calculate", json={"household": household, "policy": policy}
        )

    def post(household, policy=None):
        response = send(household, policy)
        assert response.status_code == 200, response.text
        return response.json()["result"]

    first_request, _ = timed(post, household_with(41_000))
    # What each calculation's own process used, as its log line says.
    jobs: list[dict] = []
    record = engine.scheduler.record

    def recording(details):
        jobs.append(
            {
                "job_system_ms": details.system_ms,
                "job_minor_faults": details.minor_faults,
            }
        )
        record(details)

    engine.scheduler.record = recording  # type: ignore[method-assign]

    def server_cpu() -> float:  # this process: the server (and its loop's thread)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    in_process = served.measure(
        lambda i: post(household_with(50_000 + i)),
        lambda: jobs,
        server_cpu,
        0,
        REPEATS,
    )
    warm_ours = in_process.seconds
    warm_raw = median_time(
        lambda h: naive_calculate(country, h, None),
        lambda i: (household_with(60_000 + i),),
    )
    os.kill(engine.worker.pid, signal.SIGKILL)  # the next request replaces it
    post(household_with(49_000))
    in_process_replaced = served.measure(
        lambda i: post(household_with(50_100 + i)),
        lambda: jobs,
        server_cpu,
        0,
        REPEATS,
    )
    cached_ours = median_time(post, lambda i: (household_with(50_000),))

    # Policies: the first time one is seen, then again on another household.
    first_policy, ours_result = timed(post, household_with(42_000), EXAMPLE_POLICY)
    repeat_policy = median_time(
        lambda h: post(h, EXAMPLE_POLICY), lambda i: (household_with(43_000 + i),)
    )
    structural = memory.structural_policy(POLICIES + 1)
    first_structural, structural_result = timed(
        post, household_with(42_500), structural
    )
    for i in range(POLICIES):
        post(household_with(44_000 + i), policy_number(i))
    memory_after_policies = engine.worker.memory_mb() or 0

    # Sweep: one request with axes against one plain request.
    sweep = household_with(0)
    sweep["axes"] = [
        [
            {
                "name": "employment_income",
                "count": SWEEP_POINTS,
                "min": 0,
                "max": 200_000,
                "period": "2025",
            }
        ]
    ]
    sweep_time, _ = timed(post, sweep)
    memory_after_sweep = engine.worker.memory_mb() or 0

    # A request stopped at its deadline, then the next one: the stopped
    # calculation's worker is ended and the next runs in a fresh fork.
    settings = engine.settings
    engine.settings = settings.model_copy(update={"calculation_timeout_seconds": 0.2})
    slow = copy.deepcopy(sweep)
    slow["axes"][0][0]["max"] = 150_000  # not in the answer cache
    stopped = send(slow).status_code
    engine.settings = settings
    after_timeout = median_time(post, lambda i: (household_with(52_000 + i),))

    dashboard_rows = dashboard.measure(client, engine, household_with, policy_number)
    memory_rows = memory.measure(lambda h, p: send(h, p).status_code, engine)
    many_rows = many.measure(client, engine)

    # The naive backend, last, so its memory does not count against ours.
    naive_policy, naive_result = timed(
        naive_calculate, country, household_with(42_000), EXAMPLE_POLICY
    )
    naive_structural, naive_structural_result = timed(
        naive_calculate, country, household_with(42_500), structural
    )
    cold = subprocess.run(
        [sys.executable, "-c", NAIVE_COLD_START],
        capture_output=True,
        text=True,
        check=True,
    )
    naive_import, naive_first = json.loads(cold.stdout.strip().splitlines()[-1])

    uvicorn_first, uvicorn_replaced = served.under_uvicorn(
        household_with, REPEATS, free_port()
    )

    import modal_app

    identical = json.dumps(ours_result, sort_keys=True) == json.dumps(
        naive_result, sort_keys=True
    ) and json.dumps(structural_result, sort_keys=True) == json.dumps(
        naive_structural_result, sort_keys=True
    )
    print(
        f"{COUNTRY.upper()} backend, {POLICIES} policies, {SWEEP_POINTS}-point sweep\n"
    )
    print(f"{'':44} {'ours':>9} {'naive':>9} {'ratio':>8}  target")
    lines = [
        (
            "startup: import + warm-up (s)",
            start_time + warm_up_time,
            naive_import,
            "",
            "",
        ),
        (
            "first request after startup (s)",
            first_request,
            naive_first,
            f"{first_request / warm_ours:.2f}x warm",
            "<= 1.5x warm",
        ),
        (
            "warm request, HTTP vs raw Simulation (s)",
            warm_ours,
            warm_raw,
            f"{warm_ours / warm_raw:.2f}x raw",
            "<= 1.10x raw",
        ),
        (
            "repeated request, result cache (s)",
            cached_ours,
            warm_raw,
            f"{warm_raw / cached_ours:.0f}x faster",
            "",
        ),
        (
            "first-seen policy (s)",
            first_policy,
            naive_policy,
            f"{naive_policy / first_policy:.1f}x faster",
            ">= 3x faster",
        ),
        (
            f"first-seen {memory.STRUCTURAL_KIND} policy (s)",
            first_structural,
            naive_structural,
            f"{naive_structural / first_structural:.1f}x faster",
            ">= 3x faster",
        ),
        (
            "repeated policy, new household (s)",
            repeat_policy,
            naive_policy,
            f"{naive_policy / repeat_policy:.1f}x faster",
            ">= 15x faster",
        ),
        # Naive: one request per point.
        (
            f"{SWEEP_POINTS}-point sweep (s)",
            sweep_time,
            SWEEP_POINTS * warm_raw,
            f"{sweep_time / warm_ours:.2f}x one",
            "<= 3x one request",
        ),
        (
            f"request after a {stopped} (timed out) one (s)",
            after_timeout,
            warm_raw,
            f"{after_timeout / warm_ours:.2f}x warm",
            "~1x warm",
        ),
    ]
    for name, ours, naive, ratio, target in lines:
        print(f"{name:44} {ours:9.3f} {naive:9.3f} {ratio:>8}  {target}")
    print(
        f"{'memory after ' + str(POLICIES) + ' policies (MB)':44} {memory_after_policies:9.0f}"
        f" {'':9} {memory_after_policies / modal_app.MEMORY_MB:.2f}x of MEMORY_MB={modal_app.MEMORY_MB}"
        "  <= 1x"
    )
    print(f"{'memory after the sweep too (MB)':44} {memory_after_sweep:9.0f}")
    print(
        f"\nWarm requests by how they are served{'':8} {'request':>9} {'vs raw':>8}"
        f" {'job sys':>8} {'job faults':>10} {'server CPU':>10}"
    )
    for name, warm in (
        ("in process (loop in a thread), first worker", in_process),
        ("in process, a replacement worker", in_process_replaced),
        ("uvicorn (loop on the main thread), first", uvicorn_first),
        ("uvicorn, a replacement worker", uvicorn_replaced),
    ):
        print(
            f"{name:44} {warm.seconds:9.3f} {warm.seconds / warm_raw:7.2f}x"
            f" {warm.job_system_s:8.3f} {warm.job_minor_faults:10.0f}"
            f" {warm.server_cpu_s:10.3f}"
        )
    print(f"{'target':44} {'':9} {'<=1.10x':>8}")
    print(f"\nDashboard endpoints{'':25} {'ours':>9} {'without':>9} {'ratio':>8}")
    for name, ours, without, ratio in dashboard_rows:
        print(f"{name:44} {ours:9.3f} {without:9.3f} {ratio:>8}")
    print(
        f"\nContainer memory (server + worker, MB) over sequences of distinct requests;"
        f" MEMORY_MB={modal_app.MEMORY_MB}, MEMORY_LIMIT_MB={settings.memory_limit_mb}\n"
    )
    print(f"{'':44} {'peak':>9} {'final':>9} {'not 200':>8}")
    for name, peak, final, failed in memory_rows:
        print(f"{name:44} {peak:9.0f} {final:9.0f} {failed:8d}")
    many.report(many_rows)
    print(f"\nfirst-seen policies give the naive results exactly: {identical}")


if __name__ == "__main__":
    main()
