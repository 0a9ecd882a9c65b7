"""The Makefile text that the post-gen hook writes (makefile())."""

import re

import pytest

from tests.deploy_support import MODAL_RUN, logical_lines


def test_makefile_fills_in_every_placeholder(post_gen):
    text = post_gen.makefile("my-app")

    assert "override APP := my-app" in text
    assert "override WORKSPACE := policyengine" in text
    assert "override ENVIRONMENTS := main staging testing" in text
    assert "Use one of: main, staging, testing" in text
    assert not re.search(r"__[A-Z_]+__", text)


def test_rendered_makefile_is_the_hook_output(post_gen, project):
    assert (project / "Makefile").read_text() == post_gen.makefile(project.name)


@pytest.mark.parametrize(
    "name",
    ["", "My App", "app;rm -rf /", "app$(shell id)", "app\nall:", "-app", "app_name"],
)
def test_makefile_rejects_unsafe_app_names(post_gen, name):
    with pytest.raises(ValueError):
        post_gen.makefile(name)


def test_makefile_never_runs_modal_run(post_gen):
    text = post_gen.makefile("my-app")

    assert not re.search(MODAL_RUN, text.replace("`modal run`", ""))


def test_every_modal_call_in_the_makefile_follows_the_gate(post_gen):
    """Each recipe line that calls Modal runs the gate first, in one shell."""
    modal_lines = [
        line
        for line in logical_lines(post_gen.makefile("my-app"))
        if line.startswith("\t") and "$(MODAL_CMD)" in line
    ]
    assert len(modal_lines) == 5  # deploy, serve, logs, apps, stop
    for line in modal_lines:
        call = line.index("$(MODAL_CMD)")
        gate = max(line.find("$(GATE)"), line.find("$(AUTH_CHECK)"))
        assert 0 <= gate < call, line


def test_makefile_gate_variables_are_overrides(post_gen):
    text = post_gen.makefile("my-app")
    for name in (
        "SHELL",
        "APP",
        "WORKSPACE",
        "ENVIRONMENTS",
        "ENV_NAME",
        "MODAL_CMD",
        "URL_PREFIX",
        "VERIFY",
        "ENV_CHECK",
        "AUTH_CHECK",
        "GATE",
        "APP_CHECK",
        "SECRET_CHECK",
        "LOCK_CHECK",
        "UV_CMD",
    ):
        assert re.search(rf"^override {name} :?=", text, re.MULTILINE), name


def test_makefile_drops_tokens_unless_asked(post_gen):
    text = post_gen.makefile("my-app")

    assert "env -u MODAL_TOKEN_ID -u MODAL_TOKEN_SECRET" in text
    assert "ifeq ($(MODAL_USE_TOKEN),1)" in text
