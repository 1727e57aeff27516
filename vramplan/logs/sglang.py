"""SGLang startup logs.

Each line is written per rank with a prefix naming it: `[time TP0]` (0.3-0.4), `[time DP0 TP0 EP0]` /
`[time TP0 EP0]` (DP attention / expert parallel, 0.4.6 on), `[23:17:01 TP7]` (0.3, time only) and
`[gpu_id=0]` (0.2). "GB" there is 1024**3 bytes (`GB = 1024 * 1024 * 1024` in mem_cache/memory_pool.py).
The line formats, from sgl-project/sglang python/sglang/srt/ and the published logs of
tests/fixtures/logs/real/sglang:

- Settings: `server_args=ServerArgs(model_path=..., tp_size=8, dp_size=1, pp_size=1, context_length=None,
  mem_fraction_static=0.79, kv_cache_dtype='auto', quantization=None, max_running_requests=None,
  max_total_tokens=None, chunked_prefill_size=8192, enable_dp_attention=False, nnodes=1, ...)`
  (server_args.py; pp_size since 0.4.7). Logs copied without it may hold the `sglang.launch_server`
  command line instead: `--tp 16`, `--tp-size`, `--tensor-parallel-size`, `--dp`, `--nnodes`, ...
- Weights (model_executor/model_runner.py `load_model`): `Load weight begin. avail mem=X GB` and
  `Load weight end. type=..., dtype=..., avail mem=X GB` - before early 2025 (0.4.3) without
  `, mem usage=Y GB.`, so the weights are the drop in available memory between the two lines; 0.5
  prints `Load weight end. elapsed=3.30 s, type=..., avail mem=.., mem usage=..` and FP8 checkpoints of
  2026 `Load weight end. quant=fp8, fmt=e4m3, avail mem=.., mem usage=..`. The begin line's avail mem
  is the free memory the pool is sized from (`avail_before_weights`); where a copy lacks it, it is the
  end line's avail mem plus its mem usage (load_model prints the difference of the two). A log without
  its version gets `printed_before`: "0.5" when its end line has no `elapsed=` (0.5 prints it), "0.4.3"
  when its KV line has no `#tokens`.
- KV pool (mem_cache/memory_pool.py): `KV Cache is allocated. K size: X GB, V size: Y GB.` (MHA, to
  0.4.2, no token count), `KV Cache is allocated. #tokens: N, K size: X GB, V size: Y GB` (MHA, 0.4.3 on),
  `KV Cache is allocated. #tokens: N, KV size: X GB` (MLA, 0.4.5 on; MLA printed nothing before) and
  `KV Cache is allocated. dtype: torch.bfloat16, #tokens: N, ...` (2026). Where no KV line is printed,
  the pool is `Load weight end` avail mem less `Memory pool end. avail mem=X GB` (which also holds the
  small req_to_token table), and `kv_from_avail` says so.
- CUDA graphs (model_executor/cuda_graph_runner.py): `Capture cuda graph end. Time elapsed: T s` (to
  0.4.2), `... Time elapsed: T s. avail mem=Y GB. mem usage=X GB.` (0.4.3) and `... mem usage=X GB.
  avail mem=Y GB.` (0.4.5 on).
- Scheduler (managers/scheduler.py): `max_total_num_tokens=N, chunked_prefill_size=C,
  max_prefill_tokens=P, max_running_requests=R, context_len=L` (`chunked_prefill_size` since Feb 2025,
  `, available_gpu_mem=X GB` since mid 2025).
"""

from __future__ import annotations

import re

from vramplan.logs.types import Buffer, Figure, ParsedLog, Settings, any_of, figure, torch_kv_dtype
from vramplan.runtimes import Runtime, parse_version

_NUM = r"\d+(?:\.\d+)?"
RE_SERVER_ARGS = re.compile(r"server_args=ServerArgs\((?P<args>.*)\)")
RE_COMMAND = re.compile(r"^(?!\s*#).*?sglang\.launch_server\s(?P<args>.*)$")
RE_BEGIN = re.compile(rf"Load weight begin\. avail mem=(?P<num>{_NUM}) ?GB")
RE_END = re.compile(
    rf"Load weight end\..*?avail mem=(?P<avail>{_NUM}) ?GB(?:, mem usage=(?P<num>{_NUM}) ?(?P<unit>GB))?"
)
RE_KV = re.compile(
    r"KV Cache is allocated\.(?: dtype: [\w.]+,)?(?: #tokens: (?P<n>\d+),)? "
    rf"(?:K size: (?P<k>{_NUM}) GB, V size: (?P<v>{_NUM}) GB|KV size: (?P<kv>{_NUM}) GB)"
)
RE_POOL_END = re.compile(rf"Memory pool end\. avail mem=(?P<num>{_NUM}) ?GB")
RE_GRAPH_END = re.compile(rf"Capture cuda graph end\..*?mem usage=(?P<num>{_NUM}) ?GB")
RE_SCHED = re.compile(r"max_total_num_tokens=(?P<n>\d+)(?P<rest>.*)$")
RE_RANK = re.compile(r"\[[^\]]*?\bTP(?P<tp>\d+)[^\]]*\]|\[gpu_id=(?P<gpu>\d+)\]")

# A fresh server: the ServerArgs line (launch_server / server_args.py) comes first.
START = RE_SERVER_ARGS
MEMORY = any_of(RE_BEGIN, RE_END, RE_KV)

MARKERS = ("Load weight end", "KV Cache is allocated", "max_total_num_tokens", "ServerArgs(", "sglang")

# launch_server flags -> ServerArgs fields (server_args.py `add_cli_args`: --tp is --tensor-parallel-size's
# short form, --dp --data-parallel-size's)
_FLAGS = {
    "tp": "tp_size",
    "tp-size": "tp_size",
    "tensor-parallel-size": "tp_size",
    "dp": "dp_size",
    "dp-size": "dp_size",
    "data-parallel-size": "dp_size",
    "pp-size": "pp_size",
    "pipeline-parallel-size": "pp_size",
    "nnodes": "nnodes",
    "context-length": "context_length",
    "mem-fraction-static": "mem_fraction_static",
    "kv-cache-dtype": "kv_cache_dtype",
    "quantization": "quantization",
    "max-running-requests": "max_running_requests",
    "max-total-tokens": "max_total_tokens",
    "chunked-prefill-size": "chunked_prefill_size",
    "cuda-graph-max-bs": "cuda_graph_max_bs",
    "model-path": "model_path",
    # `--model` is `--model-path`'s alias (server_args.py add_cli_args); the KTransformers kt-kernel launch
    # of 2026-01 (tests/fixtures/logs/real/sglang/v3_kt-cpu-experts_tp2_48gb_sglang-kt-2026-01.log) uses it
    "model": "model_path",
    "dtype": "dtype",
}


def _args_from_command(cmd: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for m in re.finditer(r"--([\w-]+)(?:[ =](?!--)(\S+))?", cmd):
        flag, value = m[1].replace("_", "-"), m[2]
        if flag == "enable-dp-attention":
            out["enable_dp_attention"] = "True"
        elif flag in _FLAGS and value is not None:
            out.setdefault(_FLAGS[flag], value.strip("'\""))
    return out


def _arg(args: str, key: str) -> str | None:
    m = re.search(rf"\b{key}=(?:'(?P<q>[^']*)'|(?P<v>[^,)]+))", args)
    if m is None:
        return None
    v = m["q"] if m["q"] is not None else m["v"].strip()
    return None if v == "None" else v


def _dev(line: str) -> str:
    m = RE_RANK.search(line)
    if m is None:
        return "TP0"
    return f"TP{m['tp'] if m['tp'] is not None else m['gpu']}"


def _decimals(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


def _diff(a: str, b: str, line: int) -> Figure:
    """`a - b` GB, printed to the finer of the two precisions."""
    d = max(_decimals(a), _decimals(b))
    return figure(f"{float(a) - float(b):.{d}f}", "GB", line)


def _sum_gb(a: str, b: str, line: int) -> Figure:
    """`a + b` GB, printed to the finer of the two precisions."""
    d = max(_decimals(a), _decimals(b))
    return figure(f"{float(a) + float(b):.{d}f}", "GB", line)


def _earliest(releases: set[str]) -> str | None:
    """The earliest of some release texts (None for none)."""
    parsed = [(v.key, r) for r in releases if (v := parse_version(r)) is not None]
    return min(parsed)[1] if parsed else None


def _put(bufs: dict[str, Buffer], dev: str, fig: Figure) -> None:
    bufs.setdefault(dev, Buffer(dev, False, fig))


def parse(text: str) -> ParsedLog:
    args = ""
    cmd: dict[str, str] = {}
    weights: dict[str, Buffer] = {}
    kv: dict[str, Buffer] = {}
    begin: dict[str, Buffer] = {}
    end_avail: dict[str, tuple[str, int]] = {}
    pool_end: dict[str, Buffer] = {}
    graphs: dict[str, Buffer] = {}
    tokens = None
    sched: dict[str, str] = {}
    notes: list[str] = []
    drop_weights = False
    named: set[int] = set()  # every rank a line's prefix names, memory line or not
    bounds: set[str] = set()  # releases before which the log's line formats were printed
    for no, line in enumerate(text.splitlines(), 1):
        if (r := RE_RANK.search(line)) is not None:
            named.add(int(r["tp"] if r["tp"] is not None else r["gpu"]))
        if m := RE_SERVER_ARGS.search(line):
            args = args or m["args"]
        elif m := RE_COMMAND.search(line):
            cmd = cmd or _args_from_command(m["args"])
        elif m := RE_BEGIN.search(line):
            _put(begin, _dev(line), figure(m["num"], "GB", no))
        elif m := RE_END.search(line):
            dev = _dev(line)
            end_avail.setdefault(dev, (m["avail"], no))
            if "elapsed=" not in line:
                bounds.add("0.5")
            if m["num"]:
                _put(weights, dev, figure(m["num"], "GB", no))
                if dev not in begin:  # no begin line copied: SGLang's mem usage is begin less end avail
                    _put(begin, dev, _sum_gb(m["avail"], m["num"], no))
            elif dev in begin:  # before "mem usage" was printed: the drop in available memory
                b = begin[dev].figure.text.split()[0]
                _put(weights, dev, _diff(b, m["avail"], no))
                drop_weights = True
        elif m := RE_KV.search(line):
            dev = _dev(line)
            if m["n"]:
                tokens = tokens or int(m["n"])
            if m["kv"]:
                fig = figure(m["kv"], "GB", no)
            else:
                if not m["n"]:
                    bounds.add("0.4.3")
                k, v = figure(m["k"], "GB", no), figure(m["v"], "GB", no)
                fig = Figure(k.bytes + v.bytes, k.resolution + v.resolution, f"{m['k']} GB + {m['v']} GB", no)
            _put(kv, dev, fig)
        elif m := RE_POOL_END.search(line):
            _put(pool_end, _dev(line), figure(m["num"], "GB", no))
        elif m := RE_GRAPH_END.search(line):
            _put(graphs, _dev(line), figure(m["num"], "GB", no))
        elif m := RE_SCHED.search(line):
            tokens = tokens or int(m["n"])
            sched = dict(re.findall(r"(\w+)=([^,\s]+)", m["rest"]))
    kv_from_avail = False
    if not kv:  # no KV line (MLA before 0.4.5, or a copy without it): the drop over the pool's allocation
        for dev, (avail, _) in end_avail.items():
            if dev in pool_end:
                pool = pool_end[dev].figure
                _put(kv, dev, _diff(avail, pool.text.split()[0], pool.line))
                kv_from_avail = True
        if kv_from_avail:
            notes.append(
                "SGLang printed no KV size: the KV pool is the available memory after the weights less "
                "that after the memory pool (it includes the small request-to-token table)"
            )
    if drop_weights:
        notes.append(
            "SGLang printed no 'mem usage' for the weights: they are the drop in available memory "
            "between 'Load weight begin' and 'Load weight end'"
        )

    def get(key: str) -> str | None:
        return _arg(args, key) if args else cmd.get(key)

    ctx = sched.get("context_len") or get("context_length")
    running = sched.get("max_running_requests") or get("max_running_requests")
    frac = get("mem_fraction_static")
    tp = _int(get("tp_size"))
    # any per-rank line counts: a copy may keep the memory lines of TP0 only and other ranks' lines
    # (sglang PR 9162: "[... TP3] Applied flashinfer weight processing ...")
    ranks = [*named, *(int(d[2:]) for d in (*weights, *kv, *begin, *pool_end, *end_avail))]
    if tp is None and ranks:  # no settings line: at least as many ranks as the log names (one node's)
        tp = max(ranks) + 1
        notes.append(f"the log states no tensor parallel size; {tp} from the ranks it names (TP0-TP{tp - 1})")
    dp_att = get("enable_dp_attention")
    settings = Settings(
        context=_int(ctx),
        max_running_requests=_int(running),
        kv_cache_dtype=get("kv_cache_dtype"),
        kv_dtype=torch_kv_dtype(get("kv_cache_dtype")),
        tp=tp,
        pp=_int(get("pp_size")),
        mem_fraction_static=float(frac) if frac else None,
        dp=_int(get("dp_size")),
        dp_attention=None if dp_att is None else dp_att == "True",
        nnodes=_int(get("nnodes")),
        max_total_tokens=_int(get("max_total_tokens")),
        chunked_prefill_size=_int(sched.get("chunked_prefill_size") or get("chunked_prefill_size")),
        cuda_graph_max_bs=_int(get("cuda_graph_max_bs")),
        block_size=_int(get("page_size")),
        dtype=get("dtype"),
        quantization=get("quantization"),
    )

    def ordered(bufs: dict[str, Buffer]) -> tuple[Buffer, ...]:
        return tuple(sorted(bufs.values(), key=lambda b: int(b.device[2:])))

    return ParsedLog(
        runtime=Runtime.SGLANG,
        model=get("model_path"),
        settings=settings,
        weights=ordered(weights),
        kv=ordered(kv),
        kv_tokens=tokens,
        avail_before_weights=ordered(begin),
        cuda_graph=ordered(graphs),
        kv_from_avail=kv_from_avail,
        printed_before=_earliest(bounds),
        notes=tuple(notes),
    )


def _int(v: str | None) -> int | None:
    return int(v) if v is not None and v.lstrip("-").isdigit() else None
