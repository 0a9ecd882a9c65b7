"""Finish the rendered project: check it, then write its Makefile.

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
# Deploys go only to the `__WORKSPACE__` Modal workspace. Every target that
# calls Modal runs the gate first, in the same shell command, so a failed
# gate stops it even under `make -i` or `make -k`:
#   - ENV must be one of: __ENV_LIST__;
#   - the Modal CLI must be installed (`make install`);
#   - MODAL_TOKEN_ID/MODAL_TOKEN_SECRET are dropped, unless a CI job asks for
#     them with MODAL_USE_TOKEN=1 (and then both must be set);
#   - `modal token info` must show `Workspace: __WORKSPACE__`, exactly.
# `make deploy` also checks that modal_app.py names the app after this
# repository, that no secret is written into the code and that uv.lock
# matches pyproject.toml (the image installs uv.lock, so a stale lock would
# ship untested versions), then deploys with `modal deploy` and verifies the
# live URLs; it fails if they do not answer.
# There is no target that runs `modal run`, and `make serve` refuses main.

# The gate's settings cannot be changed from the command line.
override SHELL := /bin/sh
override APP := __APP__
override WORKSPACE := __WORKSPACE__
override ENVIRONMENTS := __ENVIRONMENTS__
ENV ?= main

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# uv installs exactly what uv.lock pins. This version of it (the same as
# UV_VERSION in modal_app.py, which builds the image) is installed into a
# small venv of its own, so no uv on PATH is needed.
UV_VERSION := 0.13.9
TOOLS ?= .tools/uv-$(UV_VERSION)
UV ?= $(TOOLS)/bin/uv
# Install uv first only when it is this one (UV=uv uses the one on PATH).
override UV_INSTALLED = $(filter $(TOOLS)/bin/uv,$(UV))
# uv's commands work on VENV instead of the project's default .venv.
override UV_CMD = UV_PROJECT_ENVIRONMENT=$(call q,$(abspath $(VENV))) $(call q,$(UV))
# Tests point MODAL at a stand-in; everyone else gets the venv's CLI.
MODAL ?= $(BIN)/modal
HOST ?= 127.0.0.1
PORT ?= 8000
# Seconds `make verify`/`make health` keep retrying a starting app.
VERIFY_WAIT ?= 240
# `make stop` needs CONFIRM=<app> on its command line (not from the shell).
CONFIRM :=

# Shell-quote a value: '...' with any ' inside escaped.
q = '$(subst ','\'',$(1))'

# ENV as one of ENVIRONMENTS, or empty when it is anything else.
override ENV_NAME = $(if $(filter 1,$(words $(ENV))),$(filter $(ENVIRONMENTS),$(ENV)))

# Locally, MODAL_TOKEN_ID/MODAL_TOKEN_SECRET would silently override your
# profile and could deploy to another workspace, so they are dropped. A CI
# deploy uses them on purpose and says so with MODAL_USE_TOKEN=1.
MODAL_USE_TOKEN ?= 0
ifeq ($(MODAL_USE_TOKEN),1)
override MODAL_CMD = $(call q,$(MODAL))
else
override MODAL_CMD = env -u MODAL_TOKEN_ID -u MODAL_TOKEN_SECRET $(call q,$(MODAL))
endif

# https://policyengine--<app>-<function>.modal.run in main,
# https://policyengine-<env>--<app>-<function>.modal.run elsewhere.
# Only the command line can point the checks elsewhere (tests do).
override URL_PREFIX = https://$(WORKSPACE)$(if $(filter main,$(ENV_NAME)),,-$(ENV_NAME))--$(APP)
API_URL = $(URL_PREFIX)-fastapi-app.modal.run
HEALTH_URL = $(URL_PREFIX)-health.modal.run
override VERIFY = $(PYTHON) scripts/verify.py --health-url $(call q,$(HEALTH_URL)) \
  --api-url $(call q,$(API_URL)) --wait $(call q,$(VERIFY_WAIT))

# Shell snippets, each a single line once make joins the backslashes.
override ENV_CHECK = if [ -z '$(ENV_NAME)' ]; then \
    printf 'ERROR: ENV=%s is not an environment of the $(WORKSPACE) workspace.\n' $(call q,$(ENV)) >&2; \
    echo 'Use one of: __ENV_LIST__. For example: make deploy ENV=staging' >&2; \
    $(if $(filter environment%,$(origin ENV)),echo 'ENV came from your shell; pass it on the command line instead.' >&2;) \
    exit 2; fi

# The workspace gate. GATE is ENV_CHECK and AUTH_CHECK together.
override AUTH_CHECK = \
  if ! command -v $(call q,$(MODAL)) >/dev/null 2>&1; then \
    printf 'ERROR: the Modal CLI is not installed (no %s). Run: make install\n' $(call q,$(MODAL)) >&2; \
    exit 1; fi; \
  if [ $(call q,$(MODAL_USE_TOKEN)) = 1 ]; then \
    if [ -z "$${MODAL_TOKEN_ID:-}" ] || [ -z "$${MODAL_TOKEN_SECRET:-}" ]; then \
      echo 'ERROR: MODAL_USE_TOKEN=1 but MODAL_TOKEN_ID and MODAL_TOKEN_SECRET are not both set.' >&2; \
      echo 'In CI, set both from the repository secrets. Locally, leave MODAL_USE_TOKEN unset and use your $(WORKSPACE) profile.' >&2; \
      exit 1; fi; \
    echo 'Using the token in MODAL_TOKEN_ID/MODAL_TOKEN_SECRET (MODAL_USE_TOKEN=1).'; \
  elif [ -n "$${MODAL_TOKEN_ID:-}$${MODAL_TOKEN_SECRET:-}" ]; then \
    echo 'NOTE: ignoring MODAL_TOKEN_ID/MODAL_TOKEN_SECRET from your shell: they would override your Modal profile.' >&2; \
  fi; \
  info="$$($(MODAL_CMD) token info 2>&1)"; code=$$?; \
  esc="$$(printf '\033')"; \
  workspace="$$(printf '%s\n' "$$info" | sed -n -e "s/$${esc}\[[0-9;]*m//g" \
    -e 's/^[[:space:]]*Workspace:[[:space:]]*\([^[:space:]]*\).*/\1/p' | sort -u)"; \
  if [ "$$code" -ne 0 ] || [ "$$workspace" != '$(WORKSPACE)' ]; then \
    echo "ERROR: Modal is not authenticated to the '$(WORKSPACE)' workspace, so nothing was done." >&2; \
    if [ "$$code" -ne 0 ]; then echo "  'modal token info' failed (exit code $$code)." >&2; fi; \
    printf "  Saw workspace: '%s'\n" "$$(printf '%s' "$${workspace:-nothing}" | tr '\n' ' ')" >&2; \
    printf '%s\n' "$$info" | sed 's/^/  | /' >&2; \
    if [ $(call q,$(MODAL_USE_TOKEN)) = 1 ]; then \
      echo 'The token in MODAL_TOKEN_ID/MODAL_TOKEN_SECRET must belong to the $(WORKSPACE) workspace: replace those secrets.' >&2; \
    else \
      echo 'Fix it with:' >&2; \
      printf '  %s token new --profile $(WORKSPACE)\n' $(call q,$(MODAL)) >&2; \
      printf '  %s profile activate $(WORKSPACE)\n' $(call q,$(MODAL)) >&2; \
      echo '  then check that `modal token info` shows "Workspace: $(WORKSPACE)".' >&2; \
    fi; \
    echo 'No access? Ask a workspace owner to invite you: https://modal.com/settings/$(WORKSPACE)' >&2; \
    exit 1; fi; \
  echo "Modal workspace: $$workspace, environment: $(ENV_NAME)"
override GATE = $(ENV_CHECK); $(AUTH_CHECK)

# The app must be named after the repository (never a generic name).
override APP_CHECK = \
  if ! grep -Eq '^APP_NAME = "$(APP)"[[:space:]]*$$' modal_app.py \
    || grep -E '^[^\#]*modal\.App\(' modal_app.py | grep -vq 'modal\.App(APP_NAME)'; then \
    echo 'ERROR: modal_app.py must name the app after the repository: APP_NAME = "$(APP)" and app = modal.App(APP_NAME).' >&2; \
    printf '  found: %s\n' "$$(grep -E '^APP_NAME|modal\.App\(' modal_app.py | tr '\n' ' ')" >&2; \
    exit 1; fi

# The image installs uv.lock as it is, so it must match pyproject.toml; a
# deploy never relocks (that would pick versions no test has run against).
override LOCK_CHECK = \
  if ! command -v $(call q,$(UV)) >/dev/null 2>&1; then \
    printf 'ERROR: uv is not installed (no %s). Run: make install\n' $(call q,$(UV)) >&2; \
    exit 1; fi; \
  lock_out="$$($(UV_CMD) lock --check --offline 2>&1)" || { \
    echo 'ERROR: uv.lock does not match pyproject.toml, so nothing can be deployed until they match.' >&2; \
    printf '%s\n' "$$lock_out" | sed 's/^/  | /' >&2; \
    echo 'The image installs exactly uv.lock. Fix it with: make lock (runs uv lock),' >&2; \
    echo 'then make test, then commit pyproject.toml and uv.lock together.' >&2; \
    exit 1; }

# Secrets belong in Modal Secrets, never in the code shipped to the image.
override SECRET_TOKENS := (sk-ant-|sk-proj-|gh[pousr]_[A-Za-z0-9]{20}|github_pat_|xox[abpr]-|AKIA[0-9A-Z]{16}|hf_[A-Za-z0-9]{20}|(^|[^A-Za-z0-9])a[ks]-[A-Za-z0-9]{16}|-----BEGIN [A-Z ]*PRIVATE KEY)
override SECRET_ASSIGNMENTS := (api_?key|secret|token|passw(or)?d)[a-z0-9_]*["']?[[:space:]]*[:=][[:space:]]*[rbf]?["'][^"'[:space:]]{12}
override SECRET_CHECK = \
  found="$$( { grep -rInE --exclude-dir=__pycache__ $(call q,$(SECRET_TOKENS)) modal_app.py api; \
    grep -rIniE --exclude-dir=__pycache__ $(call q,$(SECRET_ASSIGNMENTS)) modal_app.py api; \
    find api \( -name '.env*' -o -name '*.pem' -o -name '*.key' \) -exec printf '%s:file\n' {} \; ; \
    } | cut -d: -f1,2 | sort -u)"; \
  if [ -n "$$found" ]; then \
    echo 'ERROR: these places look like secrets written into the code that Modal would ship:' >&2; \
    printf '%s\n' "$$found" | sed 's/^/  /' >&2; \
    echo 'Store secrets in Modal instead: modal secret create NAME KEY=value, then add NAME to SECRET_NAMES in modal_app.py.' >&2; \
    exit 1; fi

.DEFAULT_GOAL := help
.PHONY: help install lock test lint format dev bench fuzz check-env check-auth check-app \
	check-secrets check-lock deploy deploy-staging deploy-testing url health verify serve logs \
	apps stop vercel-env

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "Variables: ENV=main|staging|testing (default main), CONFIRM=<app> for stop,"
	@echo "  VERIFY_WAIT=<seconds> (default 240), MODAL_USE_TOKEN=1 (CI only), VENV, PORT,"
	@echo "  UPGRADE=<package> for lock."

install: $(VENV)/.installed ## Install exactly what uv.lock pins (and the dev tools) into .venv

$(VENV)/.installed: pyproject.toml uv.lock .python-version $(UV_INSTALLED)
	$(UV_CMD) sync --locked
	@touch $@

$(TOOLS)/bin/uv:
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet uv==$(UV_VERSION)

lock: $(UV_INSTALLED) ## Update uv.lock after editing pyproject.toml (UPGRADE=<package> to upgrade one)
	$(UV_CMD) lock $(if $(UPGRADE),--upgrade-package $(call q,$(UPGRADE)))

test: install ## Run the test suite (offline; no Modal account needed)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install ## Check style and types
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install ## Fix style
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

dev: install ## Serve locally with reload; API docs at http://127.0.0.1:8000/docs (HOST, PORT)
	@echo 'API docs at http://$(HOST):$(PORT)/docs once the model is warm (a "ready" log line, about 30 s).'
	$(BIN)/uvicorn api.main:app --reload --no-access-log --host $(HOST) --port $(PORT)

bench: install ## Compare this backend's speed and memory with a naive one
	$(BIN)/python bench/bench.py

fuzz: install ## Longer schema-based fuzzing of the API
	FUZZ_EXAMPLES=500 $(BIN)/python -m pytest tests/test_fuzz.py

check-env: ## Check that ENV is main, staging or testing
	@$(ENV_CHECK)

check-auth: ## The gate: pass only if Modal points at the __WORKSPACE__ workspace
	@$(GATE)

check-app: ## Check that modal_app.py names the app after the repository
	@$(APP_CHECK); echo 'App name: $(APP)'

check-secrets: ## Check that no secret is written into the shipped code
	@$(SECRET_CHECK); echo 'No secrets found in modal_app.py or api/.'

check-lock: ## Check that uv.lock matches pyproject.toml
	@$(LOCK_CHECK); echo 'uv.lock matches pyproject.toml.'

deploy: ## Deploy to ENV (main, staging or testing) after the checks, then verify it
	@$(ENV_CHECK); $(APP_CHECK); $(SECRET_CHECK); $(LOCK_CHECK); $(AUTH_CHECK); \
	echo 'Deploying $(APP) to the $(WORKSPACE) workspace, environment $(ENV_NAME):'; \
	echo '+ modal deploy modal_app.py --env $(ENV_NAME)'; \
	$(MODAL_CMD) deploy modal_app.py --env $(ENV_NAME) \
	  || { echo 'ERROR: modal deploy failed.' >&2; exit 1; }; \
	$(if $(filter command%,$(origin API_URL) $(origin HEALTH_URL)),echo 'NOTE: verifying the URLs given on the command line.';) \
	$(VERIFY) || { \
	  echo 'ERROR: $(APP) was deployed to $(ENV_NAME) but does not pass the checks above.' >&2; \
	  echo 'Look at: make logs ENV=$(ENV_NAME). Fix it, then make deploy ENV=$(ENV_NAME) again.' >&2; \
	  exit 1; }; \
	printf 'Deployed and verified: %s\n' $(call q,$(API_URL))

deploy-staging: ## Deploy to staging
	@$(MAKE) --no-print-directory deploy ENV=staging

deploy-testing: ## Deploy to testing
	@$(MAKE) --no-print-directory deploy ENV=testing

url: ## Print the deployed URLs for ENV
	@$(ENV_CHECK); \
	printf 'API:    %s\n' $(call q,$(API_URL)); \
	printf 'Docs:   %s\n' $(call q,$(API_URL)/docs); \
	printf 'Health: %s\n' $(call q,$(HEALTH_URL))

health: ## Check that the deployed health endpoints of ENV answer
	@$(ENV_CHECK); $(VERIFY) --health-only

verify: ## Check health and a sample calculation on the deployed API of ENV
	@$(ENV_CHECK); $(VERIFY)

serve: ENV = testing
serve: ## Temporary dev app in ENV (default testing) that stops with your terminal; never main
	@$(ENV_CHECK); \
	if [ '$(ENV_NAME)' = main ]; then \
	  echo 'ERROR: modal serve makes a temporary app that stops with your terminal; it is not for main.' >&2; \
	  echo 'Use make deploy ENV=main for production, or make serve ENV=testing.' >&2; \
	  exit 1; fi; \
	$(GATE); \
	echo 'Serving a temporary app in $(ENV_NAME); it stops when you press Ctrl-C. Not for production.'; \
	$(MODAL_CMD) serve modal_app.py --env $(ENV_NAME)

logs: ## Stream the deployed app's logs in ENV
	@$(GATE); $(MODAL_CMD) app logs $(APP) --env $(ENV_NAME)

apps: ## List the apps deployed in ENV
	@$(GATE); $(MODAL_CMD) app list --env $(ENV_NAME)

stop: ## Stop the app in ENV for good (needs CONFIRM=<app name>)
	@$(ENV_CHECK); \
	if [ $(call q,$(CONFIRM)) != '$(APP)' ]; then \
	  echo 'ERROR: a stopped app cannot be restarted, only deployed again.' >&2; \
	  echo 'If you mean it, run: make stop ENV=$(ENV_NAME) CONFIRM=$(APP)' >&2; \
	  exit 1; fi; \
	$(GATE); \
	echo '+ modal app stop $(APP) --env $(ENV_NAME) --yes'; \
	$(MODAL_CMD) app stop $(APP) --env $(ENV_NAME) --yes

vercel-env: ## Print the commands that point the Vercel frontend at ENV
	@$(ENV_CHECK); \
	case '$(ENV_NAME)' in \
	  main) target=production; next='vercel --prod --force --yes --scope policy-engine';; \
	  staging) target=preview; next='vercel --force --yes --scope policy-engine';; \
	  *) target=development; next='vercel env pull .env.local --yes --scope policy-engine';; esac; \
	echo "# Run these in the frontend's repository (Vercel $$target environment):"; \
	printf "printf '%%s' %s | vercel env add NEXT_PUBLIC_API_URL %s\n" $(call q,$(call q,$(API_URL))) "$$target"; \
	echo "$$next"
"""

# What a Makefile variable or shell word may hold: the app name goes into both.
APP_NAME_PATTERN = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")


def makefile(app_name: str) -> str:
    """The rendered project's Makefile, for the app ``app_name``."""
    if not APP_NAME_PATTERN.fullmatch(app_name):
        raise ValueError(f"app name {app_name!r} is not kebab-case")
    return (
        MAKEFILE.replace("__APP__", app_name)
        .replace("__WORKSPACE__", WORKSPACE)
        .replace("__ENVIRONMENTS__", " ".join(ENVIRONMENTS))
        .replace("__ENV_LIST__", ", ".join(ENVIRONMENTS))
    )


def next_steps(project: Path) -> str:
    """What to do with a freshly rendered project."""
    return f"""
Next steps:
  cd {shlex.quote(str(project))}
  git init && git add . && git commit -m "First commit"
  make install   # the project's virtual environment
  make test      # offline tests; no Modal account needed
  make dev       # serve locally with reload; API docs at /docs
Then read README.md: deploys, operations, troubleshooting.
"""


def main(answers: dict, project: Path) -> int:
    problems = check_rendered(project, answers["repo_name"])
    for problem in problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    if problems:
        return 1
    record_commit(project, template_commit(answers.get("_repo_dir", "")))
    (project / "Makefile").write_text(makefile(answers["repo_name"]))
    # Only cookiecutter itself sets _output_dir. cruft renders without it,
    # also on `cruft update`, where these steps would only be noise.
    if "_output_dir" in answers:
        print(next_steps(project))
    return 0


if __name__ == "__main__":
    # Answers arrive as JSON data, never as Python source: tojson writes
    # ' as \u0027, so no answer can close this ''' literal.
    sys.exit(main(json.loads(r"""{{ cookiecutter | tojson }}"""), Path.cwd()))
