# Development of the template itself. `make test` sets everything up from a
# fresh clone and runs the whole suite (see README).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.DEFAULT_GOAL := help
.PHONY: help install test lint render clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: $(VENV)/.installed ## Create the dev environment

$(VENV)/.installed: requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@touch $@

test: install ## Run every test of the template, rendered projects included
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install ## Check the template's own Python
	$(BIN)/ruff check hooks tests template_extensions.py
	$(BIN)/ruff format --check hooks tests template_extensions.py

render: install ## Render the defaults into build/ to look at them
	$(BIN)/cookiecutter --no-input --overwrite-if-exists -o build .

clean: ## Remove environments, caches and renders
	rm -rf $(VENV) .cache build .pytest_cache
