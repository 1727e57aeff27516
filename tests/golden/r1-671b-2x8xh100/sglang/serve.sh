#!/usr/bin/env bash
# SGLang 0.5.23 server for DeepSeek-R1 (fp8), written by vramplan.
# The memory plan: 163840 tokens x 1 request on 2 nodes x 8 h100-80gb,
# 63.27 GiB on the fullest GPU; weights and KV cache within --mem-fraction-static 0.787 of each GPU.
# Every flag was checked against SGLang 0.5.23's own ServerArgs; see README.md.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sglang' >/dev/null 2>&1; then
  echo "sglang is not installed for $PYTHON: pip install 'sglang==0.5.23' (or use docker-compose.yaml)" >&2
  exit 1
fi

SERVE_HOST="${SERVE_HOST:-0.0.0.0}"
SERVE_PORT="${SERVE_PORT:-30000}"
# One command per node: NODE_RANK=0 on the head (it serves the API), 1 on the worker.
: "${NODE_RANK:?set NODE_RANK: 0 on the head node, 1 on the worker}"
: "${HEAD_ADDR:?set HEAD_ADDR to an address of the head node that every node can reach}"
DIST_PORT="${DIST_PORT:-20000}"
node_args=(--nnodes 2 --node-rank "$NODE_RANK" --dist-init-addr "$HEAD_ADDR:$DIST_PORT")

exec "$PYTHON" -m sglang.launch_server \
  --model-path deepseek-ai/DeepSeek-R1 \
  --host "$SERVE_HOST" \
  --port "$SERVE_PORT" \
  --served-model-name deepseek-r1 \
  --tp-size 8 \
  --pp-size 2 \
  --context-length 163840 \
  --max-running-requests 1 \
  --mem-fraction-static 0.787 \
  --kv-cache-dtype auto \
  --trust-remote-code \
  --reasoning-parser deepseek-r1 \
  "${node_args[@]}"
