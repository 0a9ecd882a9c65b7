"""On Modal, each job is a spawned call of ``run_job``: the wiring in
modal_app.py and policyengine_backend/_jobs/modal.py, checked offline with
stand-ins for Modal's calls and Dicts.

The stand-in call runs the real ``run_job`` body in this process when it is
asked for its result, so what the web function hands back is what a job
container would have returned.
"""

import asyncio
import copy

import modal
import pytest
from fastapi.testclient import TestClient

from policyengine_backend._jobs import modal as modal_jobs
from policyengine_backend._jobs.modal import ModalJobs, environment, job_mark
from policyengine_backend._settings import APP_NAME, Settings, get_settings
from policyengine_backend.examples import EXAMPLE_HOUSEHOLD, EXAMPLE_POLICY


@pytest.fixture(autouse=True)
def impacts_run_here_again(monkeypatch):
    """``run_job`` points impacts at Modal's chunk function for its
    container's life; this process goes on running them itself."""
    from policyengine_backend._population import impact

    monkeypatch.setattr(impact, "_remote", impact._remote)
    monkeypatch.setattr(impact, "_on_write", impact._on_write)


class Aio:
    """A method with the ``.aio`` form Modal's objects have."""

    def __init__(self, function):
        self.aio = function


class StandInDict:
    """A ``modal.Dict`` in memory, with the ``.aio`` methods ModalJobs uses."""

    _MISSING = object()

    def __init__(self):
        self.data: dict = {}

        async def get(key, default=None):
            return self.data.get(key, default)

        async def put(key, value):
            self.data[key] = value
            return True

        async def pop(key, default=self._MISSING):
            if default is self._MISSING:
                return self.data.pop(key)
            return self.data.pop(key, default)

        async def items():
            for item in list(self.data.items()):
                yield item

        self.get, self.put, self.pop = Aio(get), Aio(put), Aio(pop)
        self.items = Aio(items)


class StandInCall:
    """What ``run_job.spawn`` returns: a function call with an id, whose
    ``get(timeout=0)`` raises TimeoutError until it is finished. Finished,
    it runs ``run_job`` as Modal would, with this call's id as the current
    call's."""

    def __init__(self, call_id: str, modal_calls: "StandInModal", request: dict):
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
            if self.result is None:
                modal_calls.running = call_id
                try:
                    self.result = await modal_calls.run_job.local(request)
                finally:
                    modal_calls.running = None
            return self.result

        self.get = Aio(get)


class StandInModal:
    """``run_job`` (its ``spawn``), ``modal.FunctionCall.from_id`` (which
    records every id it is asked for) and the app's two Dicts."""

    def __init__(self, run_job):
        self.run_job = run_job
        self.calls: dict[str, StandInCall] = {}
        self.requests: list[dict] = []
        self.looked_up: list[str] = []
        self.running: str | None = None  # the call run_job is running for
        self.issued = StandInDict()
        self.pending = StandInDict()
        self.finish_at_once = False

        async def spawn(request):
            self.requests.append(request)
            call_id = f"fc-StandIn{len(self.calls) + 1:04d}"
            self.calls[call_id] = StandInCall(call_id, self, request)
            if self.finish_at_once:  # done before spawn has even returned
                self.calls[call_id].finished = True
                await self.calls[call_id].get.aio(timeout=0)
            return self.calls[call_id]

        self.spawn = Aio(spawn)

    def from_id(self, call_id: str) -> StandInCall:
        self.looked_up.append(call_id)
        if call_id not in self.calls:
            raise modal.exception.NotFoundError(f"no function call {call_id}")
        return self.calls[call_id]


@pytest.fixture
def deployed(web_function_app, modal_app, monkeypatch):
    """The web function's app, with its jobs spawned on the stand-in."""
    api = web_function_app
    jobs = api.state.jobs
    # The web function hands its jobs to run_job, not to this process, and
    # keeps them in the environment's Modal Dicts, under the settings' cap.
    assert isinstance(jobs, ModalJobs)
    assert jobs.function is modal_app.run_job
    assert isinstance(jobs.issued, modal.Dict) and isinstance(jobs.pending, modal.Dict)
    assert jobs.max_pending == get_settings().max_pending_jobs
    assert jobs.expiry_seconds == modal_app.JOB_FUNCTION_TIMEOUT_SECONDS
    stand_in = StandInModal(modal_app.run_job)
    # run_job frees its place in the environment's Dict.
    monkeypatch.setattr(modal_jobs, "pending_jobs", lambda: stand_in.pending)
    api.state.jobs = ModalJobs(
        stand_in,
        max_pending=jobs.max_pending,
        expiry_seconds=jobs.expiry_seconds,
        issued=stand_in.issued,
        pending=stand_in.pending,
        from_id=stand_in.from_id,
    )
    with TestClient(api) as client:
        yield client, stand_in


def submit(client) -> str:
    response = client.post("/jobs/calculate", json={"household": EXAMPLE_HOUSEHOLD})
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def test_a_job_is_a_spawned_call_and_its_id_the_calls(deployed):
    client, modal_calls = deployed
    household = copy.deepcopy(EXAMPLE_HOUSEHOLD)
    household["people"]["parent"]["employment_income"] = {"2025": 52_345}
    body = {"household": household, "policy": EXAMPLE_POLICY}

    submitted = client.post("/jobs/calculate", json=body)

    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["job_id"]
    assert list(modal_calls.calls) == [job_id]
    # What run_job gets: the endpoint's name, its checked body, and the
    # place it holds under MAX_PENDING_JOBS.
    (request,) = modal_calls.requests
    assert request["endpoint"] == "calculate" and request["body"] == body
    assert list(modal_calls.pending.data) == [request["slot"]]
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

    assert (
        client.post("/jobs/calculate", json={"household": household}).status_code == 400
    )
    assert modal_calls.calls == {}


@pytest.mark.parametrize(
    "job_id",
    ["fc-NeverSpawned", "not-a-call-id", "fc-../../etc"],
)
def test_unknown_calls_are_a_404(deployed, job_id):
    client, modal_calls = deployed

    response = client.get(f"/jobs/{job_id}")

    assert response.status_code == 404
    assert response.json()["errors"][0]["loc"] == ["path", "job_id"]
    assert modal_calls.looked_up == []


def test_a_call_this_app_did_not_issue_is_never_fetched(deployed):
    # A finished call of the workspace (another app's, say), whose id
    # someone learned: it is not looked up, let alone downloaded.
    client, modal_calls = deployed
    call = asyncio.run(modal_calls.spawn.aio({"household": {}}))
    call.finished = True
    call.result = ("anything", b'{"secret":1}')

    response = client.get(f"/jobs/{call.object_id}")

    assert response.status_code == 404
    assert "secret" not in response.text
    assert modal_calls.looked_up == []


def test_an_id_recorded_by_another_environment_is_a_404(deployed):
    client, modal_calls = deployed
    others = [
        job_mark(name)
        for name in ("main", "staging", "testing")
        if job_mark(name) != job_mark()
    ]
    assert len(others) >= 2
    job_ids = [submit(client) for _ in others]
    assert all(modal_calls.issued.data[id] == job_mark() for id in job_ids)
    for job_id, mark in zip(job_ids, others, strict=True):
        modal_calls.calls[job_id].finished = True
        modal_calls.issued.data[job_id] = mark

        assert client.get(f"/jobs/{job_id}").status_code == 404
    assert modal_calls.looked_up == []


def test_the_mark_names_the_modal_environment(monkeypatch):
    monkeypatch.setenv("MODAL_ENVIRONMENT", "staging")
    assert environment() == "staging"
    monkeypatch.delenv("MODAL_ENVIRONMENT")
    assert environment() == "local"

    marks = {job_mark(name) for name in ("main", "staging", "testing")}
    assert len(marks) == 3
    assert all(APP_NAME in mark for mark in marks)
    assert job_mark() == job_mark(environment())


def test_past_max_pending_jobs_a_job_is_refused_until_one_finishes(deployed):
    client, modal_calls = deployed
    client.app.state.jobs.max_pending = 2
    first, second = submit(client), submit(client)
    assert len(modal_calls.pending.data) == 2

    refused = client.post("/jobs/calculate", json={"household": EXAMPLE_HOUSEHOLD})

    assert refused.status_code == 429
    assert "MAX_PENDING_JOBS" in refused.json()["message"]
    assert list(modal_calls.calls) == [first, second]  # nothing spawned

    # run_job frees its own place when it is done.
    modal_calls.calls[first].finished = True
    assert client.get(f"/jobs/{first}").json()["status"] == "ok"
    assert list(modal_calls.pending.data) == [modal_calls.requests[1]["slot"]]
    submit(client)


def test_a_job_that_ends_before_it_is_recorded_leaves_no_place_taken(deployed):
    # The place is taken before the call exists, so a job done before spawn
    # returns frees it; it never lingers to count against the cap.
    client, modal_calls = deployed
    modal_calls.finish_at_once = True
    job_id = submit(client)
    assert modal_calls.pending.data == {}
    assert client.get(f"/jobs/{job_id}").json()["status"] == "ok"


def test_a_spawn_that_fails_gives_its_place_back(deployed, monkeypatch):
    client, modal_calls = deployed

    async def unreachable(request):
        raise modal.exception.ConnectionError("Modal is unreachable")

    monkeypatch.setattr(modal_calls.spawn, "aio", unreachable)
    response = client.post("/jobs/calculate", json={"household": EXAMPLE_HOUSEHOLD})
    assert response.status_code == 503
    assert response.json()["message"] == "the job could not be started; send it again"
    assert modal_calls.pending.data == {}


def test_a_job_that_never_freed_its_place_stops_counting(deployed, modal_app):
    # A container that died mid-job never removes its entry: past run_job's
    # own timeout it is no longer counted, and is removed.
    client, modal_calls = deployed
    jobs = client.app.state.jobs
    jobs.max_pending = 2
    now = 1_000_000.0
    jobs.clock = lambda: now
    expiry = jobs.expiry_seconds
    assert expiry >= modal_app.JOB_FUNCTION_TIMEOUT_SECONDS
    modal_calls.pending.data.update(
        {"slot-crashed": now - expiry - 1, "slot-still-running": now - expiry + 1}
    )

    submit(client)

    assert "slot-crashed" not in modal_calls.pending.data
    assert len(modal_calls.pending.data) == 2
    refused = client.post("/jobs/calculate", json={"household": EXAMPLE_HOUSEHOLD})
    assert refused.status_code == 429


def test_a_job_keeps_its_answer_if_its_place_cannot_be_freed(
    deployed, modal_app, monkeypatch
):
    client, modal_calls = deployed
    job_id = submit(client)

    async def unreachable(*args):
        raise modal.exception.ConnectionError("Modal is unreachable")

    monkeypatch.setattr(modal_calls.pending.pop, "aio", unreachable)
    modal_calls.calls[job_id].finished = True

    answer = client.get(f"/jobs/{job_id}")

    assert answer.status_code == 200
    assert answer.json()["status"] == "ok"


def test_an_expired_result_is_a_404(deployed):
    client, modal_calls = deployed
    job_id = client.post(
        "/jobs/calculate", json={"household": EXAMPLE_HOUSEHOLD}
    ).json()["job_id"]
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
    job_id = client.post(
        "/jobs/calculate", json={"household": EXAMPLE_HOUSEHOLD}
    ).json()["job_id"]
    modal_calls.calls[job_id].finished = True
    modal_calls.calls[job_id].result = result

    response = client.get(f"/jobs/{job_id}")

    assert response.status_code == 404
    assert "secret" not in response.text


def test_a_call_over_modals_timeout_is_an_error_answer(deployed, modal_app):
    client, modal_calls = deployed
    job_id = client.post(
        "/jobs/calculate", json={"household": EXAMPLE_HOUSEHOLD}
    ).json()["job_id"]
    modal_calls.calls[job_id].error = modal.exception.FunctionTimeoutError("timed out")

    answer = client.get(f"/jobs/{job_id}").json()

    assert answer["status"] == "error" and answer["status_code"] == 504
    assert f"{modal_app.JOB_FUNCTION_TIMEOUT_SECONDS} s" in answer["message"]


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
