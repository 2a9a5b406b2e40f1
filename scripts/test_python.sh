#!/usr/bin/env bash
# The Python module as a user gets it: a fresh venv, `pip install .` (the pinned build backend
# installed first, then --no-build-isolation so that the CMake folder build/python/ and ccache
# are reused from one run to the next), then the pytest suite in python/tests.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export AF_TESTDATA=${AF_TESTDATA:-$root/../shared/testdata}
venv=$root/build/python-venv
rm -rf "$venv"
python3 -m venv "$venv"
pip=("$venv/bin/pip" --disable-pip-version-check -q)
"${pip[@]}" install -r "$root/python/tests/requirements.txt"
start=$(date +%s)
"${pip[@]}" install --no-build-isolation "$root"
echo "pip install . took $(($(date +%s) - start)) s"
# From python/tests, so that `import alloyforge` finds the installed package, not python/.
cd "$root/python/tests"
"$venv/bin/python" -m pytest -q -p no:cacheprovider .
