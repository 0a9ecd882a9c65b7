"""The engineer's loop, as ratios to a bare import of the country model.

Run with `make bench-dev` (about ten minutes). In one run, on this machine:

- a bare ``import policyengine_<country>`` in a fresh Python (the best of two);
- under `make dev`: a first start to a first answer, then an edit under
  ``api/`` (the README's new endpoint, then changes to it) to its served
  answer; and the same edit under ``uvicorn --reload``, the naive loop,
  which loads the model again;
- a fresh copy of this project's `make test`, install included.

Everything runs in copies of the project in a temporary folder; this one is
never edited.
"""

import contextlib
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The README's endpoint ("Add your own endpoint"), as its tests read it.
from policyengine_backend._settings import COUNTRY  # noqa: E402
from policyengine_backend.examples import EXAMPLE_HOUSEHOLD  # noqa: E402
from tests.backend.readme_steps import ROUTE_MODULE, with_readme_include  # noqa: E402

EDITS = 3
CALCULATE = {"household": EXAMPLE_HOUSEHOLD}
NET_INCOME = {"household": EXAMPLE_HOUSEHOLD, "year": 2025}
COPY_IGNORE = shutil.ignore_patterns(
    ".venv", ".tools", ".git", "*_cache", "node_modules"
)


def import_seconds() -> float:
    """A bare import of the model in a fresh Python, the best of two."""
    code = f"import time; t = time.perf_counter(); import policyengine_{COUNTRY}; print(time.perf_counter() - t)"
    runs = [
        float(
            subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(2)
    ]
    return min(runs)


def project_copy(folder: Path, venv: bool) -> Path:
    # Named as this one: the tests check the app is named after its folder.
    copy = folder / ROOT.name
    shutil.copytree(ROOT, copy, ignore=COPY_IGNORE)
    if venv:
        (copy / ".venv").symlink_to(ROOT / ".venv")
    return copy


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serving(command: list[str], cwd: Path) -> Iterator[httpx.Client]:
    port = free_port()
    with open(cwd / "server.log", "w") as log:
        server = subprocess.Popen(
            [*command, "--port", str(port)],
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}", timeout=None
            ) as client:
                yield client
        finally:
            server.terminate()
            server.wait()


def answered(
    client: httpx.Client, path: str, body: dict, expected: object = None
) -> None:
    """Poll until ``path`` answers 200 (with ``expected`` in it, if given)."""
    while True:
        with contextlib.suppress(httpx.TransportError):
            response = client.post(path, json=body)
            if response.status_code == 200 and (
                expected is None or expected in response.json()["result"]
            ):
                return
        time.sleep(0.05)


def add_endpoint(project: Path) -> None:
    """The README's steps 1 and 2."""
    (project / "api/routes/net_income.py").write_text(ROUTE_MODULE)
    routes = project / "api/routes/__init__.py"
    routes.write_text(with_readme_include(routes.read_text()))


def edit_endpoint(project: Path, marker: int) -> None:
    """Change the new endpoint's answer: one more number, ``marker``."""
    edited = ROUTE_MODULE.replace(".tolist()\n", f".tolist() + [{marker}]\n")
    (project / "api/routes/net_income.py").write_text(edited)


def timed_edits(command: list[str], edits: int) -> tuple[float, list[float]]:
    """Start to a first answer, then each edit to its served answer."""
    with tempfile.TemporaryDirectory() as folder:
        project = project_copy(Path(folder), venv=True)
        start = time.perf_counter()
        with serving(command, project) as client:
            answered(client, "/calculate", CALCULATE)
            first = time.perf_counter() - start
            seconds = []
            start = time.perf_counter()
            add_endpoint(project)
            answered(client, "/net-income", NET_INCOME)
            seconds.append(time.perf_counter() - start)
            for marker in range(1, edits):
                time.sleep(1)  # past the file system's time resolution
                start = time.perf_counter()
                edit_endpoint(project, 1000 + marker)
                answered(client, "/net-income", NET_INCOME, 1000 + marker)
                seconds.append(time.perf_counter() - start)
    return first, seconds


def make_test_seconds() -> float:
    """A fresh copy's `make test`, install included."""
    with tempfile.TemporaryDirectory() as folder:
        project = project_copy(Path(folder), venv=False)
        start = time.perf_counter()
        done = subprocess.run(
            ["make", "test"], cwd=project, capture_output=True, text=True
        )
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"make test failed:\n{done.stdout[-5000:]}{done.stderr[-2000:]}")
        return seconds


def row(name: str, seconds: float, imported: float, target: float | None = None):
    goal = f"< {target}" if target else ""
    print(f"{name:48} {seconds:8.1f} {seconds / imported:7.2f}  {goal}", flush=True)


def main() -> None:
    print(f"policyengine-{COUNTRY}; seconds, and as a ratio to the bare import\n")
    print(f"{'':48} {'seconds':>8} {'ratio':>7}  target")
    imported = import_seconds()
    row("bare import of the model", imported, imported)
    python = [str(ROOT / ".venv/bin/python")]
    dev = [*python, "-m", "policyengine_backend._dev", "api.main:app"]
    first, edits = timed_edits(dev, EDITS)
    row("make dev: start to a first answer", first, imported)
    row(
        "make dev: an edit under api/ to its answer",
        statistics.median(edits),
        imported,
        0.4,
    )
    naive = [*python, "-m", "uvicorn", "api.main:app", "--reload"]
    naive_first, naive_edits = timed_edits(naive, 1)
    row("uvicorn --reload: start to a first answer", naive_first, imported)
    row("uvicorn --reload: the same edit", naive_edits[0], imported)
    row(
        "make test of a fresh copy, install included", make_test_seconds(), imported, 12
    )
    print(f"\nmake dev, each edit (s): {json.dumps([round(s, 2) for s in edits])}")


if __name__ == "__main__":
    main()
