"""POST /compare: current law, the policy, and the change between them."""

import copy

import pytest

from policyengine_backend._model.comparison import difference
from policyengine_backend._model.household import requested_values
from policyengine_backend.examples import EXAMPLE_HOUSEHOLD, EXAMPLE_POLICY
from policyengine_backend.testing import assert_same_values

# An input the model also computes, whose values are names, not numbers.
ENUM_VARIABLE = "{{ 'state_code' if cookiecutter.country == 'us' else 'region' }}"


def calculated(client, household: dict, policy: dict | None = None) -> dict:
    response = client.post(
        "/calculate", json={"household": household, "policy": policy}
    )
    assert response.status_code == 200, response.text
    return response.json()["result"]


def assert_change(change: dict, household: dict, baseline: dict, reform: dict):
    """``change`` is the household with reform minus baseline in place of
    each requested value (to the last decimal the answers show)."""
    assert change.keys() == household.keys()
    unchanged = copy.deepcopy(change)
    for group, member, variable, period in requested_values(household):
        before = baseline[group][member][variable][period]
        after = reform[group][member][variable][period]
        value = change[group][member][variable][period]
        if isinstance(before, list):
            assert value == pytest.approx(
                [a - b for a, b in zip(after, before, strict=True)], abs=1e-6
            )
        else:
            assert value == pytest.approx(after - before, abs=1e-6)
        unchanged[group][member][variable][period] = None
    # Everything else is the household as sent.
    assert unchanged == household


def test_change_is_the_difference_of_two_calculations(client, reference):
    response = client.post(
        "/compare", json={"household": EXAMPLE_HOUSEHOLD, "policy": EXAMPLE_POLICY}
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok" and body["message"] is None
    result = body["result"]
    baseline = calculated(client, EXAMPLE_HOUSEHOLD)
    reform = calculated(client, EXAMPLE_HOUSEHOLD, EXAMPLE_POLICY)
    assert result["baseline"] == baseline and result["reform"] == reform
    assert_same_values(result["baseline"], reference(EXAMPLE_HOUSEHOLD))
    assert_same_values(result["reform"], reference(EXAMPLE_HOUSEHOLD, EXAMPLE_POLICY))
    assert_change(result["change"], EXAMPLE_HOUSEHOLD, baseline, reform)
    # The example policy changes something, or this test would prove little.
    changed = [
        result["change"][group][member][variable][period]
        for group, member, variable, period in requested_values(EXAMPLE_HOUSEHOLD)
    ]
    assert any(value != 0 for value in changed)


def test_axes_subtract_point_by_point(client):
    household = copy.deepcopy(EXAMPLE_HOUSEHOLD)
    household["axes"] = [
        [
            {
                "name": "employment_income",
                "count": 9,
                "min": 0,
                "max": 80_000,
                "period": "2025",
            }
        ]
    ]

    response = client.post(
        "/compare", json={"household": household, "policy": EXAMPLE_POLICY}
    )

    assert response.status_code == 200, response.text
    result = response.json()["result"]
    baseline = calculated(client, household)
    reform = calculated(client, household, EXAMPLE_POLICY)
    assert_change(result["change"], household, baseline, reform)
    group, member, variable, period = next(iter(requested_values(household)))
    assert len(result["change"][group][member][variable][period]) == 9


def test_values_that_are_not_numbers_have_no_change(client):
    household = copy.deepcopy(EXAMPLE_HOUSEHOLD)
    household["households"]["household"][ENUM_VARIABLE] = {"2025": None}

    response = client.post(
        "/compare", json={"household": household, "policy": EXAMPLE_POLICY}
    )

    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert isinstance(
        result["baseline"]["households"]["household"][ENUM_VARIABLE]["2025"], str
    )
    assert result["change"]["households"]["household"][ENUM_VARIABLE]["2025"] is None


@pytest.mark.parametrize(
    ("before", "after", "change"),
    [
        (1000, 1500.5, 500.5),
        (1000, 1250, 250),
        # As the answers show them, not as binary floating point subtracts.
        (3486.0, 3834.6, 348.6),
        (0.1, 0.3, 0.2),
        ([0, 1.5], [2, 1.5], [2, 0.0]),
        (True, False, None),  # a yes/no is not an amount
        ("SINGLE", "JOINT", None),
        ("Infinity", "Infinity", None),
        (None, 3, None),
    ],
)
def test_difference(before, after, change):
    assert difference(before, after) == change


def test_compare_needs_a_policy(client):
    response = client.post("/compare", json={"household": EXAMPLE_HOUSEHOLD})

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["policy"]


def test_compare_refuses_what_calculate_refuses(client):
    policy = {"gov.no_such.parameter": {"2025-01-01.2100-12-31": 1}}
    body = {"household": EXAMPLE_HOUSEHOLD, "policy": policy}

    compared = client.post("/compare", json=body)
    single = client.post("/calculate", json=body)

    assert compared.status_code == single.status_code == 400
    assert compared.json() == single.json()
    assert compared.json()["errors"][0]["loc"] == ["policy", "gov.no_such.parameter"]
