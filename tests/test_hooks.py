"""Unit tests of the hook functions, imported straight from hooks/."""

import json

import pytest


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


def test_makefile_uses_the_app_name(post_gen):
    text = post_gen.makefile("my-app")
    assert "APP := my-app" in text
    assert "__APP__" not in text and "__WORKSPACE__" not in text


@pytest.mark.parametrize("name", ["api", "backend", "app", "policyengine", "my-backend"])
def test_generic_repo_names_fail(pre_gen, name):
    problems = pre_gen.check_repo_name(name)
    assert problems and "too generic" in problems[0]
