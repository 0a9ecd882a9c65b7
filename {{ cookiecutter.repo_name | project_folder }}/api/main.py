"""The HTTP layer: routes, error responses, CORS and request limits.

Calculations are CPU-bound and can take seconds, so they run in a small
thread pool rather than on the event loop: ``/health`` keeps answering while
they work.
"""

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.engine import PACKAGE_VERSION, get_engine
from api.models import (
    CalculateRequest,
    CalculateResponse,
    ErrorResponse,
    HealthResponse,
)
from api.settings import COUNTRY, COUNTRY_PACKAGE, get_settings
from api.validation import RequestProblem, problem, summarise

logger = logging.getLogger(__name__)
settings = get_settings()
engine = get_engine()
calculations = ThreadPoolExecutor(
    max_workers=settings.calculation_workers, thread_name_prefix="calculation"
)


@asynccontextmanager
async def lifespan(app: FastAPI):
    # Warm up in the background so the server answers /health (503 until
    # ready) at once. On Modal this is already done before the snapshot.
    threading.Thread(target=engine.warm_up, name="warm-up", daemon=True).start()
    yield


app = FastAPI(
    title={{ cookiecutter.project_name | tojson }},
    description={{ cookiecutter.description | tojson }},
    version="0.1.0",
    lifespan=lifespan,
)
app.add_middleware(
    CORSMiddleware,
    allow_origins=list(settings.cors_allow_origins),
    allow_origin_regex=settings.cors_allow_origin_regex,
    allow_methods=["GET", "POST"],
    allow_headers=["Content-Type"],
)

ERRORS = {
    400: {
        "model": ErrorResponse,
        "description": "Unknown variable, parameter or period.",
    },
    413: {"model": ErrorResponse, "description": "Request body over MAX_BODY_BYTES."},
    422: {"model": ErrorResponse, "description": "Request does not match the schema."},
    504: {"model": ErrorResponse, "description": "Calculation over its time limit."},
}


def error(status: int, message: str, errors: list[dict] | None = None) -> JSONResponse:
    body = ErrorResponse(message=message, errors=errors or [])
    return JSONResponse(status_code=status, content=jsonable_encoder(body))


class BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """Refuse bodies over MAX_BODY_BYTES with a 413, before parsing them.

    Checks the declared Content-Length and also counts what actually
    arrives, so a chunked upload cannot get past the limit either.
    """

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await self.refuse(scope, receive, send)
        received = 0

        async def counting_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise BodyTooLarge
            return message

        try:
            await self.app(scope, counting_receive, send)
        except BodyTooLarge:
            await self.refuse(scope, receive, send)

    async def refuse(self, scope, receive, send):
        response = error(
            413,
            f"request body is over the limit of {self.max_bytes} bytes (MAX_BODY_BYTES)",
        )
        await response(scope, receive, send)


app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)


@app.exception_handler(RequestValidationError)
async def invalid_request(request: Request, exc: RequestValidationError):
    problems = [problem(tuple(item["loc"]), item["msg"]) for item in exc.errors()]
    return error(422, summarise(problems), problems)


@app.exception_handler(RequestProblem)
async def request_problem(request: Request, exc: RequestProblem):
    return error(exc.status, str(exc), exc.problems)


@app.exception_handler(StarletteHTTPException)
async def http_error(request: Request, exc: StarletteHTTPException):
    return error(exc.status_code, str(exc.detail))


@app.exception_handler(Exception)
async def unexpected_error(request: Request, exc: Exception):
    # Log the traceback for us; the client gets a message, not our internals.
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error(500, "internal error; the server log has the details")


@app.get(
    "/health", response_model=HealthResponse, responses={503: {"model": HealthResponse}}
)
async def health() -> JSONResponse:
    """200 once the model is loaded and warmed up, 503 until then."""
    body = HealthResponse(
        status="ok" if engine.ready else "starting",
        country=COUNTRY,
        package=COUNTRY_PACKAGE,
        version=PACKAGE_VERSION,
    )
    return JSONResponse(
        status_code=200 if engine.ready else 503, content=body.model_dump()
    )


@app.post("/calculate", response_model=CalculateResponse, responses=ERRORS)
async def calculate(request: CalculateRequest) -> CalculateResponse:
    """Fill every null in the household, under the policy if one is given."""
    # Only what was sent: the answer echoes the request with nulls filled.
    household = request.household.model_dump(exclude_unset=True)
    job = asyncio.get_running_loop().run_in_executor(
        calculations, engine.calculate, household, request.policy
    )
    try:
        result = await asyncio.wait_for(job, settings.calculation_timeout_seconds)
    except TimeoutError:
        return error(
            504,
            f"calculation took over {settings.calculation_timeout_seconds:g} s "
            "(CALCULATION_TIMEOUT_SECONDS); try fewer axis points",
        )
    return CalculateResponse(result=result)
