"""Bad names stop generation cleanly; hostile text never runs."""

import ast
import json
import tomllib
from pathlib import Path

import pytest
import yaml
from cookiecutter.exceptions import FailedHookException, UndefinedVariableInTemplate

from tests.conftest import bake


def fastapi_keywords(path: Path) -> dict:
    """The constant keyword arguments of the FastAPI(...) call in a module."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "FastAPI":
            return {
                k.arg: k.value.value for k in node.keywords if isinstance(k.value, ast.Constant)
            }
    raise AssertionError("no FastAPI(...) call")


BAD_NAMES = {
    "space": "my dashboard",
    "underscore": "my_dashboard",
    "capitals": "MyDashboard",
    "leading-digit": "2025-dashboard",
    "leading-hyphen": "-dashboard",
    "trailing-hyphen": "dashboard-",
    "double-hyphen": "my--dashboard",
    "too-long": "a-dashboard-name-far-too-long-for-a-url",
    "empty": "",
    "non-ascii": "tableau-de-bord-é",
    "shell": "app;rm-rf",
    "subshell": "$(touch-pwned)",
    "path": "../escape",
    "nested-path": "parent/child",
    "absolute-path": "/tmp/escape",
    "dot": "my.dashboard",
    "only-digits": "2025",
}


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_bad_name_stops_generation_and_leaves_nothing(tmp_path, capfd, name):
    output = tmp_path / "out"
    output.mkdir()

    with pytest.raises(FailedHookException):
        bake(output, repo_name=name)

    err = capfd.readouterr().err
    assert f"ERROR: repo_name {json.dumps(name)}" in err or (
        name == "" and "ERROR: repo_name is empty" in err
    ), err
    assert "Try repo_name=" in err
    assert list(output.iterdir()) == []
    assert not (tmp_path / "escape").exists()


HOSTILE = [
    "Quote \" and ' and \\ backslash",
    "__import__('os').system('touch PWNED')",
    "{{ 7 * 7 }} is rendered, as cookiecutter renders answers",
    '"""; import os; os.system(\'touch PWNED\'); """',
    "'''; touch PWNED; '''",
    "<script>alert(1)</script> & ampersand",
    "Ünïcødé — dashes and emoji 🧮",
    "line\nbreak",
    "${{ secrets.MODAL_TOKEN_SECRET }}",
]


@pytest.mark.parametrize("text", HOSTILE)
@pytest.mark.parametrize("key", ["project_name", "description"])
def test_hostile_text_renders_safely_or_is_refused(tmp_path, key, text):
    try:
        root = bake(tmp_path, repo_name="safe-app", **{key: text})
    except (FailedHookException, UndefinedVariableInTemplate):
        # Refused: multi-line text by the hook, unknown Jinja names by
        # cookiecutter itself. Either way nothing is left behind.
        assert not list(tmp_path.iterdir())
        assert "\n" in text or "${{" in text
        return
    tomllib.loads((root / "pyproject.toml").read_text())
    json.loads((root / ".cruft.json").read_text())
    for workflow in (root / ".github/workflows").glob("*.yml"):
        yaml.safe_load(workflow.read_text())
    for path in root.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")
    # The app's title and description hold the text itself, as data.
    assert fastapi_keywords(root / "api/main.py")[
        "title" if key == "project_name" else "description"
    ] == text.replace("{{ 7 * 7 }}", "49")
    assert not list(Path.cwd().glob("PWNED")) and not list(root.rglob("PWNED"))


@pytest.mark.parametrize(
    "payload",
    [
        "{{ cycler.__init__.__globals__.os.system('touch PWNED') }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ lipsum['__globals__'] }}",
        "{{ 'x' | attr('__class__') }}",
    ],
)
def test_template_injection_is_blocked(tmp_path, payload):
    with pytest.raises(Exception, match="not allowed"):
        bake(tmp_path, project_name=payload)
    assert not list(tmp_path.iterdir())
    assert not Path("PWNED").exists()
