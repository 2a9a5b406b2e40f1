#!/usr/bin/env bash
# Python packages for the integration tests (tests/server), pinned, in a venv inside the build
# folder: setup_python.sh BUILD_DIR. Prints the venv's python. Quiet and fast when present.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:-$root/build}/pyenv
requirements=$root/tests/server/requirements.txt
if ! cmp -s "$requirements" "$venv/requirements.txt" 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements" >&2
  cp "$requirements" "$venv/requirements.txt"
fi
echo "$venv/bin/python"
