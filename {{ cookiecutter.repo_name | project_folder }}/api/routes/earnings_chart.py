"""POST /earnings-chart: net income and marginal tax rate as one person's
earnings vary, under current law and, if one is sent, a policy.

An example of this project's own endpoints: a request model, an answer
model and one function that runs in the calculation worker.
"""

import copy

from fastapi import APIRouter
from pydantic import BaseModel, Field, model_validator

from policyengine_backend import (
    Household,
    Policy,
    Problem,
    Simulations,
    worker_endpoint,
)
from policyengine_backend.examples import EXAMPLE_HOUSEHOLD, EXAMPLE_POLICY

router = APIRouter(tags=["earnings chart"])


class EarningsChartRequest(BaseModel):
    household: Household = Field(description="The household, without axes.")
    policy: Policy | None = Field(None, description="Compared with current law.")
    # Years the model has parameters for, in both countries.
    year: int = Field(ge=2015, le=2035)
    min: float = Field(0, ge=0, allow_inf_nan=False, description="Lowest earnings.")
    max: float = Field(200_000, allow_inf_nan=False, description="Highest earnings.")
    count: int = Field(101, ge=2, le=1001, description="Points from min to max.")
    earner: str | None = Field(
        None, description="Whose earnings vary (default: the first person)."
    )

    @model_validator(mode="after")
    def a_range_and_no_axes(self) -> "EarningsChartRequest":
        if self.max <= self.min:
            raise ValueError("max must be more than min")
        if self.household.axes:
            raise ValueError("household must have no axes: the chart adds its own")
        return self


class Curve(BaseModel):
    net_income: list[float] = Field(description="household_net_income at each point.")
    marginal_tax_rate: list[float] = Field(
        description="Between each point and the next: 1 - Δnet income / Δearnings."
    )


class EarningsChart(BaseModel):
    earnings: list[float] = Field(description="count points, evenly spaced.")
    baseline: Curve
    reform: Curve | None = Field(description="null when no policy is sent.")


EXAMPLE = {"household": EXAMPLE_HOUSEHOLD, "year": 2025, "max": 100_000, "count": 11}


@worker_endpoint(
    router,
    "/earnings-chart",
    request_model=EarningsChartRequest,
    result_model=EarningsChart,
    examples={
        "current law": {"value": EXAMPLE},
        "with a policy": {"value": {**EXAMPLE, "policy": EXAMPLE_POLICY}},
    },
)
def earnings_chart(request: EarningsChartRequest, simulations: Simulations) -> dict:
    """Net income and marginal tax rate at `count` earnings from `min` to
    `max`, under current law and under `policy` if one is sent."""
    household = request.household.model_dump(exclude_unset=True)
    people = list(household["people"])
    earner = request.earner or people[0]
    if earner not in people:
        raise Problem(("earner",), f"no person named {earner!r} in household.people")
    situation = without_values_asked_for(household)
    # policyengine's axes: the household copied `count` times, the earner's
    # employment income evenly spaced from min to max across the copies.
    situation["axes"] = [
        [
            {
                "name": "employment_income",
                "count": request.count,
                "min": request.min,
                "max": request.max,
                "period": str(request.year),
                "index": people.index(earner),
            }
        ]
    ]
    step = (request.max - request.min) / (request.count - 1)
    earnings = [request.min + i * step for i in range(request.count)]
    policies = {"baseline": None, "reform": request.policy}
    column = household_of(situation, earner)
    curves = {
        name: curve(
            simulations.simulation(situation, policy), column, request.year, earnings
        )
        for name, policy in policies.items()
        if name == "baseline" or policy
    }
    return {
        "earnings": earnings,
        "baseline": curves["baseline"],
        "reform": curves.get("reform"),
    }


def without_values_asked_for(household: dict) -> dict:
    """The household without its nulls: this chart asks for its own values."""
    situation = {
        group: members for group, members in copy.deepcopy(household).items() if members
    }
    for members in situation.values():
        for variables in members.values():
            for name in [
                n for n, periods in variables.items() if isinstance(periods, dict)
            ]:
                variables[name] = {
                    p: v for p, v in variables[name].items() if v is not None
                }
                if not variables[name]:
                    del variables[name]
    return situation


def household_of(situation: dict, earner: str) -> int:
    """Which of the situation's households the earner lives in (0 when the
    situation names none: policyengine then makes one for everybody)."""
    for index, household in enumerate(situation.get("households", {}).values()):
        if earner in household.get("members", []):
            return index
    return 0


def curve(simulation, household: int, year: int, earnings: list[float]) -> dict:
    values = simulation.calculate("household_net_income", year)
    # One value per copy of each household, copy by copy: the earner's.
    net_income = values.reshape(len(earnings), -1)[:, household].tolist()
    rates = [
        1 - (net_income[i + 1] - net_income[i]) / (earnings[i + 1] - earnings[i])
        for i in range(len(earnings) - 1)
    ]
    return {"net_income": net_income, "marginal_tax_rate": rates}
