#!/usr/bin/env bash
# Installs everything the job-image tests and benchmark need, idempotently:
#  - ffmpeg and espeak-ng from apt (only when missing);
#  - a venv at $UNMIX_CACHE/job-image-venv (default <repo>/.cache) with the pinned requirements
#    and the package itself (editable), rebuilt only when the requirements or pyproject change.
# Prints the venv path on its last line.
set -euo pipefail

job_image=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
repo=$(cd "$job_image/.." && pwd)
cache=${UNMIX_CACHE:-$repo/.cache}
venv=$cache/job-image-venv
stamp=$venv/.unmix-setup-stamp

missing=()
command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || missing+=(ffmpeg)
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
if ((${#missing[@]})); then
  echo "setup-test-env: installing ${missing[*]} from apt"
  sudo=""
  [[ $(id -u) == 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python >= 3.10 (demucs 4.1.0); PYTHON overrides the interpreter.
python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || { echo "setup-test-env: $python is older than 3.10" >&2; exit 1; }

# Keyed by everything that decides the venv's contents, the interpreter included.
key=$(cat "$job_image/requirements.txt" "$job_image/requirements-dev.txt" "$job_image/pyproject.toml" \
  "${BASH_SOURCE[0]}" <("$python" -VV) | sha256sum | cut -d' ' -f1)
if [[ -f $stamp && $(cat "$stamp") == "$key" ]]; then
  echo "setup-test-env: venv up to date"
  echo "$venv"
  exit 0
fi

echo "setup-test-env: building $venv"
rm -rf "$venv"
mkdir -p "$cache"
"$python" -m venv "$venv"
# No pip cache: the CUDA wheels torch depends on are ~3 GB and would only be stored twice.
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
"$venv/bin/pip" install -q -r "$job_image/requirements-dev.txt"
# Editable, so tests always run the working tree; hatchling's editable install writes nothing into it.
"$venv/bin/pip" install -q --no-deps --no-build-isolation -e "$job_image"
echo "$key" >"$stamp"
echo "setup-test-env: done"
echo "$venv"
