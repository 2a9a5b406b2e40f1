#!/usr/bin/env bash
# The Python module as a user gets it: a fresh venv, `pip install .` (the pinned build backend
# installed first, then --no-build-isolation so that the CMake folder build/python/ and ccache
# are reused from one run to the next), then the pytest suite in python/tests.
#   scripts/test_python.sh [PREFIX]
# With PREFIX (an installed AlloyForge package: a static -DCMAKE_POSITION_INDEPENDENT_CODE=ON
# build, as scripts/test.sh installs into build/prefix), the module links that library and only
# its own sources compile (build folder build/python-prebuilt); without, `pip install .` builds
# the library too, as for a user.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export AF_TESTDATA=${AF_TESTDATA:-$root/../shared/testdata}
venv=$root/build/python-venv
rm -rf "$venv"
python3 -m venv "$venv"
pip=("$venv/bin/pip" --disable-pip-version-check -q)
"${pip[@]}" install -r "$root/python/tests/requirements.txt"
prebuilt=()
if [ $# -ge 1 ]; then
  prefix=$(cd "$1" && pwd)
  test -f "$prefix/lib/cmake/AlloyForge/AlloyForgeConfig.cmake" ||
    { echo "test_python.sh: no AlloyForge package installed in $prefix"; exit 1; }
  prebuilt=(-C build-dir=build/python-prebuilt -C cmake.define.AF_PYTHON_PREBUILT=ON
            -C cmake.define.AlloyForge_DIR="$prefix/lib/cmake/AlloyForge")
fi
start=$(date +%s)
"${pip[@]}" install --no-build-isolation "${prebuilt[@]}" "$root"
echo "pip install . took $(($(date +%s) - start)) s"
# Against a prebuilt library, the module's build must not contain the library's objects.
if [ ${#prebuilt[@]} -gt 0 ] && grep -q 'af_backend\.dir' "$root/build/python-prebuilt/build.ninja"; then
  echo "FAILED: pip install with AF_PYTHON_PREBUILT compiled the library again"
  exit 1
fi
# From python/tests, so that `import alloyforge` finds the installed package, not python/.
cd "$root/python/tests"
"$venv/bin/python" -m pytest -q -p no:cacheprovider .
