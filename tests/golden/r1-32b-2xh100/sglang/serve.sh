#!/usr/bin/env bash
# SGLang 0.5.23 server for DeepSeek-R1-Distill-Qwen-32B (bf16), written by vramplan.
# The memory plan: 131072 tokens x 1 request on 1 node x 2 h100-80gb,
# 59.89 GiB on the fullest GPU; weights and KV cache within --mem-fraction-static 0.832 of each GPU.
# Every flag was checked against SGLang 0.5.23's own ServerArgs; see README.md.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sglang' >/dev/null 2>&1; then
  echo "sglang is not installed for $PYTHON: pip install 'sglang==0.5.23' (or use docker-compose.yaml)" >&2
  exit 1
fi

SERVE_HOST="${SERVE_HOST:-0.0.0.0}"
SERVE_PORT="${SERVE_PORT:-30000}"

exec "$PYTHON" -m sglang.launch_server \
  --model-path deepseek-ai/DeepSeek-R1-Distill-Qwen-32B \
  --host "$SERVE_HOST" \
  --port "$SERVE_PORT" \
  --served-model-name deepseek-r1-distill-qwen-32b \
  --tp-size 2 \
  --context-length 131072 \
  --max-running-requests 1 \
  --mem-fraction-static 0.832 \
  --kv-cache-dtype auto \
  --reasoning-parser deepseek-r1
