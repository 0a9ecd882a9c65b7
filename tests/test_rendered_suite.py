"""Each country's rendered project, with the README's own endpoint added as
its "Add your own endpoint" says, passes its own test suite, on its Python.

That suite runs real policyengine calculations and compares them with a
direct Simulation, imports the Modal app and serves the API in-process. It
runs in an environment installed by the project's own `make install`, which
installs exactly the project's uv.lock for the Python version it was
rendered for. Two full runs cover both countries and both versions; the
other two combinations are checked to install from their lock.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import bake, run_rendered_suite, shared_venv

# The template's uv, the version the rendered Makefile installs.
UV = Path(sys.executable).with_name("uv")


@pytest.mark.parametrize(("country", "python_version"), [("us", "3.12"), ("uk", "3.13")])
def test_rendered_project_passes_its_own_tests(tmp_path, country, python_version):
    result = run_rendered_suite(country, python_version, tmp_path)

    assert result.returncode == 0, result.stdout[-6000:]
    # The project's own test_modal_app.py checks that it runs on python_version.
    assert "uv-" in result.stdout and "sync --locked" in result.stdout, result.stdout[:3000]
    summary = re.search(r"(\d+) passed", result.stdout)
    assert summary and int(summary.group(1)) >= 10, result.stdout[-3000:]
    assert "Success: no issues found" in result.stdout  # mypy, from make lint
    # The README's endpoint is in the project, its test ran, and the typed
    # client has it (make client, step 4).
    project = result.project
    assert (project / "tests/test_net_income.py").exists()
    assert "/net-income" in (project / "client/openapi.json").read_text()

    # The pre-commit hooks pass on the project, as a new engineer commits it.
    (project / ".venv").symlink_to(shared_venv(country, python_version))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=project, check=True)
    # The link stands where `make install` would put .venv (a folder, ignored).
    (project / ".git/info/exclude").write_text(".venv\n")
    subprocess.run([*git, "add", "-A"], cwd=project, check=True)
    hooks = subprocess.run(
        [project / ".venv/bin/pre-commit", "run", "--all-files"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert hooks.returncode == 0, hooks.stdout + hooks.stderr


@pytest.mark.parametrize(("country", "python_version"), [("us", "3.13"), ("uk", "3.12")])
def test_other_combinations_install_from_their_lock(tmp_path, country, python_version):
    project = bake(tmp_path, country=country, python_version=python_version)
    env_dir = tmp_path / "venv"

    def uv(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [UV, *args],
            cwd=project,
            env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(env_dir)},
            capture_output=True,
            text=True,
            timeout=300,
        )

    check = uv("lock", "--check", "--offline")
    assert check.returncode == 0, check.stderr
    # What `make install` would install: every package at its locked version
    # (a dry run resolves nothing and installs nothing).
    plan = uv("sync", "--locked", "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert f"CPython {python_version}." in plan.stderr
    assert re.search(rf"^ \+ policyengine-{country}==\S+$", plan.stderr, re.MULTILINE), plan.stderr
    assert not env_dir.exists()
