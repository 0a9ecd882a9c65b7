"""The Modal app imports offline, with current APIs, and is wired as intended."""

import importlib
import sys
import warnings
from pathlib import Path

import modal
import pytest
from fastapi.testclient import TestClient

from api.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def modal_app():
    # Deprecated Modal APIs are errors here, so they are replaced before
    # Modal removes them.
    with warnings.catch_warnings():
        warnings.simplefilter("error", modal.exception.DeprecationError)
        sys.modules.pop("modal_app", None)
        return importlib.import_module("modal_app")


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
        + ["Secret.from_dict([MEMORY_LIMIT_MB, MEMORY_RECYCLE_MB])"]
    )


def test_memory_limits_follow_the_container_size(modal_app):
    # The backend stops or replaces its worker before Modal would kill the
    # container: both marks are under MEMORY_MB, with the limit above the
    # recycle mark.
    assert modal_app.MEMORY_RECYCLE_MB < modal_app.MEMORY_LIMIT_MB < modal_app.MEMORY_MB
    defaults = Settings.model_fields
    assert defaults["memory_limit_mb"].default == modal_app.MEMORY_LIMIT_MB
    assert defaults["memory_recycle_mb"].default == modal_app.MEMORY_RECYCLE_MB


def test_backend_serves_the_api(modal_app, engine):
    api = modal_app.fastapi_app.local()

    with TestClient(api) as client:
        assert client.get("/health").json()["status"] == "ok"


def test_health_function_is_light_and_ok(modal_app):
    assert modal_app.health.local() == {"status": "ok"}
    assert modal_app.health.info().web_info.method == "GET"


def test_image_installs_what_pyproject_declares(modal_app):
    source = (ROOT / "modal_app.py").read_text()
    assert "pip_install_from_pyproject" in source
    assert 'add_local_python_source("api")' in source


def test_importing_locally_does_not_load_the_model():
    code = (
        "import sys, modal_app; "
        "assert 'policyengine_core.taxbenefitsystems' not in sys.modules"
    )
    import subprocess

    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
