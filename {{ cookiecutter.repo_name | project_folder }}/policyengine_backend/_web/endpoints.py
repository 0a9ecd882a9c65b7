"""Worker endpoints: the public way to add an endpoint whose work needs the
model.

``worker_endpoint`` turns a plain function of a request model and a
``Simulations`` into ``POST <path>`` and ``POST /jobs/<name>``. The function
runs in the calculation worker, as ``/calculate`` does, with everything
that comes with it: the request's deadline (504), the memory limit and
recycling, the answer cache (keyed by the endpoint and its canonical
request), one log line per request, and the model's refusals turned into
400s that name the request's own fields. A ``household`` or ``policy``
field of the request is checked against the model before any of it waits
for the worker. What it declares is enforced: the request refuses fields it
does not name (unless its model says ``extra="allow"`` or ``"ignore"``), and
a result that does not match ``result_model`` is a 500, never served.
"""

import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, create_model

from policyengine_backend import _logs as logs
from policyengine_backend._engine.engine import Engine
from policyengine_backend._engine.scheduler import TimeLimit
from policyengine_backend._jobs.run import COMPOSED
from policyengine_backend._model.functions import WorkerFunction, register
from policyengine_backend._models import Envelope, Household, JobAccepted
from policyengine_backend._web.responses import CALCULATION_ERRORS, SUBMIT_ERRORS


def request_body(request: BaseModel) -> dict:
    """The request as plain data, defaults filled in (so equal requests
    share a cache entry), households exactly as sent (the answer echoes
    them)."""
    body = request.model_dump(mode="json")
    for field, value in request:
        if isinstance(value, Household):
            body[field] = value.model_dump(exclude_unset=True)
        elif isinstance(value, dict) and any(
            isinstance(each, Household) for each in value.values()
        ):  # households by name (/calculate-many)
            body[field] = {
                name: each.model_dump(exclude_unset=True)
                for name, each in value.items()
            }
    return body


def envelope(result_model: Any, name: str) -> type[BaseModel]:
    """The envelope with ``result_model`` as its result, named ``name`` in
    the OpenAPI schema."""
    return create_model(name, __base__=Envelope, result=(result_model, ...))


def strict(request_model: type[BaseModel]) -> type[BaseModel]:
    """``request_model``, refusing fields it does not name (a 422 naming the
    field, and ``additionalProperties: false`` in the schema, so a typed
    client refuses a misspelling too), unless it says how to treat them."""
    if "extra" in request_model.model_config:
        return request_model
    return type(
        request_model.__name__,
        (request_model,),
        {
            "model_config": ConfigDict(extra="forbid"),
            "__module__": request_model.__module__,
            "__qualname__": request_model.__qualname__,
            "__doc__": request_model.__doc__,
        },
    )


def worker_endpoint(
    router: APIRouter,
    path: str,
    *,
    request_model: type[BaseModel],
    result_model: Any,
    examples: dict[str, Any] | None = None,
) -> Callable:
    """Serve the decorated function at ``POST path`` and ``POST /jobs/<path>``.

    The function takes the request (an instance of ``request_model``) and a
    ``Simulations``, runs in the calculation worker, and returns plain JSON
    data (no NaN, no numpy values) matching ``result_model``, or raises
    ``Problem``. ``examples`` (name: ``{"value": body}``) appear in /docs,
    where "Try it out" sends them.
    """
    name = path.strip("/")
    request_model = strict(request_model)
    if examples:
        body_type: Any = Annotated[request_model, Body(openapi_examples=examples)]
    else:
        body_type = request_model

    def decorate(function: Callable) -> Callable:
        register(
            WorkerFunction(name, f"POST {path}", function, request_model, result_model)
        )
        # "CalculateResponse" for a function named calculate.
        title = "".join(word.capitalize() for word in function.__name__.split("_"))
        response_model = envelope(result_model, f"{title}Response")

        async def endpoint(request: body_type, http: Request) -> Response:  # type: ignore[valid-type]
            engine: Engine = http.app.state.engine
            answer = await engine.call(name, request_body(request))
            return Response(answer, media_type="application/json")

        router.add_api_route(
            path,
            endpoint,
            methods=["POST"],
            response_model=response_model,
            responses=CALCULATION_ERRORS,
            summary=function.__name__.replace("_", " ").capitalize(),
            # Dedented as Python 3.13 does itself: the schema (and client/)
            # is then the same on every Python.
            description=inspect.cleandoc(function.__doc__ or "") or None,
            operation_id=function.__name__,
        )
        add_job_route(router, name, body_type)
        return function

    return decorate


def add_job_route(
    router: APIRouter,
    name: str,
    body_type: Any,
    answer: Callable[[Engine, dict, TimeLimit], Awaitable[bytes]] | None = None,
    check: Callable[[Engine, dict], Awaitable[Any]] | None = None,
) -> None:
    """``POST /jobs/<name>``: the endpoint's request, answered later at
    ``GET /jobs/{job_id}`` with the endpoint's own body. ``answer`` is how
    a job of an endpoint that is not a worker function is done; ``check``
    how its request is checked at submission, if not as ``household`` and
    ``policy`` fields."""
    if answer is not None:
        COMPOSED[name] = answer

    async def submit(request: body_type, http: Request) -> JSONResponse:  # type: ignore[valid-type]
        body = request_body(request)
        # A bad request is refused now, as the endpoint would refuse it.
        engine = http.app.state.engine
        if check is not None:
            await check(engine, body)
        else:
            await engine.check(body.get("household"), body.get("policy"))
        job_id = await http.app.state.jobs.submit({"endpoint": name, "body": body})
        logs.note(job_id=job_id)
        return JSONResponse(
            status_code=202,
            content=JobAccepted(job_id=job_id).model_dump(),
            headers={"Location": f"/jobs/{job_id}"},
        )

    router.add_api_route(
        f"/jobs/{name}",
        submit,
        methods=["POST"],
        status_code=202,
        response_model=JobAccepted,
        responses=SUBMIT_ERRORS,
        summary=f"Start /{name} as a job",
        description=f"Start a /{name} that runs for up to JOB_TIMEOUT_SECONDS; "
        "ask GET /jobs/{job_id} for its answer. A bad request is refused "
        f"here, at once, as /{name} would refuse it.",
        operation_id=f"submit_jobs_{name.replace('-', '_')}",
    )
