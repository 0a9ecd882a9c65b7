"""scripts/deploy_gate.py, the checks `make deploy` and every Modal target
run first. Offline and fast: stand-in `modal`, `uv` and verify scripts are
small Python files in a temporary folder.
"""

import re
import sys
from pathlib import Path

import pytest

from scripts import deploy_gate
from scripts.deploy_gate import GateFailed

PROJECT = Path(__file__).resolve().parents[2]
GOOD_INFO = "Token: ak-xxx\nWorkspace: policyengine (ac-123)\nUser: someone (us-1)\n"


def refusal(check, *args, **kwargs) -> GateFailed:
    """The GateFailed a check raises (the test fails if it passes)."""
    with pytest.raises(GateFailed) as failure:
        check(*args, **kwargs)
    return failure.value


def text(failure: GateFailed) -> str:
    return "\n".join(failure.lines)


def script(path: Path, body: str) -> Path:
    """An executable Python script run by this interpreter."""
    path.write_text(f"#!{sys.executable}\nimport os, sys\n{body}\n")
    path.chmod(0o755)
    return path


# --- ENV -------------------------------------------------------------------


@pytest.mark.parametrize("env", ["main", "staging", "testing"])
def test_check_env_accepts_the_three_environments(env):
    assert deploy_gate.check_env(env) == env


@pytest.mark.parametrize(
    "env", ["prod", "Main", "STAGING", " main", "main staging", "staging;rm", "-h", ""]
)
def test_check_env_refuses_anything_else(env):
    failure = refusal(deploy_gate.check_env, env)

    assert failure.exit_code == 2
    assert (
        failure.lines[0]
        == f"ERROR: ENV={env} is not an environment of the policyengine workspace."
    )
    assert "Use one of: main, staging, testing." in failure.lines[1]
    assert "came from your shell" not in text(failure)


def test_check_env_says_when_env_came_from_the_shell():
    failure = refusal(deploy_gate.check_env, "/home/me/.shrc", from_shell=True)

    assert (
        failure.lines[-1]
        == "ENV came from your shell; pass it on the command line instead."
    )


def test_makefile_and_gate_agree_on_workspace_and_environments():
    makefile = (PROJECT / "Makefile").read_text()

    assert re.search(
        rf"^override WORKSPACE := {deploy_gate.WORKSPACE}$", makefile, re.M
    )
    environments = re.search(r"^override ENVIRONMENTS := (.*)$", makefile, re.M)
    assert environments and tuple(environments[1].split()) == deploy_gate.ENVIRONMENTS


# --- `modal token info` ----------------------------------------------------


@pytest.mark.parametrize(
    ("info", "workspaces"),
    [
        (GOOD_INFO, ["policyengine"]),
        ("  Workspace:   policyengine   (ac-123)\r\n", ["policyengine"]),
        (
            "\x1b[1mWorkspace:\x1b[0m policyengine \x1b[2m(ac-1)\x1b[0m\n",
            ["policyengine"],
        ),
        (
            "Workspace: personal\nWorkspace: policyengine\nWorkspace: personal\n",
            ["personal", "policyengine"],
        ),
        ("Not Workspace: policyengine\n", []),
        ("Workspace:\n", [""]),
        ("", []),
    ],
    ids=["plain", "spaces", "ansi", "two", "in-a-sentence", "no-name", "empty"],
)
def test_workspaces_in_reads_only_workspace_lines(info, workspaces):
    assert deploy_gate.workspaces_in(info) == workspaces


@pytest.fixture
def fake_modal(tmp_path):
    """A `modal` that logs its arguments and prints INFO for `token info`."""

    def make(info: str = GOOD_INFO, code: int = 0) -> Path:
        (tmp_path / "info.txt").write_text(info)
        return script(
            tmp_path / "modal",
            f"open({str(tmp_path / 'calls.txt')!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
            f"sys.stdout.write(open({str(tmp_path / 'info.txt')!r}).read())\n"
            f"sys.exit({code})",
        )

    return make


def calls(modal: Path) -> list[str]:
    log = modal.with_name("calls.txt")
    return log.read_text().splitlines() if log.exists() else []


def test_check_auth_passes_for_the_policyengine_workspace(fake_modal):
    modal = fake_modal()
    line = deploy_gate.check_auth(
        "staging", str(modal), [str(modal)], use_token=False, environ={}
    )

    assert line == "Modal workspace: policyengine, environment: staging"
    assert calls(modal) == ["token info"]


@pytest.mark.parametrize(
    ("info", "code", "seen"),
    [
        ("Workspace: personal (ac-9)\n", 0, "personal"),
        ("Workspace: policyengine-dev (ac-2)\n", 0, "policyengine-dev"),
        ("Workspace: PolicyEngine (ac-5)\n", 0, "PolicyEngine"),
        ("Workspace: policyengine\nWorkspace: personal\n", 0, "personal policyengine"),
        ("Error: token is invalid\n", 1, "nothing"),
        ("Workspace: policyengine (ac-1)\n", 1, "policyengine"),
    ],
)
def test_check_auth_refuses_anything_but_policyengine(fake_modal, info, code, seen):
    modal = fake_modal(info, code)
    failure = refusal(
        deploy_gate.check_auth, "main", str(modal), [str(modal)], False, {}
    )
    message = text(failure)

    assert failure.lines[0] == (
        "ERROR: Modal is not authenticated to the 'policyengine' workspace, so nothing was done."
    )
    assert f"  Saw workspace: '{seen}'" in failure.lines
    # The whole output, so the reader sees what Modal said.
    for line in info.splitlines():
        assert f"  | {line}" in failure.lines
    assert (f"failed (exit code {code})" in message) == bool(code)
    assert f"  {modal} token new --profile policyengine" in failure.lines
    assert f"  {modal} profile activate policyengine" in failure.lines
    assert "https://modal.com/settings/policyengine" in failure.lines[-1]
    assert calls(modal) == ["token info"]


def test_check_auth_with_a_ci_token_of_another_workspace(fake_modal):
    modal = fake_modal("Workspace: personal (ac-9)\n")
    tokens = {"MODAL_TOKEN_ID": "id", "MODAL_TOKEN_SECRET": "secret"}
    failure = refusal(
        deploy_gate.check_auth, "main", str(modal), [str(modal)], True, tokens
    )

    assert "must belong to the policyengine workspace: replace those secrets" in text(
        failure
    )
    assert "Fix it with:" not in text(failure)


def test_check_auth_needs_the_modal_cli(tmp_path):
    missing = str(tmp_path / "nowhere" / "modal")
    failure = refusal(deploy_gate.check_auth, "main", missing, [missing], False, {})

    assert failure.lines == [
        f"ERROR: the Modal CLI is not installed (no {missing}). Run: make install"
    ]


def test_check_auth_refuses_an_unknown_env_before_asking_modal(fake_modal):
    modal = fake_modal()
    failure = refusal(deploy_gate.check_auth, "", str(modal), [str(modal)], False, {})

    assert failure.exit_code == 2
    assert calls(modal) == []


@pytest.mark.parametrize(
    "tokens",
    [
        {},
        {"MODAL_TOKEN_ID": "id"},
        {"MODAL_TOKEN_SECRET": "secret"},
        {"MODAL_TOKEN_ID": "id", "MODAL_TOKEN_SECRET": ""},
    ],
)
def test_use_token_needs_both_variables(fake_modal, tokens):
    modal = fake_modal()
    failure = refusal(
        deploy_gate.check_auth, "main", str(modal), [str(modal)], True, tokens
    )

    assert "MODAL_TOKEN_ID and MODAL_TOKEN_SECRET are not both set" in failure.lines[0]
    assert calls(modal) == []


def test_token_message_for_each_case():
    both = {"MODAL_TOKEN_ID": "id", "MODAL_TOKEN_SECRET": "secret"}

    assert deploy_gate.token_message(True, both).startswith("Using the token")
    assert deploy_gate.token_message(False, both).startswith("NOTE: ignoring")
    assert deploy_gate.token_message(False, {"MODAL_TOKEN_SECRET": "s"}).startswith(
        "NOTE:"
    )
    assert deploy_gate.token_message(False, {}) == ""


# --- modal_app.py, secrets, the lock -----------------------------------------

MODAL_APP = 'APP_NAME = "my-backend"\n\n# modal.App("old")\napp = modal.App(APP_NAME)\n'


def test_app_problems_accepts_the_app_named_after_the_repository():
    assert deploy_gate.app_problems("my-backend", MODAL_APP) == []


@pytest.mark.parametrize(
    "modal_app",
    [
        MODAL_APP.replace('"my-backend"', '"my-app"'),
        MODAL_APP.replace("modal.App(APP_NAME)", 'modal.App("backend")'),
        MODAL_APP + 'other = modal.App("backend")\n',
        MODAL_APP.replace('APP_NAME = "my-backend"', 'APP_NAME = "my-backend-2"'),
        "",
    ],
    ids=["other-name", "generic", "second-app", "longer-name", "empty"],
)
def test_app_problems_refuses_other_names(modal_app):
    problems = deploy_gate.app_problems("my-backend", modal_app)

    assert problems[0] == (
        "ERROR: modal_app.py must name the app after the repository: "
        'APP_NAME = "my-backend" and app = modal.App(APP_NAME).'
    )
    assert problems[1].startswith("  found: ")


def test_the_project_itself_passes_the_local_checks():
    app = re.search(
        r"^override APP := (\S+)$", (PROJECT / "Makefile").read_text(), re.M
    )
    assert app
    deploy_gate.check_app(app[1], PROJECT)
    deploy_gate.check_secrets(PROJECT)


# Built from pieces so this file does not look like it holds secrets.
SECRETS = {
    "anthropic": 'KEY = "sk-' + 'ant-api03-abcdefghijklmnopqrstuvwxyz"',
    "modal": 'token_id = "ak-' + 'abcdefghijklmnopqrstuv"',
    "assignment": 'API_KEY = "0123456789' + 'abcdef0123"',
    "dict": 'config = {"password": "hunter2' + 'hunter2hunter2"}',
    "aws": "aws = 'AKIA" + "ABCDEFGHIJKLMNOP'",
    "private-key": 'PEM = """-----BEGIN RSA ' + 'PRIVATE KEY-----"""',
}


@pytest.fixture
def shipped(tmp_path) -> Path:
    (tmp_path / "api").mkdir()
    (tmp_path / "modal_app.py").write_text(MODAL_APP)
    (tmp_path / "api" / "main.py").write_text(
        'token = get_settings().token\nSECRET_NAMES = ["x"]\n'
    )
    return tmp_path


def test_secret_places_finds_nothing_in_clean_code(shipped):
    assert deploy_gate.secret_places(shipped) == []


@pytest.mark.parametrize("line", SECRETS.values(), ids=list(SECRETS))
def test_secret_places_finds_written_secrets_without_showing_them(shipped, line):
    (shipped / "api" / "keys.py").write_text(f"# Settings\n{line}\n")
    failure = refusal(deploy_gate.check_secrets, shipped)

    assert "  api/keys.py:2" in failure.lines
    assert "modal secret create" in failure.lines[-1]
    secret = max(re.findall(r"[\"']([^\"']+)[\"']", line), key=len)
    assert secret not in text(failure)


def test_secret_places_finds_secret_files_and_skips_caches_and_binaries(shipped):
    (shipped / "api" / ".env").write_text("X=1\n")
    (shipped / "api" / "certs").mkdir()
    (shipped / "api" / "certs" / "server.pem").write_text("x\n")
    (shipped / "api" / "__pycache__").mkdir()
    (shipped / "api" / "__pycache__" / "keys.pyc").write_text(SECRETS["aws"])
    (shipped / "api" / "blob.bin").write_bytes(b"\0" + SECRETS["aws"].encode())
    (shipped / "modal_app.py").write_text(MODAL_APP + SECRETS["modal"] + "\n")

    assert deploy_gate.secret_places(shipped) == [
        "api/.env:file",
        "api/certs/server.pem:file",
        "modal_app.py:5",
    ]


def test_check_lock_needs_uv(tmp_path):
    missing = str(tmp_path / "uv")
    failure = refusal(deploy_gate.check_lock, missing, ".venv")

    assert failure.lines == [
        f"ERROR: uv is not installed (no {missing}). Run: make install"
    ]


def test_check_lock_runs_uv_lock_check_on_the_venv(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uv = script(
        tmp_path / "uv",
        "print(' '.join(sys.argv[1:]), os.environ['UV_PROJECT_ENVIRONMENT'])\n"
        "sys.exit(int(os.environ.get('FAKE_UV_CODE', '0')))",
    )
    deploy_gate.check_lock(str(uv), "venv")

    monkeypatch.setenv("FAKE_UV_CODE", "1")
    failure = refusal(deploy_gate.check_lock, str(uv), "venv")
    assert failure.lines[0].startswith("ERROR: uv.lock does not match pyproject.toml")
    assert failure.lines[1] == f"  | lock --check --offline {tmp_path / 'venv'}"
    assert "make lock (runs uv lock)" in failure.lines[2]


# --- stop, serve -----------------------------------------------------------


def test_check_stop_needs_the_app_name():
    deploy_gate.check_stop("my-backend", "testing", "my-backend")
    for confirm in ("", "yes", "my-back", "my-backend "):
        failure = refusal(deploy_gate.check_stop, "my-backend", "testing", confirm)
        assert (
            failure.lines[-1]
            == "If you mean it, run: make stop ENV=testing CONFIRM=my-backend"
        )


def test_check_serve_refuses_main_only():
    deploy_gate.check_serve("testing")
    deploy_gate.check_serve("staging")
    failure = refusal(deploy_gate.check_serve, "main")
    assert "it is not for main" in failure.lines[0]


# --- deploy, urls, vercel-env ------------------------------------------------


@pytest.fixture
def fake_verify(tmp_path, monkeypatch):
    """scripts/verify.py replaced by one that logs its arguments."""

    def make(code: int) -> Path:
        verify = script(
            tmp_path / "verify.py",
            f"open({str(tmp_path / 'verify.txt')!r}, 'w').write(' '.join(sys.argv[1:]))\n"
            f"sys.exit({code})",
        )
        monkeypatch.setattr(deploy_gate, "VERIFY_SCRIPT", verify)
        return tmp_path / "verify.txt"

    return make


def deploy(modal: Path, urls_given: bool = False) -> str:
    return deploy_gate.deploy(
        "my-backend", "staging", [str(modal)], "https://h", "https://a", "5", urls_given
    )


def test_deploy_deploys_then_verifies(fake_modal, fake_verify, capsys):
    modal = fake_modal()
    log = fake_verify(0)

    assert deploy(modal) == "Deployed and verified: https://a"
    assert calls(modal) == ["deploy modal_app.py --env staging"]
    assert log.read_text() == "--health-url https://h --api-url https://a --wait 5"
    assert capsys.readouterr().out.splitlines() == [
        "Deploying my-backend to the policyengine workspace, environment staging:",
        "+ modal deploy modal_app.py --env staging",
    ]


def test_deploy_fails_when_verification_fails(fake_modal, fake_verify, capsys):
    fake_verify(1)
    failure = refusal(deploy, fake_modal(), urls_given=True)

    assert failure.lines == [
        "ERROR: my-backend was deployed to staging but does not pass the checks above.",
        "Look at: make logs ENV=staging. Fix it, then make deploy ENV=staging again.",
    ]
    assert (
        "NOTE: verifying the URLs given on the command line." in capsys.readouterr().out
    )


def test_failed_modal_deploy_is_not_verified(fake_modal, fake_verify):
    log = fake_verify(0)
    failure = refusal(deploy, fake_modal(code=1))

    assert failure.lines == ["ERROR: modal deploy failed."]
    assert not log.exists()


def test_url_lines():
    assert deploy_gate.url_lines("https://a", "https://h") == [
        "API:    https://a",
        "Docs:   https://a/docs",
        "Health: https://h",
    ]


@pytest.mark.parametrize(
    ("env", "target", "then"),
    [
        ("main", "production", "vercel --prod --force --yes --scope policy-engine"),
        ("staging", "preview", "vercel --force --yes --scope policy-engine"),
        (
            "testing",
            "development",
            "vercel env pull .env.local --yes --scope policy-engine",
        ),
    ],
)
def test_vercel_lines(env, target, then):
    lines = deploy_gate.vercel_lines(env, "https://x.modal.run")

    assert target in lines[0]
    assert lines[1] == (
        f"printf '%s' 'https://x.modal.run' | vercel env add NEXT_PUBLIC_API_URL {target}"
    )
    assert lines[2] == then


def test_shell_quote_always_quotes():
    assert deploy_gate.shell_quote("abc") == "'abc'"
    assert deploy_gate.shell_quote("it's") == "'it'\\''s'"


# --- The command line --------------------------------------------------------


def test_main_passes_values_that_look_like_options_as_values(capsys):
    assert deploy_gate.main(["check-env", "--env=-h"]) == 2
    assert "ERROR: ENV=-h is not an environment" in capsys.readouterr().err


def test_main_prints_successes_on_stdout_and_failures_on_stderr(capsys):
    assert (
        deploy_gate.main(
            ["urls", "--api-url", "https://a", "--health-url", "https://h"]
        )
        == 0
    )
    assert capsys.readouterr().out.startswith("API:    https://a\n")

    assert deploy_gate.main(["check-serve", "--env=main"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "not for main" in captured.err
