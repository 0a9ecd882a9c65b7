"""make stop, serve, logs, apps and help: each behind the gate, none runs
`modal run`.
"""

import re

import pytest

from tests.deploy_support import MODAL_RUN, make


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
    "test-ci",
    "lint",
    "format",
    "dev",
    "bench",
    "bench-dev",
    "fuzz",
    "client",
    "test-client",
    "test-browser",
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
    "synthetic-data",
    "data",
    "bench-population",
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
