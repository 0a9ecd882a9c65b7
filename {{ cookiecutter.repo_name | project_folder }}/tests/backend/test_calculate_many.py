"""POST /calculate-many: many households in one vectorised calculation,
each answered exactly as policyengine answers it alone.

Every household here reuses the example's names (``parent``, ``child``,
``household``...), so a batch that let names collide, or that answered one
household with another's rows, would fail against the reference.
"""

import asyncio
import copy

import pytest

from policyengine_backend._engine.engine import request_key
from policyengine_backend._engine.many import check_many_limits
from policyengine_backend._errors import Problem
from policyengine_backend._model.policy import policy_key
from policyengine_backend._settings import COUNTRY, Settings
from policyengine_backend.examples import EXAMPLE_HOUSEHOLD
from policyengine_backend.testing import assert_same_values, finished

# Where a household is: a variable of the households group, and its values.
PLACE, PLACES = (
    ("state_name", ("TX", "CA", "NY", "WV"))
    if COUNTRY == "us"
    else ("region", ("LONDON", "WALES", "SCOTLAND", "NORTH_EAST"))
)


def household(earnings: int, place: int, children: int = 1) -> dict:
    """The example household at other earnings, in another place, with
    ``children`` children (0 or 1): its names are the example's."""
    made = copy.deepcopy(EXAMPLE_HOUSEHOLD)
    parent, *others = made["people"]
    made["people"][parent]["employment_income"] = {"2025": earnings}
    home = next(iter(made["households"].values()))
    home[PLACE] = {"2025": PLACES[place]}
    if not children:
        for child in others:
            del made["people"][child]
        for plural, groups in made.items():
            if plural == "people":
                continue
            for name in list(groups):
                members = [m for m in groups[name]["members"] if m not in others]
                if members:
                    groups[name]["members"] = members
                else:
                    del groups[name]  # a group of only the child
    return made


def many(client, households: dict, policy: dict | None = None):
    return client.post(
        "/calculate-many", json={"households": households, "policy": policy}
    )


def test_each_household_equals_its_own_simulation(client, reference):
    households = {
        "low, first place": household(12_000, 0),
        "high, second place": household(85_000, 1),
        "no children": household(30_000, 2, children=0),
        "you": household(30_000, 3),  # a key that is also a person's name
    }

    response = many(client, households)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok" and list(body["result"]) == list(households)
    for name, sent in households.items():
        assert_same_values(body["result"][name], reference(sent), f"result.{name}")
    # Not one household's values for another: they differ, as their inputs do.
    incomes = {
        name: next(iter(result["households"].values()))["household_net_income"]
        for name, result in body["result"].items()
    }
    assert len({value["2025"] for value in incomes.values()}) == len(households)


# A policy that switches on a structural reform in the US (policyengine-us
# swaps in its own CTC formula); two parameters at once in the UK.
STRUCTURAL = (
    {
        "gov.contrib.ctc.oldest_child_supplement.in_effect": {
            "2020-01-01.2100-12-31": True
        },
        "gov.contrib.ctc.oldest_child_supplement.amount": {
            "2020-01-01.2100-12-31": 1000
        },
    }
    if COUNTRY == "us"
    else {
        "gov.dwp.universal_credit.means_test.reduction_rate": {
            "2025-01-01.2100-12-31": 0.5
        },
        "gov.hmrc.income_tax.rates.uk[0].rate": {"2025-01-01.2100-12-31": 0.22},
    }
)


@pytest.mark.ci
def test_mixed_households_under_a_structural_policy(client, reference):
    """A dozen households of mixed places, earnings and sizes, every one
    with the same names, under a policy: each equals its own Simulation
    (policyengine's own, a full system build each: hence ci)."""
    households = {
        f"{i}": household(9_000 * i, i % len(PLACES), children=i % 3 != 0)
        for i in range(12)
    }

    response = many(client, households, STRUCTURAL)

    assert response.status_code == 200, response.text
    for name, sent in households.items():
        assert_same_values(
            response.json()["result"][name], reference(sent, STRUCTURAL), name
        )


def test_each_household_is_cached_as_its_own_calculate(client, engine, monkeypatch):
    first, second = household(41_000, 0), household(52_000, 1)
    single = client.post("/calculate", json={"household": first})
    assert single.status_code == 200
    batch = many(client, {"a": first, "b": second})
    assert batch.status_code == 200
    assert batch.json()["result"]["a"] == single.json()["result"]
    key = request_key("calculate", policy_key(None), {"household": second})
    assert engine.answers.cache.get(key) is not None  # the batch filled it

    async def no_calculation(*args, **kwargs):
        raise AssertionError("every household was cached: nothing to calculate")

    monkeypatch.setattr(engine, "_calculate", no_calculation)
    again = many(client, {"b again": second, "a again": first})
    assert again.status_code == 200
    assert again.json()["result"] == {
        "b again": batch.json()["result"]["b"],
        "a again": single.json()["result"],
    }
    alone = client.post("/calculate", json={"household": second})
    assert alone.json()["result"] == batch.json()["result"]["b"]


def test_a_household_the_model_refuses_is_named(client):
    bad = household(20_000, 0)
    parent = next(iter(bad["people"]))
    bad["people"][parent]["not_a_variable"] = {"2025": 1}

    response = many(client, {"fine": household(20_000, 1), "bad one": bad})

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert [error["loc"] for error in errors] == [
        ["households", "bad one", "people", parent, "not_a_variable"]
    ]


def test_households_merging_cannot_carry_are_named_together(client):
    """Found in the worker, by the batch: a person in two groups of one
    entity, and axes in a batch of more than one household."""
    twice = household(20_000, 0)
    parent = next(iter(twice["people"]))
    twice["households"]["second home"] = {"members": [parent]}
    swept = household(20_000, 1)
    swept["axes"] = [
        [{"name": "employment_income", "count": 3, "min": 0, "max": 9, "period": 2025}]
    ]

    response = many(
        client, {"fine": household(21_000, 2), "twice": twice, "swept": swept}
    )

    assert response.status_code == 400, response.text
    located = {tuple(error["loc"][:3]) for error in response.json()["errors"]}
    assert located == {
        ("households", "twice", "households"),
        ("households", "swept", "axes"),
    }


def test_a_job_answers_as_the_endpoint_does(client):
    households = {"x": household(33_000, 0), "y": household(44_000, 3)}
    direct = many(client, households)

    submitted = client.post("/jobs/calculate-many", json={"households": households})

    assert submitted.status_code == 202
    answer = finished(client, submitted.json()["job_id"])
    assert answer["result"] == direct.json()["result"]
    bad = client.post(
        "/jobs/calculate-many",
        json={"households": {"x": {"people": {"p": {"age": {"2025": "old"}}}}}},
    )
    assert bad.status_code == 400  # refused at submission
    assert bad.json()["errors"][0]["loc"][:3] == ["households", "x", "people"]


def test_limits_count_the_whole_batch():
    settings = Settings(max_households=2, max_batch_people=3, max_values=10)
    households = {name: household(1_000, 0) for name in "abc"}

    errors = check_many_limits(households, None, settings)

    messages = " ".join(error["msg"] for error in errors)
    assert {tuple(error["loc"]) for error in errors} == {("households",)}
    for variable in ("MAX_HOUSEHOLDS", "MAX_BATCH_PEOPLE", "MAX_VALUES"):
        assert variable in messages
    one = check_many_limits({"a": households["a"]}, None, Settings(max_people=1))
    assert [error["loc"] for error in one] == [["households", "a", "people"]]


def test_a_batch_over_a_limit_is_refused_before_the_model(make_engine):
    engine = make_engine(max_households=1)
    batch = {"a": household(1, 0), "b": household(2, 1)}
    with pytest.raises(Problem) as refused:
        asyncio.run(engine.calculate_many(batch, None))
    assert refused.value.status == 422
    assert "MAX_HOUSEHOLDS" in str(refused.value)


def test_worker_functions_get_results_by_their_own_names(engine, reference):
    """``simulations.many``, as a worker function uses it."""
    from policyengine_backend._model.functions import Simulations
    from policyengine_backend._model.household import json_value

    households = {"left": household(15_000, 0), "right": household(70_000, 2)}
    batch = Simulations(engine.systems).many(households)

    filled = batch.fill()
    for name, sent in households.items():
        assert_same_values(filled[name], reference(sent))
    values = batch.calculate("household_net_income", "2025")
    assert list(values) == list(households)
    for name, result in filled.items():
        home = next(iter(result["households"].values()))
        answer = home["household_net_income"]["2025"]
        assert [json_value(value) for value in values[name]] == [answer]
