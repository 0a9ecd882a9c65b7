"""Parameter paths and a policy's identity for caching.

A policy is ``{"gov.path.to.parameter": {"2025-01-01.2100-12-31": value}}``.
Two requests may share a cached system or answer only if policyengine would
compute them alike, so the key keeps what changes the result:

- the order of one parameter's entries: where their dates overlap, the
  later entry wins, so the same entries in another order are another policy;
- one spelling per parameter: ``base[00]`` and ``base[0]`` name the same
  bracket, so paths are keyed in their canonical form.

Only the order of *different* parameters, which never interact, is
normalised. Two spellings of one parameter in one policy are refused by
``policyengine_backend/_engine/checks.py``, so the key never has to merge them.
"""

import json
import re

# One step of a path: a name (parameter names hold letters, digits and
# also "_", "-" or "/"), optionally with a bracket index (``base[0]``).
STEP = re.compile(r"([^.\[\]]+)(?:\[(\d+)\])?")

Path = list[tuple[str, int | None]]


def parse_path(path: str) -> Path:
    """``a.b[2].c`` -> [("a", None), ("b", 2), ("c", None)]; ValueError if
    it is not a path in the syntax policyengine's ``get_child`` reads."""
    steps = []
    for text in path.split("."):
        match = STEP.fullmatch(text)
        if match is None:
            raise ValueError(
                f"{text!r} is not a parameter name or name[index] with a whole "
                "number index such as base[0]"
            )
        name, index = match.groups()
        steps.append((name, None if index is None else int(index)))
    return steps


def canonical_path(path: str) -> str:
    """The one spelling of a parameter path: ``base[00]`` -> ``base[0]``."""
    return ".".join(
        name if index is None else f"{name}[{index}]"
        for name, index in parse_path(path)
    )


def policy_key(policy: dict | None) -> str:
    """A string that is equal for two policies exactly when policyengine
    applies them alike (``policyengine_backend/_engine/checks.py`` has checked the paths)."""
    entries = sorted(
        (
            (canonical_path(path), list(periods.items()))
            for path, periods in (policy or {}).items()
        ),
        key=lambda entry: entry[0],
    )
    return json.dumps(entries, separators=(",", ":"))
