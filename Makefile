# Mimic: `make run` runs everything, `make test` tests everything. `make help` lists targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

# uv from PATH, else the one pip installs (the install target does that when needed).
UV = $(shell command -v uv 2>/dev/null || echo python3 -m uv)
RUN = $(UV) run --frozen --extra embedded

.PHONY: help uv install run api worker migrate test check-pythons lint format bench soak jobs keys events destinations routes replay retry mail check-packaging api-conformance browser pgbouncer docs docs-serve clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

uv: ## install uv with pip when it is missing
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || \
	  python3 -m pip install --quiet uv || \
	  python3 -m pip install --quiet --user --break-system-packages uv

install: uv ## create .venv from uv.lock (dev tools included)
	@$(UV) sync --frozen --quiet --extra embedded

run: install ## API on :8006 + a worker; embedded Postgres when DATABASE_URL is unset
	$(RUN) mimic run

api: install ## the API alone (production-style process)
	$(RUN) mimic api

worker: install ## a worker alone (production-style process)
	$(RUN) mimic worker

migrate: install ## apply migrations now
	$(RUN) mimic migrate

# Tests run in parallel, one process per core (each has its own template database); every
# test has a time limit (pyproject: timeout), so a hung test fails in minutes.
PYTEST_ARGS ?= -n auto

test: install ## the whole test suite against a real Postgres (embedded by default)
	$(RUN) pytest $(PYTEST_ARGS)

# Python versions the README promises; platforms with wheels for every locked package.
PYTHONS = 3.11 3.12 3.13 3.14
PLATFORMS = x86_64-manylinux_2_28 aarch64-manylinux_2_28 aarch64-apple-darwin

check-pythons: install ## the lock installs from wheels alone on every supported CPython
	@$(UV) export --frozen --no-hashes --all-extras --no-emit-project --quiet -o .venv/all-requirements.txt
	@for v in $(PYTHONS); do for p in $(PLATFORMS); do \
	  $(UV) pip compile --quiet --python-version $$v --python-platform $$p --only-binary :all: \
	    .venv/all-requirements.txt -o /dev/null || { echo "CPython $$v on $$p: no wheel for a locked package"; exit 1; }; \
	done; echo "CPython $$v: every locked package has a wheel ($(PLATFORMS))"; done

lint: install ## ruff check, ruff format --check, mypy, import-linter (layout contracts)
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy
	$(RUN) lint-imports --no-cache

format: install ## apply ruff fixes and formatting
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

bench: install ## throughput and latency figures, printed (embedded Postgres)
	$(RUN) python -m bench

jobs: install ## procrastinate's shell on Mimic's app, e.g. make jobs ARGS="retry 42" (id from list_jobs)
	$(RUN) mimic jobs $(or $(ARGS),list_jobs status=failed)

keys: install ## tenant API keys, e.g. make keys ARGS="create --tenant acme" (list, revoke ID)
	$(RUN) mimic keys $(ARGS)

events: install ## stored events via the admin API, e.g. make events ARGS="provider=stripe status=failed"
	$(RUN) mimic events $(ARGS)

destinations: install ## gateway destinations via the admin API, e.g. make destinations ARGS="pause crm" (default: list)
	$(RUN) mimic destinations $(or $(ARGS),list)

routes: install ## gateway routes via the admin API, e.g. make routes ARGS="test --event-id <uuid>" (default: list)
	$(RUN) mimic routes $(or $(ARGS),list)

replay: install ## route an event again, make replay EVENT=<event uuid>
	@test -n "$(EVENT)" || { echo "usage: make replay EVENT=<event uuid from make events>"; exit 2; }
	$(RUN) mimic replay $(EVENT)

retry: install ## one more attempt for a failed delivery, make retry DELIVERY=<delivery uuid>
	@test -n "$(DELIVERY)" || { echo "usage: make retry DELIVERY=<delivery uuid>"; exit 2; }
	$(RUN) mimic retry $(DELIVERY)

soak: install ## steady load for SOAK_MINUTES (10) through a worker SIGKILL and a Postgres crash, then checks
	$(RUN) python -m bench.soak --minutes $(or $(SOAK_MINUTES),10)

MAIL_PORT ?= 1025

mail: install ## a local SMTP sink that prints each message's subject and text, e.g. make mail MAIL_PORT=1026
	$(RUN) python scripts/mailsink.py --port $(MAIL_PORT)

check-packaging: install ## static checks of Containerfile and compose.yaml (no Docker needed)
	$(RUN) hadolint Containerfile
	$(RUN) check-jsonschema --builtin-schema vendor.compose-spec compose.yaml compose.dev.yaml

api-conformance: install ## schemathesis against a running `mimic api` (fails on any finding)
	$(RUN) python -m tests.api_conformance

docs: install ## build the docs site into site/ (strict: a broken link or reference fails; offline)
	NO_MKDOCS_2_WARNING=1 $(RUN) mkdocs build --strict

docs-serve: install ## serve the docs site on http://127.0.0.1:8000, rebuilt on every change
	NO_MKDOCS_2_WARNING=1 $(RUN) mkdocs serve --strict --dev-addr 127.0.0.1:8000

browser: ## install Debian's Chromium for the /docs browser test (make test skips it without one)
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium; }

pgbouncer: ## install Debian's PgBouncer for the pooler test (make test skips it without one)
	@command -v pgbouncer >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q pgbouncer; }

clean: ## remove the environment and local data (.venv, .mimic)
	rm -rf .venv .mimic
