"""The datasets an impact can be computed on, by name.

- ``synthetic``: the file ``make synthetic-data`` writes (``synthetic.py``),
  in ``POPULATION_DATA_DIR``; the default locally, made on first use if it
  is missing, and every answer from it says ``synthetic: true``.
- ``{{ "populace" if cookiecutter.country == "us" else "enhanced_frs" }}``: the country package's own pinned default
{%- if cookiecutter.country == "us" %}
  (policyengine-us's ``DEFAULT_DATASET``, checked against its
  ``DEFAULT_DATASET_SHA256``)
{%- else %}
  (the enhanced FRS that policyengine-uk's own certified tests pin, by
  commit and SHA-256; it needs the ``huggingface-token`` secret)
{%- endif %}, fetched once into the Modal Volume by
  ``make data ENV=...`` (``fetch.py``) and read from it by every container.
  The default on Modal (modal_app.py sets ``POPULATION_DATASET``).

Every load checks the file's digest where one is pinned.
"""

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from policyengine_backend._settings import get_settings

# Where `make synthetic-data` writes, relative to the project.
SYNTHETIC_FILE = "synthetic-{{ cookiecutter.country }}.h5"
SYNTHETIC_PATH = Path("data") / SYNTHETIC_FILE
# Households and seed of the synthetic file made on first use.
SYNTHETIC_HOUSEHOLDS = 1_000
SYNTHETIC_SEED = 0
REAL = "{{ "populace" if cookiecutter.country == "us" else "enhanced_frs" }}"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    file: str  # in POPULATION_DATA_DIR
    sha256: str | None  # pinned digest, checked on every load
    synthetic: bool
    source: str | None  # where `make data` fetches it from
    year: int  # its data year: the first year it can be simulated for

    @property
    def path(self) -> Path:
        return Path(get_settings().population_data_dir) / self.file


@cache
def real_dataset() -> DatasetSpec:
{%- if cookiecutter.country == "us" %}
    from policyengine_us.system import DEFAULT_DATASET, DEFAULT_DATASET_SHA256

    # hf://datasets/<owner>/<repo>/<file>@<revision>
    file = DEFAULT_DATASET.rsplit("/", 1)[1].split("@")[0]
    return DatasetSpec(REAL, file, DEFAULT_DATASET_SHA256, False, DEFAULT_DATASET, 2024)
{%- else %}
    from importlib.resources import as_file, files

    from policyengine_uk.utils.aggregate_impact.dataset import load_pin

    with as_file(files("policyengine_uk") / "tests" / "certified_dataset.yaml") as path:
        pin = load_pin(path)
    return DatasetSpec(REAL, pin.path, pin.sha256, False, pin.uri, 2024)
{%- endif %}


def configured() -> dict[str, DatasetSpec]:
    synthetic = DatasetSpec("synthetic", SYNTHETIC_FILE, None, True, None, 2024)
    return {synthetic.name: synthetic, REAL: real_dataset()}


def get(name: str | None) -> DatasetSpec:
    """The dataset called ``name`` (None: POPULATION_DATASET); KeyError if
    there is none."""
    return configured()[name or get_settings().population_dataset]
