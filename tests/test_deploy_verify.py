"""make deploy deploys, then always verifies; make health, make verify and
scripts/verify.py against a local stand-in for the deployed backend.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy_support import ALL_CHECKS, ENVIRONMENTS, SHELL_VARIABLES, app_url, make


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


@pytest.mark.parametrize("override", ["VERIFY=true", "VERIFY=", "PYTHON=true"])
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


def verify_while_starting(project: Path, backend, mode: str) -> subprocess.CompletedProcess:
    """scripts/verify.py against a backend that answers ``mode`` at first."""
    backend.mode = mode
    return run_verify(
        project,
        f"--health-url={backend.url}/fn-health",
        f"--api-url={backend.url}",
        "--wait=10",
        "--interval=0.05",
    )


def test_verify_waits_for_a_starting_app(project, backend):
    result = verify_while_starting(project, backend, "503-then-ok")

    assert result.returncode == 0, result.stderr
    assert len(backend.requests) == 2 + len(ALL_CHECKS)
    # Each retry says why.
    retries = [line for line in result.stderr.splitlines() if "retrying" in line]
    assert len(retries) == 2
    assert all("answered 503" in line for line in retries)


def test_verify_waits_for_a_new_url_that_answers_404(project, backend):
    result = verify_while_starting(project, backend, "404-then-ok")

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
