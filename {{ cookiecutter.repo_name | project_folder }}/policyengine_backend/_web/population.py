"""Population endpoints: the public way to add a job over a whole weighted
population, as ``worker_endpoint`` adds one over households.

``population_endpoint`` turns a reduce function into ``POST /jobs/<name>``,
given the map (``arrays``) it reduces. The job runs as /jobs/impact does
(it is one, declared in ``routes.py``): the request checked at submission,
the dataset read and checked, chunks of households simulated under current
law and under the policy (in local processes, or ``population_chunk``
containers on Modal), progress at ``GET /jobs/{job_id}``, the current law's
arrays and the answer kept for the next request. ``_population/metrics.py``
says what each function is given.
"""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body
from pydantic import BaseModel

from policyengine_backend._population import impact, metrics
from policyengine_backend._population.request import PopulationRequest
from policyengine_backend._web.endpoints import add_job_route, strict


def population_endpoint(
    router: APIRouter,
    path: str,
    *,
    arrays: Callable[[Any, int], Any],
    result_model: Any,
    request_model: type[BaseModel] = PopulationRequest,
    examples: dict[str, Any] | None = None,
) -> Callable:
    """Serve the decorated reduce at ``POST /jobs<path>``.

    ``arrays(simulation, year)`` runs on each chunk's Microsimulation, the
    current law's and the policy's, and returns one-dimensional arrays by
    name (per household or per person, unweighted: ``unweighted``). The
    decorated ``reduce(baseline, reform, request)`` gets each name's array
    over the whole population, baseline and reform row for row the same
    people, and the request (an instance of ``request_model``, a
    ``PopulationRequest``); it returns a JSON object matching
    ``result_model``, to which the answer adds ``model_version``,
    ``dataset``, ``year`` and ``region``.
    """
    if not issubclass(request_model, PopulationRequest):
        raise TypeError(f"{path}: request_model must subclass PopulationRequest")
    name = path.strip("/")
    request_model = strict(request_model)
    body_type: Any = (
        Annotated[request_model, Body(openapi_examples=examples)]
        if examples
        else request_model
    )

    def decorate(reduce: Callable) -> Callable:
        metric = metrics.Metric(name, arrays, reduce, request_model, result_model)
        metrics.register(metric)
        add_job_route(router, name, body_type, answer=impact.answer_for(name))
        return reduce

    return decorate
