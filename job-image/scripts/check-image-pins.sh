#!/usr/bin/env bash
# The image runs Ubuntu 24.04's CPython 3.12, the tests this machine's Python: check that every pin
# in requirements.txt has a binary wheel for the image (a dry run: nothing is installed).
set -euo pipefail
job_image=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$("$job_image/scripts/setup-test-env.sh" | tail -n1)
platforms=()
for minor in $(seq 5 39); do platforms+=(--platform "manylinux_2_${minor}_x86_64"); done
platforms+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)
target=$(mktemp -d)
trap 'rm -rf "$target"' EXIT
"$venv/bin/pip" install --dry-run --quiet --ignore-installed --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp "${platforms[@]}" --target "$target" \
  -r "$job_image/requirements.txt"
echo "check-image-pins: every pin has a CPython 3.12 manylinux wheel"
