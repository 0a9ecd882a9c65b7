"""The rendered client/ (the frontend's typed client), in a fresh US and a
fresh UK render: `make client` changes nothing, even twice; a new route
without `make client` fails the project's stale check, and `make client`
fixes it; `make test-client` (tsc accepts a correct call and refuses wrong
ones) and `make test-browser` (an allowed origin gets the answers in
headless Chromium, another is refused) pass.

Each render uses its country's shared environment; the browser test loads
the model once, so this module takes a few minutes. It needs Node and
Chromium (CHROMIUM_PATH, default /usr/bin/chromium; .ci/run installs
Debian's): without them it fails, saying so.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import bake, shared_venv

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
# A route needing no model, added as an engineer would, minus `make client`.
NEW_ROUTE = '''"""GET /year: the year the dashboard shows."""

from fastapi import APIRouter

router = APIRouter()


@router.get("/year")
def year() -> int:
    """The year the dashboard shows."""
    return 2025
'''


def make(project: Path, venv: Path, *targets: str, args: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            "make",
            *targets,
            f"VENV={venv}",
            f"CHROMIUM_PATH={CHROMIUM}",
            f"PYTEST_ARGS=-v -p no:cacheprovider {args}",
        ],
        cwd=project,
        env={**os.environ, "MAKEFLAGS": ""},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=900,
    )


def changed(project: Path) -> str:
    return subprocess.run(
        ["git", "status", "--porcelain"], cwd=project, capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture(scope="module", params=[("us", "3.12"), ("uk", "3.13")], ids=["us", "uk"])
def rendered(request, tmp_path_factory):
    """A fresh render, committed, with `make client` run once: (project, venv)."""
    assert shutil.which("node") and shutil.which("npm"), "these tests need Node 20 or later"
    country, python_version = request.param
    project = bake(tmp_path_factory.mktemp(country), country=country, python_version=python_version)
    subprocess.run([*GIT, "init", "-q"], cwd=project, check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=project, check=True)
    subprocess.run([*GIT, "commit", "-qm", "rendered"], cwd=project, check=True)
    venv = shared_venv(country, python_version)

    done = make(project, venv, "client")

    assert done.returncode == 0, done.stdout[-3000:]
    return project, venv


def test_make_client_on_a_fresh_render_changes_nothing_even_twice(rendered):
    project, venv = rendered
    assert changed(project) == ""  # the fixture's first run

    done = make(project, venv, "client")

    assert done.returncode == 0, done.stdout[-3000:]
    assert "client/ is up to date" in done.stdout
    assert changed(project) == ""


def stale_check(project: Path, venv: Path) -> subprocess.CompletedProcess:
    """The project's own stale check, as `make test` runs it."""
    return subprocess.run(
        [
            venv / "bin/python",
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "tests/backend/test_client.py",
            "-k",
            "committed_schema",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_route_added_without_make_client_fails_until_make_client(rendered):
    project, venv = rendered
    (project / "api/routes/year.py").write_text(NEW_ROUTE)
    routers = project / "api/routes/__init__.py"
    text = routers.read_text()
    routers.write_text(
        text.replace("import earnings_chart", "import earnings_chart, year").replace(
            "[earnings_chart.router]", "[earnings_chart.router, year.router]"
        )
    )
    try:
        stale = stale_check(project, venv)
        assert stale.returncode == 1, stale.stdout + stale.stderr
        assert "client/openapi.json is stale: run `make client`" in stale.stdout

        done = make(project, venv, "client")

        assert done.returncode == 0, done.stdout[-3000:]
        assert set(changed(project).split()) >= {"M", "client/openapi.json", "client/schema.d.ts"}
        assert '"/year": {' in (project / "client/schema.d.ts").read_text()
        fresh = stale_check(project, venv)
        assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    finally:
        subprocess.run(["git", "checkout", "-q", "."], cwd=project, check=True)
        (project / "api/routes/year.py").unlink()
    assert changed(project) == ""


def test_make_test_client_type_checks_right_and_wrong_calls(rendered):
    project, venv = rendered

    done = make(project, venv, "test-client")

    assert done.returncode == 0, done.stdout[-6000:]
    for test in (
        "test_the_types_are_openapi_typescripts_for_the_schema",
        "test_a_correct_use_of_the_client_type_checks",
        "test_a_wrong_use_of_the_client_fails_the_type_check[request-field]",
        "test_a_wrong_use_of_the_client_fails_the_type_check[nullable-answer]",
        "test_the_docs_example_type_checks",
    ):
        assert f"{test} PASSED" in done.stdout, test


def test_make_test_browser_gets_answers_on_an_allowed_origin_only(rendered):
    project, venv = rendered
    assert Path(CHROMIUM).exists(), (
        f"no Chromium at {CHROMIUM}: apt-get install chromium, or set CHROMIUM_PATH"
    )

    done = make(project, venv, "test-browser")

    assert done.returncode == 0, done.stdout[-6000:]
    assert "test_the_page_on_an_allowed_origin_shows_the_apis_answers PASSED" in done.stdout
    assert "test_the_browser_refuses_the_page_on_another_origin PASSED" in done.stdout


def test_the_schema_keeps_any_project_name_as_written(tmp_path):
    """The schema's title and description come from the answers (Jinja's
    jsonify in templates/client/): any text, as the project's own
    `make client` writes it, so its stale check passes on a fresh render."""
    name = 'Café "Q&A" <Tool> \\ 🚀'
    project = bake(tmp_path, project_name=name, repo_name="cafe-tool")
    venv = shared_venv("us", "3.12")
    assert make(project, venv, "install").returncode == 0
    schema = json.loads((project / "client/openapi.json").read_text())
    assert schema["info"]["title"] == name
    assert name in schema["info"]["description"]

    stale = stale_check(project, venv)

    assert stale.returncode == 0, stale.stdout + stale.stderr
