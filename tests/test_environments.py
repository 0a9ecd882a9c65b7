"""ENV: only main, staging or testing, never one from the shell; the URLs of
each environment (make url, make vercel-env).
"""

import pytest

from tests.deploy_support import ENVIRONMENTS, app_url, make

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
