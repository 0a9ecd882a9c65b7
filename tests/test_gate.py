"""The rendered Makefile's workspace gate: only the policyengine workspace,
whatever make flags or overrides; Modal tokens only when CI asks for them.

Which rule of the reference each test enforces: see tests/deploy_support.py.
"""

import pytest

from tests.deploy_support import FIX_COMMANDS, GOOD_INFO, make


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
        "PYTHON=true",
        "GATE_PYTHON=true",
        "DEPLOY_GATE=true",
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
