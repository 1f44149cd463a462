# Handoff — the two commands: `make run` and `make test`. See README.md.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app wsgi
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test lint fmt system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(VENV)/.installed $@

## make run: set up and serve Handoff on http://127.0.0.1:5000 (SQLite under instance/, demo data)
run: $(VENV)/.installed
	$(FLASK) db upgrade
	$(FLASK) demo seed
	$(FLASK) serve --host 127.0.0.1 --port 5000

## make test: set up (venv, test deps, Dovecot and Chromium when missing) and run every check
test: $(VENV)/.installed-test system-deps lint
	$(BIN)/pytest $(PYTEST_ARGS)

## make lint: ruff (lint + format check) and the import-linter layer contracts
lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

## make fmt: apply ruff's fixes and formatting
fmt: $(VENV)/.installed-test
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Debian packages the suite drives for real: Dovecot (IMAP) and Chromium (browser tests).
system-deps:
	@missing=""; \
	[ -x /usr/sbin/dovecot ] || missing="$$missing dovecot-imapd"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "Missing Debian packages:$$missing (run as root to install them, or install them yourself)"; \
	  fi; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-artifacts
