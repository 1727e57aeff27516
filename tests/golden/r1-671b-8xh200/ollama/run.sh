#!/usr/bin/env bash
# Start Ollama with the plan's settings, pull deepseek-r1:671b-q4_K_M and create deepseek-r1-ctx32768 from the Modelfile.
# Written by vramplan for 32768 tokens x 1 request; see README.md.
set -euo pipefail
cd "$(dirname "$0")"

TAG=deepseek-r1:671b-q4_K_M
MODEL=deepseek-r1-ctx32768

if ! command -v ollama >/dev/null 2>&1; then
  echo "ollama is not installed: see https://ollama.com/download" >&2
  exit 1
fi

set -a
. ./ollama.env
set +a
export OLLAMA_HOST="${OLLAMA_HOST:-127.0.0.1:11434}"

if ollama list >/dev/null 2>&1; then
  echo "note: an Ollama server already answers at $OLLAMA_HOST; it keeps the settings it was started with, not ollama.env" >&2
else
  echo "starting ollama serve with ollama.env (log: ollama-serve.log)"
  nohup ollama serve >ollama-serve.log 2>&1 &
  for _ in $(seq 1 60); do
    if ollama list >/dev/null 2>&1; then break; fi
    sleep 1
  done
fi

ollama pull "$TAG"
ollama create "$MODEL" -f Modelfile
echo "ready: ollama run $MODEL"
