"""What a population job computes: a metric, as a map and a reduce.

A metric is two functions:

- ``arrays(simulation, year)``, the map: from one chunk's Microsimulation
  (the current law's, or the policy's), the per-household or per-person
  arrays the answer needs, unweighted (``economy.values``). It runs where
  the chunk runs: a local process, or a ``population_chunk`` container on
  Modal.
- ``reduce(baseline, reform, request)``: the arrays of every chunk, gathered
  in chunk order (so ``baseline`` and ``reform`` hold the same households,
  row for row), turned into the answer. It sees the whole population at
  once, so a rank or a share is never a chunk's.

``/jobs/impact`` is the metric "impact" (``economy.py``); a project adds its
own with ``population_endpoint``. Chunks find their metric by name, so a
metric must be registered when the app is imported (modal_app.py's
``population_chunk`` imports it too).
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel

from policyengine_backend._population.coupled import PREFIX

Arrays = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Metric:
    name: str
    arrays: Callable[[Any, int], Mapping[str, Any]]
    reduce: Callable[[Arrays, Arrays, Any], Any]
    # How the reduce gets the request (a model instance), and what its
    # answer must be (a result that is not is a 500, never served).
    request_model: type[BaseModel]
    result_model: Any


METRICS: dict[str, Metric] = {}


def register(metric: Metric) -> None:
    """Add ``metric``; the same reduce declared again (its module imported
    again) replaces it, another of the same name is refused."""
    known = METRICS.get(metric.name)
    if known is not None and _where(known.reduce) != _where(metric.reduce):
        raise ValueError(
            f"/jobs/{metric.name} is declared twice: by {_where(known.reduce)} "
            f"and by {_where(metric.reduce)}"
        )
    METRICS[metric.name] = metric


def _where(function: Callable) -> str:
    return f"{function.__module__}.{function.__qualname__}"


def get(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise LookupError(
            f"no population metric named {name!r} here: the module that "
            "declares it is not imported where the chunk runs"
        ) from None


def chunk_arrays(metric: Metric, simulation: Any, year: int) -> dict[str, np.ndarray]:
    """The metric's map on one chunk, as numpy arrays, one dimension each."""
    arrays = {}
    for key, value in metric.arrays(simulation, year).items():
        if key.startswith(PREFIX):
            raise ValueError(f"{metric.name}: array names may not start with {PREFIX}")
        array = np.asarray(value)
        if array.ndim != 1:
            raise ValueError(f"{metric.name}: {key} is not a one-dimensional array")
        arrays[key] = array
    return arrays


def own(arrays: Arrays) -> dict[str, np.ndarray]:
    """The gathered arrays without those ``coupled.py`` added (``PREFIX``)."""
    return {k: v for k, v in arrays.items() if not k.startswith(PREFIX)}
