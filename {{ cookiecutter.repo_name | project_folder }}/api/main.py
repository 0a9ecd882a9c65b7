"""The HTTP layer: routes, error responses, CORS and request limits.

Routes: ``/health``; ``/calculate`` (one household, one policy);
``/compare`` (current law against a policy); ``/jobs`` (a ``/calculate``
collected later, see ``api/jobs.py``); ``/parameters`` and ``/variables``
(what the model knows, see ``api/metadata.py``).

Calculations run in a worker process (``api/worker.py``), one at a time;
this process only reads requests, checks them and answers, so ``/health``
and cached answers never wait behind the model.

Every request gets one log line (``AccessLog``) and every response says
which model answered it (the ``PolicyEngine-Model`` header).
"""

import asyncio
import logging
import threading
import time
from contextlib import asynccontextmanager
from datetime import date
from typing import Annotated, Any

from fastapi import FastAPI, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from opentelemetry import trace
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import logs
from api.engine import (
    MB,
    MODEL_VERSION,
    PACKAGE_VERSION,
    CalculationTimeout,
    WorkerUnavailable,
    get_engine,
)
from api.examples import EXAMPLE_PARAMETER, EXAMPLE_PARAMETER_GROUP, EXAMPLE_VARIABLE
from api.jobs import Jobs, LocalJobs, TooManyJobs, UnknownJob
from api.metadata import ModelMetadata, NotFound
from api.models import (
    CALCULATE_EXAMPLES,
    COMPARE_EXAMPLES,
    CalculateRequest,
    CalculateResponse,
    CompareRequest,
    CompareResponse,
    ErrorResponse,
    HealthResponse,
    JobAccepted,
    JobStatus,
    ParameterResponse,
    VariableResponse,
)
from api.settings import APP_NAME, COUNTRY, COUNTRY_PACKAGE, get_settings
from api.validation import RequestProblem, problem, summarise

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("api.access")
settings = get_settings()
engine = get_engine()
metadata = ModelMetadata(settings.metadata_cache_mb * MB)

# "policyengine-us/2.68.0": which model (and version) made the answer.
MODEL_HEADER = "PolicyEngine-Model"


@asynccontextmanager
async def lifespan(app: FastAPI):
    # Warm up in the background so the server answers /health (503 until
    # ready) at once. On Modal this is already done before the snapshot.
    threading.Thread(target=engine.warm_up, name="warm-up", daemon=True).start()
    yield
    if isinstance(app.state.jobs, LocalJobs):
        app.state.jobs.close()
    engine.close()


app = FastAPI(
    title={{ cookiecutter.project_name | tojson }},
    description={{ cookiecutter.description | tojson }},
    version="0.1.0",
    lifespan=lifespan,
)
# Where jobs run: in this process (make dev, tests); modal_app.py swaps in
# its spawned Modal function calls.
app.state.jobs = LocalJobs(engine)
app.add_middleware(
    CORSMiddleware,
    allow_origins=list(settings.cors_allow_origins),
    allow_origin_regex=settings.cors_allow_origin_regex,
    allow_methods=["GET", "POST"],
    allow_headers=["Content-Type"],
    # Lets a browser frontend read the model version.
    expose_headers=[MODEL_HEADER],
)

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorResponse,
        "description": "Unknown variable, parameter or period, or a value the model cannot take.",
    },
    408: {
        "model": ErrorResponse,
        "description": "Body not received within BODY_TIMEOUT_SECONDS.",
    },
    413: {"model": ErrorResponse, "description": "Request body over MAX_BODY_BYTES."},
    422: {
        "model": ErrorResponse,
        "description": "Request does not match the schema, or is over a limit.",
    },
    503: {
        "model": ErrorResponse,
        "description": "The calculation worker died and there was no time to run it again.",
    },
    504: {"model": ErrorResponse, "description": "Calculation over its time limit."},
}
SUBMIT_ERRORS: dict[int | str, dict[str, Any]] = {
    **{status: ERRORS[status] for status in (400, 408, 413, 422)},
    429: {
        "model": ErrorResponse,
        "description": "MAX_PENDING_JOBS jobs already waiting; try again later.",
    },
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such name in the model."},
}


def error(
    status: int, message: str, errors: list[dict] | None = None, headers=None
) -> JSONResponse:
    logs.note(error=message)  # the reason, on the request's log line
    body = ErrorResponse(message=message, errors=errors or [])
    return JSONResponse(
        status_code=status, content=jsonable_encoder(body), headers=headers
    )


class BodyLimits:
    """Read the whole request body before the app sees it, within limits.

    Over MAX_BODY_BYTES (declared or counted, so a chunked upload cannot
    pass either) the answer is a 413; a body still arriving after
    BODY_TIMEOUT_SECONDS gets a 408, so a client that sends a byte a second
    cannot hold a request open.
    """

    def __init__(self, app, max_bytes: int, timeout_seconds: float):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_seconds = timeout_seconds

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await self.too_large(scope, receive, send)
        chunks, size = [], 0
        try:
            async with asyncio.timeout(self.timeout_seconds):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":  # the client left
                        return
                    chunks.append(message.get("body", b""))
                    size += len(chunks[-1])
                    if size > self.max_bytes:
                        return await self.too_large(scope, receive, send)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            response = error(
                408,
                f"request body not received within {self.timeout_seconds:g} s "
                "(BODY_TIMEOUT_SECONDS)",
            )
            return await response(scope, receive, send)
        body = b"".join(chunks)
        delivered = False

        async def replay():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def too_large(self, scope, receive, send):
        response = error(
            413,
            f"request body is over the limit of {self.max_bytes} bytes (MAX_BODY_BYTES)",
        )
        await response(scope, receive, send)


app.add_middleware(
    BodyLimits,
    max_bytes=settings.max_body_bytes,
    timeout_seconds=settings.body_timeout_seconds,
)


class AccessLog:
    """One log line per request, and the model version on every response.

    The line has the method, path, status and duration, plus what the
    request noted on its way (``logs.note``): for a calculation, where the
    answer came from, the policy path, axis points and time waiting for the
    worker; for an error, its message. Never the body: a household can
    describe a real person.

    Outermost of the app's middleware, so it sees the answers of BodyLimits
    too. An unhandled error passes through here as an exception (Starlette
    sends its 500 from outside every middleware) and is logged as a 500.
    """

    def __init__(self, app):
        self.app = app
        self.header = (MODEL_HEADER.lower().encode(), MODEL_VERSION.encode())

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        fields: dict = {}
        token = logs.start_request(fields)
        status = None

        async def send_with_model(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # What the request noted, on its trace span too (when traced).
                trace.get_current_span().set_attributes(
                    {**fields, "model": MODEL_VERSION}
                )
                headers = [*message.get("headers", []), self.header]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_model)
        except Exception as exc:
            status = 500
            fields["error"] = f"unhandled {type(exc).__name__}; traceback in the log"
            raise
        finally:
            logs.end_request(token)
            self.log(scope, status, time.perf_counter() - started, fields)

    @staticmethod
    def log(scope, status: int | None, seconds: float, fields: dict) -> None:
        line = {
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "duration_ms": round(seconds * 1000, 1),
            **fields,
            "model": MODEL_VERSION,
        }
        # ERROR only for what needs a fix here: a bug (500). A refused
        # request, a /health "starting" (503) or a timeout (504) is WARNING.
        outcome = str(status) if status else "client left before the answer"
        if status is None:
            level = logging.WARNING
        elif status >= 500 and status not in (503, 504):
            level = logging.ERROR
        elif status >= 400:
            level = logging.WARNING
        else:
            level = logging.INFO
        access_logger.log(
            level,
            "%s %s %s in %.0f ms",
            line["method"],
            line["path"],
            outcome,
            line["duration_ms"],
            extra=line,
        )


app.add_middleware(AccessLog)
# With LOGFIRE_TOKEN set (the policyengine-logfire secret): traces and logs
# to Logfire too. Before the first request: it wraps the middleware stack.
logs.configure_logfire(app, service_name=APP_NAME, model=MODEL_VERSION)


@app.exception_handler(RequestValidationError)
async def invalid_request(request: Request, exc: RequestValidationError):
    # Locations start where the request body does ("household...", as in
    # every other error), not with FastAPI's "body".
    problems = [
        problem(field_location(item["loc"]), item["msg"]) for item in exc.errors()
    ]
    return error(422, summarise(problems), problems)


def field_location(location: tuple) -> tuple:
    """Where a field is, from the body's top ("household..."), as in every
    other error; a JSON syntax error keeps "body" and the character offset."""
    if location[:1] == ("body",) and len(location) > 1 and isinstance(location[1], str):
        return tuple(location[1:])
    return tuple(location)


@app.exception_handler(RequestProblem)
async def request_problem(request: Request, exc: RequestProblem):
    return error(exc.status, str(exc), exc.problems)


@app.exception_handler(CalculationTimeout)
async def calculation_timeout(request: Request, exc: CalculationTimeout):
    return error(504, str(exc))


@app.exception_handler(WorkerUnavailable)
async def worker_unavailable(request: Request, exc: WorkerUnavailable):
    return error(503, str(exc), headers={"Retry-After": "1"})


@app.exception_handler(NotFound)
async def not_found(request: Request, exc: NotFound):
    # The name in the URL path (/parameters/{name}, /variables/{name}).
    return error(404, str(exc), [problem(("path", "name"), str(exc))])


@app.exception_handler(TooManyJobs)
async def too_many_jobs(request: Request, exc: TooManyJobs):
    return error(429, str(exc))


@app.exception_handler(StarletteHTTPException)
async def http_error(request: Request, exc: StarletteHTTPException):
    # Keep the headers: a 405 must say which methods are allowed (Allow).
    return error(exc.status_code, str(exc.detail), headers=exc.headers)


@app.exception_handler(Exception)
async def unexpected_error(request: Request, exc: Exception):
    # Log the traceback for us; the client gets a message, not our internals.
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    # Sent from outside AccessLog, which adds the header to every other answer.
    return error(
        500,
        "internal error; the server log has the details",
        headers={MODEL_HEADER: MODEL_VERSION},
    )


def openapi_with_nulls() -> dict:
    """The OpenAPI schema, with the request examples as they are.

    FastAPI leaves every null out of the schema it serves, and in a
    household a null is how a request asks for a value: without this,
    "Try it out" in /docs would send examples that ask for nothing.
    """
    if app.openapi_schema is None:
        schema = FastAPI.openapi(app)
        schemas = schema["components"]["schemas"]
        schemas["CalculateRequest"]["examples"] = CALCULATE_EXAMPLES
        schemas["CompareRequest"]["examples"] = COMPARE_EXAMPLES
        app.openapi_schema = schema
    return app.openapi_schema


app.openapi = openapi_with_nulls  # type: ignore[method-assign]


@app.get(
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


@app.post("/calculate", response_model=CalculateResponse, responses=ERRORS)
async def calculate(request: CalculateRequest) -> Response:
    """Fill every null in the household, under the policy if one is given."""
    # Only what was sent: the answer echoes the request with nulls filled.
    household = request.household.model_dump(exclude_unset=True)
    answer = await engine.calculate(household, request.policy)
    return Response(answer, media_type="application/json")


@app.post("/compare", response_model=CompareResponse, responses=ERRORS)
async def compare(request: CompareRequest) -> Response:
    """The household under current law and under the policy, and the change
    (reform minus baseline) in each value it asks for."""
    household = request.household.model_dump(exclude_unset=True)
    answer = await engine.compare(household, request.policy)
    return Response(answer, media_type="application/json")


@app.post("/jobs", status_code=202, response_model=JobAccepted, responses=SUBMIT_ERRORS)
async def submit_job(request: CalculateRequest, http: Request) -> JSONResponse:
    """Start a /calculate that runs for up to JOB_TIMEOUT_SECONDS; ask
    GET /jobs/{job_id} for its answer. A bad request is refused here, at
    once, as /calculate would refuse it."""
    household = request.household.model_dump(exclude_unset=True)
    await engine.check(household, request.policy)
    jobs: Jobs = http.app.state.jobs
    job_id = await jobs.submit({"household": household, "policy": request.policy})
    logs.note(job_id=job_id)
    return JSONResponse(
        status_code=202,
        content=JobAccepted(job_id=job_id).model_dump(),
        headers={"Location": f"/jobs/{job_id}"},
    )


@app.get("/jobs/{job_id}", response_model=JobStatus, responses=NOT_FOUND)
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


@app.get(
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


@app.get("/variables/{name}", response_model=VariableResponse, responses=NOT_FOUND)
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
