"""The project's Makefile: a template file that cookiecutter renders, then
the post-gen hook checks (APP is the repository's name, nothing is left
unrendered)."""

import re

import pytest

from tests.conftest import TEMPLATE, baked
from tests.deploy_support import MODAL_RUN, logical_lines

SOURCE = TEMPLATE / "{{ cookiecutter.repo_name | project_folder }}" / "Makefile"


@pytest.fixture(scope="module")
def makefile(project) -> str:
    """The default project's rendered Makefile."""
    return (project / "Makefile").read_text()


def test_makefile_fills_in_every_placeholder(cookies):
    project = baked(cookies.bake(extra_context={"repo_name": "child-benefit-explorer"}))
    text = (project / "Makefile").read_text()

    assert "override APP := child-benefit-explorer" in text
    assert "override WORKSPACE := policyengine" in text
    assert "override ENVIRONMENTS := main staging testing" in text
    # The gate's own copy of them (its messages are built from these).
    gate = (project / "scripts" / "deploy_gate.py").read_text()
    assert 'WORKSPACE = "policyengine"' in gate
    assert 'ENVIRONMENTS = ("main", "staging", "testing")' in gate
    assert not re.search(r"__[A-Z_]+__", text)
    assert "{{" not in text and "{%" not in text and "cookiecutter" not in text


def test_rendered_makefile_is_the_template_with_the_app_name(makefile, project):
    # The repository's name is the only thing rendering changes in it.
    assert makefile == SOURCE.read_text().replace("{{ cookiecutter.repo_name }}", project.name)


@pytest.mark.parametrize(
    "name",
    ["", "My App", "app;rm -rf /", "app$(shell id)", "app\nall:", "-app", "app_name"],
)
def test_makefile_rejects_unsafe_app_names(pre_gen, post_gen, project_copy, name):
    # The pre-gen hook refuses the name before anything is rendered...
    assert pre_gen.check_repo_name(name)
    # ...and the post-gen hook refuses a Makefile whose APP is not the name
    # the project was rendered with.
    makefile = project_copy / "Makefile"
    makefile.write_text(
        makefile.read_text().replace(
            f"override APP := {project_copy.name}\n", f"override APP := {name}\n"
        )
    )
    assert post_gen.check_makefile(project_copy, project_copy.name)


def test_post_gen_refuses_a_makefile_left_unrendered(post_gen, project_copy):
    assert post_gen.check_makefile(project_copy, project_copy.name) == []

    (project_copy / "Makefile").write_text(SOURCE.read_text())
    problems = post_gen.check_makefile(project_copy, project_copy.name)
    assert any("APP" in problem for problem in problems)
    assert any("template text" in problem for problem in problems)
    assert post_gen.check_rendered(project_copy, project_copy.name) == problems

    (project_copy / "Makefile").unlink()
    assert post_gen.check_makefile(project_copy, project_copy.name) == ["Makefile is missing"]


def test_makefile_never_runs_modal_run(makefile):
    assert not re.search(MODAL_RUN, makefile.replace("`modal run`", ""))


def test_every_modal_call_in_the_makefile_follows_the_gate(makefile):
    """Each recipe line that calls Modal runs the gate first, in one shell."""
    modal_lines = [
        line for line in logical_lines(makefile) if line.startswith("\t") and "$(MODAL_CMD)" in line
    ]
    assert len(modal_lines) == 5  # deploy, serve, logs, apps, stop
    for line in modal_lines:
        call = line.index("$(MODAL_CMD)")
        gate = max(line.find("$(GATE)"), line.find("$(AUTH_CHECK)"))
        assert 0 <= gate < call, line


def test_makefile_gate_variables_are_overrides(makefile):
    for name in (
        "SHELL",
        "APP",
        "WORKSPACE",
        "ENVIRONMENTS",
        "ENV_NAME",
        "MODAL_CMD",
        "URL_PREFIX",
        "VERIFY",
        "ENV_CHECK",
        "AUTH_CHECK",
        "GATE",
        "APP_CHECK",
        "SECRET_CHECK",
        "LOCK_CHECK",
        "UV_CMD",
    ):
        assert re.search(rf"^override {name} :?=", makefile, re.MULTILINE), name


def test_makefile_drops_tokens_unless_asked(makefile):
    assert "env -u MODAL_TOKEN_ID -u MODAL_TOKEN_SECRET" in makefile
    assert "ifeq ($(MODAL_USE_TOKEN),1)" in makefile


def dry_run(project, target: str) -> str:
    """The commands `make <target>` would run (install taken as done), as
    from a shell: not as a sub-make of the template's own `make test`."""
    import os
    import subprocess

    outer = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PYTEST_ARGS")
    env = {key: value for key, value in os.environ.items() if key not in outer}
    result = subprocess.run(
        ["make", "-n", "-o", ".venv/.installed", target],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return result.stdout.strip()


def test_ci_runs_every_test_with_longer_fuzzing_and_load(project):
    # `make test` leaves out the tests marked `ci` (pyproject's addopts);
    # CI's `make test-ci` runs the same pytest with them, and with bigger
    # budgets than the suite's defaults (5 examples, 10 requests).
    test = " ".join(dry_run(project, "test").split())
    ci = " ".join(dry_run(project, "test-ci").replace("\\\n", " ").split())

    assert test == ".venv/bin/python -m pytest -n '2'"
    assert ci == (
        f"FUZZ_EXAMPLES=25 FUZZ_BOUNDARIES=1 LOAD_REQUESTS=50 {test}"
        " -m 'not client and not browser'"
    )
    pyproject = (project / "pyproject.toml").read_text()
    assert "addopts = \"-ra -m 'not ci and not client and not browser'\"" in pyproject
    suite = project / "tests" / "backend"
    assert 'os.environ.get("FUZZ_EXAMPLES", "5")' in (suite / "test_fuzz.py").read_text()
    assert 'os.environ.get("LOAD_REQUESTS", "10")' in (suite / "test_load.py").read_text()
