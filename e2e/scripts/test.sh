#!/usr/bin/env bash
# Every test of the repository: type check, the job-image's pytest suite, then every TypeScript
# test (unit, integration on the real local stack, end to end) with node's test runner. Ends with
# one line adding both runners' counts.
set -uo pipefail
cd "$(dirname "$0")/../.."
logs=${UNMIX_CACHE:-.cache}/test-logs
mkdir -p "$logs"
status=0

echo "== type check (tsc)"
npx tsc -p tsconfig.json || status=1

echo "== job-image (ruff, hadolint, pytest)"
venv=$(bash job-image/scripts/setup-test-env.sh | tail -n 1)
bash job-image/scripts/test.sh -q 2>&1 | tee "$logs/pytest.log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
py_pass=$(grep -oE '[0-9]+ passed' "$logs/pytest.log" | tail -1 | cut -d' ' -f1)
py_fail=$(grep -oE '[0-9]+ (failed|error)' "$logs/pytest.log" | awk '{s+=$1} END {print s+0}')

echo "== TypeScript (node --test)"
export UNMIX_JOB_VENV=$venv
node --test --test-concurrency=1 --test-timeout=900000 \
  'crds/test/**/*.test.ts' 'core/test/**/*.test.ts' 'ingress/test/**/*.test.ts' 'controller/test/**/*.test.ts' 'e2e/test/**/*.test.ts' \
  2>&1 | tee "$logs/node.log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
ts_pass=$(grep -oE '^ℹ pass [0-9]+' "$logs/node.log" | tail -1 | awk '{print $3}')
ts_fail=$(grep -oE '^ℹ fail [0-9]+' "$logs/node.log" | tail -1 | awk '{print $3}')

[ "$status" = 0 ] || echo "some step failed (type check or a runner exited non-zero); logs in $logs"
echo "tests: $(( ${py_pass:-0} + ${ts_pass:-0} )) passed, $(( ${py_fail:-0} + ${ts_fail:-0} )) failed"
exit $status
