"""GET /parameters/{name} and GET /variables/{name}: what the model knows,
checked against policyengine's own system."""

import random
from datetime import date

import pytest
from policyengine_core.parameters import Parameter

from policyengine_backend._model.household import json_value
from policyengine_backend.examples import (
    EXAMPLE_PARAMETER,
    EXAMPLE_PARAMETER_GROUP,
    EXAMPLE_VARIABLE,
)

DATES = ["2020-01-01", "2025-06-30", "2026-01-01", "2031-12-31"]


def expected(value):
    """A parameter's value as JSON carries it."""
    if isinstance(value, list):
        return [expected(item) for item in value]
    return value if value is None or isinstance(value, str) else json_value(value)


def leaves(system, count: int, seed: int) -> list[str]:
    """A seeded sample of leaf parameters, brackets included."""
    names = sorted(
        parameter.name
        for parameter in system.parameters.get_descendants()
        if isinstance(parameter, Parameter)
    )
    return random.Random(seed).sample(names, count)


def test_a_parameters_value_is_policyengines(client, reference_system):
    names = [EXAMPLE_PARAMETER, *leaves(reference_system, 40, seed=13)]

    for name in names:
        for day in DATES:
            response = client.get(f"/parameters/{name}", params={"date": day})
            assert response.status_code == 200, (name, response.text)
            result = response.json()["result"]
            parameter = reference_system.parameters.get_child(name)
            assert result["name"] == name and result["date"] == day
            assert result["value"] == expected(parameter(day)), (name, day)
            assert result["label"] == parameter.metadata.get("label")
            assert result["unit"] == parameter.metadata.get("unit")
            assert result["description"] == parameter.description


def test_the_date_defaults_to_today(client, reference_system):
    result = client.get(f"/parameters/{EXAMPLE_PARAMETER}").json()["result"]

    today = date.today().isoformat()
    assert result["date"] == today
    assert result["value"] == reference_system.parameters.get_child(EXAMPLE_PARAMETER)(
        today
    )


def test_a_group_lists_its_children(client, reference_system):
    response = client.get(f"/parameters/{EXAMPLE_PARAMETER_GROUP}")

    assert response.status_code == 200, response.text
    result = response.json()["result"]
    node = reference_system.parameters.get_child(EXAMPLE_PARAMETER_GROUP)
    assert result["children"] == [
        f"{EXAMPLE_PARAMETER_GROUP}.{child}" for child in node.children
    ]
    assert "value" not in result or result["value"] is None
    # Every child can be asked for in turn.
    for child in result["children"]:
        assert client.get(f"/parameters/{child}").status_code == 200, child


def test_a_scale_lists_its_brackets(client, reference_system):
    scale_name = EXAMPLE_PARAMETER.rsplit("[", 1)[0]

    result = client.get(f"/parameters/{scale_name}").json()["result"]

    scale = reference_system.parameters.get_child(scale_name)
    assert result["children"] == [
        f"{scale_name}[{i}]" for i in range(len(scale.brackets))
    ]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("gov.no_such_parameter", "has no 'no_such_parameter'"),
        (EXAMPLE_PARAMETER.replace("[0]", "[99]"), "brackets"),
        ("gov..x", "not a parameter name"),
    ],
)
def test_an_unknown_parameter_is_a_404(client, name, reason):
    response = client.get(f"/parameters/{name}")

    assert response.status_code == 404
    body = response.json()
    assert body["status"] == "error" and reason in body["message"]
    assert body["errors"][0]["loc"] == ["path", "name"]


def test_a_bad_date_is_a_422_naming_it(client):
    response = client.get(
        f"/parameters/{EXAMPLE_PARAMETER}", params={"date": "2025-13-01"}
    )

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "date"]


def test_a_variable_is_described_as_policyengine_describes_it(client, reference_system):
    variable = reference_system.variables[EXAMPLE_VARIABLE]

    response = client.get(f"/variables/{EXAMPLE_VARIABLE}")

    assert response.status_code == 200, response.text
    assert response.json()["result"] == {
        "name": EXAMPLE_VARIABLE,
        "label": variable.label,
        "description": variable.documentation,
        "unit": variable.unit,
        "entity": variable.entity.key,
        "value_type": variable.value_type.__name__,
        "definition_period": str(variable.definition_period),
        "possible_values": None,
    }


def test_an_enum_lists_its_possible_values(client, reference_system):
    name = next(
        name
        for name, variable in sorted(reference_system.variables.items())
        if variable.value_type.__name__ == "Enum"
    )

    result = client.get(f"/variables/{name}").json()["result"]

    items = reference_system.variables[name].possible_values
    assert result["value_type"] == "Enum"
    assert result["possible_values"] == [
        {"value": item.name, "label": item.value} for item in items
    ]


def test_an_unknown_variable_is_a_404(client):
    response = client.get("/variables/no_such_variable")

    assert response.status_code == 404
    assert "unknown variable" in response.json()["message"]
    assert response.json()["errors"][0]["loc"] == ["path", "name"]


def test_answers_are_cached(client):
    metadata = client.app.state.metadata
    first = client.get(f"/variables/{EXAMPLE_VARIABLE}")
    cached = len(metadata.answers)
    again = client.get(f"/variables/{EXAMPLE_VARIABLE}")

    assert again.content == first.content
    assert len(metadata.answers) == cached
