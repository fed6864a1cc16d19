#!/usr/bin/env bash
# Creates (once) a venv with the pinned tritonclient[http] and numpy of
# requirements.txt under the test cache and prints its python's path.
#
#   py=$(crates/imgclass-server/tests/triton/setup-venv.sh)
#   "$py" crates/imgclass-server/tests/triton/client_checks.py --url 127.0.0.1:PORT ...
#
# The venv's folder is named after the requirements' sha256, so a change of
# pins makes a new one; it is built in a staging folder under a lock and
# renamed into place when complete, so parallel callers share one copy.
# Wheels only, every file checked against its sha256 (pip --require-hashes).
# Needs python3 (3.11, as the pins) with the venv module, and PyPI.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
req="$here/requirements.txt"
cache="${IMGCLASS_TEST_CACHE:-$HOME/.cache/imgclass-test}"
python="${IMGCLASS_PYTHON:-python3}"
tag="$(sha256sum "$req" | cut -c1-16)"
venv="$cache/tritonclient-venv-$tag"

if [ ! -x "$venv/bin/python" ]; then
  mkdir -p "$cache"
  exec 9>"$cache/.tritonclient-venv.lock"
  flock 9
  if [ ! -x "$venv/bin/python" ]; then
    stage="$(mktemp -d "$cache/.stage-venv-XXXXXX")"
    trap 'rm -rf "$stage"' EXIT
    "$python" -m venv "$stage" >&2
    "$stage/bin/python" -m pip install --disable-pip-version-check --no-input -q \
      --only-binary=:all: --require-hashes -r "$req" >&2
    "$stage/bin/python" -c "import tritonclient.http, numpy" >&2
    chmod 755 "$stage"
    # Renaming a venv keeps `python -m …` and imports working (only the
    # console scripts' shebangs name the old path, and nothing uses them).
    mv "$stage" "$venv"
    trap - EXIT
  fi
fi
echo "$venv/bin/python"
