"""Caches never give one policy's answer to another.

policyengine applies a parameter's entries in the order given, so where two
entries overlap the later one wins: the same entries in the other order are
another policy. And one parameter can be spelled two ways (``[0]`` and
``[00]``). Each answer here is checked against a direct ``Simulation``.
"""

import pytest

from policyengine_backend._model.policy import canonical_path, policy_key
from policyengine_backend.testing import assert_same_values
{% if cookiecutter.country == "us" %}
HOUSEHOLD = {
    "people": {"you": {"age": {"2026": 40}, "employment_income": {"2026": 40_000}}},
    "tax_units": {"unit": {"members": ["you"], "income_tax": {"2026": None}}},
    "households": {"home": {"members": ["you"], "state_name": {"2026": "CA"}}},
}
PARAMETER = "gov.irs.deductions.standard.amount.SINGLE"
OVERLAPPING = {"2026-01-01.2100-12-31": 18_000, "2026-01-01.2026-12-31": 25_000}
BRACKET = "gov.irs.credits.ctc.amount.base[{}].amount"
{%- else %}
HOUSEHOLD = {
    "people": {
        "you": {
            "age": {"2026": 40},
            "employment_income": {"2026": 40_000},
            "income_tax": {"2026": None},
        }
    },
    "benunits": {"unit": {"members": ["you"]}},
    "households": {"home": {"members": ["you"]}},
}
PARAMETER = "gov.hmrc.income_tax.allowances.personal_allowance.amount"
OVERLAPPING = {"2026-01-01.2100-12-31": 10_000, "2026-01-01.2026-12-31": 15_000}
BRACKET = "gov.hmrc.income_tax.rates.uk[{}].rate"
{%- endif %}


def post(client, policy):
    response = client.post(
        "/calculate", json={"household": HOUSEHOLD, "policy": policy}
    )
    assert response.status_code == 200, response.text
    return response.json()["result"]


# Two full policyengine builds: in `make test-ci` (what CI runs).
@pytest.mark.ci
def test_entry_order_is_part_of_the_policy(client, reference):
    forward = {PARAMETER: OVERLAPPING}
    backward = {PARAMETER: dict(reversed(list(OVERLAPPING.items())))}

    answers = [post(client, forward), post(client, backward)]

    assert answers[0] != answers[1]  # the overlap decides the answer
    assert_same_values(answers[0], reference(HOUSEHOLD, forward))
    assert_same_values(answers[1], reference(HOUSEHOLD, backward))
    # And again, now from the caches.
    assert [post(client, forward), post(client, backward)] == answers


# Two full policyengine builds: in `make test-ci` (what CI runs).
@pytest.mark.ci
def test_two_spellings_of_one_parameter_give_its_answer(client, reference):
    period = "2026-01-01.2100-12-31"
    plain = {BRACKET.format("0"): {period: 0.3}}
    padded = {BRACKET.format("00"): {period: 0.3}}

    assert_same_values(post(client, plain), reference(HOUSEHOLD, plain))
    assert_same_values(post(client, padded), reference(HOUSEHOLD, padded))
    assert policy_key(plain) == policy_key(padded)


def test_one_parameter_named_twice_is_refused(client):
    period = "2026-01-01.2100-12-31"
    policy = {BRACKET.format("0"): {period: 0.3}, BRACKET.format("00"): {period: 0.4}}

    response = client.post(
        "/calculate", json={"household": HOUSEHOLD, "policy": policy}
    )

    assert response.status_code == 400
    assert "same parameter" in response.json()["message"]


def test_keys_keep_entry_order_and_ignore_parameter_order():
    a, b = {"2026-01-01.2026-12-31": 1}, {"2027-01-01.2027-12-31": 2}
    assert policy_key({"x": a | b}) != policy_key({"x": b | a})
    assert policy_key({"x": a, "y": b}) == policy_key({"y": b, "x": a})
    assert policy_key({"x": {"2026-01-01.2026-12-31": 1}}) != policy_key(
        {"x": {"2026-01-01.2026-12-31": 1.0}}
    )


@pytest.mark.parametrize(
    ("path", "canonical"),
    [
        ("a.b[00].c", "a.b[0].c"),
        ("a.b[10]", "a.b[10]"),
        ("a.SINGLE.1", "a.SINGLE.1"),
        ("a.I-BF/FF-B.c", "a.I-BF/FF-B.c"),
    ],
)
def test_canonical_paths(path, canonical):
    assert canonical_path(path) == canonical


@pytest.mark.parametrize("path", ["a.b[-1]", "a..b", "a.b[x]", "a.b]0[", ""])
def test_paths_outside_the_syntax_are_refused(path):
    with pytest.raises(ValueError):
        canonical_path(path)
