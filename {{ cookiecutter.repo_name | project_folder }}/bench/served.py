"""Warm requests as a server runs them: what each costs the calculation's
own process (system time, minor page faults) and the server (CPU), in the
first worker and in one that replaced a killed worker.

In process (``TestClient``) the app's event loop runs in a thread of its
own; under uvicorn, as on Modal, on the main thread. Both are measured: the
worker must run at raw speed whichever thread started it.
"""

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Warm:
    """Medians over warm requests of distinct households."""

    seconds: float
    job_system_s: float
    job_minor_faults: float
    server_cpu_s: float


def cpu_seconds(pid: int) -> float:
    """User + system time of one process, from /proc (uvicorn's server)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    found: list[int] = []
    for task in tasks.iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def measure(
    send: Callable[[int], None],
    job_details: Callable[[], list[dict]],
    server_cpu: Callable[[], float],
    first: int,
    repeats: int,
) -> Warm:
    """``repeats`` warm requests, households ``first``, ``first + 1``..."""
    times, cpu = [], []
    before = len(job_details())
    for i in range(repeats):
        cpu_before, started = server_cpu(), time.perf_counter()
        send(first + i)
        times.append(time.perf_counter() - started)
        cpu.append(server_cpu() - cpu_before)
    jobs = job_details()[before:]
    return Warm(
        statistics.median(times),
        statistics.median(job["job_system_ms"] / 1000 for job in jobs),
        statistics.median(job["job_minor_faults"] for job in jobs),
        statistics.median(cpu),
    )


def under_uvicorn(household_with, repeats: int, port: int) -> tuple[Warm, Warm]:
    """The first worker's and a replacement's warm requests, served by a
    uvicorn process; job figures read from its request log lines."""
    log_path = ROOT / ".bench-uvicorn.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "api.main:app", "--port", str(port)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "LOG_LEVEL": "INFO"},
        )
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=None)
        while True:  # warm-up: an upper bound is the caller's patience
            try:
                if client.get("/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None:
                raise RuntimeError(log_path.read_text())
            time.sleep(0.5)

        def send(i: int) -> None:
            body = {"household": household_with(70_000 + i)}
            response = client.post("/calculate", json=body)
            assert response.status_code == 200, response.text

        def job_details() -> list[dict]:
            lines = log_path.read_text().splitlines()
            records = [json.loads(line) for line in lines if line.startswith("{")]
            return [r for r in records if "job_minor_faults" in r]

        send(-1)  # the first request pays for anything still cold
        first = measure(send, job_details, lambda: cpu_seconds(server.pid), 0, repeats)
        for pid in children(server.pid):
            os.kill(pid, signal.SIGKILL)  # the worker: the next request replaces it
        send(-2)
        replaced = measure(
            send, job_details, lambda: cpu_seconds(server.pid), 100, repeats
        )
        return first, replaced
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
        log_path.unlink(missing_ok=True)
