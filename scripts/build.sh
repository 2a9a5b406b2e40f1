#!/usr/bin/env bash
# Configures and builds into BUILD_DIR (default build/) with CMake + Ninja. Extra arguments go to
# CMake, e.g. scripts/build.sh -DAF_SANITIZE=address,undefined.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${BUILD_DIR:-$root/build}
launcher=()
# ccache, when installed, makes rebuilds across build folders and worktrees cheap; CI works without it.
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-Release} "${launcher[@]}" "$@" >/dev/null
ninja -C "$build_dir" ${NINJA_TARGETS:-}
