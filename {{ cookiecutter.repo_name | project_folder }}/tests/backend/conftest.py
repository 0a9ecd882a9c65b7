"""Fixtures of the machinery's own tests (``tests/backend/``).

Maintained with ``policyengine_backend/`` by the template (``cruft update``
rewrites this folder); this project's own tests are in ``tests/``.
"""

import copy
import dataclasses
import importlib
import sys
import warnings

import pytest

from policyengine_backend._engine.engine import Engine
from policyengine_backend._settings import Settings


@pytest.fixture(scope="session")
def modal_app():
    """modal_app.py, imported as `modal deploy` imports it. Deprecated Modal
    APIs are errors here, so they are replaced before Modal removes them."""
    import modal

    with warnings.catch_warnings():
        warnings.simplefilter("error", modal.exception.DeprecationError)
        sys.modules.pop("modal_app", None)
        return importlib.import_module("modal_app")


@pytest.fixture
def web_function_app(modal_app, engine):
    """The app as Modal's web function serves it (``fastapi_app``).

    It is this process's one app, and the web function gives it Modal's
    jobs: the local ones are put back afterwards for the other tests.
    """
    from api.main import app

    local_jobs = app.state.jobs
    yield modal_app.fastapi_app.local()
    app.state.jobs = local_jobs


@pytest.fixture(scope="session")
def reference_system(country_package):
    """Current law as policyengine's own Simulation builds it."""
    from policyengine_backend.examples import EXAMPLE_HOUSEHOLD

    return country_package.Simulation(situation=EXAMPLE_HOUSEHOLD).tax_benefit_system


@pytest.fixture
def make_engine(engine):
    """An Engine with its own settings, sharing the session's warm model.

    Its worker is forked from this process when it first calculates, so it
    runs whatever the test has patched by then.
    """
    made = []

    def make(**settings) -> Engine:
        new = Engine(Settings(**settings))
        new._systems = engine.systems
        new._ready.set()
        made.append(new)
        return new

    yield make
    for new in made:
        new.shut_down()


@pytest.fixture
def patch_calculate(monkeypatch):
    """Replace what /calculate runs in the worker (its registered worker
    function) with ``wrap(real)``, for this test only. The registry changes,
    so the next calculation runs in a worker forked after the change."""
    from policyengine_backend._model.functions import WORKER_FUNCTIONS

    def patch(wrap) -> None:
        real = WORKER_FUNCTIONS["calculate"]
        patched = dataclasses.replace(real, function=wrap(real.function))
        monkeypatch.setitem(WORKER_FUNCTIONS, "calculate", patched)

    return patch


def household_with(person: str | None = None, earnings: int = 40_000) -> dict:
    """The example household at other earnings, and with one more person
    (whom a test's patched calculation may know) if ``person`` is given."""
    from policyengine_backend.examples import EXAMPLE_HOUSEHOLD

    household = copy.deepcopy(EXAMPLE_HOUSEHOLD)
    first = next(iter(household["people"].values()))
    first["employment_income"] = {"2025": earnings}
    if person:
        household["people"][person] = {"age": {"2025": 30}}
    return household


async def calculate(
    engine: Engine, household: dict, policy: dict | None = None
) -> bytes:
    """The engine's answer to a /calculate request."""
    return await engine.call("calculate", {"household": household, "policy": policy})


def module_from(source: str, folder, name: str):
    """``source`` (a page's or the README's example) written to ``folder``
    and imported as the module ``name``, as a route module of api/ is."""
    import importlib.util
    from pathlib import Path

    path = Path(folder) / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Moments:
    """Files through which a calculation in the worker and the test agree on
    moments: started (holding the pid of the job's process), released."""

    def __init__(self, folder):
        from pathlib import Path

        self.started = Path(folder) / "started"
        self.release = Path(folder) / "release"

    def start(self) -> None:
        """In the job: say so, then wait until released."""
        import os

        self.started.write_text(str(os.getpid()))
        while not self.release.exists():
            pass

    def wait_until_started(self, unless=lambda: False) -> int | None:
        """The job's pid once it started; None if ``unless()`` first (its
        request was answered without it starting)."""
        while not self.started.exists() or not self.started.read_text():
            if unless():
                return None
        return int(self.started.read_text())

    async def started_pid(self) -> int:
        import asyncio

        while not self.started.exists() or not self.started.read_text():
            await asyncio.sleep(0.01)
        return int(self.started.read_text())

    def let_go(self) -> None:
        self.release.touch()


def gone(pid: int) -> bool:
    """Whether a process has ended (a zombie counts as ended)."""
    from pathlib import Path

    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def ends(pid: int, bound_seconds: float = 120) -> bool:
    """Whether a process ends (is stopped, or stops) within the bound, which
    only keeps a broken test from hanging the suite."""
    import time

    end = time.monotonic() + bound_seconds
    while not gone(pid):
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True
