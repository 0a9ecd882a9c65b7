"""Calculating a batch: Simulations of merged households, split where a
coupling would mix them, and failures traced to the households causing them."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from policyengine_backend._errors import BatchError, HouseholdError, LayoutError
from policyengine_backend._model.batch.couplings import (
    ALONE,
    Coupling,
    Model,
    country_model,
)
from policyengine_backend._model.batch.merge import (
    _ID,
    AXES,
    ROOT,
    Merged,
    Path,
    Situation,
    _canonical,
    _entities,
    _inputs,
    check_household,
    input_signature,
    merge,
)
from policyengine_backend._model.household import json_value

Simulate = Callable[[Situation], Any]


class _Part:
    """Households sharing one Simulation."""

    def __init__(self, merged: Merged, simulation: Any, model: Model):
        self.merged = merged
        self.simulation = simulation
        self.model = model
        self.keys = merged.keys
        self.inputs = {
            (variable, _canonical(period))
            for variable, period in _inputs(merged.situation, model)
        }
        self._check_layout()

    def _check_layout(self) -> None:
        """The Simulation holds each entity in the order merged (core keeps
        the listed order and, with every group written out, adds none)."""
        if self.merged.has_axes:
            return
        for plural in self.model.plurals:
            ids = list(self.simulation.get_population(plural).ids)
            if ids != list(self.merged.situation[plural]):
                raise LayoutError(f"{plural} are not in the order merged")

    def split(
        self, values: np.ndarray, plural: str, skip: Container[str] = ()
    ) -> dict[str, np.ndarray]:
        """Each household's own copy of its rows (not ``skip``'s)."""
        return {
            key: values[self.merged.rows(key, plural)].copy()
            for key in self.keys
            if key not in skip
        }

    def pools(self) -> list[frozenset] | None:
        """If a coupled variable has run here in a way that mixes households:
        each household's pools (split so none shares one); else ``None``."""
        if len(self.keys) < 2:
            return None
        found: list[set] = [set() for _ in self.keys]
        active = False
        for simulation in _simulations(self.simulation):
            for coupling in self.model.couplings:
                try:
                    holder = simulation.get_holder(coupling.variable)
                except Exception:  # noqa: BLE001 - not in this system
                    continue
                for period in holder.get_known_periods():
                    if (coupling.variable, str(period)) in self.inputs:
                        continue
                    run = self._labels(coupling, simulation, period)
                    if run is not None:
                        active = True
                        for own, new in zip(found, run, strict=True):
                            own.update(new)
        if not active:
            return None
        pools = [frozenset(labels) for labels in found]
        seen: set = set()
        for labels in pools:
            if ALONE in labels or labels & seen:
                return pools
            seen |= labels
        return None

    def _labels(
        self, coupling: Coupling, simulation: Any, period: Any
    ) -> list[set] | None:
        """Each household's pools for one run of a coupled variable, or
        ``None`` when that run cannot mix households."""
        if coupling.alone_if is not None:
            flags = coupling.alone_if(simulation, period, self)
            return (
                [{ALONE} if flag else set() for flag in flags] if any(flags) else None
            )
        system = simulation.tax_benefit_system
        for path, inert in coupling.inert_parameters:
            parameter = system.parameters.get_child(path)
            if all(parameter(str(at)) == inert for at in (period.start, period.stop)):
                return None
        if coupling.inert_if_zero and not any(
            np.any(simulation.calculate(name, period))
            for name in coupling.inert_if_zero
        ):
            return None
        if coupling.pooled_by is None:
            return [{coupling.variable} for _ in self.keys]
        values = np.asarray(simulation.calculate(coupling.pooled_by, period))
        plural = simulation.get_variable_population(coupling.pooled_by).entity.plural
        return [
            {
                (coupling.variable, value)
                for value in values[self.merged.rows(key, plural)].tolist()
            }
            for key in self.keys
        ]


def _simulations(simulation: Any) -> Iterator[Any]:
    """The Simulation, its branches and its baseline, each once."""
    seen: set[int] = set()
    stack = [simulation]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend(getattr(current, "branches", {}).values())
        stack.append(getattr(current, "baseline", None))


def _split_pools(
    keys: Sequence[str], pools: Sequence[frozenset]
) -> list[tuple[str, ...]]:
    """Few groups (greedily) in which no two households share a pool, and
    households that must be alone are."""
    groups: list[tuple[list[str], set]] = []
    for key, labels in zip(keys, pools, strict=True):
        if ALONE in labels:
            groups.append(([key], {ALONE}))
            continue
        for members, taken in groups:
            if ALONE in taken:
                continue
            if not labels & taken:
                members.append(key)
                taken |= labels
                break
        else:
            groups.append(([key], set(labels)))
    return [tuple(members) for members, _ in groups]


def _parsing_error(error: Exception) -> tuple[list[str], str] | None:
    """(path, message) of a ``SituationParsingError``, else ``None``.

    Core files the message at its path with ``dpath``, which makes a list of
    a numeric segment (a year): the message sits at index 2025 of it.
    """
    if type(error).__name__ != "SituationParsingError":
        return None
    node: Any = getattr(error, "error", None)
    path: list[str] = []
    while True:
        if isinstance(node, dict) and len(node) == 1:
            name, node = next(iter(node.items()))
            path.append(str(name))
        elif isinstance(node, list) and sum(item is not None for item in node) == 1:
            index = next(i for i, item in enumerate(node) if item is not None)
            path.append(str(index))
            node = node[index]
        else:
            return path, str(node)


class Batch:
    """Many households calculated together, each answered as if alone.

    Households are grouped into as few Simulations as the rules allow (the
    same inputs, at most ``limit`` households each; see the module notes),
    each built by ``simulate`` (a situation's Simulation under one policy).
    Households that cannot be calculated are kept in ``problems`` and left
    out; while there are any, every call that answers raises ``BatchError``
    carrying the other households' answers.

    ``max_rebuilds`` bounds the Simulations built to trace a failure to its
    households; past it, the households still in doubt are reported with the
    error they share rather than traced further. Not thread-safe.
    """

    def __init__(
        self,
        situations: Mapping[str, Situation],
        country: str,
        simulate: Simulate,
        limit: int = 1000,
        max_rebuilds: int = 32,
    ):
        self.model = country_model(country)
        self.situations = dict(situations)
        self.simulate = simulate
        self.max_rebuilds = max_rebuilds
        self.rebuilds = 0
        self.problems: dict[str, HouseholdError] = {}
        alone = len(self.situations) == 1
        shared: dict[frozenset, list[str]] = {}
        singles: list[tuple[str, ...]] = []
        for key, household in self.situations.items():
            try:
                check_household(key, household, self.model, alone)
            except HouseholdError as error:
                self.problems[key] = error
                continue
            pairs, by_itself = input_signature(self._entities(key), self.model)
            if by_itself:
                singles.append((key,))
            else:
                shared.setdefault(pairs, []).append(key)
        groups = [
            tuple(keys[i : i + limit])
            for keys in shared.values()
            for i in range(0, len(keys), limit)
        ]
        self.parts: list[_Part] = []
        for keys in groups + singles:
            self.parts.extend(part for part, _ in self._run(keys, None))

    @property
    def simulation_count(self) -> int:
        """How many Simulations hold the households now."""
        return len(self.parts)

    def calculate(self, variable: str, period: str) -> dict[str, np.ndarray]:
        """Each household's values of ``variable`` for ``period``.

        One array per household, over the variable's entity in the
        household's own order (groups core adds come after the listed ones;
        with axes, copy-major, every copy). Raises ``BatchError`` if any
        household has failed, now or before.
        """
        plural = self._entity(variable, period)
        results: dict[str, np.ndarray] = {}
        parts = []
        for part in self.parts:
            for now, values in self._run(part, _calculation(variable, period)):
                parts.append(now)
                results.update(now.split(values, plural, self.problems))
        self.parts = parts
        if self.problems:
            raise BatchError(self.problems, results)
        return results

    def fill(self) -> dict[str, Situation]:
        """Each household as sent with every ``null`` replaced by its value.

        Shaped like one household's answer (policyengine-api's ``/calculate``):
        enum values by name, float32 values in their shortest decimal form,
        NaN as null, infinities as "Infinity"/"-Infinity"; with axes, a list
        of one value per copy. Raises ``BatchError`` if any household has
        failed, now or before.
        """
        wanted = {
            key: {where[2:] for where in _requests(self._entities(key))}
            for part in self.parts
            for key in part.keys
        }
        answers: dict[str, dict[tuple[str, str], np.ndarray]] = {}
        parts = []
        for part in self.parts:
            live = [part]
            requests = dict.fromkeys(
                r for key in part.keys for r in sorted(wanted[key])
            )
            for request in requests:
                asked = {key for key in part.keys if request in wanted[key]}
                try:
                    plural = self._entity(*request)
                except ValueError as error:
                    for key in asked:
                        self._fail(key, self._request_path(key, request), str(error))
                    continue
                now = []
                for each in live:
                    if not asked.intersection(each.keys):
                        now.append(each)  # nobody here asked: don't risk it
                        continue
                    for sub, values in self._run(
                        each, _calculation(*request), asked, request
                    ):
                        now.append(sub)
                        if values is not None:
                            for key, own in sub.split(
                                values, plural, self.problems
                            ).items():
                                answers.setdefault(key, {})[request] = own
                live = now
            parts.extend(live)
        self.parts = parts
        results = {
            key: self._filled(key, answers.get(key, {}))
            for key in self.situations
            if key not in self.problems
        }
        if self.problems:
            raise BatchError(self.problems, results)
        return results

    # -- building and tracing ----------------------------------------------

    def _run(
        self,
        part: _Part | tuple[str, ...],
        action: Callable[[_Part], Any] | None,
        asked: set[str] | None = None,
        request: tuple[str, str] | None = None,
    ) -> list[tuple[_Part, Any]]:
        """Run ``action`` on ``part`` (built first when given as keys).

        Returns (part, result) for the households that succeed, in several
        parts if it had to be split: by a coupling (``_Part.pools``) or to
        trace a failure (``_isolate``).
        """
        keys = part.keys if isinstance(part, _Part) else tuple(part)
        try:
            if not isinstance(part, _Part):
                part = self._build(keys)
            result = action(part) if action else None
            pools = part.pools()
        except LayoutError:
            raise
        except Exception as error:  # noqa: BLE001 - traced to households below
            return self._isolate(keys, error, action, asked, request)
        if pools is None:
            return [(part, result)]
        return [
            run
            for sub in _split_pools(keys, pools)
            for run in self._run(sub, action, asked, request)
        ]

    def _isolate(
        self,
        keys: tuple[str, ...],
        error: Exception,
        action: Callable[[_Part], Any] | None,
        asked: set[str] | None,
        request: tuple[str, str] | None,
    ) -> list[tuple[_Part, Any]]:
        """Find which of ``keys`` cause ``error``; run the others again.

        A parsing error names a merged id, hence its household. Otherwise
        households that did not ask for the value are first set apart (they
        never need it), then the rest are halved until single households
        fail alone.
        """
        located = self._locate(keys, error)
        if located is not None:
            key, path = located
            self._fail(key, path, _message(error, keys, self))
            rest = tuple(k for k in keys if k != key)
            return self._run(rest, action, asked, request) if rest else []
        if asked is not None and not asked.issuperset(keys):
            others = tuple(k for k in keys if k not in asked)
            askers = tuple(k for k in keys if k in asked)
            return self._run(others, None) + (
                self._run(askers, action, asked, request) if askers else []
            )
        if len(keys) == 1:
            self._fail(
                keys[0],
                self._request_path(keys[0], request),
                _message(error, keys, self),
            )
            return []
        if self.rebuilds + 2 > self.max_rebuilds:
            for key in keys:
                self._fail(
                    key,
                    self._request_path(key, request),
                    "failed in a Simulation with other households and could not "
                    f"be traced further: {_message(error, keys, self)}",
                )
            return []
        self.rebuilds += 2
        middle = len(keys) // 2
        return [
            run
            for half in (keys[:middle], keys[middle:])
            for run in self._run(half, action, asked, request)
        ]

    def _build(self, keys: Sequence[str]) -> _Part:
        merged = merge({key: self.situations[key] for key in keys}, self.model.country)
        return _Part(merged, self.simulate(merged.situation), self.model)

    def _locate(
        self, keys: tuple[str, ...], error: Exception
    ) -> tuple[str, Path] | None:
        """The household and path a parsing error names, from merged ids."""
        parsed = _parsing_error(error)
        if parsed is None or len(parsed[0]) < 2:
            return None
        path = parsed[0]
        owner = _layout(keys, self).owner(path[0], path[1])
        if owner is None:
            return None
        key, name = owner
        return key, (ROOT, key, path[0], name, *path[2:])

    def _fail(self, key: str, path: Path, message: str) -> None:
        self.problems.setdefault(key, HouseholdError(key, path, message))

    # -- requests and answers ----------------------------------------------

    def _entities(self, key: str) -> Situation:
        return _entities(self.situations[key], self.model, key)

    def _entity(self, variable: str, period: str) -> str:
        """The variable's entity plural; ``ValueError`` for a request no
        household could answer (unknown variable, unreadable period), so it
        is not traced household by household."""
        from policyengine_core import periods

        system = (
            self.parts[0].simulation.tax_benefit_system
            if self.parts
            else self.model.system
        )
        if variable not in system.variables:
            raise ValueError(f"{variable!r} is not a variable of this country")
        try:
            periods.period(period)
        except ValueError as error:
            raise ValueError(f"{period!r} is not a period: {error}") from error
        return system.variables[variable].entity.plural

    def _request_path(self, key: str, request: tuple[str, str] | None) -> Path:
        """Where the household asks for ``request``, or just the household."""
        if request is not None:
            for where in _requests(self._entities(key)):
                if where[2:] == request:
                    return (ROOT, key, *where)
        return (ROOT, key)

    def _filled(
        self, key: str, answers: Mapping[tuple[str, str], np.ndarray]
    ) -> Situation:
        """The household as sent, its nulls replaced from ``answers``."""
        sent = self.situations[key]
        result = copy.deepcopy(sent)
        entities = self._entities(key)
        names = _layout((key,), self).names[key]
        singular = {g.plural: g.key for g in self.model.groups}
        singular[self.model.person_plural] = self.model.system.person_entity.key
        for plural, name, variable, period in _requests(entities):
            values = _items(answers[(variable, period)])
            position = names[plural].index(name)
            if AXES in entities:
                copies = np.asarray(values).reshape(-1, len(names[plural]))
                answer: Any = [json_value(value) for value in copies[:, position]]
            else:
                answer = json_value(values[position])
            shortcut = singular[plural] in sent and plural not in sent
            target = result[singular[plural]] if shortcut else result[plural][name]
            target[variable][period] = answer
        return result


def _calculation(variable: str, period: str) -> Callable[[_Part], Any]:
    return lambda part: part.simulation.calculate(variable, period)


def _layout(keys: tuple[str, ...], batch: Batch) -> Merged:
    """The merged layout of ``keys`` (names and ids; cheap, no Simulation)."""
    return merge({key: batch.situations[key] for key in keys}, batch.model.country)


def _message(error: Exception, keys: Sequence[str], batch: Batch) -> str:
    """The error's text, merged ids turned back into the client's names."""
    parsed = _parsing_error(error)
    path, text = parsed if parsed else ([], f"{type(error).__name__}: {error}")
    merged = _layout(tuple(keys), batch)

    def back(match: re.Match) -> str:
        plural = batch.model.person_plural if match[2] == "p" else (path or [""])[0]
        owner = merged.owner(plural, match[0])
        return f"{owner[1]!r} of household {owner[0]!r}" if owner else match[0]

    return _ID.sub(back, text)


def _requests(household: Situation) -> list[tuple[str, str, str, str]]:
    """(entity plural, name, variable, period) for every ``null``."""
    found = []
    for plural, instances in household.items():
        if plural == AXES:
            continue
        for name, variables in instances.items():
            for variable, values in variables.items():
                if not isinstance(values, dict):
                    continue  # a role list, or a value for the default period
                for period, value in values.items():
                    if value is None:
                        found.append((plural, name, variable, str(period)))
    return found


def _items(values: Any) -> Any:
    """Enum arrays hold codes; decode them to enum items."""
    return values.decode() if hasattr(values, "decode") else values
