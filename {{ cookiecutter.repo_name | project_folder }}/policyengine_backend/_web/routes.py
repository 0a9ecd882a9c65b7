"""The backend's own endpoints: ``/health``; ``/calculate`` (one
household, one policy); ``/compare`` (current law against a policy);
jobs (either of those, collected later: ``POST /jobs/<endpoint>``, see
``policyengine_backend/_jobs/local.py``); ``/parameters`` and ``/variables`` (what
the model knows, see ``policyengine_backend/_model/metadata.py``).

Calculations run in a worker process (``policyengine_backend/_worker/supervisor.py``),
one at a time; the server only reads requests, checks them and answers, so
``/health`` and cached answers never wait behind the model.
"""

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from policyengine_backend._engine.checks import problem
from policyengine_backend._engine.engine import MB, PACKAGE_VERSION, get_engine
from policyengine_backend._jobs.local import Jobs, UnknownJob
from policyengine_backend._model import calculation
from policyengine_backend._model.metadata import ModelMetadata
from policyengine_backend._models import (
    CalculateRequest,
    CompareRequest,
    CompareResponse,
    HealthResponse,
    JobStatus,
    ParameterResponse,
    VariableResponse,
)
from policyengine_backend._settings import COUNTRY, COUNTRY_PACKAGE, get_settings
from policyengine_backend._web.endpoints import add_job_route, worker_endpoint
from policyengine_backend._web.http import ERRORS, NOT_FOUND, error
from policyengine_backend.examples import (
    EXAMPLE_PARAMETER,
    EXAMPLE_PARAMETER_GROUP,
    EXAMPLE_VARIABLE,
)

engine = get_engine()
metadata = ModelMetadata(get_settings().metadata_cache_mb * MB)
router = APIRouter()


@router.get(
    "/health", response_model=HealthResponse, responses={503: {"model": HealthResponse}}
)
async def health() -> JSONResponse:
    """200 when the backend can calculate: the model is loaded and warmed
    up, and the calculation worker is alive (one found dead is replaced
    here). 503 while starting, or when no worker can run."""
    problem_now = engine.worker_problem() if engine.ready else None
    if not engine.ready:
        status = "starting"
    elif problem_now is not None:
        status = "unavailable"
    else:
        status = "ok"
    body = HealthResponse(
        status=status,
        message=problem_now,
        country=COUNTRY,
        package=COUNTRY_PACKAGE,
        version=PACKAGE_VERSION,
    )
    return JSONResponse(
        status_code=200 if status == "ok" else 503, content=body.model_dump()
    )


# /calculate, and /jobs/calculate: a worker function like any other.
worker_endpoint(
    router, "/calculate", request_model=CalculateRequest, result_model=dict[str, Any]
)(calculation.calculate)
# POST /jobs, from before jobs had an endpoint's name: the same as /jobs/calculate.
add_job_route(router, "calculate", CalculateRequest, path="/jobs")


@router.post("/compare", response_model=CompareResponse, responses=ERRORS)
async def compare(request: CompareRequest) -> Response:
    """The household under current law and under the policy, and the change
    (reform minus baseline) in each value it asks for. Each of the two is a
    /calculate, and shares its cache."""
    household = request.household.model_dump(exclude_unset=True)
    answer = await engine.compare(household, request.policy)
    return Response(answer, media_type="application/json")


add_job_route(
    router,
    "compare",
    CompareRequest,
    runner=lambda engine, body, limit: engine.compare(
        body["household"], body["policy"], limit
    ),
)


@router.get("/jobs/{job_id}", response_model=JobStatus, responses=NOT_FOUND)
async def job_status(job_id: str, http: Request) -> Response:
    """ "pending" until the job is done; then exactly what /calculate would
    have answered ("ok" with the result, or "error" with its message)."""
    jobs: Jobs = http.app.state.jobs
    try:
        answer = await jobs.answer(job_id)
    except UnknownJob:
        message = "unknown job, or its answer is no longer kept"
        return error(404, message, [problem(("path", "job_id"), message)])
    if answer is None:
        return JSONResponse(content=JobStatus(status="pending").model_dump())
    return Response(answer, media_type="application/json")


@router.get(
    "/parameters/{name:path}", response_model=ParameterResponse, responses=NOT_FOUND
)
async def parameter(
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
    system = await engine.baseline()
    answer = metadata.parameter(system, name, day or date.today())
    return Response(answer, media_type="application/json")


@router.get("/variables/{name}", response_model=VariableResponse, responses=NOT_FOUND)
async def variable(
    name: Annotated[
        str, Path(openapi_examples={"variable": {"value": EXAMPLE_VARIABLE}})
    ],
) -> Response:
    """A variable's label, description, unit, entity and type; an Enum's
    possible values."""
    system = await engine.baseline()
    answer = metadata.variable(system, name)
    return Response(answer, media_type="application/json")
