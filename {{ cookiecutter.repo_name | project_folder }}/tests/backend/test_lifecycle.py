"""The served app's life as a process: nothing outlives the server, and a
SIGTERM ends it promptly.

Each test starts a real server process (uvicorn, or `make dev`'s command
line), so each costs a model import: they are marked `ci`. The waits below
are upper bounds on something that should happen at once, never timings.
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from policyengine_backend.examples import EXAMPLE_HOUSEHOLD
from policyengine_backend.testing import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.ci

STUCK_APP = """
import os, time
from fastapi import APIRouter
from pydantic import BaseModel
from api.routes import ROUTERS
from policyengine_backend import create_app, worker_endpoint

router = APIRouter()


class Nothing(BaseModel):
    pass


@worker_endpoint(router, "/stuck", request_model=Nothing, result_model=str)
def stuck(request: Nothing, simulations) -> str:
    open(os.environ["STUCK_MARK"], "w").close()
    time.sleep(3600)
    return "never"


app = create_app("stuck", "stuck", [*ROUTERS, router])
"""


def until(condition, what: str, seconds: float = 1800.0) -> None:
    """Wait for ``condition()``: an upper bound, so a slow machine passes."""
    end = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"never: {what}")
        time.sleep(0.1)


def descendants(pid: int) -> set[int]:
    """Every live process under ``pid``, read from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie holds nothing: no memory, no sockets


def port_is_free(port: int) -> bool:
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("127.0.0.1", port))
            listener.listen()
        except OSError:
            return False
    return True


def healthy(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/health", timeout=10).status_code == 200
    except httpx.HTTPError:
        return False


def start(command: list[str], tmp_path: Path, **env: str) -> subprocess.Popen:
    log = (tmp_path / "server.log").open("w")
    return subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}", **env},
    )


def uvicorn(app: str, port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", app, "--port", str(port)]


def dev(app: str, port: int) -> list[str]:
    """`make dev`'s command line."""
    return [sys.executable, "-m", "policyengine_backend._dev", app, "--port", str(port)]


@pytest.mark.parametrize("command", [uvicorn, dev], ids=["uvicorn", "make-dev"])
def test_after_the_server_is_killed_nothing_holds_its_port(tmp_path, command):
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    app = "api.main:app"
    server = start(command(app, port), tmp_path)
    try:
        until(lambda: healthy(base_url), "the server answered /health")
        # A calculation: the worker has run a job and holds the model.
        response = httpx.post(
            f"{base_url}/calculate", json={"household": EXAMPLE_HOUSEHOLD}, timeout=None
        )
        log = (tmp_path / "server.log").read_text()
        assert response.status_code == 200, f"{response.text}\n{log[-6000:]}"
        children = descendants(server.pid)
        assert children  # the worker (and under make dev, the app)
        server.kill()
        server.wait()
        until(lambda: not any(alive(pid) for pid in children), "children exited", 60)
        until(lambda: port_is_free(port), "the port was free", 60)
    finally:
        server.kill()
        server.wait()


def test_sigterm_ends_running_and_queued_requests_and_exits(tmp_path):
    (tmp_path / "stuck_app.py").write_text(STUCK_APP)
    mark = tmp_path / "running"
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    server = start(uvicorn("stuck_app:app", port), tmp_path, STUCK_MARK=str(mark))
    try:
        until(lambda: healthy(base_url), "the server answered /health")
        answers: list[httpx.Response] = []
        running = threading.Thread(
            target=lambda: answers.append(
                httpx.post(f"{base_url}/stuck", json={}, timeout=600)
            )
        )
        running.start()
        until(mark.exists, "the stuck job started")

        # A queued request whose client leaves before it is served.
        with socket.create_connection(("127.0.0.1", port)) as gone:
            body = b'{"household": {"people": {"you": {"age": {"2026": 40}}}}}'
            gone.sendall(
                b"POST /calculate HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
        children = descendants(server.pid)
        server.send_signal(signal.SIGTERM)
        running.join(timeout=300)
        # uvicorn ends a graceful shutdown by raising the signal it caught
        # again, so the exit status is SIGTERM's, after it said it was done.
        assert server.wait(timeout=300) in (0, -signal.SIGTERM)
    finally:
        server.kill()
        server.wait()
    (answer,) = answers
    assert answer.status_code == 503, answer.text
    assert "shutting down" in answer.json()["message"]
    assert "Application shutdown complete" in (tmp_path / "server.log").read_text()
    until(lambda: not any(alive(pid) for pid in children), "children exited", 60)
    assert port_is_free(port)
