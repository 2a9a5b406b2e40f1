#!/usr/bin/env bash
# The installed package works for an application: installs BUILD_DIR (already built; nothing is
# recompiled) into a temporary prefix, then builds examples/ against it with find_package
# (CMake) and with pkg-config, and runs what was built on stories260K.
#   tests/package/test_package.sh BUILD_DIR
# BUILD_DIR may be a -DBUILD_SHARED_LIBS=ON build: then the exported symbols are checked too.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
testdata=${AF_TESTDATA:-$root/../shared/testdata}
model=$testdata/models/stories260K-hf
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

# Fails with the program's output when `expected` is not in it.
expect_output() {
  local expected=$1
  shift
  local out
  out=$("$@" 2>&1) || { echo "$out"; echo "FAILED: $*"; exit 1; }
  grep -qF -- "$expected" <<<"$out" || { echo "$out"; echo "FAILED: '$expected' not in: $*"; exit 1; }
}

ninja -C "$build" alloyforge >/dev/null
cmake --install "$build" --prefix "$prefix" >/dev/null
test -f "$prefix/lib/cmake/AlloyForge/AlloyForgeConfig.cmake"
test -f "$prefix/include/af/runtime/session.hpp"
lily="Once upon a time, there was a little girl named Lily"

if [ -f "$build/liballoyforge.so" ]; then
  echo "-- liballoyforge.so exports only the af:: and af_* API"
  exported=$(nm -D --defined-only "$build/liballoyforge.so" | awk '{print $3}')
  # Mangled: _ZN2af = af::, _ZNK = const member, _ZTI/_ZTS/_ZTV/_ZTT = typeinfo (name), vtable,
  # VTT, _ZGV = guard variable, _ZZ = a function's static, _ZTh/_ZTv = thunks.
  others=$(grep -vE '^(af_|_Z(N|NK|TIN|TSN|TVN|TTN|GVN|ZN|GVZN)2af|_ZT[hv].*N2af)' <<<"$exported" || true)
  others+=$(grep -E '^_Z(N|NK|TIN|TSN|TVN|TTN|GVN|ZN|GVZN)2af(3cpu|4cuda)' <<<"$exported" || true)
  if [ -n "$others" ]; then
    c++filt <<<"$others" | head -20
    echo "FAILED: liballoyforge.so exports symbols outside the API"
    exit 1
  fi
  grep -q '^af_generate$' <<<"$exported"
fi

echo "-- examples/ with find_package(AlloyForge)"
cmake -S "$root/examples" -B "$work/cmake" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
ninja -C "$work/cmake" >/dev/null
expect_output "$lily" "$work/cmake/quick_start" "$model" "Once upon a time"
expect_output "8 9 10 11 0 [stop]" "$work/cmake/custom_model"
expect_output "$lily" "$work/cmake/c_generate" "$testdata/models/stories260K/stories260K.gguf"

echo "-- examples/ with pkg-config"
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
pc_static=()
if [ -f "$prefix/lib/liballoyforge.a" ]; then pc_static=(--static); fi
read -ra cflags <<<"$(pkg-config --cflags alloyforge)"
read -ra libs <<<"$(pkg-config "${pc_static[@]}" --libs alloyforge)"
c++ -std=c++20 -O1 "${cflags[@]}" "$root/examples/quick_start.cpp" -o "$work/quick_start" \
  "${libs[@]}" -Wl,-rpath,"$prefix/lib"
expect_output "$lily" "$work/quick_start" "$model" "Once upon a time"
cc -std=c11 -O1 "${cflags[@]}" "$root/examples/c_generate.c" -o "$work/c_generate" "${libs[@]}" \
  -Wl,-rpath,"$prefix/lib"
expect_output "$lily" "$work/c_generate" "$testdata/models/stories260K/stories260K.gguf"
echo "-- AF_PYTHON_PREBUILT refuses a static package built without PIC, naming the option"
grep -q '^set(AlloyForge_POSITION_INDEPENDENT_CODE \(ON\|OFF\))$' \
  "$prefix/lib/cmake/AlloyForge/AlloyForgeConfig.cmake"
cp -r "$prefix" "$work/nopic"
sed -i 's/^set(AlloyForge_POSITION_INDEPENDENT_CODE ON)$/set(AlloyForge_POSITION_INDEPENDENT_CODE OFF)/' \
  "$work/nopic/lib/cmake/AlloyForge/AlloyForgeConfig.cmake"
if out=$(cmake -S "$root" -B "$work/nopic/build" -G Ninja -DAF_BUILD_PYTHON=ON \
         -DAF_PYTHON_PREBUILT=ON -DAlloyForge_DIR="$work/nopic/lib/cmake/AlloyForge" 2>&1); then
  echo "FAILED: AF_PYTHON_PREBUILT accepted a package built without PIC"
  exit 1
fi
grep -qF -- "-DCMAKE_POSITION_INDEPENDENT_CODE=ON" <<<"$out" || { echo "$out"; exit 1; }
echo "-- add_subdirectory: configures without CLI11, cpp-httplib, OpenSSL or GoogleTest"
mkdir -p "$work/embed"
cat >"$work/embed/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.25)
project(Embed CXX)
add_subdirectory("$root" alloyforge)
add_executable(quick_start "$root/examples/quick_start.cpp")
target_link_libraries(quick_start PRIVATE AlloyForge::alloyforge)
CMAKE
out=$(cmake -S "$work/embed" -B "$work/embed/build" -G Ninja -DCMAKE_DISABLE_FIND_PACKAGE_CLI11=ON \
  -DCMAKE_DISABLE_FIND_PACKAGE_OpenSSL=ON -DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON 2>&1) ||
  { echo "$out"; echo "FAILED: add_subdirectory configure"; exit 1; }
if grep -q "af-cli\|af_unit_tests\|cpp-httplib" "$work/embed/build/build.ninja"; then
  echo "FAILED: add_subdirectory builds the apps or tests"
  exit 1
fi
echo "package test passed"
