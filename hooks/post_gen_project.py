"""Finish the rendered project: check it, then record the template commit.

The checks cover what every deploy relies on: modal_app.py and the
Makefile (a template file, rendered like the rest) both name the app after
the repository, and nothing in the Makefile was left unrendered.

Runs inside the new project folder. It must stay idempotent and offline
(no network, no ``git init``): ``cruft update`` runs it again on an existing
project. The work lives in functions that the template's tests import.
"""

import ast
import json
import re
import shlex
import sys
from pathlib import Path


def app_name_in(modal_app: Path) -> str | None:
    """The ``APP_NAME = "..."`` constant of a rendered ``modal_app.py``."""
    for node in ast.parse(modal_app.read_text()).body:
        if (
            isinstance(node, ast.Assign)
            and [getattr(t, "id", None) for t in node.targets] == ["APP_NAME"]
            and isinstance(node.value, ast.Constant)
        ):
            return node.value.value
    return None


# Template syntax or a placeholder that rendering should have replaced.
# "\{[#%{]" is the opening of any Jinja tag, written so that this file (which
# Jinja renders too) holds none.
LEFT_OVER = re.compile(r"\{[#%{]|cookiecutter\.|__[A-Z_]+__")


def check_makefile(project: Path, repo_name: str) -> list[str]:
    """Problems with the rendered Makefile: its gate is only as safe as APP.

    Which names are safe is the pre-generation hook's to say (it refused any
    other before anything was rendered); this checks that the Makefile holds
    that name, once, and nothing left unrendered.
    """
    path = project / "Makefile"
    if not path.is_file():
        return ["Makefile is missing"]
    text = path.read_text()
    problems = []
    apps = re.findall(r"^override APP := (.*)$", text, re.MULTILINE)
    if apps != [repo_name]:
        problems.append(
            f"Makefile sets APP to {apps!r}; it must be the kebab-case "
            f"repository name {repo_name!r}, once"
        )
    if left := sorted(set(LEFT_OVER.findall(text))):
        problems.append(f"Makefile still holds template text: {', '.join(left)}")
    return problems


def check_rendered(project: Path, repo_name: str) -> list[str]:
    problems = []
    if project.name != repo_name:
        problems.append(f"folder {project.name!r} is not named {repo_name!r}")
    app_name = app_name_in(project / "modal_app.py")
    if app_name != project.name:
        problems.append(
            f"modal_app.py names the app {app_name!r}, but the folder is "
            f"{project.name!r}; they must match"
        )
    return problems + check_makefile(project, repo_name)


def template_commit(repo_dir: str) -> str | None:
    """The commit the template was rendered from, read from its .git folder.

    Reading the files (rather than running git) keeps this offline and free
    of side effects. None when the template is not a git checkout.
    """
    git = Path(repo_dir) / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head.removeprefix("ref: ")
        if (git / ref).is_file():
            return (git / ref).read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        pass
    return None


def record_commit(project: Path, commit: str | None) -> None:
    """Fill in the commit in .cruft.json, so `cruft update` can diff from it."""
    record_path = project / ".cruft.json"
    record = json.loads(record_path.read_text())
    if commit and not record.get("commit"):
        record["commit"] = commit
        record_path.write_text(json.dumps(record, indent=2) + "\n")


def next_steps(project: Path) -> str:
    """What to do with a freshly rendered project."""
    return f"""
Next steps:
  cd {shlex.quote(str(project))}
  git init && git add . && git commit -m "First commit"
  make install   # the project's virtual environment
  make test      # offline tests; no Modal account needed
  make dev       # serve locally; API docs at /docs, api/ edits in seconds
Then read README.md: the API, adding your own endpoint, deploys.
"""


def main(answers: dict, project: Path) -> int:
    problems = check_rendered(project, answers["repo_name"])
    for problem in problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    if problems:
        return 1
    record_commit(project, template_commit(answers.get("_repo_dir", "")))
    # Only cookiecutter itself sets _output_dir. cruft renders without it,
    # also on `cruft update`, where these steps would only be noise.
    if "_output_dir" in answers:
        print(next_steps(project))
    return 0


if __name__ == "__main__":
    # Answers arrive as JSON data, never as Python source: tojson writes
    # ' as \u0027, so no answer can close this ''' literal.
    sys.exit(main(json.loads(r"""{{ cookiecutter | tojson }}"""), Path.cwd()))
