#!/usr/bin/env bash
# The quality table: speech + recorded music mixtures through the real unmix-job, per engine and
# output format. Sets up the test venv and fetches the music first (both idempotent); arguments go
# to `python -m unmix_job.quality table` (--seconds, --languages, --snr-db, --formats).
set -euo pipefail
job_image=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$("$job_image/scripts/setup-test-env.sh" | tail -n1)
"$job_image/scripts/fetch-test-music.sh" >/dev/null

echo "command: scripts/quality.sh $*"
echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
start=$(date +%s)
"$venv/bin/python" -m unmix_job.quality table "$@"
echo "took $(($(date +%s) - start)) s; load after: $(cut -d' ' -f1-3 /proc/loadavg)"
