#!/usr/bin/env bash
# vLLM 0.33.0 server for DeepSeek-R1 (fp8), written by vramplan.
# The memory plan: 163840 tokens x 1 request on 1 node x 8 h200,
# 95.00 GiB on the fullest GPU of 129.17 GiB vLLM may use (0.92 of each GPU).
# Every flag was checked against vLLM 0.33.0's own argument definitions; see README.md.
set -euo pipefail

if ! command -v vllm >/dev/null 2>&1; then
  echo "vllm is not installed: pip install 'vllm==0.33.0' (or use docker-compose.yaml)" >&2
  exit 1
fi

SERVE_HOST="${SERVE_HOST:-0.0.0.0}"
SERVE_PORT="${SERVE_PORT:-8000}"

exec vllm serve deepseek-ai/DeepSeek-R1 \
  --host "$SERVE_HOST" \
  --port "$SERVE_PORT" \
  --served-model-name deepseek-r1 \
  --tensor-parallel-size 8 \
  --enable-expert-parallel \
  --max-model-len 163840 \
  --max-num-seqs 1024 \
  --max-num-batched-tokens 8192 \
  --gpu-memory-utilization 0.92 \
  --kv-cache-dtype auto \
  --quantization fp8 \
  --trust-remote-code \
  --reasoning-parser deepseek_r1
