#!/usr/bin/env bash
# Set-up, build, then generate. Without arguments: greedy generation from stories260K (in
# ../shared/testdata) after "Once upon a time". With arguments: they go to `af-cli run`, e.g.
#   scripts/run.sh -m /path/to/Qwen2-0.5B -p "Hello" -n 64
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
# PIC as in scripts/test.sh, so that both share build/ without a full rebuild.
BUILD_DIR=$root/build NINJA_TARGETS=af-cli "$root/scripts/build.sh" -DCMAKE_POSITION_INDEPENDENT_CODE=ON
testdata=${AF_TESTDATA:-$root/../shared/testdata}
if (($# == 0)); then
  set -- -m "$testdata/models/stories260K/stories260K.gguf" -p "Once upon a time" -n 120 --temp 0
fi
exec "$root/build/apps/cli/af-cli" run "$@"
