#!/usr/bin/env bash
# Install voicechat into ./.venv with the offline stack (and, with --dev, everything the tests need).
# Installs the Debian packages first when apt-get is available (as root, or through sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

DEV=0
[ "${1:-}" = "--dev" ] && DEV=1

APT_PKGS="espeak-ng sox ffmpeg build-essential cmake"
[ "$DEV" = 1 ] && APT_PKGS="$APT_PKGS chromium chromium-driver nginx"
if command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
  missing=""
  for p in $APT_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends $missing
  fi
fi

PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip wheel

# llama-cpp-python builds from source. A "native" build enables AMX/AVX-512 kernels that crash
# (SIGSEGV in the first decode) on some virtualised Xeons; a portable AVX2 build is safe and fast.
if [ "$(uname -m)" = "x86_64" ] && [ -z "${CMAKE_ARGS:-}" ]; then
  export CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
fi

if [ "$DEV" = 1 ]; then
  # the benchmark kit (recordings, loopback server) from this checkout, which the dev extra asks for
  python -m pip install -e ./bench_kit -e ".[all,dev]"
else
  python -m pip install -e ".[all]"
fi

if [ "$DEV" = 1 ]; then
  # llama.cpp's own llama-server, built from the llama-cpp-python source just installed (no other
  # download; ~5-8 min on 2 cores, once per version): the tests score the end of turn on it.
  llama_version=$(python -c "import importlib.metadata as m; print(m.version('llama-cpp-python'))")
  if [ ! -x .venv/bin/llama-server ] || [ "$(cat .venv/llama-server.version 2>/dev/null)" != "$llama_version" ]; then
    bash scripts/build_llama_server.sh
  fi
fi
