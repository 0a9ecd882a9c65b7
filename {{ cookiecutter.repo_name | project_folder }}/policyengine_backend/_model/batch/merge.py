"""Reading one household, and merging many into one situation whose ids
cannot collide."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from policyengine_backend._errors import BatchError, HouseholdError
from policyengine_backend._model.batch.couplings import Group, Model, country_model

Situation = dict[str, Any]
AXES = "axes"

Path = tuple[str, ...]
ROOT = "households"  # first element of every reported path


def person_id(index: int, position: int) -> str:
    """The merged id of a household's ``position``-th person.

    Made of the household's index in the batch and the person's position in
    it, both decimal, between fixed markers: "hh", ":p" and a closing ".".
    Reading an id left to right gives back both numbers, so two different
    (household, person) pairs never give the same id; no client text is in
    it. The closing "." keeps that true when axes append a copy number.
    """
    return f"hh{index}:p{position}."


def group_id(index: int, position: int) -> str:
    """The merged id of a household's ``position``-th group of an entity
    (unique within the entity, like ``person_id``)."""
    return f"hh{index}:g{position}."


_ID = re.compile(r"hh(\d+):([pg])(\d+)\.")


def _entities(household: Situation, model: Model, key: str) -> Situation:
    """The household with singular shortcuts spelt out, as core reads it.

    Core's ``SimulationBuilder.explicit_singular_entities`` turns
    ``{"household": {...}}`` into ``{"households": {"household": {...}}}``;
    the same call is made here so a household merges as it would be read.
    """
    from policyengine_core.simulations.simulation_builder import SimulationBuilder

    if not isinstance(household, dict):
        raise HouseholdError(key, (ROOT, key), "a household must be a JSON object")
    household = SimulationBuilder().explicit_singular_entities(model.system, household)
    axes = household.get(AXES)
    household = {name: value for name, value in household.items() if name != AXES}
    if axes:  # core ignores empty axes too
        household[AXES] = axes
    return household


def _members(group: dict, role: str) -> list:
    from policyengine_core.simulations.helpers import transform_to_strict_syntax

    return transform_to_strict_syntax(group.get(role, []))


def check_household(key: str, household: Situation, model: Model, alone: bool) -> None:
    """Raise ``HouseholdError`` for what merging cannot carry faithfully.

    Refuses what would make one household's error surface under another's
    ids (group members that are not its people, a person in two groups of an
    entity), what core would read in another mode (no entity lists), and axes
    outside a batch of one (``alone``). Values are left to policyengine, whose
    errors are traced back to the household.
    """
    household = _entities(household, model, key)
    if AXES in household and not alone:
        raise HouseholdError(
            key,
            (ROOT, key, AXES),
            "axes copy the whole situation and address entities by position in "
            "it, so they are only allowed in a batch of exactly one household",
        )
    for name, instances in household.items():
        if name == AXES:
            continue
        if name not in model.plurals:
            raise HouseholdError(
                key, (ROOT, key, name), f"{name!r} is not an entity of this country"
            )
        if not isinstance(instances, dict) or not all(
            isinstance(value, dict) for value in instances.values()
        ):
            raise HouseholdError(
                key, (ROOT, key, name), "expected an object of objects"
            )
    people = household.get(model.person_plural)
    if not people:
        raise HouseholdError(
            key,
            (ROOT, key, model.person_plural),
            "a household needs at least one person",
        )
    for group in model.groups:
        placed: set[str] = set()
        for name, instance in household.get(group.plural, {}).items():
            for role in group.role_keys:
                members = _members(instance, role)
                path = (ROOT, key, group.plural, name, role)
                if not isinstance(members, list):
                    raise HouseholdError(key, path, "expected a list of people")
                for member in members:
                    if not isinstance(member, str) or member not in people:
                        raise HouseholdError(
                            key,
                            path,
                            f"{member!r} is not one of this household's people",
                        )
                    if member in placed:
                        raise HouseholdError(
                            key,
                            path,
                            f"{member!r} is in more than one of its {group.plural}",
                        )
                    placed.add(member)


def _inputs(household: Situation, model: Model) -> Iterator[tuple[str, str]]:
    """(variable, period as written) for every value the household gives."""
    for name, instances in household.items():
        if name == AXES:
            continue
        roles = {r for g in model.groups if g.plural == name for r in g.role_keys}
        for instance in instances.values():
            for variable, values in instance.items():
                if variable in roles:
                    continue
                if not isinstance(values, dict):
                    values = {model.default_period: values}
                for period, value in values.items():
                    if value is not None:
                        yield variable, str(period)


def _canonical(period: str) -> str:
    from policyengine_core import periods

    try:
        return str(periods.period(period))
    except Exception:  # noqa: BLE001 - policyengine reports it on building
        return period


def input_signature(household: Situation, model: Model) -> tuple[frozenset, bool]:
    """The household's (variable, period) inputs, and whether it must run alone.

    Core stores inputs as one array per variable and period, filled with the
    default for every entity not given a value, so households share a
    Simulation only with households giving the same pairs. Periods are
    compared as written: core looks an array up by the written period but
    files it under the normalised one, so "2025" and "year:2025" for one
    variable overwrite each other. A household that mixes such spellings, sets
    an id-valued variable (``*_id``: formulas match ids across the whole
    Simulation), or has axes, runs alone.
    """
    pairs = set(_inputs(household, model))
    spellings: dict[tuple[str, str], set[str]] = {}
    for variable, period in pairs:
        spellings.setdefault((variable, _canonical(period)), set()).add(period)
    alone = (
        AXES in household
        or any(len(written) > 1 for written in spellings.values())
        or any(variable.endswith("_id") for variable, _ in pairs)
    )
    return frozenset(pairs), alone


# --------------------------------------------------------------------------
# Merging
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Merged:
    """One situation holding several households, and the way back.

    ``names[key][plural]`` lists the household's own names for its entities
    of that plural in the order the Simulation holds them (people and groups
    as the household lists them; groups core would have added, named as core
    names them, after those); ``starts[key][plural]`` is where they begin.
    """

    situation: Situation
    keys: tuple[str, ...]
    names: Mapping[str, Mapping[str, tuple[str, ...]]]
    starts: Mapping[str, Mapping[str, int]]
    has_axes: bool

    def rows(self, key: str, plural: str) -> slice:
        """The household's rows in a Simulation array of ``plural``."""
        if self.has_axes:
            return slice(None)  # one household, every copy
        start = self.starts[key][plural]
        return slice(start, start + len(self.names[key][plural]))

    def owner(self, plural: str, merged_id: str) -> tuple[str, str] | None:
        """(household key, own name) of a merged id, if it is one."""
        match = _ID.fullmatch(merged_id)
        if not match or int(match[1]) >= len(self.keys):
            return None
        key = self.keys[int(match[1])]
        names = self.names[key].get(plural, ())
        position = int(match[3])
        return (key, names[position]) if position < len(names) else None


def merge(situations: Mapping[str, Situation], country: str) -> Merged:
    """One situation holding every household of ``situations``.

    Raises ``BatchError`` naming each household ``check_household`` refuses.
    """
    model = country_model(country)
    alone = len(situations) == 1
    problems = {}
    for key, household in situations.items():
        try:
            check_household(key, household, model, alone)
        except HouseholdError as error:
            problems[key] = error
    if problems:
        raise BatchError(problems)
    merged: Situation = {plural: {} for plural in model.plurals}
    names: dict[str, dict[str, tuple[str, ...]]] = {}
    starts: dict[str, dict[str, int]] = {}
    has_axes = False
    for index, (key, household) in enumerate(situations.items()):
        household = _entities(household, model, key)
        starts[key] = {plural: len(merged[plural]) for plural in model.plurals}
        people = household[model.person_plural]
        ids = {name: person_id(index, j) for j, name in enumerate(people)}
        merged[model.person_plural].update(
            (ids[name], copy.deepcopy(values)) for name, values in people.items()
        )
        names[key] = {model.person_plural: tuple(people)}
        for group in model.groups:
            own = _groups(household, group, list(people))
            names[key][group.plural] = tuple(name for name, _ in own)
            merged[group.plural].update(
                (group_id(index, j), _renamed(instance, group, ids))
                for j, (_, instance) in enumerate(own)
            )
        if AXES in household:
            merged[AXES] = household[AXES]
            has_axes = True
    return Merged(merged, tuple(situations), names, starts, has_axes)


def _groups(
    household: Situation, group: Group, people: list[str]
) -> list[tuple[str, dict]]:
    """The household's groups of one entity, with those core adds.

    Reproduces policyengine-core's ``SimulationBuilder``: an entity left out
    gets one group named by the entity key with everyone in the first role
    (``add_default_group_entity``); a person in no group of a listed entity
    gets a group named by the person, in that role (``add_group_entity``).
    When such a person's name is also a listed group's name, core's lookup
    finds the listed group, so the person joins it and the group core added
    stays empty; that is reproduced too.
    """
    listed = household.get(group.plural)
    if listed is None:
        return [(group.key, {group.default_role: list(people)})]
    own = [(name, dict(instance)) for name, instance in listed.items()]
    placed = {m for _, i in own for role in group.role_keys for m in _members(i, role)}
    for person in people:
        if person in placed:
            continue
        if person in listed:
            target = own[list(listed).index(person)][1]
            target[group.default_role] = [*_members(target, group.default_role), person]
            own.append((person, {group.default_role: []}))
        else:
            own.append((person, {group.default_role: [person]}))
    return own


def _renamed(instance: dict, group: Group, ids: Mapping[str, str]) -> dict:
    """A copy of a group with its members' merged ids (the copy keeps a
    Simulation from ever writing into the client's household)."""
    renamed = copy.deepcopy(instance)
    for role in group.role_keys:
        if role in instance:
            renamed[role] = [ids[member] for member in _members(instance, role)]
    return renamed
