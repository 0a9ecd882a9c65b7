"""On Modal, each job is a spawned call of ``run_job``: the wiring in
modal_app.py, checked offline with stand-ins for Modal's calls.

The stand-in call runs the real ``run_job`` body in this process when it is
asked for its result, so what the web function hands back is what a job
container would have returned.
"""

import copy

import modal
import pytest
from fastapi.testclient import TestClient

from api.examples import EXAMPLE_HOUSEHOLD, EXAMPLE_POLICY
from api.settings import Settings


class Aio:
    """A method with the ``.aio`` form Modal's objects have."""

    def __init__(self, function):
        self.aio = function


class StandInCall:
    """What ``run_job.spawn`` returns: a function call with an id, whose
    ``get(timeout=0)`` raises TimeoutError until it is finished."""

    def __init__(self, call_id: str, run_job, request: dict):
        self.object_id = call_id
        self.finished = False
        self.error: Exception | None = None
        self.result = None  # unless set: what run_job returns for request

        async def get(timeout=None):
            assert timeout == 0  # a poll never waits
            if self.error is not None:
                raise self.error
            if not self.finished:
                raise TimeoutError
            return self.result or await run_job.local(request)

        self.get = Aio(get)


class StandInModal:
    """``run_job`` (its ``spawn``) and ``modal.FunctionCall.from_id``."""

    def __init__(self, run_job):
        self.calls: dict[str, StandInCall] = {}
        self.requests: list[dict] = []

        async def spawn(request):
            self.requests.append(request)
            call_id = f"fc-StandIn{len(self.calls) + 1:04d}"
            self.calls[call_id] = StandInCall(call_id, run_job, request)
            return self.calls[call_id]

        self.spawn = Aio(spawn)

    def from_id(self, call_id: str) -> StandInCall:
        if call_id not in self.calls:
            raise modal.exception.NotFoundError(f"no function call {call_id}")
        return self.calls[call_id]


@pytest.fixture
def deployed(web_function_app, modal_app):
    """The web function's app, with its jobs spawned on the stand-in."""
    api = web_function_app
    # The web function hands its jobs to run_job, not to this process.
    assert isinstance(api.state.jobs, modal_app.ModalJobs)
    assert api.state.jobs.function is modal_app.run_job
    stand_in = StandInModal(modal_app.run_job)
    api.state.jobs = modal_app.ModalJobs(stand_in, from_id=stand_in.from_id)
    with TestClient(api) as client:
        yield client, stand_in


def test_a_job_is_a_spawned_call_and_its_id_the_calls(deployed):
    client, modal_calls = deployed
    household = copy.deepcopy(EXAMPLE_HOUSEHOLD)
    household["people"]["parent"]["employment_income"] = {"2025": 52_345}
    body = {"household": household, "policy": EXAMPLE_POLICY}

    submitted = client.post("/jobs", json=body)

    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["job_id"]
    assert list(modal_calls.calls) == [job_id]
    assert modal_calls.requests == [body]
    assert client.get(f"/jobs/{job_id}").json()["status"] == "pending"

    modal_calls.calls[job_id].finished = True
    answer = client.get(f"/jobs/{job_id}")

    assert answer.status_code == 200
    assert answer.json() == client.post("/calculate", json=body).json()
    assert answer.json()["status"] == "ok"


def test_a_bad_job_is_refused_before_anything_is_spawned(deployed):
    client, modal_calls = deployed
    household = copy.deepcopy(EXAMPLE_HOUSEHOLD)
    household["people"]["parent"]["salary"] = {"2025": 1}

    assert client.post("/jobs", json={"household": household}).status_code == 400
    assert modal_calls.calls == {}


@pytest.mark.parametrize(
    "job_id",
    ["fc-NeverSpawned", "not-a-call-id", "fc-../../etc"],
)
def test_unknown_calls_are_a_404(deployed, job_id):
    client, _ = deployed

    response = client.get(f"/jobs/{job_id}")

    assert response.status_code == 404
    assert response.json()["errors"][0]["loc"] == ["path", "job_id"]


def test_an_expired_result_is_a_404(deployed):
    client, modal_calls = deployed
    job_id = client.post("/jobs", json={"household": EXAMPLE_HOUSEHOLD}).json()[
        "job_id"
    ]
    modal_calls.calls[job_id].error = modal.exception.OutputExpiredError()

    assert client.get(f"/jobs/{job_id}").status_code == 404


@pytest.mark.parametrize(
    "result",
    [
        b'{"status":"ok","message":null,"result":{}}',
        {"secret": 1},
        ("other.function", b"{}"),
    ],
)
def test_another_functions_call_is_a_404_never_its_result(deployed, result):
    # Any call of the workspace can be looked up by id: only run_job's
    # answers are passed on.
    client, modal_calls = deployed
    job_id = client.post("/jobs", json={"household": EXAMPLE_HOUSEHOLD}).json()[
        "job_id"
    ]
    modal_calls.calls[job_id].finished = True
    modal_calls.calls[job_id].result = result

    response = client.get(f"/jobs/{job_id}")

    assert response.status_code == 404
    assert "secret" not in response.text


def test_a_call_over_modals_timeout_is_an_error_answer(deployed, modal_app):
    client, modal_calls = deployed
    job_id = client.post("/jobs", json={"household": EXAMPLE_HOUSEHOLD}).json()[
        "job_id"
    ]
    modal_calls.calls[job_id].error = modal.exception.FunctionTimeoutError("timed out")

    answer = client.get(f"/jobs/{job_id}").json()

    assert answer["status"] == "error" and answer["status_code"] == 504
    assert str(modal_app.JOB_FUNCTION_TIMEOUT_SECONDS) in answer["message"]


def test_the_job_function_has_its_own_limits(modal_app):
    info = modal_app.run_job.info()

    # The backend's own limit comes first, so a slow job ends with its
    # message rather than Modal's.
    assert (
        modal_app.JOB_TIMEOUT_SECONDS
        < info.timeout
        == modal_app.JOB_FUNCTION_TIMEOUT_SECONDS
    )
    assert (
        Settings.model_fields["job_timeout_seconds"].default
        == modal_app.JOB_TIMEOUT_SECONDS
    )
    assert modal_app.BACKEND_ENV["JOB_TIMEOUT_SECONDS"] == str(
        modal_app.JOB_TIMEOUT_SECONDS
    )
    assert info.memory_mib == modal_app.MEMORY_MB
    # Not a web endpoint: only the web function starts jobs.
    assert info.web_info is None
