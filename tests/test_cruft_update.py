"""`cruft create` then `cruft update` end to end, offline.

A copy of the template becomes a local git repository, so cruft can clone
it and diff between two of its commits as it would with the GitHub one.
"""

import json
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import DEFAULTS, TEMPLATE, run

CRUFT = str(Path(sys.executable).with_name("cruft"))
PROJECT_TEMPLATE = "{{ cookiecutter.repo_name | project_folder }}"
# Commits without the machine's git settings (identity, signing, hooks).
GIT_ENV = {
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Template Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Template Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}


def ok(command: list[str], cwd: Path) -> str:
    result = run(command, cwd=cwd, env=GIT_ENV, timeout=120)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def commit_all(repo: Path, message: str) -> str:
    ok(["git", "add", "-A"], repo)
    ok(["git", "commit", "-q", "-m", message], repo)
    return ok(["git", "rev-parse", "HEAD"], repo).strip()


@pytest.fixture
def template_repo(tmp_path) -> Path:
    repo = tmp_path / "template"
    shutil.copytree(
        TEMPLATE,
        repo,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", ".cache", "build", "__pycache__", ".pytest_cache", ".ruff_cache"
        ),
    )
    ok(["git", "init", "-q", "-b", "main"], repo)
    commit_all(repo, "Template as it is")
    return repo


def test_cruft_update_brings_template_changes(tmp_path, template_repo):
    out = tmp_path / "out"
    ok([CRUFT, "create", "--no-input", "--output-dir", str(out), str(template_repo)], tmp_path)
    project = out / "salt-cap-calculator"
    makefile = (project / "Makefile").read_bytes()
    ok(["git", "init", "-q", "-b", "main"], project)
    commit_all(project, "First commit")
    # A change of the project's own, in a part of the README the template
    # change below does not touch.
    readme = project / "README.md"
    readme.write_text(readme.read_text().replace("\n", "\n\nEdited in the project.\n", 1))
    commit_all(project, "Local edit")

    rendered = template_repo / PROJECT_TEMPLATE
    with (rendered / "README.md").open("a") as f:
        f.write("\nUpdated upstream for {{ cookiecutter.project_name }}.\n")
    (rendered / "CHANGELOG.md").write_text("# {{ cookiecutter.repo_name }} changes\n")
    # A new prompt changes the answers that .cruft.json records.
    config = json.loads((template_repo / "cookiecutter.json").read_text())
    config = {"owner": "policyengine", **config}
    config["_copy_without_render"].append("*.png")
    (template_repo / "cookiecutter.json").write_text(json.dumps(config, indent=2) + "\n")
    new_commit = commit_all(template_repo, "Change the template")

    shown = ok([CRUFT, "update", "-y"], project)

    assert "Next steps" not in shown  # they are for a new project only

    text = readme.read_text()
    assert "Edited in the project." in text
    assert text.endswith("\nUpdated upstream for SALT Cap Calculator.\n")
    assert (project / "CHANGELOG.md").read_text() == "# salt-cap-calculator changes\n"
    assert list(project.rglob("*.rej")) == [] and list(project.rglob("*.orig")) == []
    assert (project / "Makefile").read_bytes() == makefile
    record = json.loads((project / ".cruft.json").read_text())
    assert record["commit"] == new_commit
    assert record["context"]["cookiecutter"]["owner"] == "policyengine"
    changed = ok(["git", "status", "--porcelain"], project).splitlines()
    assert sorted(line[3:] for line in changed) == [".cruft.json", "CHANGELOG.md", "README.md"]
    ok([CRUFT, "check"], project)


def test_extension_names_never_change():
    """`cruft update` renders the project's old template version first, and the
    new version then gets the old version's (already imported) extension
    module: a name listed here that an older version lacks stops the update.
    See template_extensions.py before changing this list."""
    assert DEFAULTS["_extensions"] == [
        "template_extensions.Sandbox",
        "template_extensions.ProjectFolder",
    ]
