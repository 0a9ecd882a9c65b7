"""Bad names stop generation cleanly; hostile text never runs."""

import ast
import json
import re
import shutil
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from cookiecutter.environment import StrictEnvironment
from cookiecutter.exceptions import FailedHookException, UndefinedVariableInTemplate
from jinja2 import StrictUndefined
from jinja2.exceptions import UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from template_extensions import UnsafeTemplateAccess
from tests.conftest import TEMPLATE, bake, run


def fastapi_keywords(path: Path) -> dict:
    """The constant keyword arguments of the create_app(...) call in a module."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "create_app":
            return {
                k.arg: k.value.value for k in node.keywords if isinstance(k.value, ast.Constant)
            }
    raise AssertionError("no create_app(...) call")


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


def left_behind(output: Path) -> list[str]:
    """What failed `cookies` bakes left in pytest-cookies' output folder
    (tmp_path/cookies): anything but its empty bakeNN folders, one a bake."""
    paths = (path.relative_to(output).as_posix() for path in output.rglob("*"))
    return [path for path in paths if not re.fullmatch(r"bake\d+", path)]


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_bad_name_stops_generation_and_leaves_nothing(cookies, tmp_path, capfd, name):
    result = cookies.bake(extra_context={"repo_name": name})

    assert result.exit_code != 0
    assert isinstance(result.exception, FailedHookException)
    assert result.project_path is None
    # The hook runs as a subprocess: its message is on file descriptor 2.
    err = capfd.readouterr().err
    assert f"ERROR: repo_name {json.dumps(name)}" in err or (
        name == "" and "ERROR: repo_name is empty" in err
    ), err
    assert "Try repo_name=" in err
    # "../escape" would land beside bake00, still inside cookies/.
    assert left_behind(tmp_path / "cookies") == []


def run_cli(output: Path, answer: str, env: dict | None = None):
    """Cookiecutter's own command line, as a person runs it, with one answer
    (pytest-cookies calls the Python API: what the CLI prints is seen only here)."""
    output.mkdir()
    cookiecutter_cli = str(Path(sys.executable).with_name("cookiecutter"))
    return run(
        [cookiecutter_cli, str(TEMPLATE), "--no-input", "-o", str(output), answer],
        cwd=output.parent,
        env=env,
        timeout=120,
    )


def test_cli_shows_the_problem_and_a_name_that_passes(tmp_path):
    output = tmp_path / "out"
    result = run_cli(output, "repo_name=My App")

    assert result.returncode == 1
    assert result.stderr.startswith('ERROR: repo_name "My App" is not kebab-case')
    assert 'Try repo_name="salt-cap-calculator".' in result.stderr
    assert "Nothing was generated." in result.stderr
    assert list(output.iterdir()) == []


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


# Direct cookiecutter calls from here on where the answers themselves are
# refused: pytest-cookies renders the answers once itself before it calls
# cookiecutter, so such a refusal would come from that first pass, cookiecutter
# would never run, and "nothing is left behind" could not fail.
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


# A fake secret in the environment: every payload below tries to copy it into
# the project. In CI the same variable could hold a Modal token.
PROJECT_TEMPLATE = "{{ cookiecutter.repo_name | project_folder }}"
SECRET_VARIABLE = "FOO_SECRET"
SECRET = "topsecret-7c1f9e2a"

# Template injections, each refused by the sandbox. Those marked LEAKS print
# the secret when rendered by cookiecutter's environment without the
# sandbox (test_payloads_are_real_without_the_sandbox shows it); the others
# reach interpreter internals that a sandboxed template must not see.
LEAKS = {
    "format-globals": '{{ "{0.__init__.__globals__[os].environ[FOO_SECRET]}".format(cycler) }}',
    "format-map": '{{ "{c.__init__.__globals__[os].environ[FOO_SECRET]}"'
    '.format_map({"c": cycler}) }}',
    "format-lipsum": '{{ "{0.__globals__[os].environ[FOO_SECRET]}".format(lipsum) }}',
    "format-method-reference": '{% set f = "{0.__init__.__globals__[os].environ[FOO_SECRET]}"'
    ".format %}{{ f(joiner) }}",
    "format-parenthesised": '{{ ("{0.__init__.__globals__[os].environ[FOO_SECRET]}"'
    ".format)(namespace) }}",
    "attr-filter": '{{ (cycler | attr("__init__"))["__globals__"]["os"].environ["FOO_SECRET"] }}',
    "lipsum-globals": '{{ lipsum.__globals__["os"].environ["FOO_SECRET"] }}',
    "lipsum-getitem": '{{ lipsum["__globals__"]["os"].environ["FOO_SECRET"] }}',
    "self-init": '{{ self.__init__.__globals__["__builtins__"]["__import__"]("os")'
    '.environ["FOO_SECRET"] }}',
    "namespace-init": '{{ namespace.__init__.__globals__["os"].environ["FOO_SECRET"] }}',
    "namespace-value": "{% set ns = namespace(x=cycler) %}"
    '{{ ns.x.__init__.__globals__["os"].environ["FOO_SECRET"] }}',
    "joiner-init": "{{ joiner.__init__.__globals__.os.environ.FOO_SECRET }}",
    "dict-value": '{{ dict(a=cycler).a.__init__.__globals__["os"].environ["FOO_SECRET"] }}',
    "set-variable": "{% set g = lipsum.__globals__ %}{{ g.os.environ.FOO_SECRET }}",
    "set-block": "{% set x %}{{ cycler.__init__.__globals__.os.environ.FOO_SECRET }}"
    "{% endset %}{{ x }}",
    "map-attribute": '{{ ([cycler] | map(attribute="__init__.__globals__") | first)'
    '["os"].environ["FOO_SECRET"] }}',
    "loop": "{% for k, v in lipsum.__globals__.os.environ.items() %}"
    "{% if k == 'FOO_SECRET' %}{{ v }}{% endif %}{% endfor %}",
}
ESCAPES = {
    "format-class": '{{ "{0.__class__}".format(cookiecutter) }}',
    "attr-concatenated": '{{ lipsum | attr("__glo" ~ "bals__") }}',
    "self-private": "{{ self._TemplateReference__context }}",
    "range-class": "{{ range.__class__.__base__ }}",
    "dict-mro": "{{ dict.mro()[-1].__subclasses__() }}",
    "str-subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "method-self": "{{ cookiecutter.items.__self__ }}",
    # Would let one answer rewrite another after it was rendered.
    "mutate-answers": '{{ cookiecutter.update({"repo_name": "../escape"}) }}',
}
PAYLOADS = {**LEAKS, **ESCAPES}


def test_payloads_are_real_without_the_sandbox(monkeypatch):
    """Cookiecutter's own environment runs every payload: the tests below
    would catch a sandbox that let them through."""
    monkeypatch.setenv(SECRET_VARIABLE, SECRET)
    plain = StrictEnvironment(context={})
    for name, payload in PAYLOADS.items():
        output = plain.from_string(payload).render(cookiecutter={"repo_name": "x"})
        assert (SECRET in output) == (name in LEAKS), name


def assert_no_secret_anywhere(tmp_path: Path, text: str) -> None:
    assert SECRET not in text
    for path in tmp_path.rglob("*"):
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_template_injection_is_refused(tmp_path, capfd, monkeypatch, payload):
    monkeypatch.setenv(SECRET_VARIABLE, SECRET)
    output = tmp_path / "out"
    output.mkdir()

    with pytest.raises(UndefinedVariableInTemplate) as refused:
        bake(output, project_name=payload)

    # Cookiecutter names the answer and the sandbox says why.
    assert refused.value.message == "Unable to render variable 'project_name'"
    assert isinstance(refused.value.error, UnsafeTemplateAccess), refused.value.error
    assert "is not allowed in a template" in refused.value.error.message
    assert list(output.iterdir()) == []
    captured = capfd.readouterr()
    assert_no_secret_anywhere(tmp_path, str(refused.value) + captured.out + captured.err)
    assert not Path("PWNED").exists()


@pytest.mark.parametrize("key", ["repo_name", "description", "modal_secrets"])
def test_every_free_text_answer_is_sandboxed(tmp_path, monkeypatch, key):
    monkeypatch.setenv(SECRET_VARIABLE, SECRET)
    with pytest.raises(UndefinedVariableInTemplate) as refused:
        bake(tmp_path, **{key: LEAKS["format-globals"]})
    assert refused.value.message == f"Unable to render variable '{key}'"
    assert list(tmp_path.iterdir()) == []
    assert_no_secret_anywhere(tmp_path, str(refused.value))


@pytest.mark.parametrize("name", ["format-globals", "format-map", "mutate-answers"])
def test_cli_refuses_injection_without_a_traceback(tmp_path, name):
    """What a person sees: a short message, the exit status 1, no secret."""
    output = tmp_path / "out"
    result = run_cli(output, f"project_name={PAYLOADS[name]}", env={SECRET_VARIABLE: SECRET})
    shown = result.stdout + result.stderr

    assert result.returncode == 1
    assert "Unable to render variable 'project_name'" in shown
    assert "is not allowed in a template" in shown
    assert "Traceback" not in shown
    assert list(output.iterdir()) == []
    assert_no_secret_anywhere(tmp_path, shown)


@pytest.mark.parametrize("where", ["file", "hook"])
def test_template_files_and_hooks_are_sandboxed_too(cookies, tmp_path, monkeypatch, where):
    """The same sandbox renders the template's own files and hooks."""
    monkeypatch.setenv(SECRET_VARIABLE, SECRET)
    template = tmp_path / "template"
    shutil.copytree(
        TEMPLATE, template, ignore=shutil.ignore_patterns(".git", ".venv", ".cache", "build")
    )
    if where == "file":
        (template / PROJECT_TEMPLATE / "LEAK.md").write_text(LEAKS["format-globals"])
    else:
        hook = template / "hooks" / "pre_gen_project.py"
        hook.write_text(f"# {LEAKS['format-globals']}\n{hook.read_text()}")
    result = cookies.bake(template=str(template))

    assert result.exit_code != 0
    assert isinstance(result.exception, (UndefinedVariableInTemplate, UndefinedError))
    assert "is not allowed in a template" in str(result.exception)
    assert left_behind(tmp_path / "cookies") == []
    assert_no_secret_anywhere(tmp_path / "cookies", str(result.exception))


def sandboxed_environment():
    return StrictEnvironment(
        context={"cookiecutter": {"_extensions": ["template_extensions.Sandbox"]}}
    )


def test_sandbox_sets_up_what_jinjas_sandbox_sets_up():
    """Sandbox re-classes an existing environment, so it repeats what
    SandboxedEnvironment.__init__ does; a newer Jinja that sets more on
    its instances fails here rather than being silently half-applied."""
    env = sandboxed_environment()
    reference = ImmutableSandboxedEnvironment()

    assert isinstance(env, ImmutableSandboxedEnvironment) and env.sandboxed
    assert isinstance(env, StrictEnvironment)
    assert env.undefined is StrictUndefined
    assert set(vars(reference)) <= set(vars(env))
    assert env.globals["range"] is reference.globals["range"]
    assert env.binop_table == reference.binop_table
    assert env.unop_table == reference.unop_table


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ cookiecutter.name | slugify }}", "child-tax-credit-2026"),
        ("{{ cookiecutter.name | slugify(max_length=12, word_boundary=True) }}", "child-tax"),
        ("{{ cookiecutter | tojson }}", '{"name": "Child Tax Credit 2026", "secrets": "a, b"}'),
        ('{{ "{} for {name}".format("Credit", name="kids") }}', "Credit for kids"),
        ('{{ "{n}".format_map({"n": 3}) }}', "3"),
        ('{{ cookiecutter.secrets.split(",") | map("trim") | list }}', "['a', 'b']"),
        ("{{ cookiecutter.items() | map(attribute=0) | join(' ') }}", "name secrets"),
        ("{{ range(3) | list }}", "[0, 1, 2]"),
        (
            "{% set ns = namespace(n=0) %}{% for i in range(4) %}"
            "{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}",
            "6",
        ),
    ],
)
def test_ordinary_templates_still_render(template, expected):
    answers = {"name": "Child Tax Credit 2026", "secrets": "a, b"}
    assert sandboxed_environment().from_string(template).render(cookiecutter=answers) == expected
