"""vLLM startup logs, V0 and V1.

Each line may carry a worker prefix: `(VllmWorker rank=N pid=...)` (V1 until 0.9), `(VllmWorker TPn
pid=...)` (V1 0.10, vllm/v1/executor/multiproc_executor.py), `(Worker_TPn pid=...)` (V1 0.11 and later),
`(VllmWorkerProcess pid=...)` (V0 multiprocessing), `(RayWorkerWrapper pid=..., ip=...)` (Ray, V0 and V1;
behind `(EngineCore_0 pid=...)` in V1), or none (the driver, rank 0). The V0 and Ray prefixes print no rank:
a worker that prints `rank N in world size M` (vllm/distributed/parallel_state.py, 0.7 and later) is rank N;
the others are numbered 1, 2, ... in the order of their pids (vLLM starts them in rank order), the
unprefixed driver being rank 0.

A log saved from a terminal may be hard-wrapped: each record cut at the terminal width, mid-word (as
published in dennislee22/vLLM-benchmarking, vLLM 0.10.1.1). In a log whose longest line (the terminal's
width) is reached by 5 lines or more, a line that begins no record (no worker prefix, level or timestamp)
after a line of 100 characters or more is read as the rest of that line; an unwrapped log has no such lines.

Line formats (vllm-project/vllm), each named with the versions that print it:

- Settings: the engine config line `Initializing an LLM engine (v0.7.0) with config: model=...,
  max_seq_len=..., tensor_parallel_size=..., pipeline_parallel_size=..., quantization=..., enforce_eager=...,
  kv_cache_dtype=...` (vllm/engine/llm_engine.py; "a V0 LLM engine" / "a V1 LLM engine" from 0.7.3, V1 in
  vllm/v1/engine/core.py); `args: Namespace(model=..., max_model_len=..., ...)` (vllm/entrypoints/openai/
  api_server.py until 0.9); `non-default args: {'max_model_len': 8192, ...}` (vllm/entrypoints/utils.py,
  0.9.2 and later); the version from `vLLM API server version X` or the V1 banner's `version X`; last, a
  command line the user published with the log (`vllm serve MODEL --tensor-parallel-size 2 ...`, `python -m
  vllm.entrypoints.openai.api_server --model ...`), read with vllm/engine/arg_utils.py's flag names.
- Weights: `Loading model weights took X GB` (V0 vllm/worker/model_runner.py, seen up to 0.7.3.dev),
  `Model loading took X GB and T seconds` (V0, from March 2025 builds), `Model loading took X GiB and
  T seconds` (V1 vllm/v1/worker/gpu_model_runner.py), `Model loading took X GiB memory and T seconds`
  (V1, 0.11); all divide by 2**30 whatever they call the unit.
- V0's profiler (vllm/worker/worker.py `determine_num_available_blocks`), three wordings:
  0.6.4 `Memory profiling results: total_gpu_memory=23.58GiB initial_memory_usage=... non_torch_memory=0.35GiB
  kv_cache_size=3.81GiB gpu_memory_utilization=0.90`; the development build of PR 10511 (Dec 2024) one value
  per line (`model weights take   14.96GiB`, `available_kv_cache_memory    53.29GiB`); 0.6.5 to the end of V0
  `the current vLLM instance can use total_gpu_memory (23.58GiB) x gpu_memory_utilization (0.94) = 22.29GiB`
  and `model weights take X GiB; non_torch_memory takes Y GiB; PyTorch activation peak memory takes Z GiB;
  the rest of the memory reserved for KV Cache is W GiB.` (W may be negative when nothing is left).
- Blocks: `# GPU blocks: N, # CPU blocks: M` (V0 vllm/executor/*, until 0.7), `# cuda blocks: N, # CPU
  blocks: M` / `# CUDA blocks: N` (V0 vllm/executor/executor_base.py, 0.7-0.8), `# GPU blocks: N` (early V1
  vllm/v1/core/kv_cache_utils.py until PR 13596, Feb 2025). The pool holds N x block_size tokens; the block
  size is the log's, else 16 (vllm/config.py CacheConfig's CUDA default), 64 for an MLA model on
  FlashMLA (vllm/platforms/cuda.py forces it) — the reader cannot tell that case, so it says which it used.
- V1's pool: `Available KV cache memory: X GiB` (vllm/v1/worker/gpu_worker.py), `GPU KV cache size: N tokens`
  and `Maximum concurrency for L tokens per request: Cx` (vllm/v1/core/kv_cache_utils.py, from PR 13596).
- CUDA graphs: `Graph capturing finished in N secs, took X GiB` (V0 model_runner.py, V1 gpu_model_runner.py).
- Later V1 (as printed by v0.26): `Free memory on device (F/T GiB) on startup. Desired GPU memory
  utilization is (U, X GiB). Actual usage is C GiB for consumed memory (weights + non-torch), A GiB for
  peak activation, and G GiB for CUDAGraph memory. ... Current kv cache memory in use is K GiB.` and
  `CUDA graph pool memory: G GiB (actual)` (vllm/v1/worker/gpu_worker.py).
- The engine (V0 or V1) by the lines only one of them prints, for logs that do not print a version.
- Refusals, measurements of the pool: V0 `The model's max seq len (X) is larger than the maximum number of
  tokens that can be stored in KV cache (N). Try increasing ...` (vllm/worker/worker.py
  raise_if_cache_size_invalid: N = blocks x block_size); V1 `To serve at least one request with the model's
  max seq len (X), (A GiB KV cache is needed, which is larger than the available KV cache memory (B GiB).
  Based on the available memory, the estimated maximum model length is N.` (kv_cache_utils.py, 0.9 and later).
"""

from __future__ import annotations

import re

from vramplan.logs.types import Buffer, Figure, ParsedLog, Settings, any_of, figure, torch_kv_dtype
from vramplan.runtimes import Runtime

_NUM = r"(?P<num>-?\d+(?:\.\d+)?) ?(?P<unit>GiB|GB)"
RE_ENGINE = re.compile(r"Initializing an? (?:V\d )?LLM engine \((?P<v>v[^)]+)\) with config: (?P<cfg>.*)$")
RE_NAMESPACE = re.compile(r"\bargs: Namespace\((?P<cfg>.*)\)?$")
RE_NON_DEFAULT = re.compile(r"non-default args: \{(?P<args>.*)\}")
RE_SERVER_VERSION = re.compile(r"(?:vLLM API server version|█\s+version) (?P<v>\d[\w.+-]*)")
RE_LOADING = re.compile(r"(?:Model loading|Loading model weights) took " + _NUM + r"\b")
RE_AVAILABLE = re.compile(r"Available KV cache memory: " + _NUM)
RE_SUMMARY = re.compile(
    r"model weights take (?P<w>[\d.]+) ?GiB; non_torch_memory takes (?P<nt>[\d.]+) ?GiB; "
    r"PyTorch activation peak memory takes (?P<act>[\d.]+) ?GiB; "
    r"the rest of the memory reserved for KV Cache is (?P<kv>-?[\d.]+) ?GiB"
)
RE_KV_REST = re.compile(r"reserved for KV Cache is " + _NUM)
RE_RESULTS_064 = re.compile(
    r"Memory profiling results: total_gpu_memory=(?P<total>[\d.]+)GiB .*?"
    r"non_torch_memory=(?P<nt>[\d.]+)GiB kv_cache_size=(?P<kv>-?[\d.]+)GiB "
    r"gpu_memory_utilization=(?P<util>[\d.]+)"
)
# PR 10511's development build: one "name   value" pair a line after "Memory profiling results:"
RE_RESULT_ROW = re.compile(
    r"\] (?P<key>total_gpu_memory|gpu_memory_utilization|model weights take|non_torch_memory|"
    r"PyTorch activation peak memory|available_kv_cache_memory|the current vLLM instance can use)"
    r"\s+(?P<val>-?[\d.]+)(?:GiB)?\s*$"
)
RE_TOTAL = re.compile(
    r"total_gpu_memory \((?P<num>\d+(?:\.\d+)?) ?(?P<unit>GiB)\) x "
    r"gpu_memory_utilization \((?P<util>[\d.]+)\) = (?P<use>[\d.]+) ?GiB"
)
RE_BLOCKS = re.compile(r"(?:# )?(?:GPU|CUDA|cuda|gpu) blocks: (?P<n>\d+)(?:, # CPU blocks: (?P<cpu>\d+))?")
RE_TOKENS = re.compile(r"GPU KV cache size: (?P<n>[\d,]+) tokens")
RE_CONCURRENCY = re.compile(
    r"Maximum concurrency for (?P<len>[\d,]+) tokens per request: (?P<x>\d+(?:\.\d+)?)x"
)
# custom_all_reduce.py (0.4 to current): the GPUs have no P2P (PCIe without it, or GeForce cards)
RE_NO_P2P = re.compile(r"Custom allreduce is disabled because your platform lacks GPU P2P capability")
RE_GRAPHS = re.compile(r"Graph capturing finished in \d+ secs?, took (?P<num>-?\d+(?:\.\d+)?) ?(?P<unit>GiB)")
RE_REFUSAL_V0 = re.compile(
    r"The model's max seq len \((?P<len>\d+)\) is larger than the maximum number of tokens that can be "
    r"stored in KV cache \((?P<n>\d+)\)"
)
RE_REFUSAL_V1 = re.compile(
    r"max seq len \((?P<len>\d+)\), \((?P<need>[\d.]+) GiB KV cache is needed, which is larger than the "
    r"available KV cache memory \((?P<num>[\d.]+) (?P<unit>GiB)\)\. Based on the available memory, the "
    r"estimated maximum model length is (?P<n>\d+)"
)
# A published command line: `vllm serve MODEL --flag value ...` or
# `python -m vllm.entrypoints.openai.api_server --model MODEL ...` (flags as vllm/engine/arg_utils.py
# names them; "-" and "_" are interchangeable there).
RE_COMMAND = re.compile(r"(?:\bvllm serve\b|vllm\.entrypoints\.(?:openai\.)?api_server)(?P<rest>.*)$")
_FLAG_ALIASES = {"tp": "tensor_parallel_size", "pp": "pipeline_parallel_size", "q": "quantization"}
_BOOL_FLAGS = {"enforce_eager", "trust_remote_code"}
# Later V1 (vllm/v1/worker/gpu_worker.py, as printed by v0.26): the profile's summary and the graphs' size
RE_FREE_SUMMARY = re.compile(
    r"Free memory on device \((?P<free>[\d.]+)/(?P<total>[\d.]+) GiB\) on startup\. Desired GPU memory "
    r"utilization is \((?P<util>[\d.]+), (?P<use>[\d.]+) GiB\)\. Actual usage is "
    r"(?P<consumed>[\d.]+) GiB for consumed memory \(weights \+ non-torch\), "
    r"(?P<act>[\d.]+) GiB for peak activation, and "
    r"(?P<graphs>[\d.]+) GiB for CUDAGraph memory\..*?Current kv cache memory in use is (?P<kv>[\d.]+) GiB"
)
RE_GRAPH_POOL = re.compile(r"CUDA graph pool memory: (?P<num>[\d.]+) (?P<unit>GiB) \(actual\)")
# Lines only one engine prints: V0's worker/executor lines, V1's engine core and worker lines.
RE_V0 = re.compile(
    r"V0 LLM engine|Loading model weights took|reserved for KV Cache|Memory profiling results|"
    r"(?:GPU|cuda|CUDA) blocks: \d+, # CPU blocks|VllmWorkerProcess|\bmodel_runner\.py|\bworker\.py:"
)
RE_V1 = re.compile(
    r"V1 LLM engine|Available KV cache memory|GPU KV cache size|EngineCore|gpu_model_runner|gpu_worker"
)
RE_RANK = re.compile(r"\((?:\w+ )?(?:rank=(?P<rank>\d+)|\w*?_?TP(?P<tp>\d+) )")
# vllm/distributed/parallel_state.py (0.7 and later): "rank 1 in world size 2 is assigned as DP rank 0, ..."
RE_WORLD_RANK = re.compile(r"\brank (?P<rank>\d+) in world size \d+")
# the start of a log record: a process prefix, a level, a timestamp, a progress bar or a traceback line
RE_RECORD = re.compile(
    r"^(?:\(|\[|INFO|WARNING|ERROR|DEBUG|CRITICAL|\d{4}-\d\d-\d\d|\d\d-\d\d "
    r"|Loading|Capturing|Traceback|\s+File |#)"
)
_WRAPPED_MIN = 100  # a terminal that wraps a log is at least this wide
_WRAPPED_LINES = 5  # lines of exactly the terminal's width that show a log was hard-wrapped
RE_PID = re.compile(r"\((?:VllmWorkerProcess|RayWorkerWrapper) pid=(?P<pid>\d+)")

# A fresh engine: the API server's first lines and the engine's config line.
START = re.compile(
    r"vLLM API server version|" + RE_NON_DEFAULT.pattern + "|" + RE_ENGINE.pattern + r"|\bargs: Namespace\("
)
MEMORY = any_of(
    RE_LOADING, RE_AVAILABLE, RE_KV_REST, RE_TOKENS, RE_BLOCKS, RE_REFUSAL_V0, RE_RESULTS_064, RE_FREE_SUMMARY
)

MARKERS = (
    "LLM engine (v",
    "Model loading took",
    "Loading model weights took",
    "Available KV cache memory",
    "GPU KV cache size",
    "reserved for KV Cache",
    "Memory profiling",
    "blocks: ",
    "stored in KV cache",
    "kv cache memory in use",
    "vllm",
)

_DEFAULT_BLOCK = 16  # vllm/config.py CacheConfig: block_size 16 on CUDA when not given

_KEYS = (
    "model",
    "dtype",
    "max_seq_len",
    "max_model_len",
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "quantization",
    "kv_cache_dtype",
    "gpu_memory_utilization",
    "max_num_seqs",
    "max_num_batched_tokens",
    "block_size",
    "enforce_eager",
)


def _cfg(cfg: str, key: str) -> str | None:
    m = re.search(rf"(?:^|[ ,{{(]){key}=(?:'(?P<q>[^']*)'|(?P<v>[^,)]+))", cfg)
    return None if m is None else (m["q"] if m["q"] is not None else m["v"].strip())


def _arg(args: str, key: str) -> str | None:
    m = re.search(rf"'{key}': (?:'(?P<q>[^']*)'|(?P<v>[^,}}]+))", args)
    return None if m is None else (m["q"] if m["q"] is not None else m["v"].strip())


def _command(rest: str) -> dict[str, str]:
    """The settings of a command line's flags (the value after the flag or after "=")."""
    words = rest.replace("\\", " ").split()
    out: dict[str, str] = {}
    i = 0
    while i < len(words):
        w = words[i]
        if w.startswith("-"):
            name, eq, val = w.lstrip("-").partition("=")
            key = _FLAG_ALIASES.get(name, name.replace("-", "_"))
            if key in _BOOL_FLAGS:
                out[key] = "True"
            elif eq:
                out[key] = val
            elif i + 1 < len(words) and not words[i + 1].startswith("-"):
                out[key] = words[i + 1]
                i += 1
        else:  # a word no flag took: the positional MODEL of `vllm serve`
            out.setdefault("model", w)
        i += 1
    return out


def _intval(v: str | None) -> int | None:
    return int(v) if v is not None and v.isdigit() else None


def _floatval(v: str | None) -> float | None:
    try:
        return float(v) if v is not None else None
    except ValueError:
        return None


def _boolval(v: str | None) -> bool | None:
    return {"True": True, "False": False}.get(v or "")


class _Ranks:
    """Worker prefixes to "rank N": printed ranks as printed; pid-only prefixes (V0, Ray) in pid order,
    from 1 when the unprefixed driver printed its own loading line (it is rank 0), else from 0."""

    def __init__(self, lines: list[str]) -> None:
        pids = sorted({int(m["pid"]) for ln in lines for m in RE_PID.finditer(ln)})
        driver = any(RE_LOADING.search(ln) and not ln.lstrip().startswith("(") for ln in lines)
        self.by_pid = {pid: i + int(driver) for i, pid in enumerate(pids)}
        for ln in lines:  # a worker that prints its rank has that rank
            if (p := RE_PID.search(ln)) and (w := RE_WORLD_RANK.search(ln)):
                self.by_pid[int(p["pid"])] = int(w["rank"])

    def device(self, line: str) -> str:
        m = RE_RANK.search(line)
        if m and (m["rank"] or m["tp"]):
            return f"rank {m['rank'] or m['tp']}"
        if p := RE_PID.search(line):
            return f"rank {self.by_pid[int(p['pid'])]}"
        return "rank 0"


def _records(text: str) -> list[tuple[int, str]]:
    """The log's records with the number of their first line. A hard-wrapped log (its longest line, the
    terminal's width, at least 100 characters, reached by 5 lines or more) has its cut records joined back:
    a line that begins no record, after a line of 100 characters or more, is the rest of that line."""
    lines = text.splitlines()
    body = [len(ln) for ln in lines if not ln.startswith("# ")]
    width = max(body, default=0)
    wrapped = width >= _WRAPPED_MIN and body.count(width) >= _WRAPPED_LINES
    out: list[tuple[int, str]] = []
    for no, line in enumerate(lines, 1):
        if wrapped and out and line and len(out[-1][1]) >= _WRAPPED_MIN and not RE_RECORD.match(line):
            out[-1] = (out[-1][0], out[-1][1] + line)
        else:
            out.append((no, line))
    return out


def _gib(text: str, no: int) -> Figure:
    return figure(text, "GiB", no)


def _first(per_dev: dict[str, Figure]) -> Figure | None:
    """Rank 0's figure when it printed one, else the first printed (workers print in any order)."""
    return per_dev.get("rank 0") or next(iter(per_dev.values()), None)


def parse(text: str) -> ParsedLog:
    version = None
    cfg: dict[str, str] = {}
    records = _records(text)
    ranks = _Ranks([ln for _, ln in records])
    weights: dict[str, Buffer] = {}
    profiled: dict[str, Buffer] = {}  # V0's "model weights take", used when no loading line is printed
    pools: dict[str, Figure] = {}
    non_torch: dict[str, Figure] = {}
    activation: dict[str, Figure] = {}
    graphs: dict[str, Figure] = {}
    no_p2p = False
    usable: Figure | None = None
    tokens = conc_len = blocks = None
    tokens_from: str | None = None
    engine: str | None = None
    refusal_len: int | None = None
    conc: float | None = None
    total: Figure | None = None
    util: float | None = None
    notes: list[str] = []

    def put(source: str, key: str, value: str | None) -> None:
        if value is not None and value != "None":
            cfg.setdefault(f"{source}:{key}", value)

    for no, line in records:
        if m := RE_ENGINE.search(line):
            version = version or m["v"].lstrip("v")
            if " V0 " in line or " V1 " in line:
                engine = engine or ("V0" if " V0 " in line else "V1")
            for key in _KEYS:
                put("engine", key, _cfg(m["cfg"], key))
            continue
        if m := RE_NAMESPACE.search(line):
            for key in _KEYS:
                put("args", key, _cfg(m["cfg"], key))
            put("args", "model", _cfg(m["cfg"], "model_tag"))
            continue
        if m := RE_NON_DEFAULT.search(line):
            for key in _KEYS:
                put("args", key, _arg(m["args"], key))
            put("args", "model", _arg(m["args"], "model_tag"))
            continue
        if m := RE_COMMAND.search(line):
            for key, val in _command(m["rest"]).items():
                if key in _KEYS:
                    put("command", key, val)
            continue
        if (m := RE_SERVER_VERSION.search(line)) and version is None:
            version = m["v"]
        dev = ranks.device(line)
        if m := RE_LOADING.search(line):
            weights.setdefault(dev, Buffer(dev, False, figure(m["num"], m["unit"], no)))
        if m := RE_SUMMARY.search(line):
            profiled.setdefault(dev, Buffer(dev, False, _gib(m["w"], no)))
            non_torch.setdefault(dev, _gib(m["nt"], no))
            activation.setdefault(dev, _gib(m["act"], no))
        if m := RE_RESULTS_064.search(line):
            pools.setdefault(dev, _gib(m["kv"], no))
            non_torch.setdefault(dev, _gib(m["nt"], no))
            total = total or _gib(m["total"], no)
            util = util or float(m["util"])
        if m := RE_RESULT_ROW.search(line):
            key, val = m["key"], m["val"]
            if key == "total_gpu_memory":
                total = total or _gib(val, no)
            elif key == "gpu_memory_utilization":
                util = util or float(val)
            elif key == "model weights take":
                profiled.setdefault(dev, Buffer(dev, False, _gib(val, no)))
            elif key == "non_torch_memory":
                non_torch.setdefault(dev, _gib(val, no))
            elif key == "PyTorch activation peak memory":
                activation.setdefault(dev, _gib(val, no))
            elif key == "the current vLLM instance can use":
                usable = usable or _gib(val, no)
            else:
                pools.setdefault(dev, _gib(val, no))
        if m := RE_AVAILABLE.search(line) or RE_KV_REST.search(line):
            pools.setdefault(dev, figure(m["num"], m["unit"], no))
        if m := RE_TOTAL.search(line):
            total = total or figure(m["num"], m["unit"], no)
            util = util or float(m["util"])
            usable = usable or _gib(m["use"], no)
        if m := RE_TOKENS.search(line):
            if tokens is None:
                tokens, tokens_from = int(m["n"].replace(",", "")), "size"
        elif (m := RE_BLOCKS.search(line)) and blocks is None:
            blocks = int(m["n"])
        if (m := RE_CONCURRENCY.search(line)) and conc is None:
            conc, conc_len = float(m["x"]), int(m["len"].replace(",", ""))
        if m := RE_GRAPHS.search(line) or RE_GRAPH_POOL.search(line):
            graphs.setdefault(dev, figure(m["num"], m["unit"], no))
        if RE_NO_P2P.search(line):
            no_p2p = True
        if m := RE_FREE_SUMMARY.search(line):
            total = total or _gib(m["total"], no)
            util = util or float(m["util"])
            usable = usable or _gib(m["use"], no)
            activation.setdefault(dev, _gib(m["act"], no))
            graphs.setdefault(dev, _gib(m["graphs"], no))
            pools.setdefault(dev, _gib(m["kv"], no))
        if engine is None and (RE_V0.search(line) or RE_V1.search(line)):
            engine = "V0" if RE_V0.search(line) else "V1"
        if m := RE_REFUSAL_V0.search(line) or RE_REFUSAL_V1.search(line):
            refusal_len = refusal_len or int(m["len"])
            if "num" in m.groupdict():
                pools.setdefault(dev, figure(m["num"], m["unit"], no))
            if tokens is None:
                tokens, tokens_from = int(m["n"]), "refusal"

    def get(key: str) -> str | None:
        return cfg.get(f"engine:{key}") or cfg.get(f"args:{key}") or cfg.get(f"command:{key}")

    block_size = _intval(get("block_size"))
    if blocks == 0:  # "# cuda blocks: 0": the pool is the printed (negative) figure, no token count
        notes.append("vLLM made no KV cache blocks: the memory left for the KV cache is below one block")
    elif tokens is None and blocks is not None:
        tokens, tokens_from = blocks * (block_size or _DEFAULT_BLOCK), "blocks"
        if block_size is None:
            notes.append(
                f"KV tokens = {blocks} GPU blocks x {_DEFAULT_BLOCK}, vLLM's default block size "
                "(the log does not state it; FlashMLA uses 64)"
            )
    if conc == 0.0:  # "Maximum concurrency ...: 0.00x" beside no blocks: nothing to compare
        conc = None
    util_stated = _floatval(get("gpu_memory_utilization"))
    context = _intval(get("max_seq_len")) or _intval(get("max_model_len")) or conc_len or refusal_len
    settings = Settings(
        context=context,
        tp=_intval(get("tensor_parallel_size")),
        pp=_intval(get("pipeline_parallel_size")),
        kv_cache_dtype=get("kv_cache_dtype"),
        kv_dtype=torch_kv_dtype(get("kv_cache_dtype")),
        gpu_memory_utilization=util_stated if util_stated is not None else util,
        block_size=block_size,
        max_num_batched_tokens=_intval(get("max_num_batched_tokens")),
        enforce_eager=_boolval(get("enforce_eager")),
        dtype=get("dtype"),
        quantization=get("quantization"),
        max_running_requests=_intval(get("max_num_seqs")),
        gpu_total=total,
        p2p=False if no_p2p else None,
    )
    if not weights:  # the profiler's figure stands in when no loading line was printed (or kept)
        weights = profiled
    ordered = sorted(weights.values(), key=lambda b: int(b.device.split()[-1]))
    return ParsedLog(
        runtime=Runtime.VLLM,
        version=version,
        model=get("model"),
        settings=settings,
        weights=tuple(ordered),
        kv_tokens=tokens,
        kv_available=_first(pools),
        max_concurrency=conc,
        concurrency_len=conc_len,
        non_torch=_first(non_torch),
        activation_peak=_first(activation),
        cuda_graph=tuple(
            Buffer(d, False, f) for d, f in sorted(graphs.items(), key=lambda kv: int(kv[0].split()[-1]))
        ),
        usable=usable,
        kv_blocks=blocks,
        kv_tokens_from=tokens_from,
        engine=engine,
        notes=tuple(notes),
    )
