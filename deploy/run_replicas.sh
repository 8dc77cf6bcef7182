#!/usr/bin/env bash
# voicechat on one host without containers: N app replicas, the LLM on llama.cpp's OpenAI-compatible
# server, and nginx in front with sticky sessions (the same setup as compose.yaml).
#
#   deploy/run_replicas.sh [N]            N replicas (default 2); Ctrl-C stops everything it started
#
# Settings (environment): PROXY_PORT (8080), FIRST_PORT (8501: replica i listens on FIRST_PORT+i-1),
# LLM_PORT (8000; LLM_PORT=0 keeps the LLM in each replica), VOICECHAT_MAX_SESSIONS (10 per replica),
# SCORE_PORT (8002 when llama.cpp's llama-server is built, scripts/build_llama_server.sh: the end of
# turn scored there, one slot per call, instead of by a model in each replica; 0 = in each replica),
# LLAMA_SERVER (its path; default .venv/bin/llama-server or on PATH), SCORE_THREADS (1),
# STATE_DIR (a temp dir: logs, nginx's pid and config), PYTHON (.venv/bin/python if present).
# Any other VOICECHAT_* / CLOUDFLARE_* / TWILIO_* variable reaches every replica unchanged.
# Needs: the voicechat[all] install with llama-cpp-python[server] (scripts/install.sh --dev), nginx.
set -euo pipefail
cd "$(dirname "$0")/.."

replicas=${1:-2}
case "$replicas" in '' | *[!0-9]* | 0) echo "usage: $0 [N>=1]" >&2; exit 2 ;; esac
PROXY_PORT=${PROXY_PORT:-8080}
FIRST_PORT=${FIRST_PORT:-8501}
LLM_PORT=${LLM_PORT:-8000}
LLAMA_SERVER=${LLAMA_SERVER:-$(command -v .venv/bin/llama-server || command -v llama-server || true)}
SCORE_PORT=${SCORE_PORT:-$( [ -n "$LLAMA_SERVER" ] && echo 8002 || echo 0)}
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
STATE_DIR=${STATE_DIR:-$(mktemp -d -t voicechat-replicas-XXXXXX)}
command -v nginx >/dev/null || { echo "nginx is not installed (apt-get install nginx)" >&2; exit 1; }

export VOICECHAT_MAX_SESSIONS=${VOICECHAT_MAX_SESSIONS:-10}
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
# One secret for all replicas: Streamlit's signed XSRF cookie stays valid whichever one answers.
export STREAMLIT_SERVER_COOKIE_SECRET=${STREAMLIT_SERVER_COOKIE_SECRET:-$("$PYTHON" -c 'import secrets; print(secrets.token_hex(32))')}

pids=()
stop() {
  [ -f "$STATE_DIR/nginx.pid" ] && nginx -c "$STATE_DIR/nginx.conf" -e "$STATE_DIR/error.log" -s quit 2>/dev/null || true
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT INT TERM

wait_http() {  # URL NAME: until it answers 200 (or its process died)
  for _ in $(seq 1 600); do
    if "$PYTHON" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$1" 2>/dev/null; then return 0; fi
    sleep 0.5
  done
  echo "$2 did not come up; see $STATE_DIR" >&2
  exit 1
}

model=$("$PYTHON" -c 'from voicechat.models import gemma_gguf_path; print(gemma_gguf_path())')
if [ "$LLM_PORT" != 0 ]; then
  "$PYTHON" -m llama_cpp.server --model "$model" --model_alias gemma --host 127.0.0.1 --port "$LLM_PORT" \
    >"$STATE_DIR/llm.log" 2>&1 &
  pids+=($!)
  export VOICECHAT_LLM_BASE_URL="http://127.0.0.1:$LLM_PORT/v1" VOICECHAT_OPENAI_LLM_MODEL=gemma
  wait_http "http://127.0.0.1:$LLM_PORT/v1/models" "the LLM server"
fi

if [ "$SCORE_PORT" != 0 ]; then
  [ -x "$LLAMA_SERVER" ] || { echo "no llama-server to score on: bash scripts/build_llama_server.sh, or SCORE_PORT=0" >&2; exit 1; }
  # --swa-full: Gemma 3's sliding-window cache in full, so a slot reuses its call's cached prompt.
  slots=$((replicas * VOICECHAT_MAX_SESSIONS))
  "$LLAMA_SERVER" --model "$model" --host 127.0.0.1 --port "$SCORE_PORT" --parallel "$slots" \
    --ctx-size $((2048 * slots)) --swa-full --no-webui --threads "${SCORE_THREADS:-1}" \
    --threads-batch "${SCORE_THREADS:-1}" >"$STATE_DIR/score.log" 2>&1 &
  pids+=($!)
  export VOICECHAT_LINE_END_BASE_URL="http://127.0.0.1:$SCORE_PORT/v1"
  wait_http "http://127.0.0.1:$SCORE_PORT/v1/models" "the end-of-turn scoring server"
fi

addrs=()
for i in $(seq 1 "$replicas"); do
  port=$((FIRST_PORT + i - 1))
  "$PYTHON" -m streamlit run streamlit_app.py --server.headless true --browser.gatherUsageStats false \
    --server.address 127.0.0.1 --server.port "$port" >"$STATE_DIR/replica$i.log" 2>&1 &
  pids+=($!)
  addrs+=("127.0.0.1:$port")
done
for i in $(seq 1 "$replicas"); do wait_http "http://${addrs[$((i - 1))]}/_stcore/health" "replica $i"; done

deploy/nginx-conf.sh "$PROXY_PORT" "$STATE_DIR" "${addrs[@]}" >"$STATE_DIR/nginx.conf"
nginx -c "$STATE_DIR/nginx.conf" -e "$STATE_DIR/error.log"
echo "voicechat: http://$(hostname -f 2>/dev/null || echo localhost):$PROXY_PORT/ -> ${addrs[*]} (logs: $STATE_DIR)"
wait -n "${pids[@]}"  # the first process to exit (a crash, or Ctrl-C) stops all of them
echo "a process exited; stopping (logs: $STATE_DIR)" >&2
