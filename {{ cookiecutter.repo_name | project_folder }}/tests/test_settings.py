"""Settings come from environment variables, with documented defaults."""

import re

import pytest
from pydantic import ValidationError

from api.settings import APP_NAME, DEFAULT_ORIGIN_REGEX, DEFAULT_ORIGINS, Settings


def test_defaults_when_nothing_is_set(monkeypatch):
    for name in ("MAX_PEOPLE", "CORS_ALLOW_ORIGINS", "CORS_ALLOW_ORIGIN_REGEX"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()

    assert settings.max_people == 50
    assert settings.cors_allow_origins == DEFAULT_ORIGINS
    assert settings.cors_allow_origin_regex == DEFAULT_ORIGIN_REGEX


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("MAX_PEOPLE", "7")
    monkeypatch.setenv("CALCULATION_TIMEOUT_SECONDS", "2.5")
    monkeypatch.setenv("CORS_ALLOW_ORIGINS", " https://a.example , https://b.example,")
    monkeypatch.setenv("CORS_ALLOW_ORIGIN_REGEX", "")
    settings = Settings()

    assert settings.max_people == 7
    assert settings.calculation_timeout_seconds == 2.5
    assert settings.cors_allow_origins == ("https://a.example", "https://b.example")
    assert settings.cors_allow_origin_regex is None


def test_a_request_limit_past_modals_web_limit_is_refused(monkeypatch):
    monkeypatch.setenv("CALCULATION_TIMEOUT_SECONDS", "300")

    with pytest.raises(ValidationError, match="Modal ends a web request at 150 s"):
        Settings()


def test_a_bad_value_names_its_variable(monkeypatch):
    monkeypatch.setenv("MAX_BODY_BYTES", "1e6")

    with pytest.raises(ValidationError, match="max_body_bytes"):
        Settings()


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (f"https://{APP_NAME}.vercel.app", True),
        (f"https://{APP_NAME}-abc123xyz-policy-engine.vercel.app", True),
        (f"https://{APP_NAME}-git-my-branch-policy-engine.vercel.app", True),
        ("https://other-app-abc123xyz-policy-engine.vercel.app", False),
        (f"https://{APP_NAME}-abc123xyz-someone-else.vercel.app", False),
        (f"https://{APP_NAME}.vercel.app.evil.example", False),
        (f"http://{APP_NAME}.vercel.app", False),
    ],
)
def test_only_this_projects_vercel_deployments_match_by_default(origin, allowed):
    assert bool(re.fullmatch(DEFAULT_ORIGIN_REGEX, origin)) is allowed
