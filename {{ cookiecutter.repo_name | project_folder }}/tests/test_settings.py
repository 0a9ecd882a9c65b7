"""Settings come from environment variables, with documented defaults."""

from api.settings import DEFAULT_ORIGINS, Settings


def test_defaults_when_nothing_is_set(monkeypatch):
    for name in ("MAX_PEOPLE", "CORS_ALLOW_ORIGINS", "CORS_ALLOW_ORIGIN_REGEX"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()

    assert settings.max_people == 50
    assert settings.cors_allow_origins == DEFAULT_ORIGINS
    assert "policy-engine" in settings.cors_allow_origin_regex


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
