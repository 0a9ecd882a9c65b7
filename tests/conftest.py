"""Fixtures for testing the template: rendering, hook modules, shared venvs.

Rendering is cheap; installing and importing a country model is not
(policyengine-us: about a minute to install, 25 s to import). So each
country and Python version gets one virtual environment under .cache/, made
by the rendered project's own `make install` (exactly its uv.lock) and
reused by every test and every run.

Bakes go through pytest-cookies (the `cookies` and `cookies_session`
fixtures; `baked()` turns a result into its folder): each bake gets its own
output folder and cookiecutter a config of its own, so no replay or user
config of the machine is read or written. `bake()` calls cookiecutter
directly where pytest-cookies does not fit: a bake refused while the answers
are rendered (pytest-cookies renders them once itself before it calls
cookiecutter, which then never runs), and the slow rendered suites of
test_rendered_suite.py, left as they were.
"""

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cookiecutter.main import cookiecutter

from tests.deploy_support import FakeBackend, StandIn

TEMPLATE = Path(__file__).resolve().parents[1]
CACHE = TEMPLATE / ".cache"
DEFAULTS = json.loads((TEMPLATE / "cookiecutter.json").read_text())


def pytest_configure(config):
    # pytest-cookies bakes its --template, by default the folder pytest was
    # started from; this template is the one to bake, wherever that was.
    config.option.template = str(TEMPLATE)


def baked(result) -> Path:
    """The folder of a pytest-cookies bake, or the bake's own error."""
    if result.exception is not None:
        raise result.exception
    assert result.exit_code == 0
    return result.project_path


def bake(output_dir: Path, **answers) -> Path:
    """Render the template with these answers by calling cookiecutter itself;
    returns the project folder, raises what cookiecutter raises."""
    return Path(
        cookiecutter(
            str(TEMPLATE),
            no_input=True,
            extra_context=answers,
            output_dir=str(output_dir),
            default_config=True,
        )
    )


def load_hook(name: str):
    """Import hooks/<name>.py as a module; its main() is not run."""
    spec = importlib.util.spec_from_file_location(name, TEMPLATE / "hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def pre_gen():
    return load_hook("pre_gen_project")


@pytest.fixture(scope="session")
def post_gen():
    return load_hook("post_gen_project")


@pytest.fixture(scope="session")
def default_project(cookies_session) -> Path:
    return baked(cookies_session.bake())


def run(command: list[str], cwd: Path, env: dict | None = None, timeout: float = 900):
    return subprocess.run(
        command,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def shared_venv(country: str, python_version: str) -> Path:
    return CACHE / f"venv-{country}-py{python_version}"


def run_rendered_suite(
    country: str, python_version: str, output_dir: Path
) -> subprocess.CompletedProcess:
    """Render ``country`` for ``python_version``, follow its README's "Add
    your own endpoint" as a new engineer would (write the three files it
    shows, then `make client`), and run that project's own `make test-ci`
    (its whole suite, with CI's fuzzing and load) and `make lint` (style and
    types).

    One suite at a time: each has a load test that measures /health latency
    while calculations run, and two suites on two cores would measure each
    other.
    """
    project = bake(output_dir, country=country, python_version=python_version)
    venv = shared_venv(country, python_version)
    # Steps 1-3 are files, written by the project's own reading of its
    # README (tests/backend/readme_steps.py); step 4 is a command.
    subprocess.run(
        [
            venv / "bin/python",
            "-c",
            "from pathlib import Path; from tests.backend.readme_steps import follow; follow(Path.cwd())",
        ],
        cwd=project,
        check=True,
    )
    client = subprocess.run(
        ["make", "client", f"VENV={venv}"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=900,
    )
    assert client.returncode == 0, client.stdout[-4000:]
    result = subprocess.run(
        ["make", "test-ci", "lint", f"VENV={venv}", "PYTEST_ARGS=-q -p no:cacheprovider"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=3600,
    )
    # The project's venv is installed from its lock by the first of these
    # (make client): the record holds both, in order.
    result.stdout = client.stdout + result.stdout
    result.project = project
    return result


# --- The deploy tests (helpers in tests/deploy_support.py) ----------------


@pytest.fixture(scope="session")
def project(cookies_session) -> Path:
    """One rendered project for the deploy tests; tests must not change it."""
    return baked(cookies_session.bake())


@pytest.fixture
def project_copy(project, tmp_path) -> Path:
    """A copy of the rendered project that a test may edit."""
    return Path(shutil.copytree(project, tmp_path / project.name))


@pytest.fixture
def modal(tmp_path) -> StandIn:
    """The stand-in `modal` CLI, in this test's own folder."""
    return StandIn(tmp_path / "modal-bin")


@pytest.fixture
def backend():
    """The deployed backend, played by a local HTTP server."""
    server = FakeBackend()
    yield server
    server.close()
