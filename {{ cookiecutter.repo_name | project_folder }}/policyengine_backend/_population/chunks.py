"""Simulating chunks of a dataset, and gathering their arrays.

A society-wide run is one task per chunk of whole households: each builds
one ``Microsimulation`` of its chunk (baseline or reform) and returns its
metric's arrays (``metrics.py``). Tasks share nothing, so they run one after
another, in a local process pool (``map_local``) or on other machines (the
``population_chunk`` function in modal_app.py, with ``.map``); ``gather``
joins their arrays in chunk order and the metric's reduce takes them.
``simulate`` is that loop, with the population-wide values of
``coupled.py``.
"""

import multiprocessing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from policyengine_backend._population import coupled, metrics
from policyengine_backend._population import dataset as ds

Policy = Mapping[str, Any] | None
Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class Chunk:
    """One task: what a chunk's simulation needs, and nothing large. The
    file is read where the task runs (a Volume on Modal); ``data`` is the
    already loaded and filtered dataset when the task runs in this process
    or a fork of it."""

    path: str
    sha256: str | None
    region: str | None
    index: int
    count: int
    year: int
    policy: dict | None
    inputs: coupled.PopulationInputs | None = None
    metric: str = "impact"  # what the chunk returns (``metrics.py``)


def microsimulation_class() -> type:
{%- if cookiecutter.country == "us" %}
    from policyengine_us import Microsimulation

{%- else %}
    from policyengine_uk import Microsimulation
{%- endif %}

    return Microsimulation


{%- if cookiecutter.country == "us" %}


# This process's tax-benefit systems: the current law's (the model's own,
# warm in a process forked from the server), and reformed ones derived from
# it as the household path derives them.
_systems: Any = None


def systems() -> Any:
    """This process's ``_model.systems.TaxBenefitSystems``.

    ``Microsimulation(reform=...)`` builds a new tax-benefit system for every
    simulation (about a minute, whatever the number of households), which
    would dominate a run of many chunks. A policy's system is derived here
    once per process, in seconds, and each chunk's simulation runs on a
    cheap copy of it, as a household's does. The tests check the figures
    equal ``Microsimulation(reform=Reform.from_dict(policy))``.
    """
    global _systems
    if _systems is None:
        import policyengine_us

        from policyengine_backend._model.systems import TaxBenefitSystems

        _systems = TaxBenefitSystems(policyengine_us, "us", max_cached=4)
    return _systems


{%- endif %}


def make_simulation(data: Any, policy: Policy = None) -> Any:
    """A Microsimulation of ``data`` under ``policy`` (None: current law).

    US: the policy applies as ``Reform.from_dict(policy)``, on a reformed
    system derived once per process (``systems``). UK: it is given as a
    dict, policyengine-uk's own route, which also decides whether it applies
    before the data is projected. Structural reforms the policy switches on
    apply as the model applies them.
    """
    data = ds.fresh_copy(data)
    if not policy:
        return microsimulation_class()(dataset=data)
{%- if cookiecutter.country == "us" %}
    return systems().microsimulation(data, dict(policy))
{%- else %}
    return microsimulation_class()(dataset=data, reform=dict(policy))


{%- endif %}


def direct_simulation(data: Any, policy: Policy = None) -> Any:
    """A Microsimulation built exactly as policyengine documents it, sharing
    nothing: what the tests compare every figure with."""
    cls = microsimulation_class()
    data = ds.fresh_copy(data)
    if not policy:
        return cls(dataset=data)
{%- if cookiecutter.country == "us" %}
    from policyengine_core.reforms import Reform

    return cls(dataset=data, reform=Reform.from_dict(dict(policy), country_id="us"))
{%- else %}
    return cls(dataset=data, reform=dict(policy))


{%- endif %}


def load(path: str, sha256: str | None, region: str | None) -> Any:
    return ds.filter_region(ds.load(path, sha256), region)


def run_chunk(task: Chunk, data: Any = None) -> Arrays:
    """Simulate one chunk: its metric's arrays (and what ``coupled.settle``
    needs). ``data``: the loaded, filtered dataset, if this process has it;
    else the file is read here."""
    if data is None:
        data = load(task.path, task.sha256, task.region)
    part = ds.chunk(data, task.index, task.count)
    simulation = make_simulation(part, task.policy)
    chunked = task.count > 1
    coupled.apply(simulation, task.year, task.inputs, chunked)
    arrays = metrics.chunk_arrays(metrics.get(task.metric), simulation, task.year)
    arrays.update(coupled.chunk_arrays(simulation, task.year))
    coupled.check(simulation, chunked)
    return arrays


def gather(chunk_arrays: Sequence[Mapping[str, np.ndarray]]) -> Arrays:
    """Concatenate the arrays of all chunks, in chunk order."""
    keys = list(chunk_arrays[0])
    if any(list(arrays) != keys for arrays in chunk_arrays):
        raise ValueError("chunks returned different arrays")
    return {
        key: np.concatenate([np.asarray(a[key]) for a in chunk_arrays]) for key in keys
    }


# The dataset the forked pool's processes inherit (not pickled per task).
_inherited: Any = None


def _run_inherited(task: Chunk) -> Arrays:
    return run_chunk(task, _inherited)


Mapper = Callable[[Sequence[Chunk], Callable[[], None]], list[Arrays]]


def map_local(data: Any, processes: int) -> Mapper:
    """Run tasks on ``data`` in ``processes`` forked processes (here, one
    after another, if 1), calling ``done()`` as each finishes.

    Each task runs in a fresh process (``maxtasksperchild=1``), so a chunk's
    memory is returned when it ends and the peak is about ``processes``
    chunks. Forked from here, they inherit the imported model and the data.
    """

    def run(tasks: Sequence[Chunk], done: Callable[[], None]) -> list[Arrays]:
        global _inherited
        if processes <= 1:
            results = []
            for task in tasks:
                results.append(run_chunk(task, data))
                done()
            return results
        _inherited = data
        warm(tasks[0].policy)
        context = multiprocessing.get_context("fork")
        with context.Pool(processes=processes, maxtasksperchild=1) as pool:
            results = []
            for arrays in pool.imap(_run_inherited, tasks, chunksize=1):
                results.append(arrays)
                done()
            return results

    return run


def warm(policy: Policy) -> None:
    """Build what every chunk of ``policy`` shares before forking the pool,
    so its processes inherit it rather than each building it again."""
{%- if cookiecutter.country == "us" %}
    if policy:
        systems().for_policy(dict(policy))
{%- endif %}


def simulate(
    data: Any,
    tasks: Sequence[Chunk],
    mapper: Mapper,
    done: Callable[[], None] = lambda: None,
    start: coupled.PopulationInputs | None = None,
) -> tuple[Arrays, coupled.PopulationInputs | None]:
    """The gathered arrays of one economy (baseline or reform), chunked.

    ``data`` (the loaded, filtered dataset) is needed here only when the
    country has population-wide values to compute (``coupled.needed()``):
    they are prepared, the chunks run, and chunks given a ranked value that
    turned out otherwise run again. Returns the arrays and those values,
    which a reform's run can ``start`` from.
    """
    first = tasks[0]
    if first.count <= 1 or not coupled.needed():
        return gather(mapper(tasks, done)), None
    inputs = coupled.prepare(data, first.year, first.policy, make_simulation, start)
    tasks = [_with_inputs(task, inputs) for task in tasks]
    results = mapper(tasks, done)
    for _ in range(coupled.MAX_ROUNDS):
        inputs, stale = coupled.settle(
            data, first.year, first.policy, inputs, results, make_simulation
        )
        if not stale:
            return gather(results), inputs
        again = mapper([_with_inputs(tasks[i], inputs) for i in stale], lambda: None)
        for index, arrays in zip(stale, again, strict=True):
            results[index] = arrays
    raise RuntimeError("population-ranked values did not settle")


def _with_inputs(task: Chunk, inputs: coupled.PopulationInputs | None) -> Chunk:
    from dataclasses import replace

    return replace(task, inputs=inputs)
