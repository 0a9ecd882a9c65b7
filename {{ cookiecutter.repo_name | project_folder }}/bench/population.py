"""`make bench-population`: a society-wide impact against a naive run.

The naive run is two fresh ``Microsimulation``s of the same synthetic file,
one after the other (current law, then the policy), as a first version
would do it. The impact is the ``/jobs/impact`` job's own work
(``coordinate``), with its default chunks (one per process): a first reform
on 1 and 2 processes (nothing kept); a second reform, on the kept baseline;
the first again, from the kept answer. Each run is forked from this warm process, so
each starts from the same state (the model imported, nothing of the policy
built). Also: the peak memory of one chunk's process. HOUSEHOLDS (default
2000) sets the dataset's size.
"""

import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LOG_LEVEL", "WARNING")

from policyengine_backend._population import (  # noqa: E402
    chunks,
    datasets,
    impact,
    synthetic,
)
from policyengine_backend._population import dataset as ds  # noqa: E402
from policyengine_backend._settings import get_settings  # noqa: E402
from policyengine_backend.examples import EXAMPLE_POLICY  # noqa: E402

YEAR = 2025
FORK = multiprocessing.get_context("fork")


def in_fork(function):
    """``function()``'s result and seconds, run in a forked process."""
    receive, send = FORK.Pipe(duplex=False)

    def child():
        start = time.perf_counter()
        result = function()
        send.send((result, time.perf_counter() - start))

    process = FORK.Process(target=child)
    process.start()
    result = receive.recv()
    process.join()
    return result


def naive(data) -> None:
    for policy in (None, EXAMPLE_POLICY):
        simulation = chunks.direct_simulation(data, policy)
        simulation.calculate("household_net_income", YEAR)


def chunk_peak_mb(path: Path) -> float:
    """Peak resident memory of a process that simulates a chunk's worth of
    households (a file of that size, as one chunk: a UK chunk of a larger
    file would need the population-wide values computed first)."""
    task = chunks.Chunk(str(path), None, None, 0, 1, YEAR, EXAMPLE_POLICY)
    chunks.run_chunk(task)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    households = int(os.environ.get("HOUSEHOLDS", "2000"))
    folder = Path(tempfile.mkdtemp())
    path = synthetic.write(folder / datasets.SYNTHETIC_FILE, households, seed=1)
    os.environ["POPULATION_DATA_DIR"] = str(folder)
    os.environ.pop("POPULATION_CHUNKS", None)
    data = ds.load(path)
    chunks.microsimulation_class()  # the model, imported before every fork
    body = {"policy": EXAMPLE_POLICY, "year": YEAR, "region": None, "dataset": None}
    ((parameter, periods),) = EXAMPLE_POLICY.items()
    second = {parameter: {period: value * 1.1 for period, value in periods.items()}}

    print(f"{households} synthetic households, {YEAR}, policy {EXAMPLE_POLICY}")
    _, naive_seconds = in_fork(lambda: naive(data))
    name = "naive: two fresh Microsimulations"
    print(f"  {name:45} {naive_seconds:7.1f} s", flush=True)

    def row(name: str, request: dict) -> None:
        get_settings.cache_clear()
        _, seconds = in_fork(lambda: impact.coordinate(request, lambda d, t: None))
        ratio = naive_seconds / seconds
        print(f"  {name:45} {seconds:7.1f} s  {ratio:6.2f}x faster", flush=True)

    for processes in (1, 2):
        for kept in (".baselines", ".answers"):  # nothing kept: all of it runs
            shutil.rmtree(folder / kept, ignore_errors=True)
        os.environ["POPULATION_PROCESSES"] = str(processes)
        row(f"first reform, {processes} process(es) and chunk(s)", body)
    os.environ["POPULATION_PROCESSES"] = "1"
    row("second reform, the baseline kept, 1 process", {**body, "policy": second})
    row("the first again: its kept answer", body)
    size = max(1, households // 4)
    part = synthetic.write(folder / "chunk.h5", size, seed=1)
    peak, _ = in_fork(lambda: chunk_peak_mb(part))
    name = f"peak memory of a {size}-household chunk"
    print(f"  {name:45} {peak:7.0f} MB", flush=True)


if __name__ == "__main__":
    main()
