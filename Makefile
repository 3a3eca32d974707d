# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8080
PYTEST_ARGS ?=
NODE_DEPS := tests/thirdparty/node_modules/.installed

.PHONY: run cluster test lint format unit live browser thirdparty bench system-deps clean

run: $(VENV)/.run-deps  ## set up and start the chat on http://127.0.0.1:$(PORT)
	$(BIN)/python serve.py --port $(PORT)

# Two nodes sharing a Redis backplane behind HAProxy, on http://127.0.0.1:$(PORT); live frames
# through Redis pub/sub, or FANOUT=zmq through a ZeroMQ forwarder.
FANOUT ?= redis
cluster: $(VENV)/.run-deps system-deps  ## redis-server, two chat nodes and HAProxy; Ctrl-C stops all
	$(BIN)/python deploy/cluster.py --port $(PORT) --fanout $(FANOUT)

# Two workers, a test file each at a time (its module fixtures set up once): the slow files
# (the cluster's faults, the browser, the reference server) run side by side.
TEST_WORKERS ?= 2
test: $(VENV)/.test-deps system-deps $(NODE_DEPS) lint  ## set up and run lint and every test
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

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

browser: $(VENV)/.test-deps system-deps $(NODE_DEPS)
	$(BIN)/python -m pytest tests/browser

thirdparty: $(VENV)/.test-deps system-deps $(NODE_DEPS)  ## the npm/PyPI 0.9 clients and the 0.9 reference server
	$(BIN)/python -m pytest tests/thirdparty

BENCH_ARGS ?= --sizes 1000,5000,10000 --reps 3

bench: $(VENV)/.bench-deps  ## chatwsgi vs python-socketio, Node socket.io and the naive baseline
	bash bench/peers/install.sh
	@command -v taskset >/dev/null || { echo "taskset (util-linux) is needed to pin cores"; exit 1; }
	$(BIN)/python bench/run.py $(BENCH_ARGS)

BENCH_CLUSTER_ARGS ?= --clients 10000 --reps 3 --messages 100

.PHONY: bench-cluster
bench-cluster: $(VENV)/.bench-deps  ## fan-out on 1 node in memory, 1 and 2 nodes on Redis (bench/cluster.py)
	@command -v taskset >/dev/null || { echo "taskset (util-linux) is needed to pin cores"; exit 1; }
	@command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ] || \
		{ echo "redis-server is needed: make system-deps (or apt-get install redis-server)"; exit 1; }
	$(BIN)/python bench/cluster.py $(BENCH_CLUSTER_ARGS)

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

# npm packages the third-party tests run under Node (tests/thirdparty/package.json): exact
# versions, no lock file; reinstalled when package.json changes.
$(NODE_DEPS): tests/thirdparty/package.json | system-deps
	npm install --prefix tests/thirdparty --no-package-lock --no-audit --no-fund --loglevel=error
	touch $@

# Debian packages the browser, cluster and third-party tests drive, as command:package pairs;
# only the packages of missing commands are installed (a machine's own Node.js, e.g. from
# NodeSource, ships npm and conflicts with Debian's npm package).
SYSTEM_DEPS := chromium:chromium chromedriver:chromium-driver redis-server:redis-server \
	haproxy:haproxy node:nodejs npm:npm
system-deps:
	@missing=""; for pair in $(SYSTEM_DEPS); do \
		c=$${pair%%:*}; \
		command -v $$c >/dev/null || [ -x /usr/sbin/$$c ] || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi

clean:  ## back to a fresh checkout, make cluster's Redis data (deploy/.data) included
	rm -rf $(VENV) .pytest_cache .ruff_cache tests/artifacts tests/thirdparty/node_modules deploy/.data
