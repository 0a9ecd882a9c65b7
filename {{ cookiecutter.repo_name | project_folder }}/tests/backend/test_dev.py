"""`make dev` (policyengine_backend/_dev.py): an edit under api/ is served
by a fresh app forked from the warm parent, without loading the model again.

The served test runs the real `make dev` command line in a copy of this
project, follows the README's "Add your own endpoint" steps there and
checks the new endpoint's answer against policyengine's own Simulation.
"""

import logging
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from policyengine_backend import _dev as dev
from policyengine_backend.examples import EXAMPLE_HOUSEHOLD
from policyengine_backend.testing import free_port
from tests.backend.readme_steps import ROUTE_MODULE, with_readme_include

ROOT = Path(__file__).resolve().parents[2]


class Child:
    """Stands in for the app process: ``exitcode`` None while it runs."""

    exitcode: int | None = None


def changed_while_waiting(path: Path, child=None) -> str:
    """What wait_for_change says when ``path`` keeps changing meanwhile."""
    done = threading.Event()

    def keep_touching() -> None:
        while not done.is_set():
            path.write_text(path.read_text() + "\n")
            time.sleep(dev.POLL_SECONDS)

    toucher = threading.Thread(target=keep_touching)
    toucher.start()
    try:
        return dev.wait_for_change(child or Child())
    finally:
        done.set()
        toucher.join()


@pytest.fixture
def project(tmp_path, monkeypatch):
    for folder in ("api", "policyengine_backend"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "module.py").write_text("")
    (tmp_path / "uv.lock").write_text("")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_an_edit_under_api_reloads(project):
    assert changed_while_waiting(project / "api/module.py") == "reload"


@pytest.mark.parametrize("name", ["policyengine_backend/module.py", "uv.lock"])
def test_an_edit_to_the_machinery_or_the_lock_restarts(project, name):
    assert changed_while_waiting(project / name) == "restart"


def test_an_app_that_stops_is_reported_and_waits_for_a_change(project, caplog):
    stopped = Child()
    stopped.exitcode = 1

    with caplog.at_level(logging.WARNING, logger="policyengine_backend._dev"):
        assert changed_while_waiting(project / "api/module.py", stopped) == "reload"
    # A WARNING: on make dev's terminal, where its log lines go.
    assert "the app stopped (exit code 1)" in caplog.text


def served(client: httpx.Client, path: str, body: dict) -> httpx.Response:
    """The first answer of the served app that is not a 404 (the route is
    not there yet), a refused connection or a 503 (the app is reloading: the
    old one, shutting down, asks for the request again)."""
    for _ in range(6_000):
        try:
            response = client.post(path, json=body)
        except httpx.TransportError:
            response = None
        if response is not None and response.status_code not in (404, 503):
            return response
        time.sleep(0.1)
    raise AssertionError(f"{path} was never served")


def test_an_added_endpoint_is_served_from_the_warm_model(tmp_path, country_package):
    copy = tmp_path / "project"
    shutil.copytree(
        ROOT,
        copy,
        ignore=shutil.ignore_patterns(".venv", ".tools", ".git", "*_cache", "tests"),
    )
    port = free_port()
    log = (tmp_path / "dev.log").open("w+")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "policyengine_backend._dev",
            "api.main:app",
            "--port",
            str(port),
        ],
        cwd=copy,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    body = {"household": EXAMPLE_HOUSEHOLD}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=None) as client:
            # The server is up (its calculation answered) before the edit.
            response = served(client, "/calculate", body)
            assert response.status_code == 200, response.text

            (copy / "api/routes/net_income.py").write_text(ROUTE_MODULE)
            routes = copy / "api/routes/__init__.py"
            routes.write_text(with_readme_include(routes.read_text()))
            response = served(client, "/net-income", {**body, "year": 2025})
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait()
        log.seek(0)
        output = log.read()

    assert response.status_code == 200, response.text
    expected = country_package.Simulation(situation=EXAMPLE_HOUSEHOLD).calculate(
        "household_net_income", 2025
    )
    assert response.json()["result"] == pytest.approx(expected.tolist(), rel=1e-6)
    # One model load for both apps: the edit was a reload, not a restart.
    assert output.count("warming up") == 1, output
    assert "reload: files changed" in output, output
    assert server.returncode == 0, output
