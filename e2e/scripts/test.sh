#!/usr/bin/env bash
# Every test of the repository: the fast checks first (check.sh: tsc, Biome, ruff, the unit tests),
# then the job-image's pytest suite, then every other TypeScript test (integration on the real local
# stack, end to end) with node's test runner. The unit tests check.sh ran are left out of the second
# node run and their counts are added here, so each test runs once and is counted once. Ends with one
# line adding all the runners' counts.
set -uo pipefail
shopt -s globstar nullglob
cd "$(dirname "$0")/../.."
logs=${UNMIX_CACHE:-.cache}/test-logs
mkdir -p "$logs"
status=0
passed() { grep -oE '^ℹ pass [0-9]+' "$1" | tail -1 | awk '{print $3}'; }
failed() { grep -oE '^ℹ fail [0-9]+' "$1" | tail -1 | awk '{print $3}'; }

bash e2e/scripts/check.sh 2>&1 | tee "$logs/check.log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
unit_pass=$(passed "$logs/check.log")
unit_fail=$(failed "$logs/check.log")

echo "== job-image (ruff, hadolint, pytest)"
venv=$(bash job-image/scripts/setup-test-env.sh | tail -n 1)
bash job-image/scripts/test.sh -q 2>&1 | tee "$logs/pytest.log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
py_pass=$(grep -oE '[0-9]+ passed' "$logs/pytest.log" | tail -1 | cut -d' ' -f1)
py_fail=$(grep -oE '[0-9]+ (failed|error)' "$logs/pytest.log" | awk '{s+=$1} END {print s+0}')

echo "== TypeScript on the stack (node --test)"
mapfile -t unit < <(bash e2e/scripts/check.sh --list)
rest=()
for f in {crds,core,ingress,controller,e2e}/test/**/*.test.ts; do
  [[ " ${unit[*]} " == *" $f "* ]] || rest+=("$f")
done
export UNMIX_JOB_VENV=$venv
node --test --test-concurrency=1 --test-timeout=900000 "${rest[@]}" 2>&1 | tee "$logs/node.log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
ts_pass=$(passed "$logs/node.log")
ts_fail=$(failed "$logs/node.log")

[ "$status" = 0 ] || echo "some step failed (a check or a runner exited non-zero); logs in $logs"
echo "tests: $(( ${unit_pass:-0} + ${py_pass:-0} + ${ts_pass:-0} )) passed, $(( ${unit_fail:-0} + ${py_fail:-0} + ${ts_fail:-0} )) failed"
exit $status
