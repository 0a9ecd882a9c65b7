"""The Modal app imports offline, with current APIs, and is wired as intended."""

import inspect
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import modal
import pytest
from fastapi.testclient import TestClient
from modal._image import LATEST_IMAGE_BUILDER_VERSION, DockerfileSpec, _Image
from modal._utils.async_utils import synchronizer

from policyengine_backend._settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_app_is_named_after_the_repository(modal_app):
    assert modal_app.app.name == modal_app.APP_NAME == ROOT.name


def test_backend_function_settings(modal_app):
    info = modal_app.fastapi_app.info()

    assert info.timeout == 300
    assert info.memory_mib == modal_app.MEMORY_MB >= 3072
    assert info.cpu == modal_app.CPU_CORES
    assert info.concurrency_info.max_inputs == modal_app.MAX_INPUTS
    # The function's env= arrives as a secret made from a dict.
    assert sorted(info.secrets) == sorted(
        [f"modal.Secret.from_name({name!r})" for name in modal_app.SECRET_NAMES]
        + [f"Secret.from_dict([{', '.join(modal_app.BACKEND_ENV)}])"]
    )


def test_memory_limits_follow_the_container_size(modal_app):
    # The backend stops or replaces its worker before Modal would kill the
    # container: both marks are under MEMORY_MB, with the limit above the
    # recycle mark.
    assert modal_app.MEMORY_RECYCLE_MB < modal_app.MEMORY_LIMIT_MB < modal_app.MEMORY_MB
    defaults = Settings.model_fields
    assert defaults["memory_limit_mb"].default == modal_app.MEMORY_LIMIT_MB
    assert defaults["memory_recycle_mb"].default == modal_app.MEMORY_RECYCLE_MB


def test_backend_serves_the_api(web_function_app):
    with TestClient(web_function_app) as client:
        assert client.get("/health").json()["status"] == "ok"


def test_health_function_is_light_and_ok(modal_app):
    assert modal_app.health.local() == {"status": "ok"}
    assert modal_app.health.info().web_info.method == "GET"


def dockerfiles(image: modal.Image) -> list[DockerfileSpec]:
    """What Modal's builder is asked to run for ``image``, one spec per layer, base first.

    Modal makes these only when it deploys. Offline they are reached through
    each layer's loader (Modal internals): if those change, this finds no
    layers and the tests below fail instead of passing unchecked.
    """

    def walk(layer: _Image) -> list[DockerfileSpec]:
        found = inspect.getclosurevars(layer._load).nonlocals
        bases = [value for value in found.values() if isinstance(value, _Image)]
        for value in found.values():
            if isinstance(value, dict):
                bases += [base for base in value.values() if isinstance(base, _Image)]
        specs = [spec for base in bases for spec in walk(base)]
        if callable(found.get("dockerfile_function")):
            specs.append(found["dockerfile_function"](LATEST_IMAGE_BUILDER_VERSION))
        return specs

    return walk(synchronizer._translate_in(image))


def installs(image: modal.Image, python_version: str) -> list[tuple[str, dict]]:
    """Each command that installs packages on top of Modal's Python base image.

    The base (Modal's debian_slim) installs its own build tools into the
    system Python; the app runs in the venv that `uv sync` makes on top.
    """
    base = dockerfiles(modal.Image.debian_slim(python_version=python_version))
    layers = dockerfiles(image)
    assert layers[: len(base)] == base
    return [
        (command, spec.context_files)
        for spec in layers[len(base) :]
        for command in spec.commands
        if re.search(r"\b(pip|uv)\b.* (install|sync)\b", command)
    ]


@pytest.mark.parametrize(
    ("image", "selection"),
    [("image", "--no-dev"), ("health_image", "--only-group health")],
)
def test_images_install_exactly_the_lock(modal_app, image, selection):
    commands = installs(getattr(modal_app, image), modal_app.PYTHON_VERSION)

    # One install, `uv sync --frozen` from this project's uv.lock: it installs
    # the locked versions and nothing it would have to resolve.
    assert len(commands) == 1, commands
    command, context = commands[0]
    assert re.search(r"/uv sync .*--frozen", command), command
    assert selection in command
    assert context["/.uv.lock"] == str(ROOT / "uv.lock")
    assert context["/.pyproject.toml"] == str(ROOT / "pyproject.toml")
    layers = dockerfiles(getattr(modal_app, image))
    copies = " ".join(command for spec in layers for command in spec.commands)
    assert f"ghcr.io/astral-sh/uv:{modal_app.UV_VERSION} " in copies


def test_images_use_the_makefiles_uv():
    makefile = (ROOT / "Makefile").read_text()
    source = (ROOT / "modal_app.py").read_text()

    pinned = re.search(r"^UV_VERSION := (\S+)$", makefile, re.MULTILINE).group(1)
    assert f'UV_VERSION = "{pinned}"' in source


def test_lock_pins_every_package_once():
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    root = next(p for p in lock["package"] if p["name"] == ROOT.name)

    assert all(p.get("version") and p.get("source") for p in lock["package"])
    # What the health image installs: FastAPI, at its locked version.
    assert [d["name"] for d in root["dev-dependencies"]["health"]] == ["fastapi"]


def test_one_python_version_everywhere(modal_app):
    version = modal_app.PYTHON_VERSION
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    lock = tomllib.loads((ROOT / "uv.lock").read_text())

    assert (ROOT / ".python-version").read_text().strip() == version
    assert pyproject["project"]["requires-python"] == f"=={version}.*"
    assert lock["requires-python"] == f"=={version}.*"
    # `make test` runs on the locked environment, made for that version.
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == version


def test_import_refuses_without_a_lock(tmp_path):
    shutil.copy(ROOT / "modal_app.py", tmp_path)
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", "import modal_app"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )

    assert result.returncode != 0
    assert "uv.lock is missing" in result.stderr
    assert "make lock" in result.stderr


def test_importing_locally_does_not_load_the_model():
    code = (
        "import sys, modal_app; "
        "assert 'policyengine_core.taxbenefitsystems' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
