"""The backend's own endpoints: ``/health``; ``/calculate`` (one
household, one policy); ``/compare`` (current law against a policy);
jobs (``POST /jobs/<endpoint>``, ``GET /jobs/{job_id}``, see ``_jobs/``);
``/parameters`` and ``/variables`` (what the model knows, see
``_model/metadata.py``).

Each reaches the app's engine and jobs through ``app.state``, where
``create_app`` (``_web/app.py``) put them.
"""

import asyncio
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from policyengine_backend._errors import Unavailable
from policyengine_backend._model import calculation
from policyengine_backend._model.functions import WorkerFunction, register
from policyengine_backend._models import (
    CalculateManyRequest,
    CalculateManyResponse,
    CalculateRequest,
    CompareRequest,
    CompareResponse,
    HealthResponse,
    JobStatus,
    ParameterResponse,
    VariableResponse,
)
from policyengine_backend._population import economy
from policyengine_backend._population import progress as population_progress
from policyengine_backend._population.request import ImpactRequest
from policyengine_backend._settings import COUNTRY, COUNTRY_PACKAGE, PACKAGE_VERSION
from policyengine_backend._web.endpoints import (
    add_job_route,
    request_body,
    worker_endpoint,
)
from policyengine_backend._web.population import population_endpoint
from policyengine_backend._web.responses import CALCULATION_ERRORS, NOT_FOUND
from policyengine_backend.examples import (
    EXAMPLE_PARAMETER,
    EXAMPLE_PARAMETER_GROUP,
    EXAMPLE_VARIABLE,
)

router = APIRouter()


@router.get(
    "/health", response_model=HealthResponse, responses={503: {"model": HealthResponse}}
)
async def health(http: Request) -> JSONResponse:
    """200 when the backend can calculate: the model is loaded and warmed
    up, the calculation worker answers (one found dead or silent is
    replaced here), memory can be read, and calculations are not failing
    one after another. 503 otherwise, with the reason."""
    # In a thread: asking an idle worker whether it answers can take a moment.
    status, message = await asyncio.to_thread(http.app.state.engine.health)
    body = HealthResponse(
        status=status,
        message=message,
        country=COUNTRY,
        package=COUNTRY_PACKAGE,
        version=PACKAGE_VERSION,
    )
    return JSONResponse(
        status_code=200 if status == "ok" else Unavailable.status,
        content=body.model_dump(),
    )


# /calculate, and /jobs/calculate: a worker function like any other.
worker_endpoint(
    router, "/calculate", request_model=CalculateRequest, result_model=dict[str, Any]
)(calculation.calculate)


@router.post("/compare", response_model=CompareResponse, responses=CALCULATION_ERRORS)
async def compare(request: CompareRequest, http: Request) -> Response:
    """The household under current law and under the policy, and the change
    (reform minus baseline) in each value it asks for. Each of the two is a
    /calculate, and shares its cache."""
    household = request.household.model_dump(exclude_unset=True)
    answer = await http.app.state.engine.compare(household, request.policy)
    return Response(answer, media_type="application/json")


add_job_route(
    router,
    "compare",
    CompareRequest,
    answer=lambda engine, body, limit: engine.compare(
        body["household"], body["policy"], limit
    ),
)


# --- Society-wide impacts (policyengine_backend/_population/) ---------------
# POST /jobs/impact: only a job (it runs for minutes); docs/population.md.
population_endpoint(
    router,
    "/impact",
    arrays=economy.impact_arrays,
    request_model=ImpactRequest,
    result_model=dict[str, Any],
)(economy.impact)
# --- end of society-wide impacts ----------------------------------------------

# --- Many households: /calculate-many, /jobs/calculate-many -----------------

# The worker function; the route is the engine's, which answers each
# household from the cache when it can and sends the worker only the rest.
register(
    WorkerFunction(
        "calculate-many",
        "POST /calculate-many",
        calculation.calculate_many,
        CalculateManyRequest,
        dict[str, dict[str, Any]],
    )
)


@router.post(
    "/calculate-many",
    response_model=CalculateManyResponse,
    responses=CALCULATION_ERRORS,
)
async def calculate_many(request: CalculateManyRequest, http: Request) -> Response:
    """Many households at once, each as /calculate would answer it, by the
    names you give them. They are calculated together in one vectorised
    simulation per policy, so a batch costs a fraction of its households
    sent one by one.
    A household the model refuses is a 400 whose field errors start with
    households and its name. Each household shares /calculate's cache."""
    body = request_body(request)
    answer = await http.app.state.engine.calculate_many(
        body["households"], body["policy"]
    )
    return Response(answer, media_type="application/json")


add_job_route(
    router,
    "calculate-many",
    CalculateManyRequest,
    answer=lambda engine, body, limit: engine.calculate_many(
        body["households"], body["policy"], limit
    ),
    check=lambda engine, body: engine.check_many(body["households"], body["policy"]),
)

# --- end of many households ---------------------------------------------------


@router.get("/jobs/{job_id}", response_model=JobStatus, responses=NOT_FOUND)
async def job_status(job_id: str, http: Request) -> Response:
    """ "pending" until the job is done; then exactly what its endpoint would
    have answered ("ok" with the result, or "error" with its message and
    status_code). The job id is all it takes to read the answer: share it as
    you would the answer."""
    answer = await http.app.state.jobs.answer(job_id)
    if answer is None:
        # --- Society-wide impacts: a job's progress while it runs ---
        done = await population_progress.read(job_id)
        pending = JobStatus(status="pending", progress=done)
        # --- end of society-wide impacts ---
        return JSONResponse(content=pending.model_dump())
    return Response(answer, media_type="application/json")


@router.get(
    "/parameters/{name:path}", response_model=ParameterResponse, responses=NOT_FOUND
)
async def parameter(
    http: Request,
    name: Annotated[
        str,
        Path(
            description="A parameter or group, in the syntax of policies.",
            openapi_examples={
                "parameter": {"value": EXAMPLE_PARAMETER},
                "group": {"value": EXAMPLE_PARAMETER_GROUP},
            },
        ),
    ],
    day: Annotated[
        date | None,
        Query(alias="date", description="YYYY-MM-DD; today if left out."),
    ] = None,
) -> Response:
    """A parameter's label, description, unit and value under current law on
    a date; for a group, its children's names."""
    system = await http.app.state.engine.baseline()
    answer = http.app.state.metadata.parameter(system, name, day or date.today())
    return Response(answer, media_type="application/json")


@router.get("/variables/{name}", response_model=VariableResponse, responses=NOT_FOUND)
async def variable(
    http: Request,
    name: Annotated[
        str, Path(openapi_examples={"variable": {"value": EXAMPLE_VARIABLE}})
    ],
) -> Response:
    """A variable's label, description, unit, entity and type; an Enum's
    possible values."""
    system = await http.app.state.engine.baseline()
    answer = http.app.state.metadata.variable(system, name)
    return Response(answer, media_type="application/json")
