"""How society-wide impacts are wired: on Modal (the Volume, the chunk
function's size, the coordinator's ``.map``) and in the Makefile (the gated
``make data`` step). Offline: Modal is inspected, never called, and
``modal`` is a stand-in script."""

import subprocess
import sys
from pathlib import Path

import pytest

from policyengine_backend._population import (
    chunks,
    datasets,
    impact,
    sizing,
    synthetic,
)
from policyengine_backend._population import dataset as ds
from policyengine_backend._settings import APP_NAME, get_settings

PROJECT = Path(__file__).resolve().parents[2]
GOOD_INFO = "Token: ak-xxx\nWorkspace: policyengine (ac-123)\n"


def test_chunks_and_the_coordinator_read_the_volume(modal_app):
    mount = modal_app.POPULATION_DATA_DIR
    for function in (modal_app.population_chunk, modal_app.run_job):
        volumes = function.info().volumes
        assert volumes[mount].name == f"{APP_NAME}-population-data"
    # The web function only checks requests: it never reads the dataset.
    assert mount not in modal_app.fastapi_app.info().volumes


def test_the_chunk_function_is_sized_by_its_constants(modal_app):
    info = modal_app.population_chunk.info()
    assert info.memory_mib == modal_app.POPULATION_CHUNK_MEMORY_MB
    assert info.cpu == modal_app.POPULATION_CHUNK_CPU
    assert modal_app.BACKEND_ENV["POPULATION_CHUNKS"] == str(
        modal_app.POPULATION_CHUNKS
    )
    # Chunks are sized for that memory, which holds thousands of households.
    memory = modal_app.BACKEND_ENV["POPULATION_CHUNK_MEMORY_MB"]
    assert float(memory) == modal_app.POPULATION_CHUNK_MEMORY_MB
    assert sizing.households_per_chunk(float(memory)) >= 2_000
    # On Modal the default is the country's real dataset, from the Volume.
    assert modal_app.BACKEND_ENV["POPULATION_DATASET"] == datasets.REAL
    assert modal_app.BACKEND_ENV["POPULATION_DATA_DIR"] == modal_app.POPULATION_DATA_DIR


def test_the_data_step_is_a_deployed_function_on_the_volume(modal_app):
    info = modal_app.fetch_population_data.info()
    assert modal_app.POPULATION_DATA_DIR in info.volumes


class StandInFunction:
    """A Modal Function's ``.map``, run here: each call reads the file
    itself, as a container reads the Volume."""

    def __init__(self):
        self.tasks: list[chunks.Chunk] = []

    def map(self, tasks, order_outputs=True):
        assert order_outputs
        for task in tasks:
            self.tasks.append(task)
            yield chunks.run_chunk(task)


@pytest.mark.ci
def test_the_coordinator_maps_chunks_over_functions(tmp_path, monkeypatch):
    path = synthetic.write(tmp_path / datasets.SYNTHETIC_FILE, 30, 3)
    monkeypatch.setenv("POPULATION_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("POPULATION_CHUNKS", "2")
    get_settings.cache_clear()
    function = StandInFunction()
    monkeypatch.setattr(impact, "_remote", None)
    monkeypatch.setattr(impact, "_on_write", None)
    impact.use_remote(function)
    try:
        seen = []
        body = {"policy": {}, "year": 2025, "region": None, "dataset": "synthetic"}
        result = impact.coordinate(
            body, lambda d, t: seen.append((d, t)), impact._remote
        )
    finally:
        get_settings.cache_clear()
    # Every chunk named the file and its digest, to be checked where it runs.
    assert {(t.path, t.sha256) for t in function.tasks} == {
        (str(path), ds.file_sha256(path))
    }
    # Both chunks, for the baseline and the reform (in the UK, chunks whose
    # population-ranked values were settled differently run once more).
    assert [t.index for t in function.tasks][:4] == [0, 1, 0, 1]
    assert {(t.index, t.count) for t in function.tasks} == {(0, 2), (1, 2)}
    assert seen[-1] == (4, 4)
    assert result["budget"]["budgetary_impact"] == 0  # no policy: no change


# --- make data -------------------------------------------------------------


def script(path: Path, body: str) -> Path:
    path.write_text(f"#!{sys.executable}\nimport sys\n{body}\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def stand_ins(tmp_path):
    """A `modal` that prints a workspace for `token info`, and a Python that
    records the script it is asked to run."""
    calls = tmp_path / "calls.txt"

    def make(info: str = GOOD_INFO) -> list[str]:
        (tmp_path / "info.txt").write_text(info)
        return [
            "MODAL="
            + str(
                script(
                    tmp_path / "modal",
                    f"print(open({str(tmp_path / 'info.txt')!r}).read())",
                )
            ),
            "DATA_PYTHON="
            + str(
                script(
                    tmp_path / "python",
                    f"open({str(calls)!r}, 'a').write(' '.join(sys.argv[1:]))",
                )
            ),
        ]

    make.calls = calls  # type: ignore[attr-defined]
    return make


def make_data(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", "data", *args],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )


def test_make_data_runs_the_fetch_after_the_gate(stand_ins):
    ran = make_data("ENV=testing", *stand_ins())

    assert ran.returncode == 0, ran.stderr
    assert stand_ins.calls.read_text() == (
        f"scripts/population_data.py --app {APP_NAME} --env testing"
    )


@pytest.mark.parametrize(
    ("args", "info"),
    [
        (["ENV=prod"], GOOD_INFO),
        (["ENV=testing"], "Workspace: someone-else (ac-9)\n"),
    ],
    ids=["unknown-env", "other-workspace"],
)
def test_make_data_stops_at_the_gate(stand_ins, args, info):
    ran = make_data(*args, *stand_ins(info))

    assert ran.returncode != 0
    assert "ERROR" in ran.stdout + ran.stderr
    assert not stand_ins.calls.exists()
