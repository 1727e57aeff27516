#!/usr/bin/env bash
# vLLM 0.33.0 server for DeepSeek-R1-Distill-Qwen-32B (bf16), written by vramplan.
# The memory plan: 131072 tokens x 1 request on 1 node x 2 h100-80gb,
# 51.50 GiB on the fullest GPU of 73.28 GiB vLLM may use (0.92 of each GPU).
# Every flag was checked against vLLM 0.33.0's own argument definitions; see README.md.
set -euo pipefail

if ! command -v vllm >/dev/null 2>&1; then
  echo "vllm is not installed: pip install 'vllm==0.33.0' (or use docker-compose.yaml)" >&2
  exit 1
fi

SERVE_HOST="${SERVE_HOST:-0.0.0.0}"
SERVE_PORT="${SERVE_PORT:-8000}"

exec vllm serve deepseek-ai/DeepSeek-R1-Distill-Qwen-32B \
  --host "$SERVE_HOST" \
  --port "$SERVE_PORT" \
  --served-model-name deepseek-r1-distill-qwen-32b \
  --tensor-parallel-size 2 \
  --max-model-len 131072 \
  --max-num-seqs 1024 \
  --max-num-batched-tokens 8192 \
  --gpu-memory-utilization 0.92 \
  --kv-cache-dtype auto \
  --reasoning-parser deepseek_r1
