"""What make deploy checks on this machine before it asks Modal anything:
the app name, hardcoded secrets, and that uv.lock matches pyproject.toml.
"""

import re

import pytest

from tests.conftest import baked
from tests.deploy_support import logical_lines, make


def test_deploy_refuses_an_app_not_named_after_the_repo(project_copy, modal):
    modal_app = project_copy / "modal_app.py"
    original = modal_app.read_text()
    for edited in (
        original.replace('APP_NAME = "salt-cap-calculator"', 'APP_NAME = "my-app"'),
        original.replace("modal.App(APP_NAME)", 'modal.App("backend")'),
    ):
        assert edited != original
        modal_app.write_text(edited)
        result = make(project_copy, "deploy", "ENV=staging", stand_in=modal)

        assert result.returncode != 0
        assert 'APP_NAME = "salt-cap-calculator"' in result.output
        assert modal.calls() == []


SECRETS = {
    "anthropic": 'KEY = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz"',
    "modal-token": 'token_id = "ak-abcdefghijklmnopqrstuv"',
    "assignment": 'API_KEY = "0123456789abcdef0123"',
    "dict": 'config = {"password": "hunter2hunter2hunter2"}',
    "aws": "aws = 'AKIAABCDEFGHIJKLMNOP'",
    "private-key": 'PEM = """-----BEGIN RSA PRIVATE KEY-----"""',
}


@pytest.mark.parametrize("line", SECRETS.values(), ids=list(SECRETS))
def test_deploy_refuses_hardcoded_secrets(project_copy, modal, line):
    (project_copy / "api" / "keys.py").write_text(f"# Settings\n{line}\n")
    result = make(project_copy, "deploy", "ENV=staging", stand_in=modal)

    assert result.returncode != 0
    assert "api/keys.py:2" in result.output
    assert "modal secret create" in result.output
    # The secret itself is never printed (it would end up in CI logs).
    secret = max(re.findall(r"[\"']([^\"']+)[\"']", line), key=len)
    assert secret not in result.output
    assert modal.calls() == []


def test_deploy_refuses_secret_files_in_shipped_code(project_copy, modal):
    (project_copy / "api" / ".env").write_text("X=1\n")
    result = make(project_copy, "deploy", "ENV=staging", stand_in=modal)

    assert result.returncode != 0
    assert "api/.env" in result.output
    assert modal.calls() == []


@pytest.mark.parametrize(
    "answers",
    [{}, {"country": "uk", "modal_secrets": "policyengine-logfire, huggingface-token"}],
    ids=["us", "uk-secrets"],
)
def test_rendered_projects_pass_the_local_checks(cookies, answers):
    """The secret and app-name checks do not refuse the template's own code."""
    rendered = baked(cookies.bake(extra_context=answers))
    for target in ("check-secrets", "check-app", "check-lock"):
        result = make(rendered, target)
        assert result.returncode == 0, result.output


# --- The lock ------------------------------------------------------------

STALE_EDITS = {
    "new-dependency": ('"pydantic-settings>=2.6",', '"pydantic-settings>=2.6",\n    "rich>=13",'),
    "raised-minimum": ('"fastapi[standard]>=0.115"', '"fastapi[standard]>=999"'),
    # A tool the dev group does not list yet (mypy already is).
    "new-dev-tool": ('"ruff>=0.6",', '"ruff>=0.6",\n    "coverage>=7",'),
    "other-python": ('requires-python = "==3.12.*"', 'requires-python = "==3.13.*"'),
}


@pytest.mark.parametrize(("old", "new"), STALE_EDITS.values(), ids=list(STALE_EDITS))
def test_deploy_refuses_a_stale_lock(project_copy, modal, backend, old, new):
    pyproject = project_copy / "pyproject.toml"
    assert old in pyproject.read_text()
    pyproject.write_text(pyproject.read_text().replace(old, new))
    lock = (project_copy / "uv.lock").read_bytes()
    result = make(project_copy, "deploy", "ENV=staging", *backend.urls(), stand_in=modal)

    assert result.returncode != 0
    assert "uv.lock does not match pyproject.toml, so nothing can be deployed" in result.output
    assert "make lock (runs uv lock)" in result.output
    assert "then make test, then commit pyproject.toml and uv.lock" in result.output
    # Refused before the workspace check, and never relocked.
    assert modal.calls() == []
    assert backend.requests == []
    assert (project_copy / "uv.lock").read_bytes() == lock


def test_deploy_refuses_without_a_lock(project_copy, modal):
    (project_copy / "uv.lock").unlink()
    result = make(project_copy, "deploy", "ENV=staging", stand_in=modal)

    assert result.returncode != 0
    assert "uv.lock does not match pyproject.toml" in result.output
    assert modal.calls() == []
    assert not (project_copy / "uv.lock").exists()


def test_check_lock_passes_a_fresh_render_and_fails_a_stale_one(project_copy):
    assert "uv.lock matches pyproject.toml" in make(project_copy, "check-lock").output

    (project_copy / "pyproject.toml").write_text(
        (project_copy / "pyproject.toml").read_text().replace('"pytest>=8"', '"pytest>=99"')
    )
    result = make(project_copy, "check-lock")
    assert result.returncode != 0
    assert "uv.lock does not match pyproject.toml" in result.output


def test_make_lock_relocks_and_upgrades_only_what_it_is_told(project):
    plain = make(project, "-n", "lock")
    one = make(project, "-n", "lock", "UPGRADE=policyengine-us")

    assert plain.returncode == 0 and one.returncode == 0, plain.output + one.output
    assert re.search(r"uv' lock\s*$", plain.stdout, re.MULTILINE), plain.stdout
    assert "lock --upgrade-package 'policyengine-us'" in one.stdout


def test_missing_uv_says_make_install(project, modal, tmp_path):
    result = make(
        project, "deploy", "ENV=staging", f"UV={tmp_path / 'nowhere' / 'uv'}", stand_in=modal
    )

    assert result.returncode != 0
    assert "uv is not installed" in result.output
    assert "Run: make install" in result.output
    assert modal.calls() == []


def test_lock_check_runs_with_the_local_checks_before_the_workspace(project):
    makefile = (project / "Makefile").read_text()
    deploy = next(
        line for line in logical_lines(makefile) if "$(ENV_CHECK) && $(APP_CHECK)" in line
    )
    order = [
        deploy.index(f"$({name})")
        for name in ("ENV_CHECK", "APP_CHECK", "SECRET_CHECK", "LOCK_CHECK", "AUTH_CHECK")
    ]
    assert order == sorted(order)
    # A deploy only checks the lock, it never writes one.
    gate = (project / "scripts" / "deploy_gate.py").read_text()
    assert '[uv, "lock", "--check", "--offline"]' in gate
    assert "sync --locked" in makefile
