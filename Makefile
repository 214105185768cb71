# Set-up is automatic: every target creates .venv (and installs the package) when missing.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench clean-venv

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## The main job: fetch the default pair (once) and answer GSM8K eval problems.
demo: $(STAMP)
	$(VENV)/bin/autojudge demo

## All tests, the real default pair included (fetched and cached on first use).
test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

## Tests that need no real model.
test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m "not integration"

bench: $(STAMP)
	$(VENV)/bin/autojudge bench --out docs/bench/cpu-torch

clean-venv:
	rm -rf $(VENV)
