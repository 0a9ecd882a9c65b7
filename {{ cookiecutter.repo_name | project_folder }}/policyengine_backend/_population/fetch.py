"""Copy the country's default dataset into a folder: the Modal Volume.

Run by ``fetch_population_data`` in modal_app.py, which ``make data
ENV=...`` calls after the gate. The file is downloaded once from Hugging
Face at the pinned revision, checked against the pinned SHA-256, and only
then moved into place; a file already there with the right digest is kept.
A wrong digest is an error that names the file, never a silent replacement.
"""

import os
import re
import shutil
import tempfile
from pathlib import Path

from policyengine_backend._errors import DatasetError
from policyengine_backend._population.dataset import file_sha256
from policyengine_backend._population.datasets import DatasetSpec, real_dataset

# hf://[datasets/]<owner>/<repo>/<file>@<revision>
HF_URI = re.compile(
    r"hf://(?P<datasets>datasets/)?(?P<repo>[^/]+/[^/]+)/(?P<file>[^@]+)@(?P<rev>.+)"
)


def fetch(folder: str | os.PathLike, spec: DatasetSpec | None = None) -> Path:
    """The checked dataset file in ``folder``, downloaded if missing."""
    spec = spec or real_dataset()
    target = Path(folder) / spec.file
    if target.is_file() and file_sha256(target) == spec.sha256:
        return target
    match = HF_URI.fullmatch(spec.source or "")
    if match is None:
        raise DatasetError(
            f"Dataset {spec.name} has no hf:// source to fetch {target} from."
        )
    from huggingface_hub import hf_hub_download

    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        downloaded = hf_hub_download(
            repo_id=match["repo"],
            filename=match["file"],
            revision=match["rev"],
            repo_type="dataset" if match["datasets"] else "model",
            local_dir=scratch,
            # The huggingface-token secret, for a private repository.
            token=os.environ.get("HUGGING_FACE_HUB_TOKEN")
            or os.environ.get("HF_TOKEN"),
        )
        actual = file_sha256(downloaded)
        if actual != spec.sha256:
            raise DatasetError(
                f"Dataset file {spec.source} downloaded with SHA-256 {actual}, but "
                f"{spec.sha256} is pinned; {target} was left as it was."
            )
        shutil.move(downloaded, target)
    return target
