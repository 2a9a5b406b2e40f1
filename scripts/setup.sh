#!/usr/bin/env bash
# Installs every build and test dependency on Debian 12. Idempotent; quiet and fast when all is
# already installed. Needs root (or sudo).
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  clang libclang-rt-14-dev clang-format
  libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libcli11-dev libpcre2-dev libcpp-httplib-dev libedit-dev
  libjpeg62-turbo-dev libpng-dev libgif-dev libwebp-dev libstb-dev libssl-dev
  libsndfile1-dev libsoxr-dev libfftw3-dev
  libavformat-dev libavcodec-dev libswscale-dev libavutil-dev ffmpeg
  python3-venv python3-dev curl
  qemu-user nginx-light chromium chromium-driver
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi
