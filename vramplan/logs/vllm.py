"""vLLM startup logs.

Line formats (vllm-project/vllm; each printed once per worker, prefixed by `(VllmWorker rank=N pid=...)`,
`(Worker_TPn pid=...)` or `(RayWorkerWrapper pid=...)` when there are several):

- `Initializing a V1 LLM engine (v0.8.5) with config: model='deepseek-ai/DeepSeek-R1', ...
  dtype=torch.bfloat16, max_seq_len=8192, ... tensor_parallel_size=8, pipeline_parallel_size=1,
  ... quantization=fp8, ...
  kv_cache_dtype=auto, ...` (vllm/v1/engine/core.py; `Initializing an LLM engine (v0.6.x)` in V0).
- `non-default args: {'model': ..., 'max_model_len': 8192, 'gpu_memory_utilization': 0.9, ...}`
  (vllm/entrypoints/utils.py, v0.10 and later).
- `Model loading took X GiB memory and T seconds` (vllm/v1/worker/gpu_model_runner.py; "X GiB and T
  seconds" before v0.11, "X GB" in V0's worker/model_runner.py, all 2**30-based): weights on this GPU,
  including what is made after loading (MLA's absorbed kv_b_proj copies).
- `Available KV cache memory: X GiB` (vllm/v1/worker/gpu_worker.py `determine_available_memory`): the
  KV pool of this GPU.
- `GPU KV cache size: N tokens` and `Maximum concurrency for L tokens per request: Cx`
  (vllm/v1/core/kv_cache_utils.py): tokens the pool holds across the engine, and pool / one full request.
- V0 (vllm/worker/worker.py): `the current vLLM instance can use total_gpu_memory (79.19GiB) x
  gpu_memory_utilization (0.90) = 71.27GiB` and `... the rest of the memory reserved for KV Cache is X GiB.`
"""

from __future__ import annotations

import re

from vramplan.logs.types import Buffer, Figure, ParsedLog, Settings, any_of, figure
from vramplan.runtimes import Runtime

RE_ENGINE = re.compile(r"Initializing an? (?:V\d )?LLM engine \((?P<v>v[^)]+)\) with config: (?P<cfg>.*)$")
RE_NON_DEFAULT = re.compile(r"non-default args: \{(?P<args>.*)\}")
RE_LOADING = re.compile(r"Model loading took (?P<num>\d+(?:\.\d+)?) ?(?P<unit>GiB|GB)\b")
RE_AVAILABLE = re.compile(r"Available KV cache memory: (?P<num>\d+(?:\.\d+)?) ?(?P<unit>GiB)")
RE_KV_REST = re.compile(r"reserved for KV Cache is (?P<num>\d+(?:\.\d+)?) ?(?P<unit>GiB)")
RE_TOKENS = re.compile(r"GPU KV cache size: (?P<n>[\d,]+) tokens")
RE_CONCURRENCY = re.compile(
    r"Maximum concurrency for (?P<len>[\d,]+) tokens per request: (?P<x>\d+(?:\.\d+)?)x"
)
RE_TOTAL = re.compile(
    r"total_gpu_memory \((?P<num>\d+(?:\.\d+)?) ?(?P<unit>GiB)\) x "
    r"gpu_memory_utilization \((?P<util>[\d.]+)\)"
)
RE_RANK = re.compile(r"\((?:\w+ )?(?:rank=(?P<rank>\d+)|\w*?_TP(?P<tp>\d+))")

# A fresh engine: the API server's first lines (vllm/entrypoints/openai/api_server.py, utils.py) and
# the engine's config line.
START = re.compile(r"vLLM API server version|" + RE_NON_DEFAULT.pattern + "|" + RE_ENGINE.pattern)
MEMORY = any_of(RE_LOADING, RE_AVAILABLE, RE_KV_REST, RE_TOKENS)

MARKERS = ("LLM engine (v", "Model loading took", "Available KV cache memory", "GPU KV cache size", "vllm")


def _cfg(cfg: str, key: str) -> str | None:
    m = re.search(rf"(?:^|[ ,{{]){key}=(?:'(?P<q>[^']*)'|(?P<v>[^,]+))", cfg)
    return None if m is None else (m["q"] if m["q"] is not None else m["v"].strip())


def _arg(args: str, key: str) -> str | None:
    m = re.search(rf"'{key}': (?:'(?P<q>[^']*)'|(?P<v>[^,}}]+))", args)
    return None if m is None else (m["q"] if m["q"] is not None else m["v"].strip())


def _intval(v: str | None) -> int | None:
    return int(v) if v is not None and v.isdigit() else None


def _device(line: str) -> str:
    m = RE_RANK.search(line)
    if m and (m["rank"] or m["tp"]):
        return f"rank {m['rank'] or m['tp']}"
    return "rank 0"


def parse(text: str) -> ParsedLog:
    version = model = None
    cfg: dict[str, str | None] = {}
    weights: dict[str, Buffer] = {}
    available: Figure | None = None
    tokens = conc_len = None
    conc: float | None = None
    total: Figure | None = None
    util: float | None = None
    for no, line in enumerate(text.splitlines(), 1):
        if m := RE_ENGINE.search(line):
            version = m["v"].lstrip("v")
            c = m["cfg"]
            model = _cfg(c, "model")
            for key in (
                "dtype",
                "max_seq_len",
                "tensor_parallel_size",
                "pipeline_parallel_size",
                "quantization",
                "kv_cache_dtype",
            ):
                cfg.setdefault(key, _cfg(c, key))
        elif m := RE_NON_DEFAULT.search(line):
            a = m["args"]
            model = model or _arg(a, "model") or _arg(a, "model_tag")
            for key in (
                "gpu_memory_utilization",
                "block_size",
                "max_model_len",
                "max_num_seqs",
                "tensor_parallel_size",
                "pipeline_parallel_size",
                "quantization",
                "kv_cache_dtype",
            ):
                if (v := _arg(a, key)) is not None:
                    cfg.setdefault("arg_" + key, v)
        elif m := RE_LOADING.search(line):
            dev = _device(line)
            weights.setdefault(dev, Buffer(dev, False, figure(m["num"], m["unit"], no)))
        elif m := RE_AVAILABLE.search(line) or RE_KV_REST.search(line):
            available = available or figure(m["num"], m["unit"], no)
        elif m := RE_TOKENS.search(line):
            tokens = tokens or int(m["n"].replace(",", ""))
        elif m := RE_CONCURRENCY.search(line):
            if conc is None:
                conc, conc_len = float(m["x"]), int(m["len"].replace(",", ""))
        elif m := RE_TOTAL.search(line):
            total = total or figure(m["num"], m["unit"], no)
            util = util or float(m["util"])
    util_arg = cfg.get("arg_gpu_memory_utilization")
    settings = Settings(
        context=_intval(cfg.get("max_seq_len")) or _intval(cfg.get("arg_max_model_len")) or conc_len,
        tp=_intval(cfg.get("tensor_parallel_size")) or _intval(cfg.get("arg_tensor_parallel_size")),
        pp=_intval(cfg.get("pipeline_parallel_size")) or _intval(cfg.get("arg_pipeline_parallel_size")),
        kv_cache_dtype=cfg.get("kv_cache_dtype") or cfg.get("arg_kv_cache_dtype"),
        gpu_memory_utilization=float(util_arg) if util_arg else util,
        block_size=_intval(cfg.get("arg_block_size")),
        dtype=cfg.get("dtype"),
        quantization=_none(cfg.get("quantization") or cfg.get("arg_quantization")),
        max_running_requests=_intval(cfg.get("arg_max_num_seqs")),
        gpu_total=total,
    )
    ordered = sorted(weights.values(), key=lambda b: int(b.device.split()[-1]))
    return ParsedLog(
        runtime=Runtime.VLLM,
        version=version,
        model=model,
        settings=settings,
        weights=tuple(ordered),
        kv_tokens=tokens,
        kv_available=available,
        max_concurrency=conc,
        concurrency_len=conc_len,
    )


def _none(v: str | None) -> str | None:
    return None if v in (None, "None") else v
