"""Bad requests get a 4xx JSON error that names the field, never a 500."""

import asyncio
import copy
import json

import pytest

from policyengine_backend._settings import get_settings
from policyengine_backend.examples import EXAMPLE_HOUSEHOLD, EXAMPLE_POLICY

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


# --- Non-finite, out-of-range and ambiguous values: refused, never changed.


def post_raw(client, text: str):
    return client.post(
        "/calculate", content=text, headers={"Content-Type": "application/json"}
    )


def household_json(value_text: str, variable: str = "age") -> str:
    """The example household as JSON text with one input set to ``value_text``
    (JSON text, so that NaN, Infinity and huge numbers arrive as sent)."""
    household = with_change(
        lambda h: h["people"][PERSON].update({variable: {"2025": 123456789}})
    )
    return json.dumps({"household": household}).replace("123456789", value_text)


# A person's input that the model stores as a whole number.
{%- if cookiecutter.country == "us" %}
WHOLE_NUMBER_VARIABLE = "current_pregnancies"
{%- else %}
WHOLE_NUMBER_VARIABLE = "sic_industry_division"
{%- endif %}


@pytest.mark.parametrize(
    "value", ["NaN", "Infinity", "-Infinity", "1e400", "1" + "0" * 400]
)
def test_non_finite_or_huge_inputs_are_refused(client, value):
    response = post_raw(client, household_json(value))
    assert_error(response, 400, f"people.{PERSON}.age.2025")
    assert len(response.text) < 2_000  # the message does not echo a huge number


def test_a_whole_number_variable_refuses_a_fraction(client):
    response = post_raw(client, household_json("1.5", WHOLE_NUMBER_VARIABLE))
    assert_error(response, 400, WHOLE_NUMBER_VARIABLE, "not a whole number")


@pytest.mark.parametrize("bound", ["min", "max"])
@pytest.mark.parametrize("value", ["NaN", "Infinity"])
def test_non_finite_axis_bounds_are_refused(client, bound, value):
    axis = {
        "name": "employment_income",
        "count": 3,
        "min": 0,
        "max": 1,
        "period": "2025",
    }
    text = json.dumps(
        {"household": {**EXAMPLE_HOUSEHOLD, "axes": [[{**axis, bound: 7.25}]]}}
    )
    response = post_raw(client, text.replace("7.25", value))
    assert_error(response, 422, "axes", bound)


def test_an_axis_with_a_null_period_is_refused(client):
    axes = [
        [{"name": "employment_income", "count": 3, "min": 0, "max": 1, "period": None}]
    ]
    assert_error(
        post(client, with_change(lambda h: h.update(axes=axes))), 422, "period"
    )


def test_an_axis_on_a_non_numeric_variable_is_refused(client):
{%- if cookiecutter.country == "us" %}
    axes = [[{"name": "state_name", "count": 3, "min": 0, "max": 1, "period": "2025"}]]
{%- else %}
    axes = [[{"name": "region", "count": 3, "min": 0, "max": 1, "period": "2025"}]]
{%- endif %}
    assert_error(
        post(client, with_change(lambda h: h.update(axes=axes))), 400, "numeric"
    )


def first_group(household: dict) -> dict:
    return next(
        members
        for name, members in household.items()
        if name not in ("people", "axes") and isinstance(members, dict)
    )


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda g: g.pop("members"), "needs its members"),
        (lambda g: g.update(members=[]), "at least one member"),
    ],
    ids=["no-members", "empty-members"],
)
def test_a_group_without_members_is_refused(client, change, fragment):
    household = with_change(lambda h: change(next(iter(first_group(h).values()))))
    assert_error(post(client, household), 400, "members", fragment)


@pytest.mark.parametrize("period", ["month:2025-01:3", "year:2024:2"])
def test_periods_spanning_several_periods_are_refused(client, period):
    household = with_change(lambda h: h["people"][PERSON].update(age={period: None}))
    assert_error(post(client, household), 400, "spans several periods")
{%- if cookiecutter.country == "us" %}


def test_a_year_the_model_cannot_calculate_is_a_400_with_its_reason(client):
    household = with_change(
        lambda h: h["tax_units"]["tax_unit"].update(income_tax={"2001": None})
    )
    assert_error(
        post(client, household),
        400,
        "tax_units.tax_unit.income_tax.2001",
        "the model could not calculate this",
    )


def test_a_model_error_names_what_to_send(client):
    household = with_change(
        lambda h: h["spm_units"]["spm_unit"].update(in_poverty={"2025": None})
    )
    assert_error(post(client, household), 400, "in_poverty", "county_fips")
{%- endif %}


PARAMETER = next(iter(EXAMPLE_POLICY))
{%- if cookiecutter.country == "us" %}
LIST_PARAMETER = "gov.irs.gross_income.sources"
NEGATIVE_INDEX = "gov.irs.credits.ctc.amount.base[-1].amount"
{%- else %}
LIST_PARAMETER = "gov.dfe.targeted_childcare_entitlement.qualifying_benefits"
NEGATIVE_INDEX = "gov.hmrc.income_tax.rates.uk[-1].rate"
{%- endif %}


@pytest.mark.parametrize("value", ["NaN", "Infinity", "1e400"])
def test_non_finite_policy_values_are_refused(client, value):
    policy = {PARAMETER: {"2025-01-01.2100-12-31": 7.25}}
    text = json.dumps({"household": EXAMPLE_HOUSEHOLD, "policy": policy})
    assert_error(post_raw(client, text.replace("7.25", value)), 400, "policy", "finite")


def test_a_string_is_not_taken_as_a_policy_number(client):
    policy = {PARAMETER: {"2025-01-01.2100-12-31": "3000"}}
    assert_error(post(client, EXAMPLE_HOUSEHOLD, policy), 422, "policy")


def test_a_number_for_a_list_parameter_is_refused(client):
    policy = {LIST_PARAMETER: {"2025-01-01.2100-12-31": 1}}
    assert_error(post(client, EXAMPLE_HOUSEHOLD, policy), 400, "list values")


def test_a_negative_bracket_index_is_refused(client):
    policy = {NEGATIVE_INDEX: {"2025-01-01.2100-12-31": 1}}
    assert_error(post(client, EXAMPLE_HOUSEHOLD, policy), 400, "whole number index")


def test_the_schema_needs_at_least_one_person(client):
    assert_error(post(client, {"people": {}}), 422, "people")


def test_a_chunked_body_over_the_limit_is_413(client):
    size = get_settings().max_body_bytes

    def chunks():
        for _ in range(size // 65_536 + 2):
            yield b" " * 65_536

    response = client.post(
        "/calculate", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_error(response, 413, "MAX_BODY_BYTES")


def test_method_not_allowed_says_which_methods_are(client):
    response = client.get("/calculate")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


def test_a_body_that_does_not_arrive_in_time_is_408():
    """The body limit waits BODY_TIMEOUT_SECONDS at most for the whole body."""
    from policyengine_backend._web.middleware import BodyLimits

    async def never_called(scope, receive, send):
        raise AssertionError("the app must not run")

    async def receive():  # a client that never sends its body
        await asyncio.Event().wait()

    sent = []

    async def send(message):
        sent.append(message)

    limits = BodyLimits(never_called, max_bytes=1_000, timeout_seconds=0.05)
    scope = {"type": "http", "method": "POST", "path": "/calculate", "headers": []}
    asyncio.run(limits(scope, receive, send))

    assert sent[0]["status"] == 408
    assert b"BODY_TIMEOUT_SECONDS" in sent[1]["body"]


def test_a_list_in_place_of_a_variables_periods_is_refused(client):
    household = with_change(lambda h: h["people"][PERSON].update(age=[]))
    assert_error(post(client, household), 400, f"people.{PERSON}.age", "expected")
