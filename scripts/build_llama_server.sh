#!/usr/bin/env bash
# Build llama.cpp's own `llama-server` into .venv/bin from the llama.cpp source that the installed
# llama-cpp-python carries (its sdist, from the package index: no other download). Neither PyPI nor
# Debian ships the binary; it is what a deployment serves the reply model (and the end-of-turn
# score) with, one cached slot per conversation. About 5–8 minutes on 2 cores.
#
#   bash scripts/build_llama_server.sh        # then: .venv/bin/llama-server --help
#
# ./scripts/install.sh --dev runs it when .venv/llama-server.version does not name the installed
# llama-cpp-python (the tests and bench/ score the end of turn on it).
set -euo pipefail
cd "$(dirname "$0")/.."
# PYTHON: the interpreter llama-cpp-python is installed in (default .venv/bin/python); the binary
# goes beside it (deploy/Dockerfile: PYTHON=python, so /usr/local/bin/llama-server).
PY=${PYTHON:-.venv/bin/python}
command -v "$PY" >/dev/null || { echo "no $PY: run ./scripts/install.sh --dev first" >&2; exit 1; }
bindir=$(dirname "$(command -v "$PY")")
version=$("$PY" -c "import importlib.metadata as m; print(m.version('llama-cpp-python'))")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PY" -m pip download -q --no-deps --no-binary :all: -d "$work" "llama-cpp-python==$version"
tar -xzf "$work"/llama_cpp_python-"$version".tar.gz -C "$work"
src="$work/llama_cpp_python-$version/vendor/llama.cpp"
# Portable AVX2, as scripts/install.sh builds the library (native AMX/AVX-512 kernels crash some VMs);
# no web UI (its assets would be downloaded), no curl, no TLS: it listens on a private address.
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON \
  -DGGML_FMA=ON -DGGML_F16C=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_UI=OFF \
  -DLLAMA_USE_PREBUILT_UI=OFF -DBUILD_SHARED_LIBS=OFF >/dev/null
cmake --build "$work/build" --target llama-server -j "$(nproc)"
install -m 755 "$work/build/bin/llama-server" "$bindir/llama-server"
echo "$version" >"$bindir/../llama-server.version"
echo "built $bindir/llama-server (llama.cpp from llama-cpp-python $version)"
