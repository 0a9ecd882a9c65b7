"""What goes wrong in a batch, household by household."""

from __future__ import annotations

from collections.abc import Mapping

from policyengine_backend._errors import Problem, field_error, summarise

Path = tuple[str, ...]
ROOT = "households"  # first element of every reported path


class HouseholdError(Exception):
    """One household could not be calculated.

    ``path`` locates the problem in the batch request, starting
    ``("households", key, ...)``, as precisely as it can be told (down to
    ``(..., "people", "you", "age", "2025")`` when policyengine names it).
    """

    def __init__(self, key: str, path: Path, message: str):
        self.key = key
        self.path = path
        self.message = message
        super().__init__(f"{'/'.join(path)}: {message}")


class LayoutError(RuntimeError):
    """A Simulation did not hold the households as merged: a change in
    policyengine-core this module relies on, never a household's fault."""


class BatchError(Problem):
    """Some households failed. ``problems`` holds each failed household's
    error by key; ``results`` holds the answers for all the others, so one bad
    household never costs the rest their answer, and none is dropped silently.

    A ``Problem``: raised out of a worker function it is a 400 with one
    field error per failed household, each located at ``households.<key>``
    and below, as ``/calculate-many``'s request names it.
    """

    def __init__(
        self, problems: Mapping[str, HouseholdError], results: Mapping | None = None
    ):
        self.problems = dict(problems)
        self.results = dict(results or {})
        errors = [field_error(e.path, e.message) for e in self.problems.values()]
        first = errors[0]
        super().__init__(first["loc"], first["msg"])
        self.errors = errors
        self.args = (summarise(errors),)
