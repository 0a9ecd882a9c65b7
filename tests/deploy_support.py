"""Shared helpers of the deploy tests: the rendered Makefile's gate,
environments, verification and CI.

Everything in those tests is offline and fast. A stand-in ``modal``
executable (tests/fixtures/modal_stand_in.py, copied into tmp_path by the
``modal`` fixture) logs each call with its arguments and whether
MODAL_TOKEN_ID/MODAL_TOKEN_SECRET reached it, and prints a configurable
``modal token info``. A small HTTP server on 127.0.0.1 (FakeBackend, the
``backend`` fixture) plays the deployed backend for the verification step.
The Makefile is run with ``MODAL=<stand-in>`` and, for verification,
``HEALTH_URL``/``API_URL`` pointing at that server. The fixtures
(``project``, ``project_copy``, ``modal``, ``backend``) are in conftest.py.

The checks themselves are the rendered project's scripts/deploy_gate.py
(unit-tested by its own tests/backend/test_deploy_gate.py); these tests drive them
through make, as an engineer would.

The tests, by concern:
- test_gate.py: the workspace gate, tokens, make flags, overrides;
- test_environments.py: ENV, make url, make vercel-env;
- test_deploy_verify.py: make deploy, health, verify and scripts/verify.py;
- test_local_checks.py: the app name, secrets and lock checks;
- test_operations.py: make stop, serve, logs, apps, help;
- test_workflows.py: the workflow files and their SHA pins;
- test_makefile.py: the Makefile as rendered, and the post-gen hook's check of it.

The reference's "What NOT to do" list, and where each rule is enforced:

1. MUST NOT deploy to a personal workspace: the gate accepts only
   ``Workspace: policyengine``, exactly, and cannot be switched off from the
   command line.
   -> test_gate.py: test_gate_passes_for_the_policyengine_workspace,
      test_gate_refuses_other_workspaces, test_gate_refusal_explains_the_fix,
      test_failed_gate_stops_every_modal_target,
      test_failed_gate_deploys_nothing_under_make_flags,
      test_gate_cannot_be_overridden_from_the_command_line,
      test_ci_token_of_another_workspace_is_refused,
      test_missing_modal_cli_says_make_install
2. MUST NOT leave MODAL_TOKEN_ID/MODAL_TOKEN_SECRET set when deploying via
   profile: the Makefile drops them unless MODAL_USE_TOKEN=1 (CI), which in
   turn needs both.
   -> test_gate.py: test_local_deploy_never_passes_token_variables,
      test_ci_deploy_passes_token_variables,
      test_ci_deploy_refuses_incomplete_token;
      test_workflows.py: test_deploy_workflow_uses_the_token_on_purpose
3. MUST NOT use ``modal run`` for production: no target runs it.
   -> test_operations.py: test_no_target_runs_modal_run;
      test_makefile.py: test_makefile_never_runs_modal_run
4. MUST NOT use ``modal serve`` for production: ``make serve`` refuses main
   and defaults to testing.
   -> test_operations.py: test_serve_refuses_main, test_serve_defaults_to_testing
5. MUST NOT skip health check verification after deployment: ``make deploy``
   always verifies and fails when verification fails; it cannot be turned off.
   -> test_deploy_verify.py: test_good_gate_deploys_then_verifies,
      test_deploy_fails_when_verification_fails,
      test_verification_cannot_be_switched_off,
      test_deploy_verifies_the_deployed_environment_urls;
      test_workflows.py: test_deploy_workflow_deploys_and_checks_health,
      test_health_workflow_runs_on_a_schedule_and_opens_an_issue
6. MUST NOT use generic app names: ``make deploy`` refuses when modal_app.py
   does not name the app after the repository (and only a kebab-case name
   reaches the Makefile: the pre-gen hook refuses any other, the post-gen
   hook checks the rendered APP).
   -> test_local_checks.py: test_deploy_refuses_an_app_not_named_after_the_repo;
      test_makefile.py: test_makefile_rejects_unsafe_app_names
7. MUST NOT hardcode secrets in Python code: ``make deploy`` refuses when the
   shipped code (modal_app.py, api/, policyengine_backend/) contains what looks like a secret.
   -> test_local_checks.py: test_deploy_refuses_hardcoded_secrets,
      test_rendered_projects_pass_the_local_checks
8. MUST NOT deploy without confirming the target workspace with
   ``modal token info``: every Modal call is preceded by it, in the same
   shell command.
   -> test_deploy_verify.py: test_good_gate_deploys_then_verifies;
      test_makefile.py: test_every_modal_call_in_the_makefile_follows_the_gate
"""

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

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


# The stand-in `modal` CLI; StandIn copies it into a test's own folder.
STAND_IN = Path(__file__).resolve().parent / "fixtures" / "modal_stand_in.py"


class StandIn:
    """A fake `modal` CLI in its own folder, with its call log."""

    def __init__(self, folder: Path):
        folder.mkdir()
        self.folder = folder
        self.path = folder / "modal"
        # Run by the interpreter running the tests, whatever python3 is on PATH.
        script = STAND_IN.read_text().split("\n", 1)[1]
        self.path.write_text(f"#!{sys.executable}\n{script}")
        self.path.chmod(0o755)
        self.set_info(GOOD_INFO)
        self.set_exit_code(0)
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


def app_url(app: str, env: str, function: str) -> str:
    workspace = "policyengine" if env == "main" else f"policyengine-{env}"
    return f"https://{workspace}--{app}-{function}.modal.run"


# `modal run`, `.../modal' run` or `$(MODAL_CMD) run`.
MODAL_RUN = r"(\bmodal|\$\(MODAL(_CMD)?\))'?\s+run\b"
ALL_CHECKS = [("GET", "/fn-health"), ("GET", "/health"), ("POST", "/calculate")]


def logical_lines(text: str) -> list[str]:
    return text.replace("\\\n", " ").splitlines()
