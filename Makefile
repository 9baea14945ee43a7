# The two commands that matter: `make dev` and `make test`. Both install what they need first
# (idempotent; pinned in e2e/stack/versions.env, job-image/requirements*.txt and package-lock.json;
# cached under .cache/). `make check` is the fast part of `make test` alone: no stack, no Go builds.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
CACHE ?= $(CURDIR)/.cache
export UNMIX_CACHE := $(CACHE)
export PATH := $(CACHE)/node/bin:$(CACHE)/bin:$(PATH)

.PHONY: dev test check resilience kueue setup setup-stack setup-promtool setup-kueue setup-node setup-python setup-kubectl-unmix typecheck lint format bench bench-controller help conformance fuzz fuzz-webhook fuzz-media bench-webhook bench-fleet

help:
	@echo "make dev    start the whole product on the real local stack (Ctrl-C stops everything)"
	@echo "make test   run every test (TypeScript, Python, end to end)"
	@echo "make check  only the fast part of make test: types, Biome, ruff, unit tests (no stack)"
	@echo "extras: make conformance (the data-policy tests, docs/privacy-conformance.md),"
	@echo "        make resilience (the whole fault matrix, docs/resilience.md),"
	@echo "        make fuzz (both fuzzing campaigns: fuzz-webhook, fuzz-media), make bench-webhook (10,000-webhook burst),"
	@echo "        make kueue (the product with a real Kueue: quota, pending deadline, preemption, the chart's Kueue values)"
	@echo "        make bench-fleet (10,000 SeparationJobs on a simulated GPU fleet, then per-sender fairness)"

dev: setup
	node e2e/src/dev.ts

test: setup
	bash e2e/scripts/test.sh

check: setup-node setup-python
	bash e2e/scripts/check.sh

# the tests named after a data-policy promise (P1-P15), from make test's suites, selected by name;
# writes docs/privacy-conformance.md from the runners' JUnit reports
conformance: setup
	node e2e/scripts/conformance.ts

# the webhook's property-based tests, long: FUZZ_RUNS runs per property from a random seed (printed
# by fast-check on a failure; FUZZ_SEED=<seed> replays it). make test runs them with a fixed seed.
FUZZ_RUNS ?= 20000
fuzz-webhook: setup-node
	@seed=$${FUZZ_SEED:-$$RANDOM$$RANDOM}; echo "fuzz-webhook: $(FUZZ_RUNS) runs per property, FUZZ_SEED=$$seed"; \
	FUZZ_RUNS=$(FUZZ_RUNS) FUZZ_SEED=$$seed node --test --test-timeout=0 ingress/test/webhook-fuzz.test.ts

# a burst of 10,000 signed webhooks against the ingress on the real NATS (e2e/bench/webhook-burst.ts),
# then the same with NATS killed mid-burst
bench-webhook: setup-stack setup-node
	node e2e/bench/webhook-burst.ts
	node e2e/bench/webhook-burst.ts --nats-outage

# The fault matrix (e2e/test/resilience.test.ts): every scenario, each a fault injected mid-flow on
# the real stack; writes docs/resilience.md. `make test` runs its quick rows only (one per component).
resilience: setup-stack setup-node
	UNMIX_RESILIENCE=all node --test --test-timeout=1800000 e2e/test/resilience.test.ts

# The product with a real Kueue on the local stack (e2e/test/kueue.test.ts). Kueue's build is not
# part of setup-stack (see setup-kueue); make test builds it on first use, as it does promtool.
kueue: setup-stack setup-node setup-kueue
	node --test --test-timeout=1800000 e2e/test/kueue.test.ts

# The controller against a simulated fleet of 100 GPU nodes (KWOK, e2e/bench/fleet.ts): a burst of
# BENCH_FLEET_N SeparationJobs (10,000: hours on 2 cores; BENCH_FLEET_N=500 is the CI-sized run,
# about 8 minutes), then one user's 200 files against 50 other users, without and with the per-sender limit.
bench-fleet: setup-stack setup-node
	bash e2e/stack/install.sh kwok
	node e2e/bench/fleet.ts burst $${BENCH_FLEET_N:-10000}
	node e2e/bench/fleet.ts fairness

setup: setup-stack setup-node setup-python setup-kubectl-unmix

# `kubectl unmix` (ingress/src/kubectl-unmix.ts, ingress/README.md): kubectl runs any kubectl-<name>
# on PATH; this one is a wrapper that runs the script with the cached Node 24, rewritten only when
# it would change. Put $(CACHE)/bin on PATH to use it.
setup-kubectl-unmix:
	@mkdir -p $(CACHE)/bin; f=$(CACHE)/bin/kubectl-unmix; \
	want=$$(printf '#!/bin/sh\nexec "%s" "%s" "$$@"' "$(CACHE)/node/bin/node" "$(CURDIR)/ingress/src/kubectl-unmix.ts"); \
	if [[ "$$(cat $$f 2>/dev/null)" != "$$want" ]]; then printf '%s\n' "$$want" > $$f.tmp && chmod 755 $$f.tmp && mv $$f.tmp $$f; echo "installed $$f"; fi

# The controller's memory under real sizes (controller/README.md, Memory under real sizes): 50,000
# finished SeparationJobs, 16 MiB media, tracing on; fails past the chart's memory limit. About 15
# minutes on 2 cores. BENCH_BEFORE=<a checkout's root> runs that controller first, side by side.
bench-controller: setup-stack setup-node
	node controller/bench/memory.ts $${BENCH_FINISHED:-50000} $${BENCH_MEDIA:-8} $${BENCH_BEFORE:-} .

setup-stack:
	bash e2e/stack/install.sh all chromium

# promtool, for the chart's alert tests only: its build takes about 4 minutes on 2 cores, so it is
# not part of setup-stack; e2e/test/observability.test.ts runs the same install on first use
setup-promtool:
	bash e2e/stack/install.sh promtool

# Kueue's controller-manager, for the Kueue tests only: built from its Go module (sigs.k8s.io/kueue),
# about 20 minutes on 2 busy cores (6 min of CPU), so not part of setup-stack
setup-kueue:
	bash e2e/stack/install.sh kueue

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

# both fuzzing campaigns, long and random (make test runs each with a fixed seed)
fuzz: fuzz-webhook fuzz-media

# A longer, random campaign of the job's media fuzzer (job-image/tests/test_fuzz_media.py; `make test`
# runs 40 fixed examples of it): FUZZ_EXAMPLES=5000 make fuzz-media for more
fuzz-media: setup-python
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-2000} FUZZ_RANDOM=1 bash job-image/scripts/test.sh tests/test_fuzz_media.py --hypothesis-show-statistics
