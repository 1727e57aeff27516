#!/usr/bin/env bash
# vLLM 0.33.0 server for DeepSeek-R1 (fp8), written by vramplan.
# The memory plan: 163840 tokens x 1 request on 2 nodes x 8 h100-80gb,
# 51.02 GiB on the fullest GPU of 73.28 GiB vLLM may use (0.92 of each GPU).
# Every flag was checked against vLLM 0.33.0's own argument definitions; see README.md.
set -euo pipefail

if ! command -v vllm >/dev/null 2>&1; then
  echo "vllm is not installed: pip install 'vllm==0.33.0' (or use docker-compose.yaml)" >&2
  exit 1
fi

SERVE_HOST="${SERVE_HOST:-0.0.0.0}"
SERVE_PORT="${SERVE_PORT:-8000}"
# One command per node: NODE_RANK=0 on the head (it serves the API), 1 on the worker.
: "${NODE_RANK:?set NODE_RANK: 0 on the head node, 1 on the worker}"
: "${HEAD_ADDR:?set HEAD_ADDR to an address of the head node that every node can reach}"
MASTER_PORT="${MASTER_PORT:-29501}"
# vLLM inherits NCCL_SOCKET_IFNAME and GLOO_SOCKET_IFNAME (the interface between the nodes, when more than
# one is up) and NCCL_IB_HCA (the InfiniBand adapters) from this script's environment: set them before it.
node_args=(--nnodes 2 --node-rank "$NODE_RANK" --master-addr "$HEAD_ADDR" --master-port "$MASTER_PORT")
if [ "$NODE_RANK" != 0 ]; then
  node_args+=(--headless)
fi

exec vllm serve deepseek-ai/DeepSeek-R1 \
  --host "$SERVE_HOST" \
  --port "$SERVE_PORT" \
  --served-model-name deepseek-r1 \
  --tensor-parallel-size 8 \
  --pipeline-parallel-size 2 \
  --enable-expert-parallel \
  --max-model-len 163840 \
  --max-num-seqs 1024 \
  --max-num-batched-tokens 8192 \
  --gpu-memory-utilization 0.92 \
  --kv-cache-dtype auto \
  --quantization fp8 \
  --trust-remote-code \
  --reasoning-parser deepseek_r1 \
  "${node_args[@]}"
