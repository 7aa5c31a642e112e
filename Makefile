# modelgate: `make up` starts the whole stack, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PACKAGES := shared services/auth services/inference services/gateway
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help venv up test fuzz lint format bench clean

help:
	@echo "make up     start auth, inference and gateway on http://127.0.0.1:8000 (Ctrl-C stops)"
	@echo "make test   run every service's tests and the end-to-end suite"
	@echo "make fuzz   schemathesis against every service through the gateway, FUZZ_EXAMPLES=200 per operation"
	@echo "make lint   ruff and mypy"
	@echo "make bench  load-test the stack against a bare baseline (see bench/README.md)"

# Re-install only when a package definition changes.
$(STAMP): $(foreach p,$(PACKAGES),$(p)/pyproject.toml)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e 'shared[stack,test]' -e 'services/auth[test]' -e 'services/inference[test]' -e 'services/gateway[test]' ruff mypy pyyaml
	@touch $@

venv: $(STAMP)

up: $(STAMP)
	$(PY) -m modelgate_shared.stack up

SUITES := shared services/auth services/inference services/gateway tests bench

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

test-%: $(STAMP)
	cd $(if $(filter e2e deploy,$*),tests,$(if $(filter shared bench,$*),$*,services/$*)) && $(abspath $(PY)) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy --config-file mypy.ini shared/src services/auth/src services/inference/src services/gateway/src

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV)
