"""Render every option combination and check what comes out."""

import ast
import itertools
import json
import re
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import pytest
import yaml

from tests.conftest import baked

# Every combination of the answers that change what is rendered, as
# cookiecutter-django lists its SUPPORTED_COMBINATIONS. Each is baked once, by
# a module-scoped fixture rather than in each test: the tests below only read
# the project, and one bake per test would be ten times the bakes.
SUPPORTED_COMBINATIONS = [
    {"country": country, "python_version": version, "modal_secrets": secrets}
    for country, version, secrets in itertools.product(
        ["us", "uk"], ["3.12", "3.13"], ["", "policyengine-logfire, gcp-credentials"]
    )
]
# Jinja left behind: "{{ cookiecutter.x }}", "{% if %}", "{# #}". GitHub's own
# "${{ secrets.X }}" expressions in workflows are meant to stay.
UNRENDERED = re.compile(r"(?<!\$)\{\{|\{%|%\}|\{#|cookiecutter\.")


def combination_id(answers: dict) -> str:
    secrets = "secrets" if answers["modal_secrets"] else "no-secrets"
    return f"{answers['country']}-py{answers['python_version']}-{secrets}"


@pytest.fixture(scope="module", params=SUPPORTED_COMBINATIONS, ids=combination_id)
def baked_combination(request, cookies_session):
    """The pytest-cookies result of one combination, with its answers."""
    return cookies_session.bake(extra_context=request.param), request.param


@pytest.fixture
def project(baked_combination) -> tuple[Path, dict]:
    result, answers = baked_combination
    return baked(result), answers


def project_files(root: Path):
    """The rendered files, not the caches that checking them leaves."""
    caches = {"__pycache__", ".ruff_cache", ".pytest_cache"}
    return [p for p in root.rglob("*") if p.is_file() and not caches & set(p.parts)]


def test_project_generation(baked_combination):
    result, _ = baked_combination
    assert result.exit_code == 0
    assert result.exception is None
    assert result.project_path.name == "salt-cap-calculator"
    assert result.project_path.is_dir()


def lines_matching(root: Path, pattern: re.Pattern) -> list[tuple[str, str]]:
    """("file:line", text) for every rendered line that ``pattern`` matches."""
    return [
        (f"{path.relative_to(root)}:{number}", line.strip())
        for path in project_files(root)
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]


def test_nothing_is_left_unrendered(project):
    root, _ = project
    assert lines_matching(root, UNRENDERED) == []


def test_expected_files_exist(project):
    root, _ = project
    for name in [
        "modal_app.py",
        "api/main.py",
        "api/routes/__init__.py",
        "policyengine_backend/__init__.py",
        "policyengine_backend/_web/app.py",
        "policyengine_backend/_models.py",
        "policyengine_backend/_settings.py",
        "policyengine_backend/_engine/engine.py",
        "policyengine_backend/_model/systems.py",
        "policyengine_backend/_model/household.py",
        "policyengine_backend/_engine/checks.py",
        "tests/conftest.py",
        "pyproject.toml",
        "uv.lock",
        ".python-version",
        "README.md",
        ".gitignore",
        "Makefile",
        ".cruft.json",
        "bench/bench.py",
        "scripts/verify.py",
        "scripts/deploy_gate.py",
        ".github/workflows/test.yml",
        ".github/workflows/deploy.yml",
        ".github/workflows/health.yml",
        ".github/dependabot.yml",
    ]:
        assert (root / name).is_file(), name


def test_data_files_parse(project):
    root, answers = project
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == root.name
    assert any(
        dep.startswith(f"policyengine-{answers['country']}>=")
        for dep in pyproject["project"]["dependencies"]
    )
    assert pyproject["project"]["requires-python"] == f"=={answers['python_version']}.*"
    assert "pydantic-settings>=2.6" in pyproject["project"]["dependencies"]
    assert "optional-dependencies" not in pyproject["project"]
    assert any(dep.startswith("pytest") for dep in pyproject["dependency-groups"]["dev"])
    assert (root / ".python-version").read_text() == f"{answers['python_version']}\n"
    record = json.loads((root / ".cruft.json").read_text())
    assert record["context"]["cookiecutter"]["country"] == answers["country"]
    for workflow in (root / ".github/workflows").glob("*.yml"):
        assert isinstance(yaml.safe_load(workflow.read_text()), dict), workflow


def test_lock_is_the_one_for_these_answers(project):
    root, answers = project
    lock = tomllib.loads((root / "uv.lock").read_text())
    names = [package["name"] for package in lock["package"]]

    assert lock["requires-python"] == f"=={answers['python_version']}.*"
    assert root.name in names
    assert f"policyengine-{answers['country']}" in names
    other = {"us": "uk", "uk": "us"}[answers["country"]]
    assert f"policyengine-{other}" not in names
    # uv itself agrees that the lock matches the rendered pyproject.toml.
    uv = Path(sys.executable).with_name("uv")
    check = subprocess.run(
        [uv, "lock", "--check", "--offline"], cwd=root, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr


def test_python_compiles(project):
    root, _ = project
    for path in root.rglob("*.py"):
        ast.parse(path.read_text(), filename=str(path))


def test_ruff_is_clean(project):
    root, _ = project
    ruff = Path(sys.executable).with_name("ruff")
    check = subprocess.run([ruff, "check", "."], cwd=root, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    fmt = subprocess.run(
        [ruff, "format", "--check", "--diff", "."], cwd=root, capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_modal_app_imports_with_deprecations_as_errors(project):
    root, answers = project
    code = f"""
import warnings, modal
warnings.simplefilter("error", modal.exception.DeprecationError)
import modal_app
info = modal_app.fastapi_app.info()
assert modal_app.app.name == {root.name!r}
assert modal_app.PYTHON_VERSION == {answers["python_version"]!r}
assert info.timeout == 300 and info.memory_mib >= 3072
named = sorted(s for s in info.secrets if s.startswith("modal.Secret.from_name"))
assert named == {sorted(f"modal.Secret.from_name({s.strip()!r})" for s in answers["modal_secrets"].split(",") if s.strip())!r}, info.secrets
assert modal_app.health.local() == {{"status": "ok"}}
"""
    with warnings.catch_warnings():
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=root, capture_output=True, text=True
        )
    assert result.returncode == 0, result.stderr


def test_makefile_is_rendered_with_the_app_name(project):
    root, _ = project
    makefile = (root / "Makefile").read_text()
    for target in ["install", "test", "dev", "deploy", "health", "help"]:
        assert re.search(rf"^{target}:", makefile, re.M), target
    assert "APP := salt-cap-calculator" in makefile


# Shapes of real credentials: Modal tokens (ak-/as-), cloud and API keys,
# private keys. A rendered project must hold none of them.
TOKEN_SHAPES = re.compile(
    r"\ba[ks]-[A-Za-z0-9]{16,}|sk-(ant|proj)-[\w-]{20}|gh[pousr]_[A-Za-z0-9]{20}"
    r"|github_pat_\w{20}|AKIA[0-9A-Z]{16}|hf_[A-Za-z0-9]{20}|xox[abpr]-[\w-]{10}"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
)


def test_no_secret_in_the_rendered_tree(project):
    root, _ = project
    # Only where, never the text: a real token must not reach the CI log.
    assert [where for where, _ in lines_matching(root, TOKEN_SHAPES)] == []
    assert not list(root.rglob(".env*"))
    ignored = (root / ".gitignore").read_text().splitlines()
    assert ".env" in ignored and ".env.*" in ignored


@pytest.mark.parametrize(
    "line",
    [
        'MODAL_TOKEN_ID = "ak-' + "a1B2" * 5 + '"',
        "key = 'sk-ant-" + "x" * 24 + "'",
        "-----BEGIN RSA PRIVATE KEY-----",
        "token: ghp_" + "Z" * 20,
    ],
)
def test_token_scan_catches_fake_tokens(line):
    assert TOKEN_SHAPES.search(line)
