"""Logs and traces: where they go and what they look like.

Every log record that reaches the root logger (this package's, and those
of libraries such as policyengine) is written to stdout as one JSON object
per line. Modal keeps a container's stdout as the app's logs (`make logs`),
and `make dev` shows the same lines (uvicorn's own startup lines stay plain
text on stderr). The calculation worker is a fork of the server and shares
its stdout, so its records arrive the same way.

When the ``LOGFIRE_TOKEN`` environment variable is set (the
``policyengine-logfire`` Modal secret), requests, the engine's stages and
these log records are also sent to Logfire. Without it nothing is sent
anywhere: the spans the engine opens go to OpenTelemetry's no-op tracer.
"""

import contextvars
import logging
import os
import sys
from datetime import UTC, datetime

from opentelemetry import trace
from pythonjsonlogger import json as jsonlogger

# The engine's spans; a no-op until Logfire (or any OpenTelemetry SDK) is set up.
tracer = trace.get_tracer("api")


class JsonFormatter(jsonlogger.JsonFormatter):
    """One JSON object per record: time, level, logger, process, message and
    every field passed with ``extra={...}``; a traceback as ``exception``.

    python-json-logger does the work; this names the fields and writes the
    time as ISO 8601 in UTC, to the millisecond.
    """

    def __init__(self):
        super().__init__(
            # "processName" is "calculation" for the worker process
            # (policyengine_backend/_worker/supervisor.py).
            ["asctime", "levelname", "name", "processName", "message"],
            rename_fields={
                "asctime": "time",
                "levelname": "level",
                "name": "logger",
                "processName": "process",
                "exc_info": "exception",
                "stack_info": "stack",
            },
        )

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(
            timespec="milliseconds"
        )


class StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is at the time, so output captured
    by a test runner (which swaps ``sys.stdout``) is captured here too."""

    def __init__(self):
        super().__init__()
        self.setFormatter(JsonFormatter())

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):
        pass  # always sys.stdout


def configure_logging(level: str) -> None:
    """JSON lines on stdout for every logger, from ``level`` up.

    Safe to call more than once: the handler is added once.
    """
    root = logging.getLogger()
    if not any(isinstance(handler, StdoutHandler) for handler in root.handlers):
        root.addHandler(StdoutHandler())
    root.setLevel(level)


# --- Fields of the current request's log line ----------------------------

_request_fields: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
    "request_fields", default=None
)
# "POST /calculate": the request being served, for messages that name it.
ROUTE: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_route", default=None
)


def start_request(fields: dict, route: str) -> tuple:
    """Collect the current request's fields (see ``note``) into ``fields``."""
    return _request_fields.set(fields), ROUTE.set(route)


def end_request(tokens: tuple) -> None:
    fields, route = tokens
    _request_fields.reset(fields)
    ROUTE.reset(route)


def current_route() -> str | None:
    """The request being served in this context ("POST /x"), if any."""
    return ROUTE.get()


def note(**fields) -> None:
    """Add fields to the log line of the request being served, if any.

    The engine calls this (also from threads: ``asyncio.to_thread`` copies
    the context, and with it this request's dict).
    """
    current = _request_fields.get()
    if current is not None:
        current.update(fields)


def add_to_note(**amounts: float) -> None:
    """Add amounts to fields of the request's log line: a /compare runs two
    calculations, and its line shows the time of both."""
    current = _request_fields.get()
    if current is not None:
        for name, amount in amounts.items():
            current[name] = round(current.get(name, 0) + amount, 1)


# --- Logfire ----------------------------------------------------------------


def configure_logfire(app, service_name: str, model: str, **options) -> bool:
    """Send traces and logs to Logfire if ``LOGFIRE_TOKEN`` is set.

    Returns whether it did. ``options`` go to ``logfire.configure`` (the
    tests pass ``send_to_logfire=False``). Called before the app serves its
    first request, and on Modal after the memory snapshot is restored, so
    no exporter thread or connection is frozen into the snapshot.

    The token is checked here, not left to Logfire's
    ``send_to_logfire="if-token-present"``: that only decides whether to
    send, and would still set up the tracer, instrument the app and add a
    logging handler in every process without a token.
    """
    if not os.environ.get("LOGFIRE_TOKEN"):
        return False
    import logfire

    logfire.configure(
        service_name=service_name,
        # Modal sets MODAL_ENVIRONMENT in its containers: main, staging, testing.
        environment=os.environ.get("MODAL_ENVIRONMENT", "local"),
        resource_attributes={"policyengine.model": model},
        console=False,  # stdout already has the JSON lines
        **options,
    )
    logfire.instrument_fastapi(app, request_attributes_mapper=without_request_values)
    logging.getLogger().addHandler(logfire.LogfireLoggingHandler())
    return True


def without_request_values(request, attributes: dict) -> dict | None:
    """What Logfire records of a request's arguments: never the household.

    Logfire would record the parsed request body; a household can describe
    a real person's income. Only validation errors are kept, without the
    offending input.
    """
    errors = [
        {key: value for key, value in error.items() if key != "input"}
        for error in attributes.get("errors") or []
    ]
    return {"errors": errors} if errors else None


def record_span(name: str, start_ns: int, end_ns: int, **attributes) -> None:
    """A finished span with explicit times (nanoseconds since the epoch),
    for work timed elsewhere, such as in the worker process."""
    span = tracer.start_span(name, start_time=start_ns, attributes=attributes)
    span.end(end_time=end_ns)
