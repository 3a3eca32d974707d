# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8080
PYTEST_ARGS ?=

.PHONY: run test lint format unit live browser bench system-deps clean

run: $(VENV)/.run-deps  ## set up and start the chat on http://127.0.0.1:$(PORT)
	$(BIN)/python serve.py --port $(PORT)

test: $(VENV)/.test-deps system-deps lint  ## set up and run lint and every test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.test-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.test-deps
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

unit: $(VENV)/.test-deps
	$(BIN)/python -m pytest tests/unit

live: $(VENV)/.test-deps
	$(BIN)/python -m pytest tests/live

browser: $(VENV)/.test-deps system-deps
	$(BIN)/python -m pytest tests/browser

BENCH_ARGS ?= --sizes 1000,5000,10000 --reps 3

bench: $(VENV)/.bench-deps  ## chatwsgi vs python-socketio, Node socket.io and the naive baseline
	bash bench/peers/install.sh
	@command -v taskset >/dev/null || { echo "taskset (util-linux) is needed to pin cores"; exit 1; }
	$(BIN)/python bench/run.py $(BENCH_ARGS)

$(VENV)/.bench-deps: pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	touch $@ $(VENV)/.test-deps $(VENV)/.run-deps

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.run-deps: pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.test-deps: pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@ $(VENV)/.run-deps

# Debian packages the browser tests drive; installed only when missing.
system-deps:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium chromium-driver; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache tests/artifacts
