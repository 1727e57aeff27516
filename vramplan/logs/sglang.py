"""SGLang startup logs.

Line formats (sgl-project/sglang, python/sglang/srt/...; each line per rank, prefixed `[time TP0]` or
`[time DP0 TP0 EP0]`; "GB" there is 1024**3 bytes, `GB = 1024 * 1024 * 1024` in mem_cache/memory_pool.py):

- `server_args=ServerArgs(model_path='deepseek-ai/DeepSeek-R1', ..., dtype='auto', kv_cache_dtype='auto',
  quantization=None, ..., context_length=None, ..., mem_fraction_static=0.79, max_running_requests=None,
  ..., tp_size=8, ..., pp_size=1, ...)` (entrypoints/engine.py / server_args.py).
- `Load weight begin. avail mem=X GB` and `Load weight end. type=DeepseekV3ForCausalLM, dtype=torch.bfloat16,
  avail mem=X GB, mem usage=Y GB.` (model_executor/model_runner.py `load_model`; "mem usage" since
  early 2025, before it the weights are begin - end).
- `KV Cache is allocated. #tokens: N, K size: X GB, V size: Y GB` (MHATokenToKVPool) or
  `KV Cache is allocated. #tokens: N, KV size: X GB` (MLATokenToKVPool) (mem_cache/memory_pool.py).
- `max_total_num_tokens=N, chunked_prefill_size=C, max_prefill_tokens=P, max_running_requests=R,
  context_len=L, available_gpu_mem=X GB` (managers/scheduler.py).
"""

from __future__ import annotations

import re

from vramplan.logs.types import Buffer, ParsedLog, Settings, any_of, figure
from vramplan.runtimes import Runtime

_GB = r"(?P<num>\d+(?:\.\d+)?) ?(?P<unit>GB)"
RE_SERVER_ARGS = re.compile(r"server_args=ServerArgs\((?P<args>.*)\)")
RE_BEGIN = re.compile(r"Load weight begin\. avail mem=(?P<num>\d+(?:\.\d+)?) ?GB")
RE_END = re.compile(r"Load weight end\..*?avail mem=(?P<avail>\d+(?:\.\d+)?) ?GB(?:, mem usage=" + _GB + ")?")
RE_KV = re.compile(
    r"KV Cache is allocated\. #tokens: (?P<n>\d+), "
    r"(?:K size: (?P<k>\d+(?:\.\d+)?) GB, V size: (?P<v>\d+(?:\.\d+)?) GB"
    r"|KV size: (?P<kv>\d+(?:\.\d+)?) GB)"
)
RE_SCHED = re.compile(r"max_total_num_tokens=(?P<n>\d+)(?P<rest>.*)$")
RE_RANK = re.compile(r"\[[^\]]*?\bTP(?P<tp>\d+)[^\]]*\]")

# A fresh server: the ServerArgs line (launch_server / server_args.py) comes first.
START = RE_SERVER_ARGS
MEMORY = any_of(RE_BEGIN, RE_END, RE_KV)

MARKERS = ("Load weight end", "KV Cache is allocated", "max_total_num_tokens", "ServerArgs(", "sglang")


def _arg(args: str, key: str) -> str | None:
    m = re.search(rf"\b{key}=(?:'(?P<q>[^']*)'|(?P<v>[^,)]+))", args)
    if m is None:
        return None
    v = m["q"] if m["q"] is not None else m["v"].strip()
    return None if v == "None" else v


def _dev(line: str) -> str:
    m = RE_RANK.search(line)
    return f"TP{m['tp']}" if m else "TP0"


def parse(text: str) -> ParsedLog:
    args = ""
    weights: dict[str, Buffer] = {}
    kv: dict[str, Buffer] = {}
    begin: dict[str, str] = {}
    tokens = None
    sched: dict[str, str] = {}
    for no, line in enumerate(text.splitlines(), 1):
        if m := RE_SERVER_ARGS.search(line):
            args = args or m["args"]
        elif m := RE_BEGIN.search(line):
            begin.setdefault(_dev(line), m["num"])
        elif m := RE_END.search(line):
            dev = _dev(line)
            if m["num"]:
                fig = figure(m["num"], "GB", no)
            elif dev in begin:  # before "mem usage" was printed: the drop in available memory
                b, e = begin[dev], m["avail"]
                decimals = max(
                    len(b.split(".")[-1]) if "." in b else 0, len(e.split(".")[-1]) if "." in e else 0
                )
                fig = figure(f"{float(b) - float(e):.{decimals}f}", "GB", no)
            else:
                continue
            weights.setdefault(dev, Buffer(dev, False, fig))
        elif m := RE_KV.search(line):
            dev = _dev(line)
            tokens = tokens or int(m["n"])
            if m["kv"]:
                fig = figure(m["kv"], "GB", no)
            else:
                k, v = figure(m["k"], "GB", no), figure(m["v"], "GB", no)
                fig = type(k)(
                    k.bytes + v.bytes, k.resolution + v.resolution, f"{m['k']} GB + {m['v']} GB", no
                )
            kv.setdefault(dev, Buffer(dev, False, fig))
        elif m := RE_SCHED.search(line):
            tokens = tokens or int(m["n"])
            sched = dict(re.findall(r"(\w+)=([^,\s]+)", m["rest"]))
    ctx = sched.get("context_len") or _arg(args, "context_length")
    running = sched.get("max_running_requests") or _arg(args, "max_running_requests")
    frac = _arg(args, "mem_fraction_static")
    settings = Settings(
        context=int(ctx) if ctx and ctx.isdigit() else None,
        max_running_requests=int(running) if running and running.isdigit() else None,
        kv_cache_dtype=_arg(args, "kv_cache_dtype"),
        tp=_int(_arg(args, "tp_size")),
        pp=_int(_arg(args, "pp_size")),
        mem_fraction_static=float(frac) if frac else None,
        block_size=_int(_arg(args, "page_size")),
        dtype=_arg(args, "dtype"),
        quantization=_arg(args, "quantization"),
    )
    order = lambda b: int(b.device[2:])  # noqa: E731
    return ParsedLog(
        runtime=Runtime.SGLANG,
        model=_arg(args, "model_path"),
        settings=settings,
        weights=tuple(sorted(weights.values(), key=order)),
        kv=tuple(sorted(kv.values(), key=order)),
        kv_tokens=tokens,
    )


def _int(v: str | None) -> int | None:
    return int(v) if v is not None and v.isdigit() else None
