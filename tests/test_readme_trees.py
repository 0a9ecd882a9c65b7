"""The template's README says what renders: the prompts' defaults and both
file trees, "What you get" (a default render) and "Developing the template"
(this repository's files, as git tracks them).

A tree line is a path, then at least two spaces and a short description; a
description may go on below, indented. In "What you get" the paths are drawn
as a tree (`├── api/`, then `│   ├── main.py`). What is expected comes from the
trees and from what renders, never from a list kept here:

- every path a tree names exists;
- every top-level file and folder is in the tree;
- a folder whose contents the tree lists is listed in full (a folder named
  alone, such as `tests/`, stands for everything in it).
"""

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import DEFAULTS, TEMPLATE

README = (TEMPLATE / "README.md").read_text()
# What checking a render leaves behind, not what renders.
CACHES = {".git", "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache", ".hypothesis"}


def section(heading: str) -> str:
    """The README's text under ``heading``, up to the next heading of its level."""
    level = heading.split()[0]
    after = README.split(f"\n{heading}\n", 1)[1]
    return re.split(rf"\n{level} ", after, maxsplit=1)[0]


def first_tree(heading: str) -> list[str]:
    """The lines of the first plain ``` block under ``heading``."""
    block = re.search(r"^```\n(.*?)^```", section(heading), re.S | re.M)
    assert block, f"no ``` block under {heading!r} in README.md"
    return block[1].splitlines()


def path_of(entry: str) -> str:
    """The path a tree line starts with: what comes before two spaces."""
    return re.split(r"\s{2,}", entry.strip())[0]


def what_you_get_paths() -> list[str]:
    """The paths of the "What you get" tree, relative to the project folder."""
    lines = first_tree("## What you get")
    assert lines[0] == "<repo_name>/", f"the tree should start at <repo_name>/, not {lines[0]!r}"
    paths, parents = [], []
    for line in lines[1:]:
        drawn = re.match(r"^((?:│   |    )*)[├└]── (.*)$", line)
        assert drawn, f"'What you get' tree: cannot read the line {line!r}"
        depth = len(drawn[1]) // 4
        parents[depth:] = [path_of(drawn[2])]
        paths.append("".join(parents))
    return paths


def developing_paths() -> list[str]:
    """The paths of the "Developing the template" tree (indented lines go on
    describing the path above them)."""
    lines = first_tree("## Developing the template")
    return [path_of(line) for line in lines if line and not line[0].isspace()]


def folders_of(file: str) -> list[str]:
    """The folders a file is in, each ending in "/": a/b/c.py -> a/, a/b/."""
    parts = file.split("/")[:-1]
    return ["/".join(parts[: i + 1]) + "/" for i in range(len(parts))]


def child_of(folder: str, file: str) -> str:
    """What ``folder`` holds that ``file`` is, or is in: a file or a folder/."""
    name, *deeper = file[len(folder) :].split("/")
    return folder + name + ("/" if deeper else "")


def disagreements(listed: list[str], files: set[str], where: str) -> list[str]:
    """How a tree's paths (folders end in "/") and the files under ``where``
    (paths relative to it) differ, one sentence each."""
    folders = {folder for file in files for folder in folders_of(file)}
    problems = [
        f"{path} is in the README's tree but not in {where}"
        for path in listed
        if path not in (folders if path.endswith("/") else files)
    ]
    # The top level, and each folder the tree lists something inside of.
    opened = {""} | {folder for path in listed for folder in folders_of(path.rstrip("/"))}
    for folder in sorted(opened):
        children = {child_of(folder, file) for file in files if file.startswith(folder)}
        problems += [
            f"{child} is in {where} but not in the README's tree"
            for child in sorted(children)
            if not any(path.startswith(child) for path in listed)
        ]
    return problems


def test_what_you_get_is_what_renders(default_project: Path):
    files = {
        path.relative_to(default_project).as_posix()
        for path in default_project.rglob("*")
        if path.is_file() and not CACHES & set(path.relative_to(default_project).parts)
    }
    problems = disagreements(what_you_get_paths(), files, "a default render")
    assert not problems, "\n".join(problems)


def test_developing_tree_is_the_template_repository():
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=TEMPLATE, capture_output=True, text=True, check=True
    ).stdout
    files = set(tracked.split("\0")) - {""}
    problems = disagreements(developing_paths(), files, "the template's git files")
    assert not problems, "\n".join(problems)


def readme_defaults() -> dict[str, str]:
    """Each prompt's default in the README's Prompts table: the first `code`
    in its Default column ("" where there is none)."""
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in section("## Prompts").splitlines()
        if line.startswith("| ") and not line.startswith("| ---")
    ]
    header, body = rows[0], rows[1:]
    column = header.index("Default")
    defaults = {}
    for row in body:
        code = re.match(r"`([^`]*)`", row[column])
        defaults[row[0].strip("`")] = code[1] if code else ""
    return defaults


# The prompts whose default is a value, not an expression of other answers;
# a choice's default is its first choice.
LITERAL_DEFAULTS = {
    name: value[0] if isinstance(value, list) else value
    for name, value in DEFAULTS.items()
    if not name.startswith("_") and "{{" not in str(value)
}


def test_modal_secrets_has_a_literal_default():
    assert "modal_secrets" in LITERAL_DEFAULTS


@pytest.mark.parametrize("name", sorted(LITERAL_DEFAULTS))
def test_readme_default_is_cookiecutter_json_default(name):
    documented = readme_defaults().get(name)
    assert documented == LITERAL_DEFAULTS[name], (
        f"README's Prompts table gives {name} the default {documented!r}; "
        f"cookiecutter.json has {json.dumps(LITERAL_DEFAULTS[name])}"
    )
