"""/docs: every endpoint is there, with examples that work when sent."""

import re

import pytest

from policyengine_backend._model.household import requested_values
from policyengine_backend.testing import finished

# The backend's own endpoints; the project's routers add theirs.
BUILT_IN = {
    "/health",
    "/calculate",
    "/compare",
    "/jobs/calculate",
    "/jobs/compare",
    "/jobs/{job_id}",
    "/parameters/{name}",
    "/variables/{name}",
}


@pytest.fixture(scope="module")
def schema(client) -> dict:
    return client.get("/openapi.json").json()


def test_docs_are_served_from_the_apps_own_files(client, schema):
    page = client.get("/docs")
    assert page.status_code == 200
    assert BUILT_IN <= set(schema["paths"])
    # Nothing from elsewhere: every file the page loads is the app's own,
    # and its policy lets nothing else load (the browser test renders it).
    assert "default-src 'none'" in page.headers["content-security-policy"]
    loaded = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert loaded and all(url.startswith("/docs/") for url in loaded)
    for url in loaded:
        assert client.get(url).status_code == 200, url
    assert "<script>" not in page.text  # no inline script: the CSP forbids it
    assert client.get("/docs/assets/index.html").status_code == 404


def test_every_route_of_the_projects_routers_is_documented(schema):
    from api.routes import ROUTERS

    for router in ROUTERS:
        for route in router.routes:
            assert route.path in schema["paths"], route.path
            for method in route.methods:
                operation = schema["paths"][route.path][method.lower()]
                assert operation.get("description"), (route.path, "has no docstring")


def test_every_request_body_example_works_when_sent(client, schema):
    """What "Try it out" sends, for every endpoint that shows examples."""
    sent = []
    for path, operations in schema["paths"].items():
        content = operations.get("post", {}).get("requestBody", {}).get("content", {})
        for example in content.get("application/json", {}).get("examples", {}).values():
            response = client.post(path, json=example["value"])
            assert response.status_code in (200, 202), (path, response.text)
            sent.append(path)
    assert "/earnings-chart" in sent


def filled(result: dict, asked: list) -> bool:
    return all(
        result[group][member][variable][period] is not None
        for group, member, variable, period in asked
    )


@pytest.mark.parametrize(
    ("path", "model"),
    [
        ("/calculate", "CalculateRequest"),
        ("/jobs/calculate", "CalculateRequest"),
        ("/compare", "CompareRequest"),
    ],
)
def test_body_examples_ask_for_values_and_get_them(client, schema, path, model):
    """The examples keep their nulls (FastAPI would drop them), so "Try it
    out" sends a household that asks for values, and gets them."""
    operation = schema["paths"][path]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith(f"/{model}")
    examples = schema["components"]["schemas"][model]["examples"]
    assert examples

    for example in examples:
        asked = list(requested_values(example["household"]))
        assert asked, example
        response = client.post(path, json=example)
        assert response.status_code in (200, 202), response.text
        answer = response.json()
        if path.startswith("/jobs/"):
            answer = finished(client, answer["job_id"])
        result = answer["result"]
        if path == "/compare":
            assert filled(result["baseline"], asked) and filled(result["reform"], asked)
        else:
            assert filled(result, asked)


def test_path_examples_work(client, schema):
    sent = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                for example in parameter.get("examples", {}).values():
                    url = path.replace("{" + parameter["name"] + "}", example["value"])
                    response = client.request(method, url)
                    assert response.status_code == 200, (url, response.text)
                    assert response.json()["result"]["name"] == example["value"]
                    sent.append(url)
    # The parameter, the group of parameters and the variable.
    assert len(sent) == 3
