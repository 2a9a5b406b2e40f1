#!/usr/bin/env bash
# Configures and builds into BUILD_DIR (default build/) with CMake + Ninja. Extra arguments go to
# CMake, e.g. scripts/build.sh -DAF_SANITIZE=address,undefined.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${BUILD_DIR:-$root/build}
cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-Release} "$@" >/dev/null
ninja -C "$build_dir" ${NINJA_TARGETS:-}
