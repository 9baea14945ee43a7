#!/usr/bin/env bash
# Runs the benchmark in the test venv (set up if needed); arguments go to bench_engines.py.
set -euo pipefail
job_image=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$("$job_image/scripts/setup-test-env.sh" | tail -n1)
exec "$venv/bin/python" "$job_image/bench/bench_engines.py" "$@"
