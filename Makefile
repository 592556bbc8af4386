# One entry point for people and CI: `make demo` and `make test` set everything up themselves.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TOOLS := tools/node_modules/.bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export PATH := $(CURDIR)/$(TOOLS):$(CURDIR)/$(BIN):$(PATH)

.PHONY: setup demo test lint typecheck unit bench wheel-check clean

ANSIBLE_TEST_PIP := $(HOME)/.ansible/test/cache/get_pip_24_2.py

setup: $(VENV)/.stamp .state/system.stamp $(TOOLS)/gitlab-ci-local $(ANSIBLE_TEST_PIP)

$(VENV)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# etcd (a real K/V endpoint), rsync (gitlab-ci-local needs it), redis-server (STACKL's queue
# and the kv_redis agent's endpoint) from Debian's packages; openssl makes the tests' certificates.
.state/system.stamp:
	@mkdir -p .state
	if ! command -v etcd >/dev/null || ! command -v rsync >/dev/null \
	  || ! command -v redis-server >/dev/null || ! command -v openssl >/dev/null; then \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq etcd-server rsync \
	    redis-server openssl >/dev/null; \
	fi
	touch $@

# ansible-test (sanity on the agents' collection) first fetches a pip bootstrap script, which
# cannot be downloaded here; one running ensurepip lets it go on with the package index. The
# name is the pip version ansible-test 2.19 pins (ansible_test/_internal/python_requirements.py).
$(ANSIBLE_TEST_PIP):
	mkdir -p $(@D)
	printf 'import ensurepip\nensurepip.bootstrap(upgrade=True)\n' > $@

# gitlab-ci-local runs on Node 22 (it crashes on Node 20), both from the npm registry.
$(TOOLS)/gitlab-ci-local: tools/package.json
	cd tools && npm install --no-audit --no-fund --loglevel=error
	touch $@

demo: setup
	$(BIN)/python examples/demo.py

lint: $(VENV)/.stamp
	$(BIN)/ruff check runner_agent tests benchmarks examples
	$(BIN)/ruff format --check runner_agent tests benchmarks examples
	$(BIN)/lint-imports  # the layers and import rules in pyproject.toml

typecheck: $(VENV)/.stamp
	$(BIN)/mypy

# three workers on two cores: the tests mostly wait on Ansible, etcd, Redis or gitlab-ci-local
test: setup lint typecheck
	$(BIN)/python -m pytest -q -n 3

bench: setup
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) .state tools/node_modules build dist .mypy_cache .ruff_cache .pytest_cache
