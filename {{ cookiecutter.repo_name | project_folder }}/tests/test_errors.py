"""Bad requests get a 4xx JSON error that names the field, never a 500."""

import copy

import pytest

from api.examples import EXAMPLE_HOUSEHOLD, EXAMPLE_POLICY
from api.settings import get_settings

PERSON = next(iter(EXAMPLE_HOUSEHOLD["people"]))


def with_change(change) -> dict:
    household = copy.deepcopy(EXAMPLE_HOUSEHOLD)
    change(household)
    return household


def post(client, household, policy=None):
    return client.post("/calculate", json={"household": household, "policy": policy})


def assert_error(response, status: int, *fragments: str):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "error" and body["result"] is None
    text = (
        body["message"]
        + " "
        + " ".join(
            ".".join(map(str, e["loc"])) + " " + e["msg"] for e in body["errors"]
        )
    )
    for fragment in fragments:
        assert fragment in text, text


def test_malformed_json(client):
    response = client.post(
        "/calculate",
        content=b'{"household": ',
        headers={"Content-Type": "application/json"},
    )
    assert_error(response, 422, "body")


def test_missing_household(client):
    assert_error(client.post("/calculate", json={}), 422, "household")


def test_unknown_entity_group(client):
    household = with_change(lambda h: h.update(pets={"rex": {}}))
    assert_error(post(client, household), 422, "pets")


def test_unknown_variable(client):
    household = with_change(
        lambda h: h["people"][PERSON].update(not_a_variable={"2025": 1})
    )
    assert_error(
        post(client, household),
        400,
        f"people.{PERSON}.not_a_variable",
        "unknown variable",
    )


def test_variable_on_the_wrong_entity(client):
    household = with_change(
        lambda h: h["people"][PERSON].update(household_net_income={"2025": None})
    )
    assert_error(post(client, household), 400, "household_net_income", "not people")


def test_member_who_is_not_a_person(client):
    def add_ghost(household):
        group = next(
            g
            for g in household.values()
            if isinstance(g, dict) and g is not household["people"]
        )
        next(iter(group.values()))["members"].append("ghost")

    assert_error(
        post(client, with_change(add_ghost)), 400, "'ghost' is not in household.people"
    )


@pytest.mark.parametrize(
    ("value", "fragment"),
    [("forty", "not a valid"), (True, "not a valid"), ([1, 2], "age")],
)
def test_value_of_the_wrong_kind(client, value, fragment):
    household = with_change(lambda h: h["people"][PERSON].update(age={"2025": value}))
    response = post(client, household)
    assert response.status_code in (400, 422), response.text
    assert fragment in response.text


@pytest.mark.parametrize("period", ["1850", "3000", "next-year", "2025-13"])
def test_bad_or_out_of_range_period(client, period):
    household = with_change(lambda h: h["people"][PERSON].update(age={period: 40}))
    assert_error(post(client, household), 400, period)


@pytest.mark.parametrize(
    ("policy", "fragment"),
    [
        ({"gov.not.a.parameter": {"2025-01-01.2100-12-31": 1}}, "unknown parameter"),
        ({"gov": {"2025-01-01.2100-12-31": 1}}, "group of parameters"),
        ({next(iter(EXAMPLE_POLICY)): {"2025": 1}}, "YYYY-MM-DD.YYYY-MM-DD"),
        (
            {next(iter(EXAMPLE_POLICY)): {"2026-01-01.2025-01-01": 1}},
            "start is after stop",
        ),
        ({next(iter(EXAMPLE_POLICY)): {"1800-01-01.2100-12-31": 1}}, "dates must fall"),
        (
            {next(iter(EXAMPLE_POLICY)): {"2025-01-01.2100-12-31": True}},
            "expected a number",
        ),
        ({next(iter(EXAMPLE_POLICY)): {}}, "at least one"),
    ],
)
def test_bad_policy(client, policy, fragment):
    assert_error(post(client, EXAMPLE_HOUSEHOLD, policy), 400, "policy", fragment)


def test_policy_value_of_the_wrong_type(client):
    policy = {next(iter(EXAMPLE_POLICY)): {"2025-01-01.2100-12-31": "lots"}}
    assert_error(post(client, EXAMPLE_HOUSEHOLD, policy), 422, "policy")


def test_too_many_people(client):
    limit = get_settings().max_people

    def crowd(household):
        for i in range(limit + 1):
            household["people"][f"extra_{i}"] = {}

    assert_error(post(client, with_change(crowd)), 422, "MAX_PEOPLE", str(limit))


def test_too_many_axis_points(client):
    limit = get_settings().max_axis_points
    axes = [
        [
            {
                "name": "employment_income",
                "count": limit + 1,
                "min": 0,
                "max": 1,
                "period": "2025",
            }
        ]
    ]
    assert_error(
        post(client, with_change(lambda h: h.update(axes=axes))), 422, "MAX_AXIS_POINTS"
    )


def test_body_too_large(client):
    size = get_settings().max_body_bytes + 1
    response = client.post(
        "/calculate", content=b" " * size, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 413, "MAX_BODY_BYTES")


def test_unknown_axis_variable(client):
    axes = [
        [{"name": "not_a_variable", "count": 3, "min": 0, "max": 1, "period": "2025"}]
    ]
    assert_error(
        post(client, with_change(lambda h: h.update(axes=axes))),
        400,
        "axes",
        "unknown variable",
    )
