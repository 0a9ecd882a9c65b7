"""What the model knows: its parameters and variables, for dashboards.

A dashboard labels its sliders and shows current-law values next to them.
Asking the backend (``GET /parameters/...``, ``GET /variables/...``) keeps
those in step with the model version it runs, where hard-coded values go
stale. Everything here reads current law (the baseline system) in the
server process; nothing needs the calculation worker.

Answers never change within a model version, so they are cached as JSON,
bounded in bytes (``METADATA_CACHE_MB``).
"""

import json
from datetime import date
from typing import Any

from policyengine_core.parameters import Parameter, ParameterNode, ParameterScale

from policyengine_backend._cache import BytesCache
from policyengine_backend._errors import NotFound, field_error
from policyengine_backend._model.household import json_value
from policyengine_backend._model.policy import parse_path


class ModelMetadata:
    def __init__(self, max_bytes: int):
        self.answers = BytesCache(max_bytes)

    def parameter(self, system, path: str, day: date) -> bytes:
        """``/parameters/{path}`` as JSON bytes. Raises NotFound."""
        return self._cached(
            f"parameter {day.isoformat()} {path}",
            lambda: parameter_info(system, path, day),
        )

    def variable(self, system, name: str) -> bytes:
        """``/variables/{name}`` as JSON bytes. Raises NotFound."""
        return self._cached(f"variable {name}", lambda: variable_info(system, name))

    def _cached(self, key: str, describe) -> bytes:
        answer = self.answers.get(key)
        if answer is None:
            try:
                result = describe()
            except NotFound as error:  # the name in the URL path is at fault
                raise NotFound(
                    str(error), [field_error(("path", "name"), str(error))]
                ) from None
            body = {"status": "ok", "message": None, "result": result}
            answer = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
            self.answers.put(key, answer)
        return answer


# --------------------------------------------------------------- parameters


def find_parameter(root, path: str):
    """The parameter or node at ``path`` (the syntax of policies:
    ``gov.irs.credits.ctc.amount.base[0].amount``), as ``get_child`` finds
    it, but saying where the path stops matching."""
    try:
        steps = parse_path(path)
    except ValueError as error:
        raise NotFound(str(error)) from None
    node, walked = root, list[str]()
    for name, index in steps:
        # Leaves and scales have no named children (brackets are numbered).
        children = node.children if isinstance(node, ParameterNode) else {}
        if name not in children:
            where = ".".join(walked) or "the parameter tree"
            raise NotFound(f"unknown parameter: {where} has no {name!r}")
        node = children[name]
        walked.append(name)
        if index is not None:
            brackets = node.brackets if isinstance(node, ParameterScale) else None
            if brackets is None:
                raise NotFound(
                    f"{'.'.join(walked)} is not a scale with [index] brackets"
                )
            if index >= len(brackets):
                raise NotFound(
                    f"{'.'.join(walked)} has {len(brackets)} brackets, [0] to [{len(brackets) - 1}]"
                )
            node = brackets[index]
            walked[-1] = f"{name}[{index}]"
    return node


def parameter_info(system, path: str, day: date) -> dict[str, Any]:
    node = find_parameter(system.parameters, path)
    metadata = getattr(node, "metadata", None) or {}
    info: dict[str, Any] = {
        "name": path,
        "label": metadata.get("label"),
        "description": getattr(node, "description", None),
    }
    if isinstance(node, Parameter):  # a leaf: one value at each date
        try:
            value = value_at(node, day)
        except Exception as error:  # a parameter the model has retired says why
            raise NotFound(f"{path}: {error}") from None
        info.update(unit=metadata.get("unit"), date=day.isoformat(), value=value)
    elif isinstance(node, ParameterScale):  # its brackets
        info["children"] = [f"{path}[{index}]" for index in range(len(node.brackets))]
    else:
        info["children"] = [f"{path}.{name}" for name in node.children]
    return info


def value_at(parameter, day: date) -> Any:
    """The parameter's value in force on ``day`` (None before its first).

    What ``parameter(day)`` gives, read from its dated values (newest
    first) directly: calling the parameter also caches the date's text in
    a module-level dict that is never emptied, one entry per distinct
    date a client sends.
    """
    instant = day.isoformat()
    for entry in parameter.values_list:
        if entry.instant_str <= instant:
            return plain(entry.value)
    return None


def plain(value: Any) -> Any:
    """A parameter value as JSON (lists of values too)."""
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if value is None or isinstance(value, str):
        return value
    return json_value(value)


# ---------------------------------------------------------------- variables


def variable_info(system, name: str) -> dict[str, Any]:
    variable = system.variables.get(name)
    if variable is None:
        raise NotFound(f"unknown variable {name!r}")
    enum = variable.possible_values if variable.value_type.__name__ == "Enum" else None
    return {
        "name": name,
        "label": variable.label,
        "description": variable.documentation,
        "unit": variable.unit,
        "entity": variable.entity.key,
        "value_type": variable.value_type.__name__,
        "definition_period": str(variable.definition_period),
        # An enum's items: "value" is what a household sends and gets back.
        "possible_values": (
            [{"value": item.name, "label": item.value} for item in enum]
            if enum is not None
            else None
        ),
    }
