#!/usr/bin/env bash
# Sets up the test venv (idempotent) and runs the job-image tests; extra arguments go to pytest.
set -euo pipefail

job_image=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$("$job_image/scripts/setup-test-env.sh" | tail -n1)

cd "$job_image"
"$venv/bin/ruff" check --no-cache src tests bench
"$venv/bin/ruff" format --no-cache --check src tests bench
"$venv/bin/hadolint" Dockerfile
exec "$venv/bin/python" -m pytest -p no:cacheprovider "$@"
