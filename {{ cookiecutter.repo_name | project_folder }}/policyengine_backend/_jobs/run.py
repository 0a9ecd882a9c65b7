"""What a job does, wherever it runs: its endpoint's answer, or its error.

A job is ``{"endpoint": name, "body": checked body}``. Its endpoint is a
worker function (``_model/functions.py``) or, for an endpoint made of other
calculations (``/compare``), the coroutine in ``COMPOSED``. The answer is
the body the endpoint would have given: ``{"status": "ok", ...}``, or the
error body with the ``status_code`` the endpoint would have answered. It
never holds the request body: a job's answer is kept (here, or by Modal)
and any holder of the job id can read it.
"""

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from policyengine_backend._errors import BackendError, answer
from policyengine_backend._model.functions import WORKER_FUNCTIONS

logger = logging.getLogger(__name__)

# Endpoints made of other calculations, by name: how their job is done.
COMPOSED: dict[str, Callable[[Any, dict, Any], Awaitable[bytes]]] = {}


def failed(error: BaseException) -> bytes:
    """A job's answer for ``error``: the endpoint's error body, with the
    status it would have answered."""
    status, body, _ = answer(error)
    return json.dumps({**body, "status_code": status}, separators=(",", ":")).encode()


def is_endpoint(name: str) -> bool:
    return name in WORKER_FUNCTIONS or name in COMPOSED


async def run(engine, request: dict) -> bytes:
    """Do one job. Never raises: whatever happens becomes the job's answer,
    since nobody waits on this call to hear of an exception."""
    started = time.monotonic()
    name = request["endpoint"]
    limit = engine.job_time_limit()
    try:
        if name in COMPOSED:
            result = await COMPOSED[name](engine, request["body"], limit)
        else:
            result = await engine.call(name, request["body"], limit)
        outcome = "ok"
    except Exception as error:
        if not isinstance(error, BackendError):
            logger.exception("job of /%s failed", name)
        result, outcome = failed(error), "error"
    seconds = time.monotonic() - started
    logger.info(
        "job %s in %.1f s",
        outcome,
        seconds,
        extra={
            "job_outcome": outcome,
            "endpoint": name,
            "duration_ms": round(seconds * 1000, 1),
        },
    )
    return result
