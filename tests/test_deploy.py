"""Safe deploys: the rendered Makefile's gate, environments, verification, CI.

Everything here is offline and fast. A stand-in ``modal`` executable (written
into tmp_path) logs each call with its arguments and whether
MODAL_TOKEN_ID/MODAL_TOKEN_SECRET reached it, and prints a configurable
``modal token info``. A small HTTP server on 127.0.0.1 plays the deployed
backend for the verification step. The Makefile is run with
``MODAL=<stand-in>`` and, for verification, ``HEALTH_URL``/``API_URL``
pointing at that server.

The reference's "What NOT to do" list, and where each rule is enforced:

1. MUST NOT deploy to a personal workspace: the gate accepts only
   ``Workspace: policyengine``, exactly, and cannot be switched off from the
   command line.
   -> test_gate_passes_for_the_policyengine_workspace,
      test_gate_refuses_other_workspaces, test_gate_refusal_explains_the_fix,
      test_failed_gate_stops_every_modal_target,
      test_failed_gate_deploys_nothing_under_make_flags,
      test_gate_cannot_be_overridden_from_the_command_line,
      test_ci_token_of_another_workspace_is_refused,
      test_missing_modal_cli_says_make_install
2. MUST NOT leave MODAL_TOKEN_ID/MODAL_TOKEN_SECRET set when deploying via
   profile: the Makefile drops them unless MODAL_USE_TOKEN=1 (CI), which in
   turn needs both.
   -> test_local_deploy_never_passes_token_variables,
      test_ci_deploy_passes_token_variables,
      test_ci_deploy_refuses_incomplete_token,
      test_deploy_workflow_uses_the_token_on_purpose
3. MUST NOT use ``modal run`` for production: no target runs it.
   -> test_no_target_runs_modal_run, test_makefile_never_runs_modal_run
4. MUST NOT use ``modal serve`` for production: ``make serve`` refuses main
   and defaults to testing.
   -> test_serve_refuses_main, test_serve_defaults_to_testing
5. MUST NOT skip health check verification after deployment: ``make deploy``
   always verifies and fails when verification fails; it cannot be turned off.
   -> test_good_gate_deploys_then_verifies,
      test_deploy_fails_when_verification_fails,
      test_verification_cannot_be_switched_off,
      test_deploy_verifies_the_deployed_environment_urls,
      test_deploy_workflow_deploys_and_checks_health,
      test_health_workflow_runs_on_a_schedule_and_opens_an_issue
6. MUST NOT use generic app names: ``make deploy`` refuses when modal_app.py
   does not name the app after the repository (and makefile() only accepts
   kebab-case names).
   -> test_deploy_refuses_an_app_not_named_after_the_repo,
      test_makefile_rejects_unsafe_app_names
7. MUST NOT hardcode secrets in Python code: ``make deploy`` refuses when the
   shipped code (modal_app.py, api/) contains what looks like a secret.
   -> test_deploy_refuses_hardcoded_secrets,
      test_rendered_projects_pass_the_local_checks
8. MUST NOT deploy without confirming the target workspace with
   ``modal token info``: every Modal call is preceded by it, in the same
   shell command.
   -> test_good_gate_deploys_then_verifies,
      test_every_modal_call_in_the_makefile_follows_the_gate
"""

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from tests.conftest import bake

WORKFLOWS = "{{ cookiecutter.repo_name | project_folder }}/.github/workflows"
ENVIRONMENTS = ("main", "staging", "testing")
GOOD_INFO = "Token: ak-xxx\nWorkspace: policyengine (ac-123)\nUser: someone (us-1)\n"
FIX_COMMANDS = (
    "modal token new --profile policyengine",
    "modal profile activate policyengine",
)
# Variables of the caller's shell that would change what the Makefile does.
SHELL_VARIABLES = (
    "MODAL_TOKEN_ID",
    "MODAL_TOKEN_SECRET",
    "MODAL_USE_TOKEN",
    "MODAL_PROFILE",
    "MODAL_ENVIRONMENT",
    "ENV",
    "API_URL",
    "HEALTH_URL",
    "CONFIRM",
    "MAKEFLAGS",
    "http_proxy",
    "https_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
)


# --- Fixtures and helpers ------------------------------------------------


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """One rendered project for the module; tests must not change it."""
    return bake(tmp_path_factory.mktemp("deploy"))


@pytest.fixture
def project_copy(project, tmp_path) -> Path:
    """A copy of the rendered project that a test may edit."""
    return Path(shutil.copytree(project, tmp_path / project.name))


STAND_IN = """#!{python}
import json
import os
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
with open(here / "calls.jsonl", "a") as log:
    log.write(json.dumps({{
        "argv": sys.argv[1:],
        "MODAL_TOKEN_ID": "MODAL_TOKEN_ID" in os.environ,
        "MODAL_TOKEN_SECRET": "MODAL_TOKEN_SECRET" in os.environ,
    }}) + "\\n")
if sys.argv[1:3] == ["token", "info"]:
    sys.stdout.write((here / "token-info.txt").read_text())
    sys.exit(int((here / "token-info.code").read_text()))
sys.exit(int((here / "other.code").read_text()))
"""


class StandIn:
    """A fake `modal` CLI in its own folder, with its call log."""

    def __init__(self, folder: Path):
        folder.mkdir()
        self.folder = folder
        self.path = folder / "modal"
        self.path.write_text(STAND_IN.format(python=sys.executable))
        self.path.chmod(0o755)
        self.set_info(GOOD_INFO)
        self.set_exit_code(0)

    def set_info(self, text: str, code: int = 0) -> None:
        (self.folder / "token-info.txt").write_text(text)
        (self.folder / "token-info.code").write_text(str(code))

    def set_exit_code(self, code: int) -> None:
        """Exit code of every call other than `token info`."""
        (self.folder / "other.code").write_text(str(code))

    def calls(self) -> list[dict]:
        log = self.folder / "calls.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    def commands(self) -> list[list[str]]:
        return [call["argv"] for call in self.calls()]

    def deploys(self) -> list[list[str]]:
        return [argv for argv in self.commands() if argv[:1] == ["deploy"]]


@pytest.fixture
def modal(tmp_path) -> StandIn:
    return StandIn(tmp_path / "modal-bin")


# The template's own uv (requirements-dev.txt pins the version the rendered
# Makefile installs), so the lock check runs without a `make install`.
UV = Path(sys.executable).with_name("uv")


def make(project: Path, *args: str, env: dict | None = None, stand_in: StandIn | None = None):
    """Run the project's make with a clean environment (plus ``env``).

    ``args`` come after ``UV=...``, so a test can point UV elsewhere.
    """
    clean = {k: v for k, v in os.environ.items() if k not in SHELL_VARIABLES}
    command = ["make", "--no-print-directory", f"UV={UV}", *args]
    if stand_in is not None:
        command.append(f"MODAL={stand_in.path}")
    result = subprocess.run(
        command,
        cwd=project,
        check=False,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    result.output = result.stdout + result.stderr
    return result


def calculation_result() -> dict:
    return {
        "people": {"parent": {"age": {"2025": 35}}},
        "households": {
            "household": {
                "members": ["parent"],
                "household_net_income": {"2025": 41234.5},
            }
        },
    }


class FakeBackend:
    """The deployed backend, played by a local HTTP server.

    Modes: "ok"; "500" (every request); "not-ok" (200 with status "error");
    "nulls" (a calculation result with a null left in it); "404"; "403";
    "503" (always starting); "503-then-ok" (starting for the first requests);
    "404-then-ok" (not there yet for the first requests).
    """

    def __init__(self):
        self.mode = "ok"
        self.starting_requests = 2
        self.requests: list[tuple[str, str, object]] = []
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def respond(self, body: object) -> None:
                backend.requests.append((self.command, self.path, body))
                mode = backend.mode
                if mode.endswith("-then-ok"):
                    early = len(backend.requests) <= backend.starting_requests
                    mode = mode.split("-")[0] if early else "ok"
                if mode in ("500", "503", "404", "403"):
                    self.answer(int(mode), {"status": "error", "message": "no"})
                elif mode == "not-ok":
                    self.answer(200, {"status": "starting"})
                elif self.command == "GET":
                    self.answer(200, {"status": "ok"})
                elif self.path == "/calculate":
                    result = calculation_result()
                    if mode == "nulls":
                        result["households"]["household"]["household_net_income"]["2025"] = None
                    self.answer(200, {"status": "ok", "message": None, "result": result})
                else:
                    self.answer(404, {"status": "error", "message": "not found"})

            def do_GET(self):
                self.respond(None)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.respond(json.loads(self.rfile.read(length) or b"null"))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def urls(self) -> list[str]:
        """The make variables that point the checks at this server."""
        return [
            f"HEALTH_URL={self.url}/fn-health",
            f"API_URL={self.url}",
            "VERIFY_WAIT=1",
        ]

    def paths(self) -> list[tuple[str, str]]:
        return [(method, path) for method, path, _ in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def backend():
    server = FakeBackend()
    yield server
    server.close()


def app_url(app: str, env: str, function: str) -> str:
    workspace = "policyengine" if env == "main" else f"policyengine-{env}"
    return f"https://{workspace}--{app}-{function}.modal.run"


# `modal run`, `.../modal' run` or `$(MODAL_CMD) run`.
MODAL_RUN = r"(\bmodal|\$\(MODAL(_CMD)?\))'?\s+run\b"
ALL_CHECKS = [("GET", "/fn-health"), ("GET", "/health"), ("POST", "/calculate")]


# --- The workspace gate --------------------------------------------------


@pytest.mark.parametrize(
    "info",
    [
        GOOD_INFO,
        "Workspace: policyengine\n",
        "  Workspace:   policyengine   (ac-123)\r\n",
        "(Using MODAL_TOKEN_ID and MODAL_TOKEN_SECRET environment variables)\n" + GOOD_INFO,
        "\x1b[1mToken:\x1b[0m ak-1\n\x1b[1mWorkspace:\x1b[0m policyengine \x1b[2m(ac-1)\x1b[0m\n",
    ],
    ids=["plain", "bare", "spaces", "env-note", "ansi"],
)
def test_gate_passes_for_the_policyengine_workspace(project, modal, info):
    modal.set_info(info)
    result = make(project, "check-auth", "ENV=staging", stand_in=modal)

    assert result.returncode == 0, result.output
    assert "Modal workspace: policyengine, environment: staging" in result.output
    assert modal.commands() == [["token", "info"]]


REFUSED_INFO = {
    "personal": (
        "Token: ak-1\nWorkspace: personal (ac-9)\nUser: someone\n",
        0,
        "personal",
    ),
    "dev": ("Workspace: policyengine-dev (ac-2)\n", 0, "policyengine-dev"),
    "engineer": ("Workspace: policyengineer (ac-3)\n", 0, "policyengineer"),
    "prefixed": ("Workspace: my-policyengine (ac-4)\n", 0, "my-policyengine"),
    "capitalised": ("Workspace: PolicyEngine (ac-5)\n", 0, "PolicyEngine"),
    "empty": ("", 0, "nothing"),
    "no-name": ("Workspace:\n", 0, "nothing"),
    "two-workspaces": ("Workspace: policyengine\nWorkspace: personal\n", 0, "personal"),
    "in-a-sentence": ("Not Workspace: policyengine\n", 0, "nothing"),
    "failing": ("Error: token is invalid\n", 1, "nothing"),
    "failing-but-right-name": ("Workspace: policyengine (ac-1)\n", 1, "policyengine"),
}


@pytest.mark.parametrize("case", REFUSED_INFO, ids=list(REFUSED_INFO))
def test_gate_refuses_other_workspaces(project, modal, backend, case):
    info, code, seen = REFUSED_INFO[case]
    modal.set_info(info, code)
    result = make(project, "deploy", "ENV=staging", *backend.urls(), stand_in=modal)

    assert result.returncode != 0
    assert "not authenticated to the 'policyengine' workspace" in result.output
    assert f"Saw workspace: '{seen}" in result.output
    for command in FIX_COMMANDS:
        assert command in result.output
    if code:
        assert f"failed (exit code {code})" in result.output
    assert modal.commands() == [["token", "info"]]
    assert modal.deploys() == []
    assert backend.requests == []


def test_gate_refusal_explains_the_fix(project, modal):
    modal.set_info("Token: ak-1\nWorkspace: personal (ac-9)\n")
    result = make(project, "check-auth", stand_in=modal)

    assert result.returncode != 0
    # What it saw: the workspace and the whole `modal token info` output.
    assert "Saw workspace: 'personal'" in result.output
    assert "| Workspace: personal (ac-9)" in result.output
    # How to fix it, in the reference's words.
    fix = result.output.index("Fix it with:")
    for command in FIX_COMMANDS:
        assert result.output.index(command) > fix
    assert "https://modal.com/settings/policyengine" in result.output


GATED_TARGETS = [
    ["deploy", "ENV=main"],
    ["deploy", "ENV=staging"],
    ["deploy-staging"],
    ["deploy-testing"],
    ["check-auth"],
    ["serve"],
    ["logs"],
    ["apps"],
    ["stop", "ENV=testing", "CONFIRM=salt-cap-calculator"],
]


@pytest.mark.parametrize("target", GATED_TARGETS, ids=lambda t: " ".join(t))
def test_failed_gate_stops_every_modal_target(project, modal, target):
    modal.set_info("Workspace: personal (ac-9)\n")
    result = make(project, *target, stand_in=modal)

    assert result.returncode != 0
    assert "not authenticated to the 'policyengine' workspace" in result.output
    assert modal.commands() == [["token", "info"]]


@pytest.mark.parametrize("flags", [["-i"], ["-k"], ["-i", "-k"], ["-j2"]])
def test_failed_gate_deploys_nothing_under_make_flags(project, modal, backend, flags):
    """Even `make -i` (ignore errors) cannot get past a failed gate."""
    modal.set_info("Workspace: personal (ac-9)\n")
    result = make(project, *flags, "deploy", "deploy-staging", *backend.urls(), stand_in=modal)

    assert modal.deploys() == []
    assert backend.requests == []
    assert "Deployed and verified" not in result.output


def test_dry_run_calls_nothing(project, modal):
    result = make(project, "-n", "deploy", "deploy-staging", "stop", stand_in=modal)

    assert result.returncode == 0, result.output
    assert modal.calls() == []


@pytest.mark.parametrize(
    "override",
    [
        "WORKSPACE=personal",
        "GATE=true",
        "AUTH_CHECK=true",
        "ENV_CHECK=true",
        "MODAL_CMD=true",
        "SHELL=/bin/true",
    ],
)
def test_gate_cannot_be_overridden_from_the_command_line(project, modal, backend, override):
    modal.set_info("Workspace: personal (ac-9)\n")
    result = make(project, "deploy", "ENV=staging", override, *backend.urls(), stand_in=modal)

    assert result.returncode != 0
    assert "not authenticated to the 'policyengine' workspace" in result.output
    assert modal.commands() == [["token", "info"]]


def test_missing_modal_cli_says_make_install(project, tmp_path):
    missing = tmp_path / "nowhere" / "modal"
    result = make(project, "deploy", "ENV=staging", f"MODAL={missing}")

    assert result.returncode != 0
    assert "Modal CLI is not installed" in result.output
    assert "make install" in result.output
    assert "not authenticated" not in result.output


def test_missing_venv_says_make_install(project):
    # The project has no .venv: the default MODAL is .venv/bin/modal.
    result = make(project, "check-auth")

    assert result.returncode != 0
    assert "Run: make install" in result.output
    assert ".venv/bin/modal" in result.output


# --- Environments --------------------------------------------------------

UNKNOWN_ENVIRONMENTS = [
    "prod",
    "production",
    "Main",
    "STAGING",
    "staging;rm",
    "staging; touch pwned",
    "main staging",
    "'main'",
    "x'y",
    "$$(touch pwned)",
    "%",
    "",
]


@pytest.mark.parametrize("env", UNKNOWN_ENVIRONMENTS)
def test_unknown_environment_is_refused(project_copy, modal, env):
    result = make(project_copy, "deploy", f"ENV={env}", stand_in=modal)

    assert result.returncode != 0
    assert "is not an environment of the policyengine workspace" in result.output
    assert "Use one of: main, staging, testing" in result.output
    assert modal.calls() == []
    assert not (project_copy / "pwned").exists()


@pytest.mark.parametrize(
    "target",
    [
        ["url"],
        ["health"],
        ["verify"],
        ["serve"],
        ["logs"],
        ["apps"],
        ["check-auth"],
        ["check-env"],
        ["vercel-env"],
        ["stop", "CONFIRM=salt-cap-calculator"],
    ],
    ids=lambda t: t[0],
)
def test_every_environment_target_refuses_unknown_env(project, modal, target):
    result = make(project, *target, "ENV=prod", stand_in=modal)

    assert result.returncode != 0
    assert "ENV=prod is not an environment" in result.output
    assert modal.calls() == []


def test_env_from_the_shell_is_checked_too(project, modal):
    # POSIX shells use ENV for a startup file; it must not be taken as a target.
    result = make(project, "deploy", env={"ENV": "/home/me/.shrc"}, stand_in=modal)

    assert result.returncode != 0
    assert "ENV came from your shell" in result.output
    assert modal.calls() == []


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_url_prints_the_environment_urls(project, env):
    result = make(project, "url", f"ENV={env}")

    assert result.returncode == 0, result.output
    app = "salt-cap-calculator"
    assert f"API:    {app_url(app, env, 'fastapi-app')}\n" in result.stdout
    assert f"Docs:   {app_url(app, env, 'fastapi-app')}/docs\n" in result.stdout
    assert f"Health: {app_url(app, env, 'health')}\n" in result.stdout


def test_url_defaults_to_main_and_keeps_the_app_name(project):
    result = make(project, "url", "APP=generic-app")

    assert "https://policyengine--salt-cap-calculator-fastapi-app.modal.run" in result.stdout
    assert "generic-app" not in result.stdout


@pytest.mark.parametrize(
    ("env", "vercel_env", "next_command"),
    [
        ("main", "production", "vercel --prod --force --yes --scope policy-engine"),
        ("staging", "preview", "vercel --force --yes --scope policy-engine"),
        ("testing", "development", "vercel env pull"),
    ],
)
def test_vercel_env_prints_the_api_url(project, env, vercel_env, next_command):
    result = make(project, "vercel-env", f"ENV={env}")

    assert result.returncode == 0, result.output
    url = app_url("salt-cap-calculator", env, "fastapi-app")
    assert f"printf '%s' '{url}' | vercel env add NEXT_PUBLIC_API_URL {vercel_env}" in result.stdout
    assert next_command in result.stdout


# --- Tokens --------------------------------------------------------------

TOKENS = {"MODAL_TOKEN_ID": "ak-personal", "MODAL_TOKEN_SECRET": "as-personal"}


def test_local_deploy_never_passes_token_variables(project, modal, backend):
    result = make(project, "deploy", "ENV=staging", *backend.urls(), env=TOKENS, stand_in=modal)

    assert result.returncode == 0, result.output
    assert "NOTE: ignoring MODAL_TOKEN_ID/MODAL_TOKEN_SECRET" in result.output
    calls = modal.calls()
    assert [call["argv"][0] for call in calls] == ["token", "deploy"]
    assert not any(call["MODAL_TOKEN_ID"] or call["MODAL_TOKEN_SECRET"] for call in calls)


@pytest.mark.parametrize(
    "target", [["logs"], ["apps"], ["serve"], ["stop", "CONFIRM=salt-cap-calculator"]]
)
def test_other_targets_never_pass_token_variables(project, modal, target):
    make(project, *target, "ENV=testing", env=TOKENS, stand_in=modal)

    calls = modal.calls()
    assert len(calls) == 2
    assert not any(call["MODAL_TOKEN_ID"] or call["MODAL_TOKEN_SECRET"] for call in calls)


@pytest.mark.parametrize("where", ["environment", "command line"])
def test_ci_deploy_passes_token_variables(project, modal, backend, where):
    env = dict(TOKENS)
    args = ["deploy", "ENV=staging", *backend.urls()]
    if where == "environment":
        env["MODAL_USE_TOKEN"] = "1"
    else:
        args.append("MODAL_USE_TOKEN=1")
    result = make(project, *args, env=env, stand_in=modal)

    assert result.returncode == 0, result.output
    calls = modal.calls()
    assert [call["argv"][0] for call in calls] == ["token", "deploy"]
    assert all(call["MODAL_TOKEN_ID"] and call["MODAL_TOKEN_SECRET"] for call in calls)


@pytest.mark.parametrize(
    "tokens",
    [
        {},
        {"MODAL_TOKEN_ID": "ak-1"},
        {"MODAL_TOKEN_SECRET": "as-1"},
        {"MODAL_TOKEN_ID": "ak-1", "MODAL_TOKEN_SECRET": ""},
    ],
    ids=["none", "id-only", "secret-only", "empty-secret"],
)
def test_ci_deploy_refuses_incomplete_token(project, modal, tokens):
    result = make(
        project,
        "deploy",
        "ENV=staging",
        env={**tokens, "MODAL_USE_TOKEN": "1"},
        stand_in=modal,
    )

    assert result.returncode != 0
    assert "MODAL_TOKEN_ID and MODAL_TOKEN_SECRET are not both set" in result.output
    assert modal.calls() == []


def test_ci_token_of_another_workspace_is_refused(project, modal):
    modal.set_info("Workspace: personal (ac-9)\n")
    result = make(
        project,
        "deploy",
        "ENV=main",
        env={**TOKENS, "MODAL_USE_TOKEN": "1"},
        stand_in=modal,
    )

    assert result.returncode != 0
    assert "must belong to the policyengine workspace" in result.output
    assert modal.deploys() == []


# --- Deploy and verify ---------------------------------------------------


def test_good_gate_deploys_then_verifies(project, modal, backend):
    result = make(project, "deploy", "ENV=staging", *backend.urls(), stand_in=modal)

    assert result.returncode == 0, result.output
    # `modal token info` first, then exactly one deploy, with modal deploy.
    assert modal.commands() == [
        ["token", "info"],
        ["deploy", "modal_app.py", "--env", "staging"],
    ]
    # Then the checks, against the deployed URLs.
    assert backend.paths() == ALL_CHECKS
    household = backend.requests[2][2]["household"]
    assert household["people"] and "households" in household
    assert "Deployed and verified" in result.output


@pytest.mark.parametrize(
    ("target", "env"),
    [
        (["deploy"], "main"),
        (["deploy", "ENV=testing"], "testing"),
        (["deploy-staging"], "staging"),
        (["deploy-testing"], "testing"),
    ],
)
def test_deploy_targets_pick_their_environment(project, modal, backend, target, env):
    result = make(project, *target, *backend.urls(), stand_in=modal)

    assert result.returncode == 0, result.output
    assert modal.deploys() == [["deploy", "modal_app.py", "--env", env]]
    assert backend.paths() == ALL_CHECKS


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_deploy_verifies_the_deployed_environment_urls(project, modal, env):
    # Without overrides, the checks go to the URLs of the deployed environment.
    result = make(project, "-n", "deploy", f"ENV={env}", stand_in=modal)

    app = "salt-cap-calculator"
    assert f"--health-url '{app_url(app, env, 'health')}'" in result.stdout
    assert f"--api-url '{app_url(app, env, 'fastapi-app')}'" in result.stdout
    assert modal.calls() == []


@pytest.mark.parametrize("mode", ["500", "not-ok", "nulls", "404"])
def test_deploy_fails_when_verification_fails(project, modal, backend, mode):
    backend.mode = mode
    result = make(project, "deploy", "ENV=staging", *backend.urls(), stand_in=modal)

    assert result.returncode != 0
    assert modal.deploys() == [["deploy", "modal_app.py", "--env", "staging"]]
    assert backend.requests
    assert "FAILED" in result.output
    assert "was deployed to staging but does not pass the checks" in result.output
    assert "Deployed and verified" not in result.output


@pytest.mark.parametrize("override", ["VERIFY=true", "VERIFY="])
def test_verification_cannot_be_switched_off(project, modal, backend, override):
    backend.mode = "500"
    result = make(project, "deploy", "ENV=staging", override, *backend.urls(), stand_in=modal)

    assert result.returncode != 0
    assert backend.requests


def test_failed_modal_deploy_is_not_verified(project, modal, backend):
    modal.set_exit_code(1)
    result = make(project, "deploy", "ENV=staging", *backend.urls(), stand_in=modal)

    assert result.returncode != 0
    assert "modal deploy failed" in result.output
    assert backend.requests == []


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
def test_rendered_projects_pass_the_local_checks(tmp_path, answers):
    """The secret and app-name checks do not refuse the template's own code."""
    rendered = bake(tmp_path, **answers)
    for target in ("check-secrets", "check-app", "check-lock"):
        result = make(rendered, target)
        assert result.returncode == 0, result.output


# --- The lock ------------------------------------------------------------

STALE_EDITS = {
    "new-dependency": ('"pydantic-settings>=2.6",', '"pydantic-settings>=2.6",\n    "rich>=13",'),
    "raised-minimum": ('"fastapi[standard]>=0.115"', '"fastapi[standard]>=999"'),
    "new-dev-tool": ('"ruff>=0.6",', '"ruff>=0.6",\n    "mypy>=1",'),
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


def test_lock_check_runs_with_the_local_checks_before_the_workspace(post_gen):
    deploy = next(
        line
        for line in logical_lines(post_gen.makefile("my-app"))
        if "$(ENV_CHECK); $(APP_CHECK)" in line
    )
    order = [
        deploy.index(f"$({name})")
        for name in ("ENV_CHECK", "APP_CHECK", "SECRET_CHECK", "LOCK_CHECK", "AUTH_CHECK")
    ]
    assert order == sorted(order)
    # A deploy only checks the lock, it never writes one.
    assert "lock --check --offline" in post_gen.makefile("my-app")
    assert "sync --locked" in post_gen.makefile("my-app")


# --- health and verify ---------------------------------------------------


def test_health_checks_both_health_urls(project, backend):
    result = make(project, "health", *backend.urls())

    assert result.returncode == 0, result.output
    assert backend.paths() == ALL_CHECKS[:2]


def test_verify_checks_health_and_a_calculation(project, backend):
    result = make(project, "verify", *backend.urls())

    assert result.returncode == 0, result.output
    assert backend.paths() == ALL_CHECKS
    assert result.stdout.count("ok ") == 3


@pytest.mark.parametrize("target", ["health", "verify"])
@pytest.mark.parametrize("mode", ["500", "not-ok", "404", "503"])
def test_health_and_verify_fail_on_bad_answers(project, backend, target, mode):
    backend.mode = mode
    result = make(project, target, *backend.urls())

    assert result.returncode != 0
    assert f"answered {mode if mode != 'not-ok' else 200}" in result.output
    assert backend.requests


def test_verify_fails_on_nulls_left_in_the_result(project, backend):
    backend.mode = "nulls"
    result = make(project, "verify", *backend.urls())

    assert result.returncode != 0
    assert "sample calculation" in result.output


def test_health_fails_when_nothing_answers(project, backend):
    url = backend.url
    backend.close()
    result = make(project, "health", f"HEALTH_URL={url}/x", f"API_URL={url}", "VERIFY_WAIT=0")

    assert result.returncode != 0
    assert "no answer" in result.output


def run_verify(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "scripts/verify.py", *args],
        cwd=project,
        check=False,
        env={k: v for k, v in os.environ.items() if k not in SHELL_VARIABLES},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_verify_waits_for_a_starting_app(project, backend):
    backend.mode = "503-then-ok"
    result = run_verify(
        project,
        f"--health-url={backend.url}/fn-health",
        f"--api-url={backend.url}",
        "--wait=10",
        "--interval=0.05",
    )

    assert result.returncode == 0, result.stderr
    assert len(backend.requests) == 2 + len(ALL_CHECKS)
    # Each retry says why.
    retries = [line for line in result.stderr.splitlines() if "retrying" in line]
    assert len(retries) == 2
    assert all("answered 503" in line for line in retries)


def test_verify_waits_for_a_new_url_that_answers_404(project, backend):
    backend.mode = "404-then-ok"
    result = run_verify(
        project,
        f"--health-url={backend.url}/fn-health",
        f"--api-url={backend.url}",
        "--wait=10",
        "--interval=0.05",
    )

    assert result.returncode == 0, result.stderr
    assert result.stderr.count("answered 404") == 2
    assert result.stdout.count("ok ") == 3


def test_verify_retries_a_refused_connection_and_says_so(project, backend):
    url = backend.url
    backend.close()
    result = run_verify(
        project,
        f"--health-url={url}/fn-health",
        f"--api-url={url}",
        "--wait=0.3",
        "--interval=0.05",
    )

    assert result.returncode == 1
    assert "no answer: connection refused; retrying" in result.stderr
    assert "FAILED health function" in result.stderr


def verify_fails_at_once(project, health_url: str) -> str:
    """Run verify with a long wait; it must fail without a single retry."""
    result = run_verify(
        project, f"--health-url={health_url}", "--api-url=http://127.0.0.1:9", "--wait=240"
    )

    assert result.returncode == 1
    assert "retrying" not in result.stderr
    assert "FAILED health function" in result.stderr
    return result.stderr


def test_verify_fails_at_once_on_a_name_that_does_not_resolve(project):
    stderr = verify_fails_at_once(project, "http://nonexistent.invalid/")

    assert "does not resolve" in stderr


def test_verify_fails_at_once_on_a_tls_error(project, backend):
    # https to a server that speaks plain HTTP: the TLS handshake fails.
    stderr = verify_fails_at_once(project, backend.url.replace("http:", "https:"))

    assert "TLS error" in stderr


def test_verify_fails_at_once_on_a_client_error(project, backend):
    backend.mode = "403"
    stderr = verify_fails_at_once(project, f"{backend.url}/fn-health")

    assert "answered 403" in stderr
    assert len(backend.requests) == 1


@pytest.mark.parametrize("url", ["file:///etc/passwd", "127.0.0.1:80", "ftp://x"])
def test_verify_takes_only_http_urls(project, url):
    result = run_verify(project, f"--health-url={url}", "--api-url=https://x.modal.run")

    assert result.returncode == 2
    assert "not an http(s) URL" in result.stderr


# --- stop, serve, logs, apps, help ---------------------------------------


@pytest.mark.parametrize(
    ("args", "env"),
    [
        ([], {}),
        (["CONFIRM=yes"], {}),
        (["CONFIRM=salt-cap"], {}),
        ([], {"CONFIRM": "salt-cap-calculator"}),
    ],
    ids=["none", "yes", "prefix", "from-shell"],
)
def test_stop_needs_confirmation(project, modal, args, env):
    result = make(project, "stop", "ENV=testing", *args, env=env, stand_in=modal)

    assert result.returncode != 0
    assert "make stop ENV=testing CONFIRM=salt-cap-calculator" in result.output
    assert modal.calls() == []


def test_stop_with_confirmation_stops_after_the_gate(project, modal):
    result = make(project, "stop", "ENV=testing", "CONFIRM=salt-cap-calculator", stand_in=modal)

    assert result.returncode == 0, result.output
    assert modal.commands() == [
        ["token", "info"],
        ["app", "stop", "salt-cap-calculator", "--env", "testing", "--yes"],
    ]


def test_serve_refuses_main(project, modal):
    result = make(project, "serve", "ENV=main", stand_in=modal)

    assert result.returncode != 0
    assert "not for main" in result.output
    assert "make deploy ENV=main" in result.output
    assert modal.calls() == []


def test_serve_defaults_to_testing(project, modal):
    result = make(project, "serve", stand_in=modal)

    assert result.returncode == 0, result.output
    assert modal.commands() == [
        ["token", "info"],
        ["serve", "modal_app.py", "--env", "testing"],
    ]
    assert "Not for production" in result.output


@pytest.mark.parametrize(
    ("target", "command"),
    [
        ("logs", ["app", "logs", "salt-cap-calculator", "--env", "staging"]),
        ("apps", ["app", "list", "--env", "staging"]),
    ],
)
def test_logs_and_apps_run_after_the_gate(project, modal, target, command):
    result = make(project, target, "ENV=staging", stand_in=modal)

    assert result.returncode == 0, result.output
    assert modal.commands() == [["token", "info"], command]


DOCUMENTED_TARGETS = [
    "help",
    "install",
    "lock",
    "test",
    "lint",
    "format",
    "dev",
    "bench",
    "fuzz",
    "check-env",
    "check-auth",
    "check-app",
    "check-secrets",
    "check-lock",
    "deploy",
    "deploy-staging",
    "deploy-testing",
    "url",
    "health",
    "verify",
    "serve",
    "logs",
    "apps",
    "stop",
    "vercel-env",
]


def test_help_is_the_default_and_lists_the_targets(project, modal):
    result = make(project, stand_in=modal)

    assert result.returncode == 0, result.output
    listed = re.findall(r"^  ([a-z-]+) ", result.stdout, re.MULTILINE)
    assert listed == DOCUMENTED_TARGETS
    assert "ENV=main|staging|testing" in result.stdout
    assert "$(" not in result.stdout  # make variables are not printed unexpanded
    assert modal.calls() == []


def test_no_target_runs_modal_run(project, modal, backend):
    targets = [
        ["deploy"],
        ["deploy-staging"],
        ["deploy-testing"],
        ["serve"],
        ["logs"],
        ["apps"],
        ["check-auth"],
        ["stop", "ENV=testing", "CONFIRM=salt-cap-calculator"],
    ]
    for target in targets:
        make(project, *target, *backend.urls(), stand_in=modal)

    subcommands = {argv[0] for argv in modal.commands()}
    assert subcommands == {"token", "deploy", "serve", "app"}
    recipes = [
        line for line in (project / "Makefile").read_text().splitlines() if not line.startswith("#")
    ]
    assert not any(re.search(MODAL_RUN, line) for line in recipes)


# --- Workflows ----------------------------------------------------------


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


def test_test_workflow_runs_make_test_on_pull_requests():
    workflow = load_workflow("test.yml")

    assert "pull_request" in triggers(workflow)
    assert "workflow_call" in triggers(workflow)
    assert "make test" in runs(workflow).splitlines()


def test_deploy_workflow_deploys_and_checks_health():
    workflow = load_workflow("deploy.yml")
    on = triggers(workflow)

    assert on["push"]["branches"] == ["main"]
    choice = on["workflow_dispatch"]["inputs"]["environment"]
    assert choice["type"] == "choice"
    assert sorted(choice["options"]) == sorted(ENVIRONMENTS)
    job = workflow["jobs"]["deploy"]
    assert job["needs"] == "test"
    commands = [step.get("run", "") for step in job["steps"]]
    gate = commands.index('make check-auth ENV="$ENV"')
    deploy = commands.index('make deploy ENV="$ENV"')
    health = commands.index('make health ENV="$ENV"')
    assert gate < deploy < health
    assert "main" in job["env"]["ENV"]


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
    test = commands.index("make test")
    opener = next(i for i, run in enumerate(commands) if "gh pr create" in run)
    assert upgrade < test < opener
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


# --- makefile() from the hook -------------------------------------------


def logical_lines(text: str) -> list[str]:
    return text.replace("\\\n", " ").splitlines()


def test_makefile_fills_in_every_placeholder(post_gen):
    text = post_gen.makefile("my-app")

    assert "override APP := my-app" in text
    assert "override WORKSPACE := policyengine" in text
    assert "override ENVIRONMENTS := main staging testing" in text
    assert "Use one of: main, staging, testing" in text
    assert not re.search(r"__[A-Z_]+__", text)


def test_rendered_makefile_is_the_hook_output(post_gen, project):
    assert (project / "Makefile").read_text() == post_gen.makefile(project.name)


@pytest.mark.parametrize(
    "name",
    ["", "My App", "app;rm -rf /", "app$(shell id)", "app\nall:", "-app", "app_name"],
)
def test_makefile_rejects_unsafe_app_names(post_gen, name):
    with pytest.raises(ValueError):
        post_gen.makefile(name)


def test_makefile_never_runs_modal_run(post_gen):
    text = post_gen.makefile("my-app")

    assert not re.search(MODAL_RUN, text.replace("`modal run`", ""))


def test_every_modal_call_in_the_makefile_follows_the_gate(post_gen):
    """Each recipe line that calls Modal runs the gate first, in one shell."""
    modal_lines = [
        line
        for line in logical_lines(post_gen.makefile("my-app"))
        if line.startswith("\t") and "$(MODAL_CMD)" in line
    ]
    assert len(modal_lines) == 5  # deploy, serve, logs, apps, stop
    for line in modal_lines:
        call = line.index("$(MODAL_CMD)")
        gate = max(line.find("$(GATE)"), line.find("$(AUTH_CHECK)"))
        assert 0 <= gate < call, line


def test_makefile_gate_variables_are_overrides(post_gen):
    text = post_gen.makefile("my-app")
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
        assert re.search(rf"^override {name} :?=", text, re.MULTILINE), name


def test_makefile_drops_tokens_unless_asked(post_gen):
    text = post_gen.makefile("my-app")

    assert "env -u MODAL_TOKEN_ID -u MODAL_TOKEN_SECRET" in text
    assert "ifeq ($(MODAL_USE_TOKEN),1)" in text
