"""Request and response bodies of the HTTP API.

They follow policyengine-api's ``POST /{{ cookiecutter.country }}/calculate``, so a frontend
written against it works here unchanged. The models describe the shapes;
whether a variable or parameter exists is checked against the country model
in ``policyengine_backend/_engine/checks.py``.
"""

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    field_validator,
)

from policyengine_backend.examples import EXAMPLE_HOUSEHOLD, EXAMPLE_POLICY

# A variable's values by period: {"2025": 30000}. null asks for the value.
Value = bool | int | float | str | None
Periods = dict[str, Value]
# One person or group: {"age": {"2025": 40}}; groups also list "members".
Member = dict[str, Periods | list[str]]
Group = dict[str, Member]


class Answer(BaseModel):
    """An answer's body. The API sends every field of it, null or not, so
    the schema says each one is there (a field with a default is otherwise
    optional in it): the frontend's generated types (client/) then read
    ``message: string | null``, not ``message?: string | null``."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


class Axis(BaseModel):
    """Vary one input over a range; the household is copied once per point."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Variable to vary, e.g. employment_income.")
    count: int = Field(ge=1, description="Number of points.")
    min: float = Field(allow_inf_nan=False)
    max: float = Field(allow_inf_nan=False)
    period: str | int | None = Field(
        default=None, description="e.g. 2025. Left out: the model's default period."
    )
    index: int = Field(default=0, ge=0, description="Which member to vary.")

    @field_validator("period", mode="before")
    @classmethod
    def not_null(cls, value):
        # Only called for a period that was sent: null is refused rather
        # than read as "left out".
        if value is None:
            raise ValueError("give a period such as 2025, or leave period out")
        return value


class Household(BaseModel):
    """A household in PolicyEngine's JSON format."""

    model_config = ConfigDict(extra="forbid")

    people: Group = Field(min_length=1)
{%- if cookiecutter.country == "us" %}
    tax_units: Group = Field(default_factory=dict)
    families: Group = Field(default_factory=dict)
    spm_units: Group = Field(default_factory=dict)
    marital_units: Group = Field(default_factory=dict)
    households: Group = Field(default_factory=dict)
{%- else %}
    benunits: Group = Field(default_factory=dict)
    households: Group = Field(default_factory=dict)
{%- endif %}
    axes: list[Annotated[list[Axis], Field(min_length=1)]] | None = Field(
        default=None,
        min_length=1,
        description="Inner lists vary in step (same count); outer lists form a grid.",
    )


# A parametric reform: {"gov.path.to.parameter": {"2025-01-01.2100-12-31": 3000}}.
# Strict: "3000" is refused, not read as a number.
Policy = dict[str, dict[str, StrictBool | StrictInt | StrictFloat]]


# Shown in /docs, where "Try it out" sends them (see policyengine_backend/_web/app.py).
CALCULATE_EXAMPLES: Any = [
    {"household": EXAMPLE_HOUSEHOLD},
    {"household": EXAMPLE_HOUSEHOLD, "policy": EXAMPLE_POLICY},
]
COMPARE_EXAMPLES: Any = [{"household": EXAMPLE_HOUSEHOLD, "policy": EXAMPLE_POLICY}]


class CalculateRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": CALCULATE_EXAMPLES},
    )

    household: Household
    policy: Policy | None = Field(
        default=None,
        description="Parametric reform: parameter name -> {'start.stop': value}.",
    )


class CompareRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": COMPARE_EXAMPLES},
    )

    household: Household
    policy: Policy = Field(
        description="The reform to compare with current law: parameter name -> {'start.stop': value}.",
    )


class Envelope(Answer):
    """Every answer's shape: ``{"status": "ok", "message": null, "result": ...}``."""

    status: Literal["ok"] = "ok"
    message: str | None = None


class Comparison(BaseModel):
    baseline: dict[str, Any] = Field(description="The household under current law.")
    reform: dict[str, Any] = Field(description="The household under the policy.")
    change: dict[str, Any] = Field(
        description="The household with reform minus baseline for each requested "
        "value (point by point for axes; null where a value is not a number)."
    )


class CompareResponse(Envelope):
    result: Comparison


# --- Many households: /calculate-many -----------------------------------------

CALCULATE_MANY_EXAMPLES: Any = [
    {"households": {"first": EXAMPLE_HOUSEHOLD, "second": EXAMPLE_HOUSEHOLD}},
    {"households": {"first": EXAMPLE_HOUSEHOLD}, "policy": EXAMPLE_POLICY},
]


class CalculateManyRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": CALCULATE_MANY_EXAMPLES},
    )

    households: dict[str, Household] = Field(
        min_length=1,
        description="Households by your own names (at most MAX_HOUSEHOLDS), each "
        "as /calculate takes it: null asks for a value. People and groups may "
        "have the same names in several households.",
    )
    policy: Policy | None = Field(
        default=None,
        description="Parametric reform for every household: parameter name -> "
        "{'start.stop': value}.",
    )


class CalculateManyResponse(Envelope):
    result: dict[str, dict[str, Any]] = Field(
        description="Each household by its name, with every null filled in, "
        "as /calculate answers it."
    )


# --- end of many households --------------------------------------------------


class JobAccepted(Answer):
    status: Literal["pending"] = "pending"
    message: str | None = None
    result: None = None
    job_id: str = Field(description="Ask GET /jobs/{job_id} for the answer.")


class JobStatus(Answer):
    # A finished job answers its endpoint's own body: errors and status_code
    # only when it failed (and, null, while it is pending).
    model_config = ConfigDict(
        json_schema_extra={"required": ["status", "message", "result"]}
    )

    status: Literal["pending", "ok", "error"]
    message: str | None = Field(
        default=None, description="For an error: what /calculate would have said."
    )
    # --- Society-wide impacts: how far a pending job has got ---
    progress: dict[str, int] | None = Field(
        default=None,
        description="While pending, for jobs that report it (/jobs/impact): "
        "units of work done and in total, {done, total}.",
    )
    # --- end of society-wide impacts ---
    result: dict[str, Any] | None = Field(
        default=None, description="Once ok: what /calculate returns for the request."
    )
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="For an error: each problem, with its location."
    )
    status_code: int | None = Field(
        default=None,
        description="For an error: the HTTP status /calculate would have answered.",
    )


class ParameterInfo(BaseModel):
    name: str
    label: str | None
    description: str | None
    unit: str | None = Field(default=None, description="A parameter's unit.")
    date: str | None = Field(
        default=None,
        description="A parameter's value is the one in force on this date.",
    )
    value: Any = Field(
        default=None,
        description="A parameter's value (null before its first date; "
        "infinite amounts as the strings Infinity and -Infinity).",
    )
    children: list[str] | None = Field(
        default=None, description="A group's parameters and groups, by full name."
    )


class ParameterResponse(Envelope):
    result: ParameterInfo


class PossibleValue(BaseModel):
    value: str = Field(description="What a household sends and gets back.")
    label: str


class VariableInfo(BaseModel):
    name: str
    label: str | None
    description: str | None
    unit: str | None
    entity: str = Field(description="Whose value it is: person, household, ...")
    value_type: str = Field(description="float, int, bool, str, Enum or date.")
    definition_period: str = Field(description="year, month, day or eternity.")
    possible_values: list[PossibleValue] | None = Field(
        description="An Enum's items; null for other types."
    )


class VariableResponse(Envelope):
    result: VariableInfo


class ErrorResponse(Answer):
    status: Literal["error"] = "error"
    message: str = Field(description="What was wrong, naming the field or limit.")
    result: None = None
    errors: list[dict[str, Any]] = Field(default_factory=list)


class HealthResponse(Answer):
    # "unavailable": loaded, but no calculation can run; "degraded": the
    # last calculations all failed (``message`` says why, in both).
    status: Literal["ok", "starting", "unavailable", "degraded"]
    message: str | None = None
    country: str
    package: str
    version: str
