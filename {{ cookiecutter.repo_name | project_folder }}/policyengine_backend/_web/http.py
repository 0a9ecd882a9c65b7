"""The HTTP layer: error responses, request limits and the access log.

Every error is a JSON body (``ErrorResponse``) whose ``errors`` name the
fields at fault, from the top of the request body. Every request gets one
log line (``AccessLog``) and every response says which model answered it
(the ``PolicyEngine-Model`` header).
"""

import asyncio
import logging
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from opentelemetry import trace
from starlette.exceptions import HTTPException as StarletteHTTPException

from policyengine_backend import _logs as logs
from policyengine_backend._engine.checks import RequestProblem, problem, summarise
from policyengine_backend._engine.engine import (
    MODEL_VERSION,
    CalculationTimeout,
    WorkerUnavailable,
)
from policyengine_backend._jobs.local import TooManyJobs
from policyengine_backend._model.metadata import NotFound
from policyengine_backend._models import ErrorResponse

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("policyengine_backend.access")

# "policyengine-us/2.68.0": which model (and version) made the answer.
MODEL_HEADER = "PolicyEngine-Model"

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

    Not Starlette's own limit (``max_body_size=``, its
    ``RequestBodyLimitMiddleware``): when a request declares a
    Content-Length over the limit, as ordinary clients do, it replaces
    whatever the app answers with a plain-text "Content Too Large", so the
    413 could not be the JSON error body that names MAX_BODY_BYTES; and it
    has no time limit. The 408 needs the body read here anyway, and counting
    its bytes on the way is all the size limit takes.
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


async def request_problem(request: Request, exc: RequestProblem):
    return error(exc.status, str(exc), exc.problems)


async def calculation_timeout(request: Request, exc: CalculationTimeout):
    return error(504, str(exc))


async def worker_unavailable(request: Request, exc: WorkerUnavailable):
    return error(503, str(exc), headers={"Retry-After": "1"})


async def not_found(request: Request, exc: NotFound):
    # The name in the URL path (/parameters/{name}, /variables/{name}).
    return error(404, str(exc), [problem(("path", "name"), str(exc))])


async def too_many_jobs(request: Request, exc: TooManyJobs):
    return error(429, str(exc))


async def http_error(request: Request, exc: StarletteHTTPException):
    # Keep the headers: a 405 must say which methods are allowed (Allow).
    return error(exc.status_code, str(exc.detail), headers=exc.headers)


async def unexpected_error(request: Request, exc: Exception):
    # Log the traceback for us; the client gets a message, not our internals.
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    # Sent from outside AccessLog, which adds the header to every other answer.
    return error(
        500,
        "internal error; the server log has the details",
        headers={MODEL_HEADER: MODEL_VERSION},
    )


def add_error_handlers(app: FastAPI) -> None:
    """Every error the backend raises, answered as a JSON error body."""
    handlers: dict[Any, Any] = {
        RequestValidationError: invalid_request,
        RequestProblem: request_problem,
        CalculationTimeout: calculation_timeout,
        WorkerUnavailable: worker_unavailable,
        NotFound: not_found,
        TooManyJobs: too_many_jobs,
        StarletteHTTPException: http_error,
        Exception: unexpected_error,
    }
    for exception, handler in handlers.items():
        app.add_exception_handler(exception, handler)
