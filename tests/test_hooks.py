"""Unit tests of the hook functions, imported straight from hooks/."""

import json
import random

import pytest
from cookiecutter.environment import StrictEnvironment

from tests.conftest import DEFAULTS, baked

VALID_ANSWERS = {
    "project_name": "P",
    "repo_name": "p",
    "description": "d",
    "country": "us",
    "python_version": "3.12",
    "modal_secrets": "",
}


@pytest.mark.parametrize(
    "name",
    ["a", "salt-cap", "ctc-2025", "x1-y2-z3", "a" * 29],
)
def test_good_repo_names_pass(pre_gen, name):
    assert pre_gen.check_repo_name(name) == []


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("My Dashboard", "my-dashboard"),
        ("my_dashboard", "my-dashboard"),
        ("MyDashboard", "mydashboard"),
        ("2025-tax", "tax"),
        ("-leading", "leading"),
        ("trailing-", "trailing"),
        ("double--hyphen", "double-hyphen"),
        ("", "household-calculator"),
        ("a-very-long-dashboard-name-for-taxes", "a-very-long-dashboard-name"),
    ],
)
def test_bad_repo_names_fail_with_a_suggestion(pre_gen, name, suggestion):
    problems = pre_gen.check_repo_name(name)

    assert problems
    assert all(f'"{suggestion}"' in problem for problem in problems)
    assert pre_gen.check_repo_name(suggestion) == []


def test_name_limit_comes_from_the_longest_url_label(pre_gen):
    longest = "a" * pre_gen.MAX_REPO_NAME_LENGTH
    label = f"policyengine-staging--{longest}-fastapi-app"

    assert len(label) == 63
    assert pre_gen.check_repo_name(longest) == []
    assert pre_gen.check_repo_name(longest + "b")


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ("", []),
        ("policyengine-logfire", ["policyengine-logfire"]),
        (" gcp-credentials , huggingface-token,", ["gcp-credentials", "huggingface-token"]),
    ],
)
def test_secret_names_parse(pre_gen, raw, names):
    assert pre_gen.parse_secret_names(raw) == names
    assert pre_gen.check_secret_names(raw) == []


@pytest.mark.parametrize("raw", ["bad name", "a;rm -rf /", "x" * 64, "a,a", "$(id)"])
def test_bad_secret_names_fail(pre_gen, raw):
    assert pre_gen.check_secret_names(raw)


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ("policyengine-logfire", ["policyengine-logfire"]),
        ("none", []),
        (" none ", []),
        ("", []),
        ("a, b", ["a", "b"]),
    ],
)
def test_secret_names_and_none(pre_gen, raw, names):
    assert pre_gen.parse_secret_names(raw) == names


@pytest.mark.parametrize("raw", ["none", "policyengine-logfire, gcp-credentials"])
def test_modal_app_attaches_the_secrets_named(pre_gen, cookies, raw):
    project = baked(cookies.bake(extra_context={"modal_secrets": raw}))
    text = (project / "modal_app.py").read_text()
    for name in pre_gen.parse_secret_names(raw):
        assert f'    "{name}",\n' in text
    if not pre_gen.parse_secret_names(raw):
        assert "SECRET_NAMES: list[str] = []\n" in text


def test_logfire_is_the_default_secret():
    assert DEFAULTS["modal_secrets"] == "policyengine-logfire"


def test_unknown_secret_is_only_noted(pre_gen, capsys):
    answers = {
        "project_name": "P",
        "repo_name": "p",
        "description": "d",
        "country": "us",
        "python_version": "3.12",
        "modal_secrets": "brand-new-secret",
    }
    assert pre_gen.main(answers) == 0
    assert "NOTE: secret 'brand-new-secret'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("key", "value"),
    [("country", "fr"), ("python_version", "3.11"), ("project_name", "two\nlines")],
)
def test_other_answers_are_checked(pre_gen, key, value):
    answers = {
        "project_name": "P",
        "repo_name": "p",
        "description": "d",
        "country": "us",
        "python_version": "3.12",
        "modal_secrets": "",
        key: value,
    }
    assert pre_gen.check_answers(answers)


def test_app_name_is_read_from_modal_app(post_gen, default_project):
    assert post_gen.app_name_in(default_project / "modal_app.py") == default_project.name
    assert post_gen.check_rendered(default_project, default_project.name) == []
    assert post_gen.check_rendered(default_project, "other-name")


def test_template_commit_reads_git_files(post_gen, tmp_path):
    git = tmp_path / ".git"
    (git / "refs/heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "refs/heads/main").write_text("a" * 40 + "\n")
    assert post_gen.template_commit(str(tmp_path)) == "a" * 40

    (git / "refs/heads/main").unlink()
    (git / "packed-refs").write_text(f"# pack-refs\n{'b' * 40} refs/heads/main\n")
    assert post_gen.template_commit(str(tmp_path)) == "b" * 40
    assert post_gen.template_commit(str(tmp_path / "missing")) is None


def test_post_gen_is_idempotent(post_gen, default_project):
    answers = json.loads((default_project / ".cruft.json").read_text())["context"]["cookiecutter"]
    before = {p: p.read_bytes() for p in default_project.rglob("*") if p.is_file()}

    assert post_gen.main({**answers, "_repo_dir": "/nonexistent"}, default_project) == 0
    assert post_gen.main({**answers, "_repo_dir": "/nonexistent"}, default_project) == 0

    after = {p: p.read_bytes() for p in default_project.rglob("*") if p.is_file()}
    assert after == before


def test_makefile_uses_the_app_name(post_gen, default_project):
    text = (default_project / "Makefile").read_text()
    assert f"APP := {default_project.name}" in text
    assert "__APP__" not in text and "__WORKSPACE__" not in text
    assert post_gen.check_makefile(default_project, default_project.name) == []
    assert post_gen.check_makefile(default_project, "other-name")


@pytest.mark.parametrize("name", ["api", "backend", "app", "policyengine", "my-backend"])
def test_generic_repo_names_fail(pre_gen, name):
    problems = pre_gen.check_repo_name(name)
    assert problems and "too generic" in problems[0]


# Names a person might type, or that a project name might slugify to.
TRICKY_NAMES = [
    "",
    " ",
    "-",
    "---",
    "2025",
    "2025-tax",
    "123 456",
    "My App",
    "my-app",
    "API",
    "backend",
    "policyengine",
    "Backend!!",
    "my_app",
    "my--app",
    "Émile's Benefit Cliff Tool",
    "tableau-de-bord-é",
    "Ünïcødé — dashes and emoji 🧮",
    "数据仪表板",
    "a" * 29,
    "a" * 30,
    "x" * 200,
    "supercalifragilisticexpialidocious",
    "child-tax-credit-explorer-for-families-2026",
    "Child Tax Credit Explorer for Families 2026",
    "my-app-supercalifragilisticexpialidocious",
    "api " + "y" * 40,
    "../escape",
    "/tmp/escape",
    "$(touch-pwned)",
    "app;rm -rf /",
    "{{ 7 * 7 }}",
    "line\nbreak",
]


@pytest.mark.parametrize("name", TRICKY_NAMES)
@pytest.mark.parametrize("project_name", ["", "SALT Cap Calculator", "API", "2026"])
def test_every_suggestion_passes_the_check(pre_gen, name, project_name):
    suggestion = pre_gen.suggest_repo_name(name, project_name)
    assert pre_gen.check_repo_name(suggestion) == [], suggestion


def test_suggestions_pass_for_random_text(pre_gen):
    """A seeded sweep over text mixing letters, digits, separators, accents
    and generic words: the same property for thousands of inputs."""
    rng = random.Random(20261127)
    pieces = [*"aZé9-_ ./!", "app", "api", "my", "2026", "ü", "ß", "🧮", "backend"]
    for _ in range(3000):
        name = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        project_name = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 20)))
        suggestion = pre_gen.suggest_repo_name(name, project_name)
        assert pre_gen.check_repo_name(suggestion) == [], (name, project_name, suggestion)


def test_generic_name_suggests_one_from_the_project_name(pre_gen):
    problems = pre_gen.check_repo_name("my-app", "Benefit Cliff Explorer")
    assert problems == [
        'repo_name "my-app" is too generic: the workspace holds every team\'s '
        "apps, so name it after what it serves. "
        'Try repo_name="benefit-cliff-explorer".'
    ]


def test_accents_are_kept_as_plain_letters(pre_gen):
    assert pre_gen.suggest_repo_name("Émile's Calculator") == "emile-s-calculator"


def render_default_repo_name(project_name: str) -> str:
    """The repo_name default of cookiecutter.json, as cookiecutter renders it."""
    env = StrictEnvironment(context={"cookiecutter": DEFAULTS})
    return env.from_string(DEFAULTS["repo_name"]).render(
        cookiecutter={"project_name": project_name}
    )


@pytest.mark.parametrize(
    ("project_name", "repo_name"),
    [
        ("SALT Cap Calculator", "salt-cap-calculator"),
        ("Child Tax Credit Explorer for Families 2026", "child-tax-credit-explorer"),
        ("2026 Child Tax Credit", "child-tax-credit"),
        ("Supercalifragilisticexpialidocious Tax Planner", "supercalifragilisticexpialido"),
        ("Calculateur d'impôt sur le revenu des ménages", "calculateur-d-impot-sur-le"),
        ("Universal Credit/Housing Benefit: Interaction Explorer", "universal-credit-housing"),
        ("The State of the Safety Net", "state-safety-net"),
        ("Émile's  Benefit--Cliff Tool!!", "emile-s-benefit-cliff-tool"),
        ("a b c d e f g h i j k l m n o p q r s t u v w x y z", "a-b-c-d-e-f-g-h-i-j-k-l-m-n-o"),
    ],
)
def test_default_repo_name_passes_the_check(pre_gen, project_name, repo_name):
    default = render_default_repo_name(project_name)
    assert default == repo_name
    assert pre_gen.check_repo_name(default, project_name) == []


def test_default_repo_name_is_cut_at_the_hooks_limit(pre_gen):
    assert f"max_length={pre_gen.MAX_REPO_NAME_LENGTH}," in DEFAULTS["repo_name"]


@pytest.mark.parametrize("project_name", ["API", "Backend", "2026", "!!!"])
def test_generic_project_name_is_refused_with_a_name_that_passes(pre_gen, project_name):
    default = render_default_repo_name(project_name)
    problems = pre_gen.check_repo_name(default, project_name)
    suggestion = problems[0].rsplit('Try repo_name="', 1)[1].removesuffix('".')
    assert pre_gen.check_repo_name(suggestion) == []


def test_long_project_name_renders_with_the_default_repo_name(cookies):
    result = cookies.bake(
        extra_context={"project_name": "Child Tax Credit Explorer for Families 2026"}
    )
    project = baked(result)
    assert project.name == "child-tax-credit-explorer"
    assert (project / "Makefile").is_file()


def test_failed_check_says_where_the_problem_is(pre_gen, capsys):
    answers = {**VALID_ANSWERS, "repo_name": "My App"}
    assert pre_gen.main(answers) == 1
    err = capsys.readouterr().err
    assert err.startswith('ERROR: repo_name "My App" is not kebab-case')
    assert "Try repo_name=" in err
    assert "the traceback cookiecutter prints next only says that this check failed" in err


def test_next_steps_follow_a_cookiecutter_render(post_gen, default_project, capsys):
    answers = json.loads((default_project / ".cruft.json").read_text())["context"]["cookiecutter"]
    output_dir = str(default_project.parent)

    assert post_gen.main({**answers, "_output_dir": output_dir}, default_project) == 0
    out = capsys.readouterr().out
    assert f"  cd {default_project}\n" in out
    for command in ["git init", "make install", "make test", "make dev", "README.md"]:
        assert command in out


def test_no_next_steps_when_cruft_renders(post_gen, default_project, capsys):
    answers = json.loads((default_project / ".cruft.json").read_text())["context"]["cookiecutter"]
    assert "_output_dir" not in answers
    assert post_gen.main(answers, default_project) == 0
    assert capsys.readouterr().out == ""
