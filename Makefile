# modelgate: `make up` starts the whole stack, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PACKAGES := shared services/auth services/inference services/gateway client
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help venv up test fuzz lint format bench clean lock test-compose

help:
	@echo "make up     start auth, inference and gateway on http://127.0.0.1:8000 (Ctrl-C stops)"
	@echo "make test   run every service's tests and the end-to-end suite"
	@echo "make fuzz   schemathesis against every service through the gateway, FUZZ_EXAMPLES=200 per operation"
	@echo "make lint   ruff and mypy"
	@echo "make bench  load-test the stack against a bare baseline (see bench/README.md)"
	@echo "make lock   re-pin every dependency (requirements.lock, services/*/requirements.lock)"
	@echo "make test-compose  build the images and run the flow against docker compose (needs an engine)"

# Re-install only when the lock or a package definition changes. Every third-party package
# comes from requirements.lock (exact versions, hashes); the project's own packages are
# installed on top without resolving anything, and pip check proves the lock is complete.
$(STAMP): requirements.lock $(foreach p,$(PACKAGES),$(p)/pyproject.toml)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --require-hashes --no-deps -r requirements.lock
	$(PIP) install --quiet --no-deps --no-build-isolation $(foreach p,$(PACKAGES),-e $(p))
	$(PIP) check
	@touch $@

venv: $(STAMP)

up: $(STAMP)
	$(PY) -m modelgate_shared.stack up

SUITES := shared services/auth services/inference services/gateway client tests bench

# The lock files: requirements.lock holds everything the venv (and so CI) installs;
# services/NAME/requirements.lock what that service's image installs, at the same versions.
# Resolved for every platform from Python 3.11 on. Re-running keeps the pins that still fit
# (adding a dependency moves nothing else); LOCK_ARGS=--upgrade moves every pin to the newest.
# The resolver, uv, is pinned and lives in its own throwaway venv, never in the project's.
UV_VERSION := 0.13.8
LOCK_TOOL ?= $(or $(TMPDIR),/tmp)/modelgate-lock-uv-$(UV_VERSION)
LOCK_ARGS ?=
DEV_REQUIREMENTS := './shared[stack,test]' './services/auth[test]' './services/inference[test]' \
  './services/gateway[test]' './client[test]' ruff mypy pyyaml pip setuptools
UV_COMPILE = $(LOCK_TOOL)/bin/uv pip compile - --quiet --universal --python-version 3.11 --generate-hashes \
  --custom-compile-command 'make lock' \
  $(foreach p,modelgate-shared modelgate-auth modelgate-inference modelgate-gateway modelgate-client,--no-emit-package $(p)) $(LOCK_ARGS)

lock:
	@test -x $(LOCK_TOOL)/bin/uv || { $(PYTHON) -m venv $(LOCK_TOOL) && $(LOCK_TOOL)/bin/pip install --quiet uv==$(UV_VERSION); }
	printf '%s\n' $(DEV_REQUIREMENTS) | $(UV_COMPILE) -o requirements.lock
	@# setuptools: the images install the project's packages without build isolation too.
	for svc in auth inference gateway; do \
	  printf '%s\n' ./shared ./services/$$svc setuptools \
	    | $(UV_COMPILE) --constraint requirements.lock -o services/$$svc/requirements.lock || exit 1; \
	done

# Each suite runs in its own pytest process (own config, own Postgres and Redis);
# every suite runs even when an earlier one fails, and any failure fails the target.
test: $(STAMP)
	@status=0; for suite in $(SUITES); do \
	  echo "=== $$suite"; \
	  (cd $$suite && $(abspath $(PY)) -m pytest $(PYTEST_ARGS)) || status=1; \
	done; exit $$status

# The fuzz module of the security suite with many examples (make test runs it with a few).
FUZZ_EXAMPLES ?= 200
fuzz: $(STAMP)
	cd tests && MODELGATE_FUZZ_REQUIRED=1 MODELGATE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(abspath $(PY)) -m pytest security/test_fuzz.py $(PYTEST_ARGS)

# The images and docker-compose.yml on a real engine (tests/deploy/test_compose_stack.py): build,
# up under a project name of its own on a free port, the flow and the deployment checks, down -v.
# No engine: one "skipped" line and exit 0 (MODELGATE_COMPOSE_REQUIRED=1 makes that a failure).
# Offline, export DOCKER_BUILDKIT=0 and have the training CSV beside the checkout or in
# MODELGATE_TRAINING_DATA_FILE (README, "With Docker").
test-compose: $(STAMP)
	@if ! docker info >/dev/null 2>&1; then \
	  if [ -n "$$MODELGATE_COMPOSE_REQUIRED" ]; then echo "test-compose FAILED: no Docker engine answers (docker info failed)"; exit 1; fi; \
	  echo "test-compose skipped: no Docker engine answers (docker info failed)"; \
	else \
	  set -x; cd tests && MODELGATE_COMPOSE_TEST=1 $(abspath $(PY)) -m pytest -s -p no:cacheprovider deploy/test_compose_stack.py $(PYTEST_ARGS); \
	fi

test-%: $(STAMP)
	cd $(if $(filter e2e deploy,$*),tests,$(if $(filter shared bench client,$*),$*,services/$*)) && $(abspath $(PY)) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy --config-file mypy.ini shared/src services/auth/src services/inference/src services/gateway/src client/src

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV)
