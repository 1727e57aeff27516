#!/usr/bin/env bash
# llama.cpp server (llama-server, release b11312 or later) for DeepSeek-R1 (UD-Q2_K_XL), written by vramplan.
# The memory plan: 32768 tokens x 1 request on 8 h200,
# 49.43 GiB on the fullest GPU, 0.48 GiB in host RAM.
# Every flag was checked against llama.cpp's common/arg.cpp (b11312); see README.md.
# LLAMA_SERVER picks the binary, HOST and PORT where it listens; arguments after run.sh are passed on
# (vramplan deploy --launch adds --log-verbosity 4, which prints the memory lines `vramplan check` reads).
set -euo pipefail

LLAMA_SERVER="${LLAMA_SERVER:-llama-server}"
if ! command -v "$LLAMA_SERVER" >/dev/null 2>&1; then
  echo "$LLAMA_SERVER not found: build llama.cpp (https://github.com/ggml-org/llama.cpp) and set LLAMA_SERVER, or use docker-compose.yaml" >&2
  exit 1
fi

HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8080}"

exec "$LLAMA_SERVER" \
  -hf unsloth/DeepSeek-R1-GGUF:UD-Q2_K_XL \
  --alias deepseek-r1 \
  --ctx-size 32768 \
  --parallel 1 \
  -ngl 62 \
  -fa on \
  --cache-type-k f16 \
  --cache-type-v f16 \
  -ub 512 \
  --jinja \
  --reasoning-format deepseek \
  --host "$HOST" \
  --port "$PORT" \
  "$@"
