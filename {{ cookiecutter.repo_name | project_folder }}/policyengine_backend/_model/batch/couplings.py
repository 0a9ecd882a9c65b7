"""What merging needs of each country's model: its entities, and the formulas
that read the whole Simulation rather than one household (``COUPLINGS``)."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

ALONE = "alone"  # the pool label of a household that must be by itself


@dataclass(frozen=True)
class Coupling:
    """A variable whose formula reads the whole Simulation, not one household.

    Households interact through it when they share a pool: ``pooled_by`` names
    a variable whose value defines the pools (a household's state, say), or
    ``None`` for one pool holding everyone. The coupling is inert, and merging
    safe, when any ``inert_parameters`` entry holds (the formula then returns
    early) or every ``inert_if_zero`` variable is zero everywhere (the
    population total it divides by or multiplies with is then zero, exactly
    as it is for each household alone). ``alone_if`` instead picks the
    households that only get their own answer in a Simulation of their own.
    """

    variable: str
    pooled_by: str | None = None
    inert_parameters: tuple[tuple[str, float], ...] = ()
    inert_if_zero: tuple[str, ...] = ()
    alone_if: Callable[[Any, Any, Any], list[bool]] | None = None


def _always(*names: str) -> tuple[Coupling, ...]:
    return tuple(Coupling(name) for name in names)


def _one_unit_pairing_a_dependent(
    simulation: Any, period: Any, part: Any
) -> list[bool]:
    """Households policyengine-us's SSI spouse test reads differently alone.

    ``_ssi_established_spouse_indices`` (policyengine-us
    ``variables/gov/ssa/ssi/eligibility/resources/deemed/_ssi_spouses.py``)
    stops a parent and the dependent they claim from counting as spouses only
    "when the simulation has a single marital unit" (``marital_unit.count ==
    1``), its way to spot the marital unit core makes for a household that
    lists none. A household with one marital unit has that alone, never in a
    batch. It changes answers only where that unit holds exactly two people,
    one of them a tax-unit dependent (a lone parent and one child, say).
    """
    dependent = np.asarray(
        simulation.calculate("is_tax_unit_dependent", period.this_year)
    )
    flags = []
    for key in part.keys:
        people = dependent[part.merged.rows(key, "people")]
        units = part.merged.names[key]["marital_units"]
        flags.append(
            len(units) == 1 and len(people) == 2 and bool(people.any() != people.all())
        )
    return flags


# Found by reading every formula that reduces over its population or compares
# an entity's size in the Simulation with a number (tests/test_couplings.py
# lists them, and fails on a new one). Those that only do so when
# built from microdata (``is_over_dataset`` in the US, ``built_from_data`` in
# the UK) are absent: a situation never is. policyengine-uk's situations do
# carry a ``dataset`` (``build_from_situation`` makes one), so its
# ``dataset is not None`` branches do run for households.
_UK_EMPLOYER_NI = "gov.contrib.policyengine.employer_ni."
_UK_BUDGET = "gov.contrib.policyengine.budget."
COUPLINGS: dict[str, tuple[Coupling, ...]] = {
    "us": (
        *_always("household_income_decile", "spm_unit_income_decile"),
        # Sums over everyone in the same state (state_aggregate_helpers).
        Coupling("medicaid_slcsp_state_average_cost_index", pooled_by="state_code"),
        # Every variable calling _ssi_established_spouse_indices.
        *(
            Coupling(name, alone_if=_one_unit_pairing_a_dependent)
            for name in (
                "is_ssi_spousal_resource_deeming_applies",
                "ssi_resources_deemed_from_ineligible_spouse",
                "ssi_resources_deemed_from_ineligible_parent",
                "is_ssi_resource_deeming_child",
                "ny_ssp_is_minor",
                "nh_ssp_eligible",
                "nh_ssp_assistance_group_size",
                "nh_ssp",
                "nh_ssp_countable_income",
                "nh_ssp_resources_deemed_from_parents",
            )
        ),
    ),
    "uk": (
        *_always(
            "household_income_decile",
            "household_income_decile_ahc",
            "household_wealth_decile",
            "in_relative_poverty_ahc",
            "in_relative_poverty_bhc",
            "pre_budget_change_ons_household_income_decile",
        ),
        Coupling("shareholding", inert_if_zero=("corporate_sector_wealth",)),
        Coupling("corporate_land_value", inert_if_zero=("corporate_sector_wealth",)),
        Coupling("consumption_shareholding", inert_if_zero=("consumption",)),
        Coupling(
            "carbon_tax",
            inert_parameters=(("gov.contrib.ubi_center.carbon_tax.rate", 0),),
            inert_if_zero=("carbon_consumption",),
        ),
        Coupling(
            "consumer_incident_tax_revenue_change",
            inert_parameters=((_UK_BUDGET + "consumer_incident_tax_change", 0),),
            inert_if_zero=("consumption",),
        ),
        Coupling(
            "employer_ni_response_capital_incidence",
            inert_parameters=(
                (_UK_EMPLOYER_NI + "capital_incidence", 0),
                (_UK_EMPLOYER_NI + "employee_incidence", 1),
            ),
        ),
        Coupling(
            "employer_ni_response_consumer_incidence",
            inert_parameters=(
                (_UK_EMPLOYER_NI + "consumer_incidence", 0),
                (_UK_EMPLOYER_NI + "employee_incidence", 1),
            ),
        ),
        *(
            Coupling(
                f"{name}_budget_change", inert_parameters=((_UK_BUDGET + name, 0),)
            )
            for name in ("nhs", "education", "other_public_spending")
        ),
    ),
}


@dataclass(frozen=True)
class Group:
    """A group entity: its names and the role a person gets by default."""

    key: str
    plural: str
    role_keys: tuple[str, ...]  # the keys listing members (``members``)
    default_role: str  # where core puts people nobody placed


@dataclass(frozen=True)
class Model:
    """The parts of a country's tax-benefit system that merging reads."""

    country: str
    system: Any
    person_plural: str
    groups: tuple[Group, ...]
    default_period: str
    couplings: tuple[Coupling, ...]

    @property
    def plurals(self) -> tuple[str, ...]:
        return (self.person_plural, *(group.plural for group in self.groups))


@functools.cache
def country_model(country: str) -> Model:
    """The model of ``country`` ("us" or "uk"), imported on first use."""
    system = importlib.import_module(f"policyengine_{country}.system").system
    simulation_class = importlib.import_module(f"policyengine_{country}").Simulation
    groups = []
    for entity in system.group_entities:
        first = entity.flattened_roles[0]
        default = next(r for r in entity.roles if first in (r, *(r.subroles or ())))
        if default.subroles or default.max is not None:
            # Core may put any number of people in this role; a situation can
            # only say so for a role without a limit or sub-roles.
            raise NotImplementedError(f"{entity.plural}: default role has limits")
        groups.append(
            Group(
                key=entity.key,
                plural=entity.plural,
                role_keys=tuple(r.plural or r.key for r in entity.roles),
                default_role=default.plural or default.key,
            )
        )
    return Model(
        country=country,
        system=system,
        person_plural=system.person_entity.plural,
        groups=tuple(groups),
        default_period=str(simulation_class.default_input_period),
        couplings=COUPLINGS.get(country, ()),
    )
