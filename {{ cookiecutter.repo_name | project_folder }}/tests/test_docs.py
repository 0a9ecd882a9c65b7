"""/docs: every endpoint is there, with examples that work when sent."""

import pytest

from policyengine_backend.household import requested_values
from tests.conftest import finished

ENDPOINTS = [
    "/health",
    "/calculate",
    "/compare",
    "/jobs",
    "/jobs/{job_id}",
    "/parameters/{name}",
    "/variables/{name}",
]


@pytest.fixture(scope="module")
def schema(client) -> dict:
    return client.get("/openapi.json").json()


def test_docs_are_served(client, schema):
    assert client.get("/docs").status_code == 200
    assert sorted(schema["paths"]) == sorted(ENDPOINTS)


def filled(result: dict, asked: list) -> bool:
    return all(
        result[group][member][variable][period] is not None
        for group, member, variable, period in asked
    )


@pytest.mark.parametrize(
    ("path", "model"),
    [
        ("/calculate", "CalculateRequest"),
        ("/jobs", "CalculateRequest"),
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
        if path == "/jobs":
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
