"""POST /jobs and GET /jobs/{job_id}: a /calculate collected later.

Here jobs run in-process (``LocalJobs``), as in ``make dev``; the Modal
wiring that spawns them is tested in tests/test_modal_app.py.
"""

import asyncio
import copy
import json

import pytest

import api.main  # noqa: F401 - registers the endpoints, and so their jobs
from policyengine_backend._engine.engine import Engine
from policyengine_backend._errors import NotFound, TooManyJobs
from policyengine_backend._jobs.local import LocalJobs
from policyengine_backend._settings import Settings
from policyengine_backend.examples import EXAMPLE_HOUSEHOLD
from policyengine_backend.testing import assert_same_values, finished


def household_with_income(income: int) -> dict:
    """A household no other test asks for, so its job really calculates."""
    household = copy.deepcopy(EXAMPLE_HOUSEHOLD)
    household["people"]["parent"]["employment_income"] = {"2025": income}
    return household


def test_a_jobs_answer_is_what_calculate_answers(client, reference):
    # Current law: policyengine's own answer under a policy costs it a full
    # build; policies in jobs are covered by tests/test_docs.py.
    household = household_with_income(41_234)
    body = {"household": household}

    submitted = client.post("/jobs/calculate", json=body)

    assert submitted.status_code == 202, submitted.text
    accepted = submitted.json()
    assert accepted["status"] == "pending" and accepted["result"] is None
    assert submitted.headers["location"] == f"/jobs/{accepted['job_id']}"
    answer = finished(client, accepted["job_id"])
    assert answer == client.post("/calculate", json=body).json()
    assert answer["status"] == "ok"
    assert_same_values(answer["result"], reference(household))


{% if cookiecutter.country == "us" -%}
def test_a_failed_job_says_what_calculate_says(client):
    # A year the model has no parameters for: refused by the model itself,
    # so only once the job runs.
    household = copy.deepcopy(EXAMPLE_HOUSEHOLD)
    household["tax_units"]["tax_unit"]["income_tax"] = {"2001": None}
    body = {"household": household}

    submitted = client.post("/jobs/calculate", json=body)
    direct = client.post("/calculate", json=body)

    assert submitted.status_code == 202, submitted.text
    assert direct.status_code == 400
    answer = finished(client, submitted.json()["job_id"])
    assert answer["status"] == "error" and answer["result"] is None
    assert answer["status_code"] == direct.status_code
    assert answer["message"] == direct.json()["message"]
    assert answer["errors"] == direct.json()["errors"]


{% endif -%}
def test_a_bad_job_is_refused_at_once(client):
    household = copy.deepcopy(EXAMPLE_HOUSEHOLD)
    household["people"]["parent"]["salary"] = {"2025": 1}

    submitted = client.post("/jobs/calculate", json={"household": household})
    direct = client.post("/calculate", json={"household": household})

    assert submitted.status_code == direct.status_code == 400
    assert submitted.json() == direct.json()


def test_limits_apply_to_jobs(client, engine):
    household = copy.deepcopy(EXAMPLE_HOUSEHOLD)
    household["people"].update(
        {
            f"person_{i}": {"age": {"2025": 30}}
            for i in range(engine.settings.max_people)
        }
    )

    submitted = client.post("/jobs/calculate", json={"household": household})

    assert submitted.status_code == 422
    assert "MAX_PEOPLE" in submitted.json()["message"]


def test_a_job_has_its_own_time_limit(client, engine, monkeypatch):
    # Past JOB_TIMEOUT_SECONDS a job ends with the 504 /calculate would give.
    monkeypatch.setattr(
        engine,
        "settings",
        engine.settings.model_copy(update={"job_timeout_seconds": 1e-6}),
    )

    submitted = client.post(
        "/jobs/calculate", json={"household": household_with_income(41_999)}
    )

    assert submitted.status_code == 202, submitted.text
    answer = finished(client, submitted.json()["job_id"])
    assert answer["status"] == "error" and answer["status_code"] == 504
    assert "JOB_TIMEOUT_SECONDS" in answer["message"]


def test_an_unknown_job_is_a_404(client):
    response = client.get("/jobs/local-0123456789abcdef")

    assert response.status_code == 404
    assert response.json()["errors"][0]["loc"] == ["path", "job_id"]


def calculate_job(household: dict) -> dict:
    return {"endpoint": "calculate", "body": {"household": household}}


class SlowEngine:
    """Stands in for the engine to test LocalJobs' bookkeeping alone: each
    calculation waits until the test lets it finish."""

    job_time_limit = Engine.job_time_limit

    def __init__(self, **settings):
        self.settings = Settings(**settings)
        self.release = asyncio.Event()

    async def call(self, name, body, limit):
        await self.release.wait()
        return json.dumps({"status": "ok", "result": body["household"]}).encode()


def test_local_jobs_are_bounded_while_they_wait():
    async def scenario():
        engine = SlowEngine(max_pending_jobs=2)
        jobs = LocalJobs(engine)
        first = await jobs.submit(calculate_job({"n": 1}))
        await jobs.submit(calculate_job({"n": 2}))
        with pytest.raises(TooManyJobs, match="MAX_PENDING_JOBS"):
            await jobs.submit(calculate_job({"n": 3}))
        assert await jobs.answer(first) is None  # pending
        engine.release.set()
        for _ in range(100):  # let both jobs finish
            await asyncio.sleep(0)
        assert json.loads(await jobs.answer(first))["result"] == {"n": 1}
        await jobs.submit(calculate_job({"n": 3}))  # room again

    asyncio.run(scenario())


def test_local_job_answers_are_bounded_in_bytes():
    async def scenario():
        engine = SlowEngine(job_results_mb=1)
        engine.release.set()
        jobs = LocalJobs(engine)
        big = "x" * 300_000
        ids = [await jobs.submit(calculate_job({"n": i, "pad": big})) for i in range(5)]
        for _ in range(100):
            await asyncio.sleep(0)
        # 1 MB keeps the newest three answers; the oldest are gone.
        with pytest.raises(NotFound):
            await jobs.answer(ids[0])
        assert json.loads(await jobs.answer(ids[-1]))["result"]["n"] == 4

    asyncio.run(scenario())
