"""Finish the rendered project: check it, then write its Makefile.

Runs inside the new project folder. It must stay idempotent and offline
(no network, no ``git init``): ``cruft update`` runs it again on an existing
project. The work lives in functions that the template's tests import.
"""

import ast
import json
import sys
from pathlib import Path

WORKSPACE = "policyengine"
ENVIRONMENTS = ("main", "staging", "testing")


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
    return problems


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


MAKEFILE = r"""# Make targets for __APP__. Run `make` to list them.
#
# Deploys go only to the `policyengine` Modal workspace. `make deploy` checks
# that first (see check-auth), then deploys, then verifies the live URLs.

APP := __APP__
WORKSPACE := __WORKSPACE__
ENVIRONMENTS := __ENVIRONMENTS__
ENV ?= main

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
UV ?= $(BIN)/uv
# Tests point MODAL at a stand-in; everyone else gets the venv's CLI.
MODAL ?= $(BIN)/modal
HOST ?= 127.0.0.1
PORT ?= 8000

# Locally, MODAL_TOKEN_ID/MODAL_TOKEN_SECRET would silently override your
# profile and could deploy to another workspace, so they are dropped. A CI
# deploy uses them on purpose and says so with MODAL_USE_TOKEN=1.
MODAL_USE_TOKEN ?= 0
ifeq ($(MODAL_USE_TOKEN),1)
MODAL_CMD := $(MODAL)
else
MODAL_CMD := env -u MODAL_TOKEN_ID -u MODAL_TOKEN_SECRET $(MODAL)
endif

# https://policyengine--<app>-<function>.modal.run in main,
# https://policyengine-<env>--<app>-<function>.modal.run elsewhere.
ifeq ($(ENV),main)
URL_PREFIX := https://$(WORKSPACE)--$(APP)
else
URL_PREFIX := https://$(WORKSPACE)-$(ENV)--$(APP)
endif
API_URL ?= $(URL_PREFIX)-fastapi-app.modal.run
HEALTH_URL ?= $(URL_PREFIX)-health.modal.run

.DEFAULT_GOAL := help
.PHONY: help install test lint format dev bench fuzz serve check-env check-auth \
	deploy deploy-staging deploy-testing url health verify logs apps stop vercel-env

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  Variables: ENV=$(ENV) (one of $(ENVIRONMENTS)), VENV=$(VENV), PORT=$(PORT)"

install: $(VENV)/.installed ## Create the virtual environment and install dependencies

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(UV) || $(BIN)/python -m pip install --quiet uv
	VIRTUAL_ENV=$(abspath $(VENV)) $(UV) pip install --quiet -r pyproject.toml --extra dev
	@touch $@

test: install ## Run the test suite (offline; no Modal account needed)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install ## Check style
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install ## Fix style
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

dev: install ## Serve locally with reload; API docs at http://$(HOST):$(PORT)/docs
	$(BIN)/uvicorn api.main:app --reload --host $(HOST) --port $(PORT)

bench: install ## Compare this backend's speed and memory with a naive one
	$(BIN)/python bench/bench.py

fuzz: install ## Longer schema-based fuzzing of the API
	FUZZ_EXAMPLES=500 $(BIN)/python -m pytest tests/test_fuzz.py

check-env:
	@case "$(ENV)" in main|staging|testing) ;; \
	*) echo "ERROR: ENV=$(ENV) is not an environment of the $(WORKSPACE) workspace." >&2; \
	   echo "Use one of: $(ENVIRONMENTS), e.g. make deploy ENV=staging" >&2; exit 2;; esac

check-auth: check-env ## The gate: pass only if Modal points at the policyengine workspace
	@if [ "$(MODAL_USE_TOKEN)" = "1" ] && { [ -z "$$MODAL_TOKEN_ID" ] || [ -z "$$MODAL_TOKEN_SECRET" ]; }; then \
	  echo "ERROR: MODAL_USE_TOKEN=1 but MODAL_TOKEN_ID and MODAL_TOKEN_SECRET are not both set." >&2; exit 1; fi
	@info="$$($(MODAL_CMD) token info 2>&1)"; code=$$?; \
	workspace="$$(printf '%s\n' "$$info" | sed -n 's/^[[:space:]]*Workspace:[[:space:]]*\([^[:space:]]*\).*/\1/p' | head -n 1)"; \
	if [ $$code -ne 0 ] || [ "$$workspace" != "$(WORKSPACE)" ]; then \
	  echo "ERROR: Modal is not authenticated to the '$(WORKSPACE)' workspace (saw: '$${workspace:-nothing}')." >&2; \
	  printf '%s\n' "$$info" | sed 's/^/  modal token info: /' >&2; \
	  echo "Fix it with:" >&2; \
	  echo "  $(MODAL) token new --profile $(WORKSPACE)" >&2; \
	  echo "  $(MODAL) profile activate $(WORKSPACE)" >&2; \
	  echo "No access? Ask a workspace owner for an invite to '$(WORKSPACE)'." >&2; \
	  exit 1; fi; \
	echo "Modal workspace: $$workspace (environment $(ENV))"

deploy: check-auth ## Deploy to ENV (main, staging or testing), then verify it
	$(MODAL_CMD) deploy modal_app.py --env $(ENV)
	@$(MAKE) --no-print-directory verify ENV=$(ENV)

deploy-staging: ## Deploy to staging
	@$(MAKE) --no-print-directory deploy ENV=staging

deploy-testing: ## Deploy to testing
	@$(MAKE) --no-print-directory deploy ENV=testing

url: check-env ## Print the deployed URLs for ENV
	@echo "API:    $(API_URL)"
	@echo "Docs:   $(API_URL)/docs"
	@echo "Health: $(HEALTH_URL)"

health: check-env ## Check that the deployed health endpoints answer
	$(PYTHON) scripts/verify.py --health-url $(HEALTH_URL) --api-url $(API_URL) --health-only

verify: check-env ## Check health and a sample calculation on the deployed API
	$(PYTHON) scripts/verify.py --health-url $(HEALTH_URL) --api-url $(API_URL)

serve: ENV = testing
serve: check-auth ## Temporary dev deployment that stops with your terminal (not for production)
	@if [ "$(ENV)" = "main" ]; then echo "ERROR: modal serve makes a temporary app; use make deploy for main." >&2; exit 1; fi
	@echo "Serving a temporary app in $(ENV); it stops when you press Ctrl-C. Not for production."
	$(MODAL_CMD) serve modal_app.py --env $(ENV)

logs: check-auth ## Stream the deployed app's logs
	$(MODAL_CMD) app logs $(APP) --env $(ENV)

apps: check-auth ## List the apps deployed in ENV
	$(MODAL_CMD) app list --env $(ENV)

stop: check-env ## Stop the app in ENV for good (needs CONFIRM=<app name>)
	@if [ "$(CONFIRM)" != "$(APP)" ]; then \
	  echo "ERROR: a stopped app cannot be restarted, only deployed again." >&2; \
	  echo "If you mean it, run: make stop ENV=$(ENV) CONFIRM=$(APP)" >&2; exit 1; fi
	@$(MAKE) --no-print-directory check-auth ENV=$(ENV)
	$(MODAL_CMD) app stop $(APP) --env $(ENV) --yes

vercel-env: check-env ## Print the commands that point the Vercel frontend at ENV
	@echo "# Run these in the frontend's repository:"
	@if [ "$(ENV)" = "main" ]; then \
	  echo "vercel env add NEXT_PUBLIC_API_URL production   # value: $(API_URL)"; \
	  echo "vercel --prod --force --yes --scope policy-engine"; \
	else \
	  echo "vercel env add NEXT_PUBLIC_API_URL preview   # value: $(API_URL)"; \
	  echo "vercel --force --yes --scope policy-engine"; \
	fi
"""


def makefile(app_name: str) -> str:
    return (
        MAKEFILE.replace("__APP__", app_name)
        .replace("__WORKSPACE__", WORKSPACE)
        .replace("__ENVIRONMENTS__", " ".join(ENVIRONMENTS))
    )


def main(answers: dict, project: Path) -> int:
    problems = check_rendered(project, answers["repo_name"])
    for problem in problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    if problems:
        return 1
    record_commit(project, template_commit(answers.get("_repo_dir", "")))
    (project / "Makefile").write_text(makefile(answers["repo_name"]))
    return 0


if __name__ == "__main__":
    # Answers arrive as JSON data, never as Python source: tojson writes
    # ' as \u0027, so no answer can close this ''' literal.
    sys.exit(main(json.loads(r'''{{ cookiecutter | tojson }}'''), Path.cwd()))
