"""The FastAPI app: the backend's endpoints, CORS, limits, error answers,
the access log and Logfire, with the project's own routers included.

``create_app`` is what ``api/main.py`` calls; nothing here imports ``api``.
"""

import threading
from collections.abc import Iterable
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from policyengine_backend import _logs as logs
from policyengine_backend._engine.engine import MODEL_VERSION
from policyengine_backend._jobs.local import LocalJobs
from policyengine_backend._models import CALCULATE_EXAMPLES, COMPARE_EXAMPLES
from policyengine_backend._settings import APP_NAME, get_settings
from policyengine_backend._web import routes
from policyengine_backend._web.http import (
    MODEL_HEADER,
    AccessLog,
    BodyLimits,
    add_error_handlers,
)


@asynccontextmanager
async def lifespan(app: FastAPI):
    # Warm up in the background so the server answers /health (503 until
    # ready) at once. On Modal this is already done before the snapshot.
    engine = routes.engine
    threading.Thread(target=engine.warm_up, name="warm-up", daemon=True).start()
    yield
    if isinstance(app.state.jobs, LocalJobs):
        app.state.jobs.close()
    engine.close()


def create_app(
    title: str, description: str, routers: Iterable[APIRouter] = ()
) -> FastAPI:
    """The backend's app, its own endpoints first, then ``routers``."""
    settings = get_settings()
    app = FastAPI(
        title=title, description=description, version="0.1.0", lifespan=lifespan
    )
    # Where jobs run: in this process (make dev, tests); modal_app.py swaps
    # in its spawned Modal function calls.
    app.state.jobs = LocalJobs(routes.engine)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.cors_allow_origins),
        allow_origin_regex=settings.cors_allow_origin_regex,
        allow_methods=["GET", "POST"],
        allow_headers=["Content-Type"],
        # Lets a browser frontend read the model version.
        expose_headers=[MODEL_HEADER],
    )
    app.add_middleware(
        BodyLimits,
        max_bytes=settings.max_body_bytes,
        timeout_seconds=settings.body_timeout_seconds,
    )
    app.add_middleware(AccessLog)
    # With LOGFIRE_TOKEN set (the policyengine-logfire secret): traces and
    # logs to Logfire too. Before the first request: it wraps the middleware.
    logs.configure_logfire(app, service_name=APP_NAME, model=MODEL_VERSION)
    add_error_handlers(app)
    app.include_router(routes.router)
    for router in routers:
        app.include_router(router)
    app.openapi = lambda: openapi_with_nulls(app)  # type: ignore[method-assign]
    return app


def openapi_with_nulls(app: FastAPI) -> dict:
    """The OpenAPI schema, with the request examples as they are and the
    answers as the API sends them.

    FastAPI leaves every null out of the schema it serves, and in a
    household a null is how a request asks for a value: without this,
    "Try it out" in /docs would send examples that ask for nothing.

    FastAPI also documents its own 422 body (``HTTPValidationError``) on
    routes with parameters, but this app answers every 422 with its
    ``ErrorResponse`` (``policyengine_backend/_web/http.py``); the frontend's
    generated types (``client/``) follow the schema.
    """
    if app.openapi_schema is None:
        schema = FastAPI.openapi(app)
        schemas = schema["components"]["schemas"]
        schemas["CalculateRequest"]["examples"] = CALCULATE_EXAMPLES
        schemas["CompareRequest"]["examples"] = COMPARE_EXAMPLES
        refer_422s_to_error_response(schema)
        app.openapi_schema = schema
    return app.openapi_schema


def refer_422s_to_error_response(schema: dict) -> None:
    fastapis = {"$ref": "#/components/schemas/HTTPValidationError"}
    for operations in schema["paths"].values():
        for operation in operations.values():
            for answer in operation.get("responses", {}).values():
                body = answer.get("content", {}).get("application/json", {})
                if body.get("schema") == fastapis:
                    body["schema"] = {"$ref": "#/components/schemas/ErrorResponse"}
    for name in ("HTTPValidationError", "ValidationError"):
        schema["components"]["schemas"].pop(name, None)
