"""``/calculate``'s worker function: a household with every null filled in."""

from policyengine_backend._model.functions import Simulations
from policyengine_backend._model.household import fill_household


def calculate(request, simulations: Simulations) -> dict:
    """Fill every null in the household, under the policy if one is given."""
    # Only what was sent: the answer echoes the request with nulls filled.
    household = request.household.model_dump(exclude_unset=True)
    simulation = simulations.simulation(household, request.policy)
    return fill_household(simulation, household)


def calculate_many(request, simulations: Simulations) -> dict:
    """``/calculate-many``'s worker function: every household filled in, by
    its name, all calculated together (``Simulations.many``)."""
    households = {
        name: household.model_dump(exclude_unset=True)
        for name, household in request.households.items()
    }
    return simulations.many(households, request.policy).fill()
