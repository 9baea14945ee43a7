#!/usr/bin/env bash
# The fast checks, with no stack: type check (tsc), Biome, ruff on the job image, and the unit tests.
# `make check` runs them alone; `make test` (test.sh) runs them first, then leaves UNIT_TESTS out of
# its own node run and adds their counts to its total, so each test runs and is counted once.
#   usage: check.sh [--list]   (--list prints UNIT_TESTS, for test.sh)
set -uo pipefail
shopt -s nullglob
cd "$(dirname "$0")/../.."

# The rule for being on this list: the file starts nothing out of process (no startStack, no test
# harness, no API server, NATS, MinIO or job run; in-process fakes such as the WhatsApp simulator and
# one `python -m` of the job-image venv are fine) and runs in seconds. crds/ is the API package: its
# tests are all of that kind. Elsewhere the file name does not tell, so new ones are added by name.
UNIT_TESTS=(
  crds/test/*.test.ts
  core/test/audit.test.ts
  core/test/whatsapp-client.test.ts
  core/test/telemetry-privacy.test.ts
  ingress/test/console.test.ts
  ingress/test/broadcast-plan.test.ts
  ingress/test/envelope.test.ts
  ingress/test/webhook-fuzz.test.ts
  ingress/test/admin-seam.test.ts
  controller/test/decide.test.ts
  controller/test/events.test.ts
  controller/test/fetch.test.ts
  controller/test/finalize.test.ts
  controller/test/job-spec.test.ts
  controller/test/reply.test.ts
  controller/test/result.test.ts
  controller/test/sigv4.test.ts
  controller/test/workqueue.test.ts
  e2e/test/whatsapp-sim.test.ts
  e2e/test/conformance.test.ts
)
if [[ ${1:-} == --list ]]; then
  printf '%s\n' "${UNIT_TESTS[@]}"
  exit 0
fi

status=0
step() {
  echo "== $1"
  shift
  "$@" || status=1
}
venv=$(bash job-image/scripts/setup-test-env.sh | tail -n 1)
ruff() { (cd job-image && "$venv/bin/ruff" check --no-cache src tests bench && "$venv/bin/ruff" format --no-cache --check src tests bench); }

step "type check (tsc)" npx tsc -p tsconfig.json
step "Biome" npx biome check .
step "ruff (job-image)" ruff
step "unit tests (node --test)" env UNMIX_JOB_VENV="$venv" node --test "${UNIT_TESTS[@]}"
exit $status
