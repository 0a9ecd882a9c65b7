"""GET /health reports readiness and the model's version."""

import importlib.metadata

from fastapi.testclient import TestClient

from policyengine_backend._engine.engine import Engine
from policyengine_backend._settings import COUNTRY, COUNTRY_PACKAGE, get_settings


def test_health_is_ok_once_warm(client):
    response = client.get("/health")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "message": None,
        "country": COUNTRY,
        "package": COUNTRY_PACKAGE,
        "version": importlib.metadata.version(COUNTRY_PACKAGE),
    }


def test_health_says_starting_until_warm(monkeypatch):
    from api.routes import ROUTERS
    from policyengine_backend import create_app

    cold = Engine(get_settings())
    monkeypatch.setattr(cold, "start_warm_up", lambda: None)  # never warm

    with TestClient(create_app("t", "d", ROUTERS, engine=cold)) as client:
        response = client.get("/health")

    assert response.status_code == 503
    assert response.json()["status"] == "starting"
