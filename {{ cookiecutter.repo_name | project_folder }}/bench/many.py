"""/calculate-many against what a frontend does without it.

- 51 new households (one per US state, or across the UK's regions) in one
  /calculate-many, against 51 /calculate requests;
- 200 mixed households (earnings, ages) in one /calculate-many, against
  one /calculate: in one place, and across every place. Across places the
  model computes each place's own programs (every US state's taxes, TANF,
  supplements), so its own cost grows with the places in the batch; a
  direct Simulation of the same 200 households shows that cost is the
  model's, not the backend's;
- 500 households: time, and the container's peak memory meanwhile (in a
  worker started for this part).

Every household is new to the answer cache. Part of `make bench`
(bench/bench.py calls ``measure``); ``python bench/many.py`` runs it alone.
"""

import copy
import importlib
import multiprocessing
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from policyengine_backend._model.batch import merge  # noqa: E402
from policyengine_backend._settings import COUNTRY  # noqa: E402
from policyengine_backend._worker.memory import ProportionalSets  # noqa: E402
from policyengine_backend._worker.supervisor import Deadline  # noqa: E402
from policyengine_backend.examples import EXAMPLE_HOUSEHOLD  # noqa: E402

US_STATES = (
    "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS "
    "MO MT NE NV NH NJ NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY"
).split()
UK_REGIONS = (
    "NORTH_EAST NORTH_WEST YORKSHIRE EAST_MIDLANDS WEST_MIDLANDS EAST_OF_ENGLAND "
    "LONDON SOUTH_EAST SOUTH_WEST WALES SCOTLAND NORTHERN_IRELAND"
).split()
PLACE, PLACES = ("state_name", US_STATES) if COUNTRY == "us" else ("region", UK_REGIONS)


def household(earnings: int, place: int, age: int = 35) -> dict:
    """The example household at other earnings, place and parent's age."""
    made = copy.deepcopy(EXAMPLE_HOUSEHOLD)
    parent = next(iter(made["people"].values()))
    parent["employment_income"] = {"2025": earnings}
    parent["age"] = {"2025": age}
    home = next(iter(made["households"].values()))
    home[PLACE] = {"2025": PLACES[place % len(PLACES)]}
    return made


def asked(situation: dict) -> list[tuple[str, str]]:
    """The (variable, period) pairs a household asks for (its nulls)."""
    return sorted(
        {
            (variable, period)
            for plural, entities in situation.items()
            if isinstance(entities, dict)
            for entity in entities.values()
            for variable, periods in entity.items()
            if isinstance(periods, dict)
            for period, value in periods.items()
            if value is None
        }
    )


def direct(households: dict) -> None:
    """policyengine's own Simulation of the households in one situation,
    computing what they ask for: the model's cost, with nothing around it.
    In a process forked from this warm one, as the backend runs each job,
    so what it warms up (each place's parameters) does not carry over."""

    def run() -> None:
        country = importlib.import_module(f"policyengine_{COUNTRY}")
        simulation = country.Simulation(situation=merge(households, COUNTRY).situation)
        for variable, period in asked(next(iter(households.values()))):
            simulation.calculate(variable, period)

    child = multiprocessing.get_context("fork").Process(target=run)
    child.start()
    child.join()
    assert child.exitcode == 0, child.exitcode


class Peak:
    """Peak of the server's, worker's and job's proportional set sizes while
    the block runs, read four times a second: this process's own figure,
    whatever else the machine (or its cgroup) holds."""

    def __init__(self, worker):
        self.worker = worker
        self.source = ProportionalSets(Path("/proc"))
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = self.source.read_mb(self.worker.pids())
            self.peak = max(self.peak, now or 0)
            time.sleep(0.25)

    def __enter__(self) -> "Peak":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def measure(client, engine) -> list[tuple]:
    """Rows of (name, ours, without, ratio text, target)."""

    def post(path: str, body: dict) -> dict:
        response = client.post(path, json=body)
        assert response.status_code == 200, response.text
        return response.json()

    def timed(function, *args) -> float:
        start = time.perf_counter()
        function(*args)
        return time.perf_counter() - start

    def batch(households: dict) -> dict:
        return post("/calculate-many", {"households": households})

    # A fresh worker: what earlier parts of `make bench` left in it (years,
    # policies) is not this part's memory.
    engine.worker.restart(Deadline(time.monotonic() + 300), "bench: many households")
    batch({"a": household(1, 0), "b": household(2, 1)})  # first use, not timed
    one = statistics.median(
        timed(post, "/calculate", {"household": household(3 + i, i)}) for i in range(3)
    )
    singles = timed(
        lambda: [
            post("/calculate", {"household": household(10_000 + i, i)})
            for i in range(51)
        ]
    )
    together = timed(
        batch,
        {PLACES[i % len(PLACES)] + str(i): household(11_000 + i, i) for i in range(51)},
    )

    def two_hundred(start: int, places: int) -> dict:
        return {
            f"household {i}": household(start + 97 * i, 7 * i % places, age=22 + i % 50)
            for i in range(200)
        }

    one_place = timed(batch, two_hundred(20_000, 1))
    every_place = timed(batch, two_hundred(30_000, len(PLACES)))
    model_alone = timed(direct, two_hundred(50_000, len(PLACES)))
    with Peak(engine.worker) as sampler:
        five_hundred = timed(
            batch, {f"{i}": household(40_000 + 13 * i, i) for i in range(500)}
        )
    return [
        (
            "51 households: one /calculate-many vs 51 (s)",
            together,
            singles,
            f"{together / singles:.2f}x",
            "<= 0.15x",
        ),
        (
            "200 households, one place, vs one (s)",
            one_place,
            one,
            f"{one_place / one:.1f}x",
            "<= 3x",
        ),
        (
            f"200 households, {len(PLACES)} places, vs one (s)",
            every_place,
            one,
            f"{every_place / one:.1f}x",
            "<= 3x, or the model's",
        ),
        (
            "  the same vs the model alone (s)",
            every_place,
            model_alone,
            f"{every_place / model_alone:.2f}x",
            "<= 1.10x",
        ),
        (
            "500 households (s); peak memory, PSS (MB)",
            five_hundred,
            sampler.peak,
            "",
            "stated",
        ),
    ]


def report(rows: list[tuple]) -> None:
    print(f"\nMany households{'':29} {'ours':>9} {'without':>9} {'ratio':>8}  target")
    for name, ours, without, ratio, target in rows:
        print(f"{name:44} {ours:9.3f} {without:9.3f} {ratio:>8}  {target}")


if __name__ == "__main__":
    import contextlib
    import os

    os.environ.setdefault("LOG_LEVEL", "WARNING")
    from fastapi.testclient import TestClient

    import api.main
    from policyengine_backend._web.app import get_engine

    engine = get_engine()
    engine.warm_up()
    client = contextlib.ExitStack().enter_context(TestClient(api.main.app))
    report(measure(client, engine))
