#!/usr/bin/env bash
# Fetches the recorded music the quality checks mix under speech, idempotently: Debian's
# hyperrogue-music package (orchestral game music by Shawn Parrotte, CC-BY-SA-3.0), downloaded with
# `apt-get download` and unpacked with `dpkg -x` into $UNMIX_CACHE/test-music (default <repo>/.cache).
# Nothing is installed on the system and nothing lands in git. Prints the music folder on its last line.
set -euo pipefail

job_image=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
repo=$(cd "$job_image/.." && pwd)
dest=${UNMIX_CACHE:-$repo/.cache}/test-music
package=hyperrogue-music
music=$dest/$package/usr/share/hyperrogue/music

if compgen -G "$music/hr3-*.ogg" >/dev/null; then
  echo "$music"
  exit 0
fi

command -v apt-get >/dev/null && command -v dpkg >/dev/null \
  || { echo "fetch-test-music: needs apt-get and dpkg (Debian or Ubuntu)" >&2; exit 1; }
mkdir -p "$dest"
cd "$dest"
rm -f ./"$package"_*.deb
if ! apt-get download -q "$package" >/dev/null 2>&1; then
  # A fresh machine may have no package lists yet.
  echo "fetch-test-music: updating apt's package lists"
  sudo=""
  [[ $(id -u) == 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  apt-get download -q "$package" >/dev/null
fi
rm -rf "${dest:?}/$package"
dpkg -x ./"$package"_*.deb "$package"
rm -f ./"$package"_*.deb
compgen -G "$music/hr3-*.ogg" >/dev/null \
  || { echo "fetch-test-music: $package has no hr3-*.ogg under $music" >&2; exit 1; }
echo "fetch-test-music: $package unpacked (licence: $dest/$package/usr/share/doc/$package/copyright)"
echo "$music"
