"""Error answers: every error is a JSON body (``ErrorResponse``) whose
``errors`` name the fields at fault, from the top of the request body.

What status and body an error gets is ``_errors.answer``'s to say; this
module hands FastAPI the handlers that use it, and documents each route's
possible answers in the OpenAPI schema from ``_errors.STATUS``.
"""

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from policyengine_backend import _logs as logs
from policyengine_backend._errors import (
    STATUS,
    BackendError,
    HTTPError,
    InvalidRequest,
    answer,
    field_error,
)
from policyengine_backend._models import ErrorResponse
from policyengine_backend._settings import MODEL_VERSION

logger = logging.getLogger(__name__)

# "policyengine-us/2.68.0": which model (and version) made the answer.
MODEL_HEADER = "PolicyEngine-Model"


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of a route that can answer ``statuses``."""
    return {
        status: {"model": ErrorResponse, "description": STATUS[status]}
        for status in statuses
    }


# The statuses of each kind of route.
CALCULATION_ERRORS = documented(400, 408, 413, 422, 500, 503, 504)
SUBMIT_ERRORS = documented(400, 408, 413, 422, 429, 503)
NOT_FOUND = documented(404)


def error_response(
    error: BaseException, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The JSON answer to ``error``; its message goes on the request's log line."""
    status, body, error_headers = answer(error)
    logs.note(error=body["message"])
    return JSONResponse(
        status_code=status, content=body, headers={**error_headers, **(headers or {})}
    )


async def backend_error(request: Request, error: BackendError) -> JSONResponse:
    return error_response(error)


async def invalid_request(request: Request, error: RequestValidationError):
    # Locations start where the request body does ("household...", as in
    # every other error), not with FastAPI's "body".
    errors = [
        field_error(field_location(item["loc"]), item["msg"]) for item in error.errors()
    ]
    return error_response(InvalidRequest.of(errors))


def field_location(location: tuple) -> tuple:
    """Where a field is, from the body's top ("household..."), as in every
    other error; the whole body (a model validator's error) is ``()``; a JSON
    syntax error keeps "body" and the character offset."""
    if tuple(location) == ("body",):
        return ()
    if location[:1] == ("body",) and len(location) > 1 and isinstance(location[1], str):
        return tuple(location[1:])
    return tuple(location)


async def http_error(request: Request, error: StarletteHTTPException):
    # Keep the headers: a 405 must say which methods are allowed (Allow).
    return error_response(
        HTTPError(error.status_code, str(error.detail)), error.headers
    )


async def unexpected_error(request: Request, error: Exception):
    # Log the traceback for us; the client gets a message, not our internals.
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    # Sent from outside AccessLog, which adds the header to every other answer.
    return error_response(error, headers={MODEL_HEADER: MODEL_VERSION})


def add_error_handlers(app: FastAPI) -> None:
    """Every error the backend raises, answered as a JSON error body."""
    handlers: dict[Any, Any] = {
        RequestValidationError: invalid_request,
        BackendError: backend_error,
        StarletteHTTPException: http_error,
        Exception: unexpected_error,
    }
    for exception, handler in handlers.items():
        app.add_exception_handler(exception, handler)
