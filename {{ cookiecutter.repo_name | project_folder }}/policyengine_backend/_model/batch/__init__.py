"""Many households in one PolicyEngine calculation.

A policyengine Simulation is vectorised: it computes every entity in one pass,
so a hundred households in one Simulation cost little more than one. But a
Simulation is also the unit of several things that a household-by-household
answer must not share, so merging households is only correct under rules:

* Names. Every household may call its people ``you`` and its household
  ``your household``. Each person and group gets a new id built from numbers
  only (see ``person_id``/``group_id``); the client's names never appear in an
  id, so no client name can collide with another, whatever characters it has.
* Missing groups. A household that leaves out an entity (no ``tax_units``)
  gets, when simulated alone, one group of that entity holding all its people,
  and a person left out of every group of an entity it does list gets a group
  of their own (policyengine-core ``SimulationBuilder.add_default_group_entity``
  and the end of ``add_group_entity``). ``merge`` writes those groups out
  explicitly, per household, so no two households ever share one.
* Inputs are stored per variable and period for the whole Simulation, not per
  household. An input one household gives fills every other household's entry
  with the variable's default, and formulas ask "was this variable given?" of
  the whole Simulation (``input_variables``, ``get_known_periods``,
  ``get_array``). So only households giving exactly the same (variable,
  period) inputs share a Simulation (``input_signature``).
* A few formulas reduce over the whole population (deciles, shares of a
  weighted total, state averages). ``COUPLINGS`` lists them; after every
  calculation a Simulation that ran one of them, in a way that mixes
  households, is split and the calculation redone (``Batch``).
* Axes replicate the whole situation and address entities by position in it,
  so they keep their meaning only in a batch of exactly one household.

Errors stay with their household: a situation policyengine refuses, or a
calculation that fails, is traced to the households causing it (from the
error's path when it has one, else by re-running halves), which are reported
by key; the other households are computed without them.
"""

from policyengine_backend._errors import (
    BatchError,
    HouseholdError,
    LayoutError,
)
from policyengine_backend._model.batch.couplings import (
    COUPLINGS,
    Coupling,
    country_model,
)
from policyengine_backend._model.batch.merge import Merged, merge
from policyengine_backend._model.batch.run import Batch

__all__ = [
    "COUPLINGS",
    "Batch",
    "BatchError",
    "Coupling",
    "HouseholdError",
    "LayoutError",
    "Merged",
    "country_model",
    "merge",
]
