#!/usr/bin/env bash
# Python packages for the integration tests, pinned, in a venv inside the build folder:
# setup_python.sh BUILD_DIR [REQUIREMENTS] (default tests/server/requirements.txt, venv
# BUILD_DIR/pyenv; another requirements file gets BUILD_DIR/pyenv-<its folder's name>).
# Prints the venv's python. Quiet and fast when present.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
requirements=${2:-$root/tests/server/requirements.txt}
venv=${1:-$root/build}/pyenv
if [ -n "${2:-}" ]; then
  venv=$venv-$(basename "$(dirname "$requirements")")
fi
if ! cmp -s "$requirements" "$venv/requirements.txt" 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements" >&2
  cp "$requirements" "$venv/requirements.txt"
fi
echo "$venv/bin/python"
