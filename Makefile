# Allowance — developer commands. `make help` lists them.
#
# uv: the one on PATH if it works, else a private copy in .tools/ (git-ignored).
# Python is never downloaded (UV_PYTHON_DOWNLOADS=never): uv uses the interpreter that
# .python-version names (3.13), e.g. from pyenv.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

export UV_PYTHON_DOWNLOADS := never
export PYTHONUNBUFFERED := 1

ifeq ($(shell uv --version >/dev/null 2>&1 && echo ok),ok)
UV := uv
UV_BOOTSTRAP :=
else
UV := $(CURDIR)/.tools/bin/uv
UV_BOOTSTRAP := $(UV)
endif

# Commands inside the project's virtualenv, after `sync` has brought it up to date.
RUN := $(UV) run --frozen --no-sync

# The test services (override from the environment).
TEST_DATABASE_URL := postgres://postgres@127.0.0.1:5432/allowance
TEST_REDIS_URL := redis://127.0.0.1:6379/0
TEST_SECRET_KEY := test-secret-key-not-for-production-0123456789-abcdefghijklmnopqrstuvwxyz
# With DEBUG off the settings refuse to load without the Stripe gateway's keys (as without a
# SECRET_KEY). The suite never calls Stripe (the root conftest forces the local gateway and its own
# webhook secret); these placeholders only let the settings load.
TEST_STRIPE_SECRET_KEY := sk_test_placeholder_for_the_test_suite
TEST_STRIPE_WEBHOOK_SECRET := whsec_placeholder_for_the_test_suite

PYTEST_ARGS ?=
# Test processes (pytest-xdist): one per core, at most 4; PYTEST_WORKERS=0 runs the suite in this
# process. Each has its own test database and Redis database (conftest.py).
PYTEST_WORKERS ?= auto
LINT_PATHS ?= .

.PHONY: help uv sync run migrate seed shell test check-services lint fmt bench clean

help: ## List the targets
	@echo "Allowance — make targets:"
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "} {printf "  \033[1m%-15s\033[0m %s\n", $$1, $$2}'
	@echo
	@echo "make run uses SQLite and a filesystem Celery broker under var/ unless DATABASE_URL and"
	@echo "REDIS_URL are set. make test needs PostgreSQL and Redis (defaults: 127.0.0.1)."
	@echo "Pass pytest options with PYTEST_ARGS, e.g. make test PYTEST_ARGS='-k ledger -x'."

$(CURDIR)/.tools/bin/uv:
	@echo "uv is not on PATH (or does not run): installing it into .tools/"
	python3 -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv

uv: $(UV_BOOTSTRAP) ## Make sure uv is available (PATH, else .tools/)
	@$(UV) --version

sync: $(UV_BOOTSTRAP) ## Create/update .venv from uv.lock (dev tools included)
	$(UV) sync --frozen

run: export DEBUG := true
run: sync ## Migrate, seed the demo, serve http://127.0.0.1:8000 with a Celery worker + beat
	$(RUN) python manage.py migrate --noinput
	$(RUN) python manage.py seed_demo
	@echo "Serving http://127.0.0.1:8000 (web + worker with embedded beat). Ctrl-C stops everything."
	$(RUN) honcho start -f Procfile.dev

migrate: export DEBUG ?= true
migrate: sync ## Apply database migrations
	$(RUN) python manage.py migrate --noinput

seed: export DEBUG ?= true
seed: sync ## Load the demo data (idempotent)
	$(RUN) python manage.py seed_demo

shell: export DEBUG ?= true
shell: sync ## Django shell
	$(RUN) python manage.py shell

check-services: export DATABASE_URL ?= $(TEST_DATABASE_URL)
check-services: export REDIS_URL ?= $(TEST_REDIS_URL)
check-services: sync ## Check that PostgreSQL and Redis answer (as make test needs)
	$(RUN) python scripts/check_services.py

test: export DATABASE_URL ?= $(TEST_DATABASE_URL)
test: export REDIS_URL ?= $(TEST_REDIS_URL)
test: export SECRET_KEY ?= $(TEST_SECRET_KEY)
test: export STRIPE_SECRET_KEY ?= $(TEST_STRIPE_SECRET_KEY)
test: export STRIPE_WEBHOOK_SECRET ?= $(TEST_STRIPE_WEBHOOK_SECRET)
test: export DEBUG := false
test: sync ## Run the test suite on PostgreSQL and Redis (PYTEST_ARGS=... passes options)
	$(RUN) python scripts/check_services.py
	$(RUN) pytest -n $(PYTEST_WORKERS) --maxprocesses=4 $(PYTEST_ARGS)

# The mypy Django plugin imports the settings, which need a SECRET_KEY (and, for the Stripe
# gateway that DEBUG off defaults to, its keys) when DEBUG is off.
lint: export SECRET_KEY ?= $(TEST_SECRET_KEY)
lint: export STRIPE_SECRET_KEY ?= $(TEST_STRIPE_SECRET_KEY)
lint: export STRIPE_WEBHOOK_SECRET ?= $(TEST_STRIPE_WEBHOOK_SECRET)
lint: sync ## ruff check, ruff format --check, mypy, and the architecture (import-linter contracts)
	$(RUN) ruff check $(LINT_PATHS)
	$(RUN) ruff format --check $(LINT_PATHS)
	$(RUN) lint-imports
	$(RUN) mypy $(LINT_PATHS)

fmt: sync ## Format the code and apply ruff's safe fixes
	$(RUN) ruff format $(LINT_PATHS)
	$(RUN) ruff check --fix $(LINT_PATHS)

bench: sync ## Run the benchmarks (they print figures; they do not pass or fail)
	@if [ -d benchmarks ]; then \
		$(RUN) python -m benchmarks; \
	else \
		echo "There are no benchmarks yet (benchmarks/ does not exist)."; \
	fi

clean: ## Remove var/ (the SQLite database, the Celery queue, the beat schedule)
	rm -rf var/
