"""POST /earnings-chart (api/routes/earnings_chart.py): answers equal to
policyengine's own Simulation with the same axes, as a request and as a
job. Copy this file to test an endpoint of your own."""

import copy

import pytest

from policyengine_backend.examples import EXAMPLE_HOUSEHOLD, EXAMPLE_POLICY
from policyengine_backend.testing import assert_same_values, finished

POLICIES = {
    "current law": None,
    "a parametric policy": EXAMPLE_POLICY,
{%- if cookiecutter.country == "us" %}
    # Switches on a structural reform (new formulas), not only new values.
    "a structural policy": {
        "gov.contrib.ctc.oldest_child_supplement.in_effect": {
            "2025-01-01.2100-12-31": True
        }
    },
{%- endif %}
}


def chart_request(policy=None, **fields) -> dict:
    request = {"household": EXAMPLE_HOUSEHOLD, "year": 2025, "max": 80_000, "count": 9}
    return {**request, **({"policy": policy} if policy else {}), **fields}


def expected_chart(country_package, request: dict) -> dict:
    """The chart from policyengine alone: its Simulation, its axes."""
    from policyengine_core.reforms import Reform

    situation = {
        group: {
            member: {
                name: {p: v for p, v in periods.items() if v is not None}
                if isinstance(periods, dict)
                else periods
                for name, periods in variables.items()
            }
            for member, variables in members.items()
        }
        for group, members in copy.deepcopy(request["household"]).items()
    }
    people = list(situation["people"])
    count, low, high = request["count"], request.get("min", 0), request["max"]
    situation["axes"] = [
        [
            {
                "name": "employment_income",
                "count": count,
                "min": low,
                "max": high,
                "period": str(request["year"]),
                "index": people.index(request.get("earner") or people[0]),
            }
        ]
    ]
    earnings = [low + i * (high - low) / (count - 1) for i in range(count)]

    def curve(policy):
        reform = Reform.from_dict(policy, country_id="{{ cookiecutter.country }}") if policy else None
        simulation = country_package.Simulation(situation=situation, reform=reform)
        values = simulation.calculate("household_net_income", request["year"])
        net = values.reshape(count, -1)[:, 0].tolist()
        rates = [
            1 - (net[i + 1] - net[i]) / (earnings[i + 1] - earnings[i])
            for i in range(count - 1)
        ]
        return {"net_income": net, "marginal_tax_rate": rates}

    policy = request.get("policy")
    return {
        "earnings": earnings,
        "baseline": curve(None),
        "reform": curve(policy) if policy else None,
    }


@pytest.mark.parametrize("policy", POLICIES.values(), ids=POLICIES.keys())
def test_the_chart_is_policyengines_own(client, country_package, policy):
    request = chart_request(policy)
    response = client.post("/earnings-chart", json=request)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok" and body["message"] is None
    assert_same_values(body["result"], expected_chart(country_package, request))


def test_another_earner_and_range(client, country_package):
    request = chart_request(earner="parent", min=10_000, max=30_000, count=5)
    response = client.post("/earnings-chart", json=request)

    assert response.status_code == 200, response.text
    assert_same_values(
        response.json()["result"], expected_chart(country_package, request)
    )


def test_as_a_job_the_answer_is_the_endpoints(client):
    request = chart_request(EXAMPLE_POLICY, count=7)
    direct = client.post("/earnings-chart", json=request).json()

    submitted = client.post("/jobs/earnings-chart", json=request)
    assert submitted.status_code == 202, submitted.text
    assert finished(client, submitted.json()["job_id"]) == direct


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"earner": "nobody"}, ["earner"]),
        ({"count": 1}, ["count"]),
        ({"year": 2001}, ["year"]),
        ({"max": -5}, []),
        (
            {"policy": {"gov.no.such.parameter": {"2025-01-01.2100-12-31": 1}}},
            ["policy"],
        ),
    ],
)
def test_bad_requests_name_the_field(client, fields, where):
    response = client.post("/earnings-chart", json=chart_request(**fields))

    assert 400 <= response.status_code < 500, response.text
    body = response.json()
    assert body["status"] == "error"
    assert body["errors"] and body["errors"][0]["loc"][: len(where)] == where
