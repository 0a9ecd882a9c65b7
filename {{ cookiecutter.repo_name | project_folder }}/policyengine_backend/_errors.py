"""Every error the machinery raises, and the one table of how each is answered.

An error a client can get is a ``BackendError``: its class gives the HTTP
status (``STATUS``, whose meanings the OpenAPI schema documents), the
instance says what happened. ``answer`` turns any exception into a status,
a JSON body and headers, wherever it is answered: an HTTP request
(``_web/responses.py``) or a job, here or on Modal (``_jobs/``). Anything
else is a bug in this code: a 500 whose message hides the details, which
go to the log.

The client's request error is ``Problem``: one or more field errors, each
the path to a field from the top of the request body and what is wrong
with it. Worker functions raise it too (it is public).

This module imports nothing of the machinery's, so every other can use it.
"""

from collections.abc import Mapping
from typing import Any

INTERNAL_ERROR = "internal error; the server log has the details"


def field_error(location: tuple | list, message: str) -> dict:
    """One field's error: ``{"loc": ["household", "people"], "msg": "..."}``.
    An empty location is the request as a whole."""
    return {"loc": list(location), "msg": message}


def summarise(errors: list[dict]) -> str:
    """The first error, with its field, and how many more there are."""
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"])
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return (f"{where}: " if where else "") + first["msg"] + more


class BackendError(Exception):
    """An error with an answer: a status, a message and field errors."""

    status = 500

    def __init__(self, message: str, errors: list[dict] | None = None):
        super().__init__(message)
        self.errors = errors or []

    @property
    def headers(self) -> dict[str, str]:
        return {}


class Problem(BackendError):
    """The client's request error: what in the request body is wrong.

    ``Problem(("earner",), "no person of that name")`` is a 400 at that
    field. ``Problem.of`` gathers several field errors into one.
    """

    status = 400

    def __init__(self, location: tuple | list, message: str, status: int | None = None):
        errors = [field_error(location, message)]
        super().__init__(summarise(errors), errors)
        if status is not None:  # as a worker's reply carries it
            self.status = status

    @classmethod
    def of(cls, errors: list[dict], status: int | None = None) -> "Problem":
        problem = cls(errors[0]["loc"], errors[0]["msg"], status)
        problem.errors = list(errors)
        problem.args = (summarise(errors),)
        return problem


class InvalidRequest(Problem):
    """The request does not match its schema (FastAPI's validation)."""

    status = 422


class OverLimit(Problem):
    """The request is over a limit of the backend's (MAX_..., MEMORY_LIMIT_MB,
    JOB_RESULTS_MB), named in the message, at the field that holds the most."""

    status = 422


class NotFound(BackendError):
    """No such name in the model, or no such job (at ``path``)."""

    status = 404


class HTTPError(BackendError):
    """An error the web framework found (an unknown path: 404; a method the
    path does not take: 405), with the status it gave."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class BodyTimeout(BackendError):
    status = 408


class BodyTooLarge(BackendError):
    status = 413


class TooManyJobs(BackendError):
    status = 429


class Bug(BackendError):
    """A fault in code, not in the request: a worker function that returned
    what it did not declare, or exited, or a route that built a Simulation in
    the server. The message says what and where; it holds no request data."""

    status = 500


class Unavailable(BackendError):
    """The backend cannot answer now, though the request may be fine:
    starting, shutting down, or its worker died with no time left."""

    status = 503

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class CalculationTimeout(BackendError):
    status = 504


# What each status means, for the OpenAPI schema (each route lists those it
# can answer) and for people reading the docs.
STATUS = {
    400: "Unknown variable, parameter or period, a value the model cannot take, "
    "or a request the endpoint refuses (the field is named).",
    404: "No such name in the model, or no such job.",
    408: "Body not received within BODY_TIMEOUT_SECONDS.",
    413: "Request body over MAX_BODY_BYTES.",
    422: "Request does not match the schema, or is over a limit (both named).",
    429: "MAX_PENDING_JOBS jobs already waiting; try again later.",
    500: "A fault in the backend's code; the message says where.",
    503: "Starting, shutting down, or the calculation worker died with no time "
    "to run the request again; send it again (Retry-After).",
    504: "The calculation passed its time limit.",
}


def answer(error: BaseException) -> tuple[int, dict[str, Any], dict[str, str]]:
    """The status, JSON body and headers that answer ``error``."""
    if isinstance(error, BackendError):
        status, message = error.status, str(error)
        errors, headers = error.errors, error.headers
    else:
        status, message, errors, headers = 500, INTERNAL_ERROR, [], {}
    body = {"status": "error", "message": message, "result": None, "errors": errors}
    return status, body, headers


# --- Inside the machinery: turned into the answers above ---------------------


class PolicyFailed(Exception):
    """policyengine itself cannot build the policy's tax-benefit system
    (answered as a Problem at ``policy``, and remembered)."""


class WorkerStopped(Exception):
    """A job did not finish; the scheduler says why to the client."""


class JobTimedOut(WorkerStopped):
    pass


class JobOutOfMemory(WorkerStopped):
    pass


class WorkerCrashed(WorkerStopped):
    """A worker process ended on its own (killed, by the kernel or an
    operator): not the job's doing as far as anyone can tell, so the job
    may be tried once more."""


class JobCancelled(WorkerStopped):
    """Nobody waits for the job any more, or the server is shutting down."""


# --- Many households (``_model/batch``) ---------------------------------------


class HouseholdError(Exception):
    """One household could not be calculated.

    ``path`` locates the problem in the batch request, starting
    ``("households", key, ...)``, as precisely as it can be told (down to
    ``(..., "people", "you", "age", "2025")`` when policyengine names it).
    """

    def __init__(self, key: str, path: tuple[str, ...], message: str):
        self.key = key
        self.path = path
        self.message = message
        super().__init__(f"{'/'.join(path)}: {message}")


class LayoutError(RuntimeError):
    """A Simulation did not hold the households as merged: a change in
    policyengine-core this module relies on, never a household's fault."""


class BatchError(Problem):
    """Some households failed. ``problems`` holds each failed household's
    error by key; ``results`` holds the answers for all the others, so one bad
    household never costs the rest their answer, and none is dropped silently.

    A ``Problem``: raised out of a worker function it is a 400 with one
    field error per failed household, each located at ``households.<key>``
    and below, as ``/calculate-many``'s request names it.
    """

    def __init__(
        self, problems: Mapping[str, HouseholdError], results: Mapping | None = None
    ):
        self.problems = dict(problems)
        self.results = dict(results or {})
        errors = [field_error(e.path, e.message) for e in self.problems.values()]
        first = errors[0]
        super().__init__(first["loc"], first["msg"])
        self.errors = errors
        self.args = (summarise(errors),)


# --- Society-wide impacts (``_population``) -----------------------------------


class DatasetError(Exception):
    """A dataset file is missing, malformed, or not the one expected. The
    message always names the file (answered as Unavailable: 503)."""


class CoupledPolicy(ValueError):
    """A chunk used a population-wide variable chunking cannot keep exact
    (the reform then runs in one chunk)."""
