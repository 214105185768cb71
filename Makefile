# Set-up is automatic: every target creates .venv (and installs the package) when missing.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench clean-venv

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev,llama]'
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

## The speed tables in docs/speed.md (about an hour on 2 cores).
bench: $(STAMP)
	$(VENV)/bin/autojudge costs --backend torch --out docs/bench/costs-torch.json
	$(VENV)/bin/autojudge costs --backend llamacpp --out docs/bench/costs-llamacpp.json
	$(VENV)/bin/autojudge bench --n 10 --max-new-tokens 256 --out docs/bench/cpu --methods $(BENCH_METHODS)
	$(VENV)/bin/autojudge costs --check docs/bench/cpu
	$(VENV)/bin/python scripts/render_speed_doc.py

BENCH_METHODS = torch/target,torch/assisted,torch/exact/w4,torch/exact/w8,llamacpp/target,llamacpp/exact/w4,torch+llamacpp/exact/w8

clean-venv:
	rm -rf $(VENV)
