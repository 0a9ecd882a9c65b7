"""Settings come from environment variables, with documented defaults."""

import re

import pytest
from pydantic import ValidationError

from policyengine_backend._settings import (
    APP_NAME,
    DEFAULT_ORIGINS,
    PREVIEW_ORIGIN_REGEX,
    PRODUCTION_ORIGIN_REGEX,
    Settings,
)

CORS_VARIABLES = ("CORS_ALLOW_ORIGINS", "CORS_ALLOW_ORIGIN_REGEX")


def test_defaults_when_nothing_is_set(monkeypatch):
    for name in ("MAX_PEOPLE", "MODAL_ENVIRONMENT", *CORS_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()

    assert settings.max_people == 50
    assert settings.cors_allow_origins == DEFAULT_ORIGINS
    assert settings.cors_allow_origin_regex == PREVIEW_ORIGIN_REGEX


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


PRODUCTION = f"https://{APP_NAME}.vercel.app"
# Also what a Vercel project of that name, anyone's, would be served at.
PREVIEWS = (
    f"https://{APP_NAME}-abc123xyz-policy-engine.vercel.app",
    f"https://{APP_NAME}-git-my-branch-policy-engine.vercel.app",
)
OTHERS = (
    "https://other-app-abc123xyz-policy-engine.vercel.app",
    f"https://{APP_NAME}-abc123xyz-someone-else.vercel.app",
    f"https://{APP_NAME}.vercel.app.evil.example",
    f"http://{APP_NAME}.vercel.app",
)


def default_regex(monkeypatch, environment: str | None) -> str | None:
    for name in CORS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    if environment is None:
        monkeypatch.delenv("MODAL_ENVIRONMENT", raising=False)
    else:
        monkeypatch.setenv("MODAL_ENVIRONMENT", environment)
    return Settings().cors_allow_origin_regex


def test_production_accepts_only_its_own_frontend(monkeypatch):
    regex = default_regex(monkeypatch, "main")

    assert regex == PRODUCTION_ORIGIN_REGEX
    assert re.fullmatch(regex, PRODUCTION)
    for origin in PREVIEWS + OTHERS:
        assert not re.fullmatch(regex, origin), origin


@pytest.mark.parametrize("environment", ["staging", "testing", None])
def test_other_environments_accept_this_projects_previews_too(monkeypatch, environment):
    regex = default_regex(monkeypatch, environment)

    assert regex == PREVIEW_ORIGIN_REGEX
    for origin in (PRODUCTION, *PREVIEWS):
        assert re.fullmatch(regex, origin), origin
    for origin in OTHERS:
        assert not re.fullmatch(regex, origin), origin


def test_the_pattern_setting_still_replaces_the_default_in_production(monkeypatch):
    monkeypatch.setenv("MODAL_ENVIRONMENT", "main")
    monkeypatch.setenv("CORS_ALLOW_ORIGIN_REGEX", PREVIEW_ORIGIN_REGEX)

    assert Settings().cors_allow_origin_regex == PREVIEW_ORIGIN_REGEX
