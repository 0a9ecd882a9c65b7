"""The FastAPI app: the backend's endpoints, CORS, limits, error answers,
the access log and Logfire, with the project's own routers included.

``create_app`` is what ``api/main.py`` calls; nothing here imports ``api``.
It is where the backend is wired: it takes the process's engine
(``_engine/engine.py``, made on first use) and puts it, the jobs and the
model's metadata on ``app.state``, where the routes find them.
"""

import asyncio
import contextlib
import signal
import threading
from collections.abc import Iterable
from contextlib import asynccontextmanager
from functools import lru_cache

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from policyengine_backend import _logs as logs
from policyengine_backend._engine.engine import MB, Engine
from policyengine_backend._jobs.local import LocalJobs
from policyengine_backend._model.metadata import ModelMetadata
from policyengine_backend._models import (
    CALCULATE_EXAMPLES,
    CALCULATE_MANY_EXAMPLES,
    COMPARE_EXAMPLES,
)
from policyengine_backend._settings import APP_NAME, MODEL_VERSION, get_settings
from policyengine_backend._web import docs, routes
from policyengine_backend._web.guards import LoopWatch, refuse_simulations_in_the_server
from policyengine_backend._web.middleware import AccessLog, BodyLimits
from policyengine_backend._web.responses import MODEL_HEADER, add_error_handlers


@lru_cache
def get_engine() -> Engine:
    """The process's engine, made on first use. Its first use (by the app,
    the Modal warm-up or the tests) also sets up logging, so all log alike."""
    settings = get_settings()
    logs.configure_logging(settings.log_level)
    return Engine(settings)


@contextlib.contextmanager
def shutting_down_on_sigterm(engine: Engine):
    """On SIGTERM, stop taking calculations at once (queued and running
    requests answer 503, jobs end as failed, nothing is retried), then do
    what the server does on SIGTERM (uvicorn: finish the requests, stop).
    Only the main thread can set a handler: elsewhere (the tests' client)
    this does nothing."""
    previous = signal.getsignal(signal.SIGTERM)

    def handle(signum, frame):
        threading.Thread(target=engine.shut_down, name="shutdown", daemon=True).start()
        if callable(previous):
            previous(signum, frame)

    try:
        signal.signal(signal.SIGTERM, handle)
        installed = True
    except ValueError:  # not the main thread
        installed = False
    try:
        yield
    finally:
        if installed:
            signal.signal(signal.SIGTERM, previous)


@asynccontextmanager
async def lifespan(app: FastAPI):
    engine: Engine = app.state.engine
    engine.open()
    # Warm up in the background so the server answers /health (503 until
    # ready) at once. On Modal this is already done before the snapshot.
    engine.start_warm_up()
    refuse_simulations_in_the_server()
    watch = None
    if seconds := engine.settings.loop_stall_warning_seconds:
        watch = LoopWatch(asyncio.get_running_loop(), seconds)
        watch.start()
    with shutting_down_on_sigterm(engine):
        try:
            yield
        finally:
            if watch is not None:
                watch.stop()
            app.state.jobs.close()
            engine.close()


def create_app(
    title: str,
    description: str,
    routers: Iterable[APIRouter] = (),
    engine: Engine | None = None,
) -> FastAPI:
    """The backend's app, its own endpoints first, then ``routers``."""
    settings = get_settings()
    engine = engine or get_engine()
    app = FastAPI(
        title=title,
        description=description,
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # served from this app's own files: _web/docs.py
        redoc_url=None,
    )
    app.state.engine = engine
    # Where jobs run: in this process (make dev, tests); modal_app.py swaps
    # in its spawned Modal function calls.
    app.state.jobs = LocalJobs(engine)
    app.state.metadata = ModelMetadata(settings.metadata_cache_mb * MB)
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
    app.include_router(docs.router)
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
    ``ErrorResponse`` (``_web/responses.py``); the frontend's generated types
    (``client/``) follow the schema.
    """
    if app.openapi_schema is None:
        schema = FastAPI.openapi(app)
        schemas = schema["components"]["schemas"]
        schemas["CalculateRequest"]["examples"] = CALCULATE_EXAMPLES
        schemas["CompareRequest"]["examples"] = COMPARE_EXAMPLES
        schemas["CalculateManyRequest"]["examples"] = CALCULATE_MANY_EXAMPLES
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
