"""Population jobs (``/jobs/impact``, and a project's own metrics): coordinate
the chunks, reduce, answer.

``coordinate`` is the whole job wherever it runs: read the dataset (its
digest checked), run the baseline's chunks and the reform's, and reduce them
with the job's metric (``metrics.py``; /jobs/impact's is policyengine-api's
economy comparison), adding where the data came from. The chunks run
through a ``Mapper``:

- locally (``make dev``, tests): the job runs in a process forked from the
  warm server, never in the server itself, and its chunks in a pool of
  ``POPULATION_PROCESSES`` processes forked from that one;
- on Modal: the job runs in the ``run_job`` container, and its chunks in
  containers of ``population_chunk`` (``.map``) that read the file from the
  Volume; modal_app.py switches to that with ``use_remote``.

Progress (chunks done of chunks to run) goes to ``progress.py``. What is
computed is kept beside the data (on Modal, in the Volume):

- a baseline (file, year, region, model version), so a later reform on it
  simulates only its own half;
- an answer (the same and the policy), so the same request again is
  answered without simulating; the same request while one runs joins it.
"""

import asyncio
import concurrent.futures
import hashlib
import json
import logging
import os
import pickle
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from policyengine_backend._engine.engine import encode_answer
from policyengine_backend._errors import (
    BackendError,
    Bug,
    CalculationTimeout,
    CoupledPolicy,
    DatasetError,
    Problem,
    Unavailable,
)
from policyengine_backend._model.policy import policy_key
from policyengine_backend._population import (
    chunks,
    datasets,
    economy,
    metrics,
    progress,
    sizing,
)
from policyengine_backend._population import dataset as ds
from policyengine_backend._population.request import ImpactRequest
from policyengine_backend._settings import MODEL_VERSION, get_settings

logger = logging.getLogger(__name__)

Report = Callable[[int, int], None]

# /jobs/impact's metric. Its route declares it too (``population_endpoint``
# in _web/routes.py); it is registered here as well so that whatever imports
# this module (a chunk's container, the bench) knows it without the app.
IMPACT = metrics.Metric(
    "impact", economy.impact_arrays, economy.impact, ImpactRequest, dict[str, Any]
)
metrics.register(IMPACT)

# Set by modal_app.py in Modal's containers: runs tasks in other containers.
_remote: chunks.Mapper | None = None
_on_write: Callable[[], None] | None = None


def use_remote(function: Any, on_write: Callable[[], None] | None = None) -> None:
    """Run chunks as calls of ``function`` (a Modal Function) with ``.map``;
    ``on_write`` makes a kept baseline visible elsewhere (a Volume's commit)."""
    global _remote, _on_write
    _on_write = on_write

    def run(tasks, done):
        results = []
        for arrays in function.map(list(tasks), order_outputs=True):
            results.append(arrays)
            done()
        return results

    _remote = run


# Budget figures that add up over years (not the count of households).
FLOWS = (
    "budgetary_impact",
    "tax_revenue_impact",
    "state_tax_revenue_impact",
    "benefit_spending_impact",
    "baseline_net_income",
)


def coordinate(
    body: dict,
    report: Report,
    mapper: chunks.Mapper | None = None,
    metric_name: str = "impact",
) -> dict:
    """The job's result for a checked request ``body``: the metric's answer
    for its year (with ``years``, /jobs/impact's: each year's budget and
    their total), and where the data came from."""
    metric = metrics.get(metric_name)
    request = metric.request_model.model_validate(body)
    spec = datasets.get(body.get("dataset"))
    path = spec.path
    if spec.synthetic and not path.exists():
        # A fresh project serves impacts out of the box, from synthetic data.
        from policyengine_backend._population import synthetic

        synthetic.write(path, datasets.SYNTHETIC_HOUSEHOLDS, datasets.SYNTHETIC_SEED)
    # Digest once here; every chunk's reading of the file is checked against it.
    sha256 = spec.sha256
    if sha256 is None and path.is_file():
        sha256 = ds.file_sha256(path)
    region, policy = body.get("region"), body["policy"]
    years = body.get("years") or [body["year"]]
    run = _Run(str(path), sha256, region, policy, report, metric, request)
    figures = run.years(years, mapper)
    result = dict(figures[years[0]])
    if body.get("years"):
        result["budget_window"] = {
            "years": {str(year): figures[year]["budget"] for year in years},
            "total": {
                flow: sum(figures[year]["budget"][flow] for year in years)
                for flow in FLOWS
            },
        }
    result.update(
        model_version=MODEL_VERSION,
        dataset={
            "name": spec.name,
            "sha256": sha256,
            "file": str(path),
            "synthetic": spec.synthetic,
        },
        year=years[0],
        region=region,
    )
    return result


class _Run:
    """One job's years: each year's figures, kept or simulated."""

    def __init__(self, path, sha256, region, policy, report: Report, metric, request):
        self.path, self.sha256, self.region, self.policy = path, sha256, region, policy
        self.report = report
        self.metric: metrics.Metric = metric
        self.request = request
        self.done = self.total = 0
        self.lock = threading.Lock()

    def one_done(self, chunks_done: int = 1) -> None:
        with self.lock:
            self.done += chunks_done
            self.report(self.done, self.total)

    def years(self, years: list[int], mapper: chunks.Mapper | None) -> dict[int, dict]:
        keys = {
            year: kept_key(
                self.sha256,
                year,
                self.region,
                self.metric.name,
                policy_key(self.policy),
            )
            for year in years
        }
        figures = {year: load_kept("answers", keys[year]) for year in years}
        missing = [year for year in years if figures[year] is None]
        for year in years:
            if figures[year] is not None:
                logger.info("answer reused", extra={"kept_answer": keys[year]})
        if not missing:
            self.report(1, 1)
            return figures
        try:
            data = chunks.load(self.path, self.sha256, self.region)
        except ValueError as error:  # no households in the region
            if isinstance(error, DatasetError):
                raise
            raise Problem(("region",), str(error)) from None
        count = sizing.chunk_count(len(ds.household_order(data)))
        self.total = 2 * count * len(missing)
        self.report(0, self.total)
        if mapper is None:  # here: the years one after another, on a pool
            local = chunks.map_local(data, get_settings().population_processes)
            for year in missing:
                figures[year] = self.year(data, year, count, local)
        else:  # other machines: every year's chunks at once
            with concurrent.futures.ThreadPoolExecutor(len(missing)) as pool:
                results = pool.map(
                    lambda year: self.year(data, year, count, mapper), missing
                )
                figures.update(zip(missing, results, strict=True))
        for year in missing:
            keep("answers", keys[year], figures[year])
        return figures

    def year(self, data: Any, year: int, count: int, mapper: chunks.Mapper) -> dict:
        """One year's figures: its baseline (kept, or simulated and kept),
        its reform, and the reduce."""

        def tasks(side_policy: dict | None, n: int) -> list[chunks.Chunk]:
            return [
                chunks.Chunk(
                    self.path,
                    self.sha256,
                    self.region,
                    i,
                    n,
                    year,
                    side_policy,
                    metric=self.metric.name,
                )
                for i in range(n)
            ]

        key = kept_key(self.sha256, year, self.region, self.metric.name)
        stored = load_kept("baselines", key)
        if stored is None:
            baseline, inputs = chunks.simulate(
                data, tasks(None, count), mapper, self.one_done
            )
            keep("baselines", key, (baseline, inputs))
        else:
            # Current law on this file, year and region, with this model:
            # kept from an earlier job, so only the reform is simulated.
            logger.info("baseline reused", extra={"baseline": key})
            baseline, inputs = stored
            self.one_done(count)
        try:
            reform, _ = chunks.simulate(
                data, tasks(self.policy, count), mapper, self.one_done, start=inputs
            )
        except CoupledPolicy:
            # The policy reads the whole population: one chunk (the
            # baseline's arrays stand, being the same for any chunking).
            logger.info("the policy is population-wide: its reform runs in one chunk")
            reform, _ = chunks.simulate(data, tasks(self.policy, 1), mapper)
        return checked(
            self.metric,
            self.metric.reduce(
                metrics.own(baseline), metrics.own(reform), self.request
            ),
        )


def checked(metric: metrics.Metric, result: Any) -> dict:
    """The reduce's result, if it is what its metric declares: a JSON object
    that matches ``result_model`` (else a 500, never served)."""
    adapter = TypeAdapter(metric.result_model)
    try:
        valid = adapter.dump_python(adapter.validate_python(result), mode="json")
    except ValidationError as error:
        first = error.errors()[0]
        where = "".join(f"[{part!r}]" for part in first["loc"])
        raise Bug(
            f"/jobs/{metric.name}: the result does not match its result_model "
            f"at result{where}: {first['msg']}"
        ) from None
    if not isinstance(valid, dict):
        raise Bug(f"/jobs/{metric.name}: the result must be a JSON object")
    return valid


def kept_key(sha256: str | None, year: int, region: str | None, *more: str) -> str:
    """What a kept baseline (or, with the policy's key, answer) depends on:
    the file's bytes, the year, the region and the model. Not the number of
    chunks, which changes nothing."""
    text = json.dumps([sha256, year, region, MODEL_VERSION, *more])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def kept_path(kind: str, key: str) -> Path:
    return Path(get_settings().population_data_dir) / f".{kind}" / f"{key}.pkl"


def load_kept(kind: str, key: str) -> Any:
    """A kept baseline or answer, or None. The files are this backend's
    own, written by ``keep``."""
    path = kept_path(kind, key)
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as handle:
            return pickle.load(handle)
    except Exception:  # a damaged file is computed again, and replaced
        logger.warning("kept %s %s is unreadable; computing it again", kind, path)
        return None


def keep(kind: str, key: str, value: Any) -> None:
    """Keep a baseline or answer beside the data (on Modal, in the Volume),
    written to a temporary name and renamed into place."""
    path = kept_path(kind, key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        with open(temporary, "wb") as handle:
            pickle.dump(value, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temporary, path)
        if _on_write is not None:
            _on_write()
    except OSError:  # a read-only folder: the next job computes it again
        logger.warning("could not keep the %s in %s", kind, path.parent)


def as_backend_error(error: BaseException) -> BackendError:
    """What the client is told: a data problem names the file (503: the
    request may be fine); a field's problem names the field."""
    if isinstance(error, BackendError):
        return error
    if isinstance(error, DatasetError):
        return Unavailable(str(error))
    logger.error("impact job failed", exc_info=error)
    return Bug(f"the impact job failed: {type(error).__name__}")


def _in_fork(connection, body: dict, server: int, metric: str) -> None:
    """The forked job process: run, send progress and then the outcome."""
    from policyengine_backend._worker.child import (
        die_with_parent,
        fresh_streams,
        let_go_of_sockets,
    )

    die_with_parent(server)
    fresh_streams()
    let_go_of_sockets(keep=connection.fileno())
    try:
        result = coordinate(
            body, lambda d, t: connection.send(("progress", d, t)), metric_name=metric
        )
        connection.send(("ok", encode_answer(result)))
    except BaseException as error:
        # As plain data: exceptions with their own __init__ do not unpickle.
        problem = as_backend_error(error)
        connection.send(("error", problem.status, str(problem), problem.errors))
    finally:
        connection.close()
        os._exit(0)


# Jobs running in this process, by request: the same request joins one.
_running: dict[str, asyncio.Future[bytes]] = {}


def answer_for(metric: str) -> Callable[[Any, dict, Any], Awaitable[bytes]]:
    """How a job of ``metric`` is answered (``COMPOSED[metric]``)."""

    async def answer_metric(engine: Any, body: dict, limit: Any) -> bytes:
        return await answer(engine, body, limit, metric)

    return answer_metric


async def answer(engine: Any, body: dict, limit: Any, metric: str) -> bytes:
    """The job's answer. Raises a BackendError. The same request while one
    runs here waits for its answer (on Modal, each job has its container:
    the same request after one has finished is answered from the kept
    answer instead)."""
    request = json.dumps(
        [
            metric,
            policy_key(body["policy"]),
            body.get("years") or body["year"],
            body.get("region"),
            body.get("dataset"),
        ]
    )
    if (running := _running.get(request)) is not None:
        logger.info("joined a running impact job with the same request")
        return await asyncio.shield(running)
    future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    _running[request] = future
    try:
        result = await _answer(body, limit, metric)
    except BaseException as error:
        future.set_exception(error)
        future.exception()  # retrieved: no "never retrieved" warning
        raise
    else:
        future.set_result(result)
        return result
    finally:
        del _running[request]


async def _answer(body: dict, limit: Any, metric: str) -> bytes:
    job = progress.job_id()
    if _remote is not None:
        remote = _remote

        def report(done: int, total: int) -> None:
            progress.report(job, done, total)

        try:
            result = await asyncio.wait_for(
                asyncio.to_thread(coordinate, body, report, remote, metric),
                limit.seconds,
            )
        except TimeoutError:
            raise CalculationTimeout(
                f"the impact did not finish within {limit.seconds:g} s ({limit.variable})"
            ) from None
        except Exception as error:
            raise as_backend_error(error) from None
        return encode_answer(result)
    return await _local(body, limit, job, metric)


async def _local(body: dict, limit: Any, job: str | None, metric: str) -> bytes:
    from policyengine_backend._worker.supervisor import FORK

    receive, send = FORK.Pipe(duplex=False)
    # Not a daemon: daemons may not start the chunks' pool. It dies with
    # this process all the same (die_with_parent), and is ended below.
    process = FORK.Process(target=_in_fork, args=(send, body, os.getpid(), metric))
    process.start()
    send.close()
    deadline = time.monotonic() + limit.seconds
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CalculationTimeout(
                    f"the impact did not finish within {limit.seconds:g} s ({limit.variable})"
                )
            if not await asyncio.to_thread(receive.poll, min(left, 1.0)):
                if not process.is_alive() and not receive.poll():
                    raise Bug(
                        f"the impact job's process ended (exit code {process.exitcode})"
                    )
                continue
            try:
                message = receive.recv()
            except EOFError:
                raise Bug("the impact job's process ended without an answer") from None
            if message[0] == "progress":
                progress.report(job, message[1], message[2])
            elif message[0] == "ok":
                return message[1]
            else:
                error = BackendError(message[2], message[3])
                error.status = message[1]
                raise error
    finally:
        receive.close()
        if process.is_alive():
            process.kill()
        await asyncio.to_thread(process.join, 5)
        if job is not None:
            progress.forget(job)
