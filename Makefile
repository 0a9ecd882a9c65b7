# Development of the template itself. `make test` sets everything up from a
# fresh clone and runs the whole suite (see README).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# `make lock-upgrade PACKAGE=policyengine-us` upgrades only that package.
PACKAGE ?=

.DEFAULT_GOAL := help
.PHONY: help install test lint render lock lock-upgrade lock-check requirements client client-check clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: $(VENV)/.installed ## Create the dev environment (exact pins of requirements-dev.txt)

$(VENV)/.installed: requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@touch $@

test: install ## Run every test of the template, rendered projects included
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install ## Check the template's own Python
	$(BIN)/ruff check hooks tests scripts template_extensions.py
	$(BIN)/ruff format --check hooks tests scripts template_extensions.py

render: install ## Render the defaults into build/ to look at them
	$(BIN)/cookiecutter --no-input --overwrite-if-exists -o build .

lock: install ## Update templates/locks/ after editing the rendered pyproject.toml
	$(BIN)/python scripts/lock.py

lock-upgrade: install ## Newest versions in templates/locks/ (PACKAGE=name for one)
	$(BIN)/python scripts/lock.py $(if $(PACKAGE),--upgrade-package '$(PACKAGE)',--upgrade)

lock-check: install ## Fail if a lock in templates/locks/ is stale
	$(BIN)/python scripts/lock.py --check

client: install ## Update templates/client/ (the rendered client/'s generated files) after an API change
	$(BIN)/python scripts/client.py

client-check: install ## Fail if a file in templates/client/ is stale
	$(BIN)/python scripts/client.py --check

requirements: install ## Recompile requirements-dev.txt from requirements-dev.in
	$(BIN)/uv pip compile --quiet --universal --python-version 3.11 \
	  requirements-dev.in -o requirements-dev.txt

clean: ## Remove environments, caches and renders
	rm -rf $(VENV) .cache build .pytest_cache
