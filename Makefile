# The two commands that matter: `make dev` and `make test`. Both install what they need first
# (idempotent; pinned in e2e/stack/versions.env, job-image/requirements*.txt and package-lock.json;
# cached under .cache/). `make check` is the fast part of `make test` alone: no stack, no Go builds.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
CACHE ?= $(CURDIR)/.cache
export UNMIX_CACHE := $(CACHE)
export PATH := $(CACHE)/node/bin:$(CACHE)/bin:$(PATH)

.PHONY: dev test check resilience setup setup-stack setup-promtool setup-node setup-python typecheck lint format bench help

help:
	@echo "make dev    start the whole product on the real local stack (Ctrl-C stops everything)"
	@echo "make test   run every test (TypeScript, Python, end to end)"
	@echo "make check  only the fast part of make test: types, Biome, ruff, unit tests (no stack)"
	@echo "make resilience  the whole fault matrix on the real stack; writes docs/resilience.md"

dev: setup
	node e2e/src/dev.ts

test: setup
	bash e2e/scripts/test.sh

check: setup-node setup-python
	bash e2e/scripts/check.sh

# The fault matrix (e2e/test/resilience.test.ts): every scenario, each a fault injected mid-flow on
# the real stack; writes docs/resilience.md. `make test` runs its quick rows only (one per component).
resilience: setup-stack setup-node
	UNMIX_RESILIENCE=all node --test --test-timeout=1800000 e2e/test/resilience.test.ts

setup: setup-stack setup-node setup-python

setup-stack:
	bash e2e/stack/install.sh all chromium

# promtool, for the chart's alert tests only: its build takes about 4 minutes on 2 cores, so it is
# not part of setup-stack; e2e/test/observability.test.ts runs the same install on first use
setup-promtool:
	bash e2e/stack/install.sh promtool

# Node 24 alone (not the rest of the stack, so `make check` builds nothing with Go), then npm ci only
# when package-lock.json changed since the last install
setup-node:
	bash e2e/stack/install.sh node
	@stamp=$(CACHE)/npm-ci.stamp; key=$$(sha256sum package-lock.json | cut -d' ' -f1)-$$(node --version); \
	if [[ ! -d node_modules || "$$(cat $$stamp 2>/dev/null)" != "$$key" ]]; then \
	  npm ci --no-audit --no-fund --loglevel=error && echo "$$key" > $$stamp; fi

setup-python:
	bash job-image/scripts/setup-test-env.sh >/dev/null

typecheck: setup-node
	npx tsc -p tsconfig.json

lint: setup-node
	npx biome check .

format: setup-node
	npx biome format --write .
