"""The requests of population jobs (``POST /jobs/impact``, and a project's
own: ``PopulationRequest``), checked before the job starts.

Each field is checked here, so a bad one is a 422 naming it before any data
is read: the dataset must be a configured name, the region one the country
has, the year one the dataset and model cover. The policy is checked against
the model by the job route, as every policy is.
"""

from datetime import date
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from policyengine_backend._models import Policy
from policyengine_backend._population import datasets
from policyengine_backend._population.dataset import normalise_region, supported_years
from policyengine_backend.examples import EXAMPLE_POLICY

IMPACT_EXAMPLES: Any = [
    {"policy": EXAMPLE_POLICY},
    {"policy": EXAMPLE_POLICY, "region": "{{ "CA" if cookiecutter.country == "us" else "WALES" }}", "year": 2026},
]


# A budget window's years at most: each is a population run of its own.
MAX_YEARS = 10


class PopulationRequest(BaseModel):
    """A policy, and the population it is simulated on: a dataset, a region
    of it, a year. A project's own population job may ask for more by
    subclassing it."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": IMPACT_EXAMPLES}
    )

    policy: Policy = Field(
        description="Parametric reform: parameter name -> {'start.stop': value}."
    )
    dataset: str | None = Field(
        default=None,
        description="A configured dataset: 'synthetic' or '"
        + datasets.REAL
        + "'. Left out: POPULATION_DATASET.",
    )
    region: str | None = Field(
        default=None,
{%- if cookiecutter.country == "us" %}
        description="A state code such as CA; left out: the whole country.",
{%- else %}
        description="ENGLAND, SCOTLAND, WALES or NORTHERN_IRELAND; "
        "left out: the whole country.",
{%- endif %}
    )
    year: int | None = Field(
        default=None,
        description="The year simulated. Left out: the first of years (where "
        "a job takes years), or else this year, as the model's own default.",
    )

    @field_validator("dataset")
    @classmethod
    def configured(cls, value: str | None) -> str:
        names = datasets.configured()
        name = value or datasets.get(None).name
        if name not in names:
            raise ValueError(f"unknown dataset; expected one of {', '.join(names)}")
        return name

    @field_validator("region")
    @classmethod
    def known_region(cls, value: str | None) -> str | None:
        return normalise_region(value)

    @field_validator("year", mode="after")
    @classmethod
    def covered(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is None:
            return None
        name = info.data.get("dataset")
        start = datasets.get(name).year if name else datasets.get(None).year
        years = supported_years(start)
        if value not in years:
            raise ValueError(
                f"the dataset and model cover {years.start}-{years.stop - 1}"
            )
        return value

    @model_validator(mode="after")
    def the_year(self) -> "PopulationRequest":
        if self.year is None:
            self.year = self.default_year()
        return self

    def default_year(self) -> int:
        return date.today().year


class ImpactRequest(PopulationRequest):
    years: list[int] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_YEARS,
        description="A budget window: each year's budget and their total, in "
        "budget_window; the other figures are the first year's.",
    )

    @field_validator("years", mode="after")
    @classmethod
    def covered_and_distinct(
        cls, value: list[int] | None, info: ValidationInfo
    ) -> list[int] | None:
        if value is None:
            return None
        for year in value:
            cls.covered(year, info)
        if len(set(value)) != len(value):
            raise ValueError("each year once")
        if info.data.get("year") not in (None, value[0]):
            raise ValueError("the first year must be year, if both are given")
        return value

    def default_year(self) -> int:
        return self.years[0] if self.years else date.today().year
