"""POST /calculate gives exactly what policyengine gives."""

import copy

import pytest

from policyengine_backend.examples import EXAMPLE_HOUSEHOLD, EXAMPLE_POLICY
from policyengine_backend.testing import assert_same_values


def test_example_household_matches_policyengine(client, reference):
    response = client.post("/calculate", json={"household": EXAMPLE_HOUSEHOLD})

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["message"] is None
    assert_same_values(body["result"], reference(EXAMPLE_HOUSEHOLD))


def test_policy_changes_results_and_matches_policyengine(client, reference):
    baseline = client.post("/calculate", json={"household": EXAMPLE_HOUSEHOLD})
    reformed = client.post(
        "/calculate", json={"household": EXAMPLE_HOUSEHOLD, "policy": EXAMPLE_POLICY}
    )

    assert reformed.status_code == 200
    assert reformed.json()["result"] != baseline.json()["result"]
    assert_same_values(
        reformed.json()["result"], reference(EXAMPLE_HOUSEHOLD, EXAMPLE_POLICY)
    )


def test_axes_give_one_value_per_point(client, reference):
    household = copy.deepcopy(EXAMPLE_HOUSEHOLD)
    household["axes"] = [
        [
            {
                "name": "employment_income",
                "count": 7,
                "min": 0,
                "max": 90_000,
                "period": "2025",
            }
        ]
    ]

    response = client.post("/calculate", json={"household": household})

    assert response.status_code == 200
    result = response.json()["result"]
    assert_same_values(result, reference(household))
    computed = [
        values
        for group in result.values()
        if isinstance(group, dict)
        for member in group.values()
        for periods in member.values()
        if isinstance(periods, dict)
        for values in periods.values()
        if isinstance(values, list)
    ]
    assert computed and all(len(values) == 7 for values in computed)


def test_baseline_is_unchanged_after_a_policy(client):
    before = client.post("/calculate", json={"household": EXAMPLE_HOUSEHOLD}).json()
    client.post(
        "/calculate", json={"household": EXAMPLE_HOUSEHOLD, "policy": EXAMPLE_POLICY}
    )
    # A different household, so the result cache cannot answer for the engine.
    household = copy.deepcopy(EXAMPLE_HOUSEHOLD)
    household["people"]["parent"]["age"]["2025"] = 36
    after_policy = client.post("/calculate", json={"household": household}).json()
    household["people"]["parent"]["age"]["2025"] = 35
    after = client.post("/calculate", json={"household": household}).json()

    assert after == before
    assert after_policy["status"] == "ok"


@pytest.mark.parametrize("policy", [None, {}])
def test_empty_policy_is_the_baseline(client, policy):
    plain = client.post("/calculate", json={"household": EXAMPLE_HOUSEHOLD}).json()
    with_empty = client.post(
        "/calculate", json={"household": EXAMPLE_HOUSEHOLD, "policy": policy}
    ).json()

    assert with_empty == plain
