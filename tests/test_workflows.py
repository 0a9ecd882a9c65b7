"""The GitHub workflows, the rendered project's and the template's own:
actions pinned by SHA, least permissions, deploy and health checks.
"""

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy_support import ENVIRONMENTS

WORKFLOWS = "{{ cookiecutter.repo_name | project_folder }}/.github/workflows"


def load_workflow(name: str) -> dict:
    return yaml.safe_load((Path(__file__).parents[1] / WORKFLOWS / name).read_text())


def triggers(workflow: dict) -> dict:
    # YAML 1.1 reads the key `on` as True.
    return workflow.get("on", workflow.get(True))


def steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def runs(workflow: dict) -> str:
    return "\n".join(step.get("run", "") for step in steps(workflow))


TEMPLATE_ROOT = Path(__file__).parents[1]
# The rendered project's workflows, then the template's own.
ALL_WORKFLOWS = sorted((TEMPLATE_ROOT / WORKFLOWS).glob("*.yml")) + sorted(
    (TEMPLATE_ROOT / ".github" / "workflows").glob("*.yml")
)
# A third-party action pinned by full commit SHA, its tag in a comment.
SHA_PIN = re.compile(r"^\s*(- )?uses: ([\w.-]+/[\w./-]+)@([0-9a-f]{40}) # (v\d+(\.\d+)*)$")


RENDERED_DEPLOY = TEMPLATE_ROOT / WORKFLOWS / "deploy.yml"


def workflow_id(path: Path) -> str:
    return str(path.relative_to(TEMPLATE_ROOT)).replace(WORKFLOWS, "rendered")


@pytest.mark.parametrize("path", ALL_WORKFLOWS, ids=workflow_id)
def test_workflows_parse_and_pin_their_actions_by_sha(path):
    workflow = yaml.safe_load(path.read_text())

    assert workflow["name"] and workflow["jobs"]
    uses_lines = [
        line for line in path.read_text().splitlines() if re.match(r"^\s*(- )?uses:", line)
    ]
    assert uses_lines
    for line in uses_lines:
        if line.split("uses:")[1].strip().startswith("./"):
            continue  # this repository's own reusable workflow
        assert SHA_PIN.match(line), f"{path.name}: {line.strip()} is not pinned by SHA with its tag"


def test_each_action_has_one_pin_everywhere():
    pins: dict[str, set[tuple[str, str]]] = {}
    for path in ALL_WORKFLOWS:
        for line in path.read_text().splitlines():
            if match := SHA_PIN.match(line):
                pins.setdefault(match.group(2), set()).add((match.group(3), match.group(4)))
    assert {"actions/checkout", "actions/setup-python"} <= set(pins)
    assert all(len(found) == 1 for found in pins.values()), pins


@pytest.mark.parametrize("path", ALL_WORKFLOWS, ids=workflow_id)
def test_workflows_have_least_permissions_and_keep_no_credentials(path):
    workflow = yaml.safe_load(path.read_text())

    # Read-only by default; a job that must write says so itself.
    assert workflow["permissions"] == {"contents": "read"}
    for job in workflow["jobs"].values():
        assert set(job.get("permissions", {}).values()) <= {"read", "write"}
    checkouts = [s for s in steps(workflow) if s.get("uses", "").startswith("actions/checkout@")]
    assert checkouts
    for checkout in checkouts:
        assert checkout["with"]["persist-credentials"] is False


@pytest.mark.parametrize("name", ["test.yml", "deploy.yml", "health.yml"])
def test_rendered_workflows_read_the_python_version_file(name):
    setups = [s for s in steps(load_workflow(name)) if "setup-python" in s.get("uses", "")]

    assert setups
    assert all(s["with"] == {"python-version-file": ".python-version"} for s in setups)


def test_workflows_are_copied_as_they_are(project):
    for name in ("test.yml", "deploy.yml", "health.yml"):
        rendered = project / ".github" / "workflows" / name
        source = Path(__file__).parents[1] / WORKFLOWS / name
        assert rendered.read_text() == source.read_text()


def test_test_workflow_runs_the_whole_suite_on_pull_requests():
    workflow = load_workflow("test.yml")

    assert "pull_request" in triggers(workflow)
    assert "workflow_call" in triggers(workflow)
    # make test-ci: every test, with the longer fuzzing and load that
    # `make test` leaves to CI.
    assert "make test-ci" in runs(workflow).splitlines()


def test_test_workflow_checks_the_client_and_the_browser_with_node():
    workflow = load_workflow("test.yml")
    commands = [step.get("run", "") for step in steps(workflow)]
    node = next(i for i, step in enumerate(steps(workflow)) if "setup-node" in step.get("uses", ""))
    client = commands.index("make test-client")
    browser = next(i for i, run in enumerate(commands) if run.startswith("make test-browser"))

    assert commands.index("make test-ci") < node < client < browser
    assert steps(workflow)[node]["with"]["node-version"] == 20


def test_template_runs_the_browser_tests_on_the_runners_chrome():
    for name in ("test.yml", "refresh-locks.yml"):
        workflow = yaml.safe_load((TEMPLATE_ROOT / ".github/workflows" / name).read_text())
        (job,) = workflow["jobs"].values()
        assert job["env"]["CHROMIUM_PATH"] == "/usr/bin/google-chrome", name


def test_deploy_workflow_deploys_and_checks_health():
    workflow = load_workflow("deploy.yml")
    on = triggers(workflow)

    assert on["push"]["branches"] == ["main"]
    choice = on["workflow_dispatch"]["inputs"]["environment"]
    assert choice["type"] == "choice"
    assert sorted(choice["options"]) == sorted(ENVIRONMENTS)
    job = workflow["jobs"]["deploy"]
    assert set(job["needs"]) == {"branch", "test"}
    commands = [step.get("run", "") for step in job["steps"]]
    gate = commands.index('make check-auth ENV="$ENV"')
    deploy = commands.index('make deploy ENV="$ENV"')
    health = commands.index('make health ENV="$ENV"')
    assert gate < deploy < health
    assert "main" in job["env"]["ENV"]


@pytest.mark.parametrize(
    ("environment", "ref", "allowed"),
    [
        ("main", "refs/heads/main", True),
        ("main", "refs/heads/feature", False),
        ("main", "refs/heads/main-copy", False),
        ("main", "refs/tags/v1.0", False),
        ("main", "refs/pull/3/merge", False),
        ("staging", "refs/heads/feature", True),
        ("testing", "refs/heads/feature", True),
    ],
)
def test_production_deploys_only_from_the_main_branch(environment, ref, allowed):
    # A manual run may pick any branch: the first job refuses production
    # from anything but main, and nothing else starts before it passes.
    workflow = load_workflow("deploy.yml")
    guard = workflow["jobs"]["branch"]
    assert "needs" not in guard
    assert workflow["jobs"]["test"]["needs"] == "branch"
    assert "branch" in workflow["jobs"]["deploy"]["needs"]
    # The guard judges the same environment as the deploy.
    assert guard["env"]["ENV"] == workflow["jobs"]["deploy"]["env"]["ENV"]
    assert guard["env"]["ENV"] == "${{ inputs.environment || 'main' }}"
    [step] = guard["steps"]

    result = subprocess.run(
        ["bash", "-e", "-c", step["run"]],
        env={"PATH": os.environ["PATH"], "ENV": environment, "GITHUB_REF": ref},
        capture_output=True,
        text=True,
        check=False,
    )

    assert (result.returncode == 0) is allowed, result.stdout + result.stderr
    if not allowed:
        assert "::error::Production (main) deploys only from refs/heads/main" in result.stdout
        assert ref in result.stdout


TOKEN_VARIABLES = {"MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "MODAL_USE_TOKEN"}


def test_deploy_workflow_uses_the_token_on_purpose():
    workflow = load_workflow("deploy.yml")
    job = workflow["jobs"]["deploy"]

    # Only the gate and the deploy see the token: never the workflow or the
    # job, so `make install` (which runs packages' code) cannot read it.
    assert not TOKEN_VARIABLES & set(workflow.get("env", {}))
    assert not TOKEN_VARIABLES & set(job.get("env", {}))
    with_token = [step for step in job["steps"] if TOKEN_VARIABLES & set(step.get("env", {}))]
    assert [step["run"] for step in with_token] == [
        'make check-auth ENV="$ENV"',
        'make deploy ENV="$ENV"',
    ]
    for step in with_token:
        assert step["env"] == {
            "MODAL_TOKEN_ID": "${{ secrets.MODAL_TOKEN_ID }}",
            "MODAL_TOKEN_SECRET": "${{ secrets.MODAL_TOKEN_SECRET }}",
            "MODAL_USE_TOKEN": "1",
        }
    # No other workflow, rendered or the template's, touches Modal tokens.
    for path in ALL_WORKFLOWS:
        if path != RENDERED_DEPLOY:
            assert "MODAL_TOKEN" not in path.read_text(), path


def test_health_workflow_runs_on_a_schedule_and_opens_an_issue():
    workflow = load_workflow("health.yml")

    assert triggers(workflow)["schedule"][0]["cron"]
    assert workflow["jobs"]["health"]["permissions"]["issues"] == "write"
    job_steps = workflow["jobs"]["health"]["steps"]
    check = next(i for i, s in enumerate(job_steps) if s.get("run") == "make health ENV=main")
    opener = next(s for s in job_steps[check:] if "gh issue create" in s.get("run", ""))
    assert opener["if"] == "failure()"


def test_rendered_dependabot_updates_the_lock_and_the_actions(project):
    config = yaml.safe_load((project / ".github" / "dependabot.yml").read_text())
    updates = {update["package-ecosystem"]: update for update in config["updates"]}

    assert set(updates) == {"uv", "github-actions"}
    assert updates["uv"]["directory"] == "/"
    patterns = updates["uv"]["groups"]["policyengine"]["patterns"]
    assert all(
        re.fullmatch(patterns[0].replace("*", ".*"), name)
        for name in ("policyengine-us", "policyengine-uk", "policyengine-core")
    )


def test_template_refreshes_its_locks_in_a_tested_pull_request():
    workflow = yaml.safe_load((TEMPLATE_ROOT / ".github/workflows/refresh-locks.yml").read_text())
    job_steps = workflow["jobs"]["refresh"]["steps"]
    commands = [step.get("run", "") for step in job_steps]

    assert triggers(workflow)["schedule"][0]["cron"]
    upgrade = commands.index("make lock-upgrade")
    client = commands.index("make client")
    test = commands.index("make test")
    opener = next(i for i, run in enumerate(commands) if "gh pr create" in run)
    assert upgrade < client < test < opener
    assert "git add templates/locks templates/client" in commands[opener]
    assert job_steps[test]["if"] == job_steps[opener]["if"]
    assert workflow["jobs"]["refresh"]["permissions"] == {
        "contents": "write",
        "pull-requests": "write",
    }


def test_template_workflow_runs_make_test_on_every_python():
    workflow = yaml.safe_load((TEMPLATE_ROOT / ".github/workflows/test.yml").read_text())
    setup = next(s for s in steps(workflow) if "setup-python" in s.get("uses", ""))

    assert setup["with"]["python-version"].split() == ["3.12", "3.13", "3.11"]
    assert "make test" in runs(workflow).splitlines()
    assert "pull_request" in triggers(workflow)
