"""Ollama server logs: Ollama's own lines, plus the llama.cpp lines its runner prints (parsed by `ggml`).

Ollama logs with Go's log/slog text handler (`time=... level=INFO source=FILE:LINE msg=... key=value`):

- since v0.12 (ml/device.go `BackendMemory.Log`; source=backend.go in v0.11): what the runner allocated,
  per device: `msg="model weights" device=CUDA0 size="4.1 GiB"`, `msg="kv cache" device=CUDA0 size=...`,
  `msg="compute graph" device=CUDA0 size=...`, `msg="total memory" size=...` (device CPU: host memory);
  sizes by format.HumanBytes2 (1024-based, one decimal).
- up to v0.11 (llm/memory.go, printed by llm/server.go): Ollama's own *prediction* before it starts the
  runner: `msg="offload to cuda" ... memory.required.kv="9.5 GiB" ... memory.weights.total="385.0 GiB"
  ... memory.graph.full="654.0 MiB"` (`msg=offload library=cuda ...` in v0.11).
- the settings: `msg="starting llama server" cmd="... --ctx-size 8192 --batch-size 512 --n-gpu-layers 29
  --parallel 1 [--flash-attn] [--kv-cache-type q8_0]"` (llm/server.go), or since v0.11 `msg=load
  request="{Operation:commit ... Parallel:1 BatchSize:512 FlashAttention:Enabled KvSize:8192
  KvCacheType:q8_0 ... GPULayers:29[...] ...}"`; `--ctx-size` / KvSize is num_ctx x parallel.
- the GPU: `msg="inference compute" ... name=... description="NVIDIA GeForce RTX 3090" ... total="24.0 GiB"`
  (discover/; older versions put the card in `name=`); the version: `Listening on ... (version 0.9.6)`.
  With OLLAMA_DEBUG up to v0.5.x also `msg="updating cuda memory data" ... name="NVIDIA GeForce RTX 4080"
  ... before.total="15.7 GiB"` (discover/gpu.go).

Format variants (each checked against ollama/ollama's tagged source):
- the planner line: `msg="offload to cuda"` (llm/memory.go, up to v0.5.11); `msg=offload library=cuda`
  (llm/server.go `slog.Info("offload", "", s.estimate)`, v0.5.12 to v0.12.10). Up to v0.12.10 the llama.cpp
  runner printed only this prediction and its own llama.cpp lines.
- the Go runner ("new engine", ml/backend/ggml/ggml.go, v0.6.0 to v0.11.4 at INFO, trace level after):
  `msg="model weights" buffer=CUDA0 size="11.5 GiB"` and (v0.7.0+) `msg="compute graph" backend=CUDA0
  buffer_type=CUDA0 size="1.1 GiB"`: allocations.
- the device summary (ml BackendMemory.Log, v0.11.5+): on the Go engine, what the runner allocated. It is
  printed at DEBUG for every fit and alloc step of the layout search and once at INFO after the commit
  (llm/server.go ollamaServer.Load, v0.12.x): the reader keeps the last INFO set. Since v0.12.11 (commit
  f560bd077, "Use Ollama engine memory layouts for both old and new engines") the llama.cpp runner prints
  the same lines too, but from Ollama's estimate before the runner starts: on that engine they are a
  prediction, and the runner's llama.cpp lines, when present, are what it allocated.
- the parallel sequences: `--parallel N` / `Parallel:N`, or the scheduler's `msg="new model will fit in
  available VRAM ..." ... parallel=4` (server/sched.go; OLLAMA_NUM_PARALLEL 0 meant 4 when memory allowed,
  up to v0.9.6; 1 from v0.10.0).
- the Go engine's layer count: `source=ggml.go:498 msg="offloaded 37/37 layers to GPU"` (ml/backend/ggml,
  next to its per-device lines; seen in a v0.12.x log of ollama#13085, where the device lines come from
  `source=backend.go`).
- the runner's own llama.cpp lines, read by `ggml`, in every shape the real logs show: `llm_load_tensors:
  CUDA0 buffer size` (v0.1.x, ollama#4284), `llm_load_tensors: CUDA0 model buffer size` and
  `llama_new_context_with_model:` (v0.5.x), `load_tensors:` / `llama_context:` (v0.6+), with or without a
  journald prefix (`Feb 24 16:32:42 host ollama[16860]: `) or a docker-compose prefix (`ollama  | `).
"""

from __future__ import annotations

import re
from dataclasses import replace

from vramplan.logs import ggml
from vramplan.logs.types import Buffer, Figure, ParsedLog, Settings, any_of, ggml_kv_dtype, parse_size
from vramplan.runtimes import Runtime

RE_DEVICE_LINE = re.compile(
    r'msg="(?P<what>model weights|kv cache|compute graph)" device=(?P<dev>\S+) size="(?P<size>[^"]+)"'
)
RE_TOTAL_MEMORY = re.compile(r'msg="total memory" size=')
RE_LEVEL = re.compile(r"\blevel=(?P<level>[A-Z]+)\b")
# the Go runner's own lines (ml/backend/ggml/ggml.go, v0.6.0-v0.11.4)
RE_RUNNER_WEIGHTS = re.compile(r'msg="model weights" buffer=(?P<dev>\S+) size="(?P<size>[^"]+)"')
RE_RUNNER_GRAPH = re.compile(
    r'msg="compute graph" backend=\S+ buffer_type=(?P<dev>\S+) size="(?P<size>[^"]+)"'
)
# the Go engine's offload summary (ml/backend/ggml/ggml.go, printed before its per-device lines)
RE_ENGINE_OFFLOADED = re.compile(r'msg="offloaded (?P<n>\d+)/(?P<m>\d+) layers to GPU"')
RE_SCHED_PARALLEL = re.compile(r'msg="new model will fit in available VRAM[^"]*".*?\bparallel=(?P<n>\d+)')
RE_GPU_DEBUG = re.compile(
    r'msg="updating (?:cuda|rocm) memory data".*?\bname="(?P<name>[^"]+)"'
    r'.*?\bbefore\.total="(?P<total>[^"]+)"'
)
RE_OFFLOAD = re.compile(r'msg=(?:"offload to \w+"|offload)\s.*memory\.required\.full=')
RE_KV = re.compile(r'(?P<key>memory\.[\w.]+)="(?P<val>[^"]*)"')
RE_CMD = re.compile(r'msg="starting (?:llama server|runner)" cmd="(?P<cmd>[^"]*)"')
RE_LOAD_REQUEST = re.compile(r'msg=load request="\{(?P<req>[^}]*)\}')
RE_INFERENCE = re.compile(r'msg="inference compute"(?P<rest>.*)$')
RE_DATE = re.compile(r"\btime=(?P<date>\d{4}-\d{2}-\d{2})T")
RE_VERSION = re.compile(r"Listening on \S+ \(version (?P<v>[^)]+)\)")
RE_ENV = re.compile(
    r"\b(?P<key>OLLAMA_NUM_PARALLEL|OLLAMA_KV_CACHE_TYPE|OLLAMA_FLASH_ATTENTION|OLLAMA_CONTEXT_LENGTH)"
    r":(?P<val>[^ \]]*)"
)

# A server start (routes.go) or the start of one model load: up to v0.11 the planner's offload line,
# then "starting llama server" (llm/server.go; "starting runner" since v0.12), besides the runner's
# own llama.cpp lines.
START = any_of(
    re.compile(r'msg="(?:starting llama server|starting runner|Listening on )'), RE_OFFLOAD, ggml.START
)
MEMORY = any_of(RE_DEVICE_LINE, RE_OFFLOAD, RE_RUNNER_WEIGHTS, RE_RUNNER_GRAPH, ggml.MEMORY)
# The server's own lines, printed once when it starts: they hold for every load that follows.
SERVER = re.compile(r'msg="(?:Listening on |inference compute"|server config")')

MARKERS = (
    'msg="offload',
    "msg=offload",
    'msg="model weights"',
    'msg="starting llama server"',
    "msg=load request",
    'msg="inference compute"',
    "ollama",
)


def _attr(rest: str, key: str) -> str | None:
    m = re.search(rf'\b{key}=(?:"(?P<q>[^"]*)"|(?P<v>\S+))', rest)
    return None if m is None else (m["q"] if m["q"] is not None else m["v"])


class _DeviceSets:
    """The device summaries of a log (ml BackendMemory.Log): one set per print, a set ending at its
    "total memory" line; the Go engine prints one set per fit / alloc step at DEBUG and the committed
    one at INFO (llm/server.go ollamaServer.Load, v0.12+)."""

    def __init__(self) -> None:
        self.sets: list[tuple[str | None, dict[str, list[Buffer]]]] = []
        self.open = False

    def add(self, what: str, buf: Buffer, level: str | None) -> None:
        current = self.sets[-1][1] if self.open else None
        if current is None or any(b.device == buf.device for b in current[what]):
            current = {"model weights": [], "kv cache": [], "compute graph": []}
            self.sets.append((level, current))
            self.open = True
        current[what].append(buf)

    def close(self) -> None:
        self.open = False

    def chosen(self) -> tuple[dict[str, list[Buffer]] | None, int]:
        """The last set printed at INFO (the committed layout), else the last set; and how many sets."""
        info = [d for level, d in self.sets if level in (None, "INFO")]
        pick = info[-1] if info else (self.sets[-1][1] if self.sets else None)
        return pick, len(self.sets)


def parse(text: str) -> ParsedLog:
    base = ggml.parse(text, Runtime.OLLAMA)
    device_sets = _DeviceSets()
    runner: dict[str, list[Buffer]] = {"model weights": [], "compute graph": []}
    offload: dict[str, Figure] = {}
    offload_line = ""
    first_date: str | None = None
    cmd: dict[str, str] = {}
    env: dict[str, str] = {}
    version = None
    engine: str | None = None
    sched_parallel: int | None = None
    gpu_name: str | None = None
    gpu_total: Figure | None = None
    for no, line in enumerate(text.splitlines(), 1):
        if m := RE_DEVICE_LINE.search(line):
            fig = parse_size(m["size"], no)
            if fig is not None:
                dev = m["dev"]
                lv = RE_LEVEL.search(line)
                device_sets.add(
                    m["what"], Buffer(dev, ggml.is_host_buffer(dev), fig), lv["level"] if lv else None
                )
        elif RE_TOTAL_MEMORY.search(line):
            device_sets.close()
        elif m := RE_RUNNER_WEIGHTS.search(line) or RE_RUNNER_GRAPH.search(line):
            fig = parse_size(m["size"], no)
            if fig is not None and fig.bytes:
                what = "model weights" if "buffer=" in m[0] else "compute graph"
                # one line per buffer; a later line for the same buffer (a graph reserved again) replaces it
                kept = [x for x in runner[what] if x.device != m["dev"]]
                runner[what] = [*kept, Buffer(m["dev"], ggml.is_host_buffer(m["dev"]), fig)]
        elif RE_OFFLOAD.search(line):
            offload, offload_line = {}, line
            for item in RE_KV.finditer(line):
                if (fig := parse_size(item["val"], no)) is not None:
                    offload[item["key"]] = fig
            layers = re.search(r"layers\.model=(\d+) layers\.offload=(\d+)", line)
            avail = re.search(r'memory\.available="\[([^\]]*)\]"', line)
            if layers:
                cmd.setdefault("gpu_layers", layers[2])
                cmd.setdefault("layers_total", layers[1])
            if avail:
                cmd.setdefault("gpus", str(len(re.findall(r"[\d.]+ \w?i?B", avail[1]))))
        elif m := RE_CMD.search(line):
            words = m["cmd"].split()
            if "--model" in words:  # runners started without a model only probe the GPUs (v0.12+)
                engine = "ollama" if "--ollama-engine" in words else "llama"
            cmd.update(_flags(m["cmd"]))
        elif m := RE_LOAD_REQUEST.search(line):
            cmd.update(_request(m["req"]))
        elif m := RE_INFERENCE.search(line):
            rest = m["rest"]
            name = _attr(rest, "description") or _attr(rest, "name")
            if name and not re.fullmatch(r"(CUDA|ROCm|Vulkan|Metal)\d*", name) and gpu_name is None:
                gpu_name = name
                total = _attr(rest, "total")
                gpu_total = parse_size(total, no) if total else None
        elif m := RE_GPU_DEBUG.search(line):
            if gpu_name is None:
                gpu_name = m["name"]
                gpu_total = parse_size(m["total"], no)
        elif m := RE_SCHED_PARALLEL.search(line):
            sched_parallel = int(m["n"])
        elif m := RE_ENGINE_OFFLOADED.search(line):
            cmd["gpu_layers"], cmd["layers_total"] = m["n"], m["m"]
        elif m := RE_VERSION.search(line):
            version = m["v"]
        if first_date is None and (d := RE_DATE.search(line)):
            first_date = d["date"]
        for e in RE_ENV.finditer(line):
            env.setdefault(e["key"], e["val"])
    weights, kv, compute, planner = base.weights, base.kv, base.compute, False
    notes = list(base.notes)
    devices, n_sets = device_sets.chosen()
    if not (weights or kv or compute) and devices is not None and any(devices.values()):
        weights = tuple(devices["model weights"])
        kv = tuple(devices["kv cache"])
        compute = tuple(devices["compute graph"])
        if n_sets > 1:
            notes.append(
                f"the log prints {n_sets} device summaries (the layout search's fit / alloc steps at DEBUG, "
                "the committed one at INFO, llm/server.go); this reads the last one at INFO"
            )
        if engine == "llama":
            planner = True
            notes.append(
                "on the llama.cpp runner Ollama's device lines are its own estimate, printed before the "
                "runner starts (llm/server.go since v0.12.11), not allocations; the runner's llama.cpp "
                "lines are missing from this log"
            )
    elif not (weights or kv or compute) and any(runner.values()):
        weights = tuple(runner["model weights"])
        compute = tuple(runner["compute graph"])
    elif not (weights or kv or compute) and offload:
        planner = True
        weights, kv, compute, planner_notes = _planner(offload, offload_line, version, first_date)
        notes.extend(planner_notes)
    if sched_parallel is not None and "parallel" not in cmd and base.settings.parallel is None:
        cmd["parallel"] = str(sched_parallel)
    settings = _settings(base.settings, cmd, env, gpu_name, gpu_total)
    formats: tuple[str | None, str | None] = (None, None)
    if 'msg="offload to ' in offload_line:
        formats = (None, "0.5.11")  # llm/memory.go logged "offload to <library>" up to v0.5.11
    elif "msg=offload " in offload_line:
        formats = ("0.5.12", "0.12.10")  # llm/server.go `slog.Info("offload", ...)`, v0.5.12-v0.12.10
    if planner and settings.context is None and kv:
        notes.append(
            "the log states no context: the planner's KV cache is num_ctx x parallel tokens times the "
            "model's KV bytes per token (llm/memory.go), so the context follows from it, not from "
            "today's default"
        )
    return replace(
        base,
        version=version or base.version,
        settings=settings,
        weights=weights,
        kv=kv,
        compute=compute,
        planner=planner,
        engine=engine,
        date=first_date,
        format_versions=formats,
        notes=tuple(notes),
    )


def _one(values: dict[str, Figure], key: str) -> tuple[Buffer, ...]:
    return (Buffer("all devices", False, values[key]),) if key in values else ()


# What the planner's memory.weights.total holds (llm/memory.go, printed by llm/server.go):
# - up to v0.6.0: the sum of `layerSize`, each block plus its share of the KV cache
#   (`layerSize += kv / BlockCount(); memoryWeights += layerSize`), without the output layer;
# - v0.6.1 and v0.6.2 (commit 033cec232, "count gemma3 vision tensors"): the blocks only;
# - v0.6.3 on (commit f4f0992b6, "llm: Fix debug logging for memory estimates"): blocks + output layer.
# The output layer is memory.weights.nonrepeating throughout; the token embedding is never counted
# (unless the model ties it to the output). A log's date bounds its version: v0.6.1 was cut on
# 2025-03-14 and v0.6.3 on 2025-03-26.
_ERA_V061 = ((0, 6, 1), "2025-03-14")
_ERA_V063 = ((0, 6, 3), "2025-03-26")


def _version_tuple(version: str | None) -> tuple[int, ...] | None:
    if not version:
        return None
    parts = re.findall(r"\d+", version.split("-")[0])
    return tuple(int(p) for p in parts[:3]) if len(parts) >= 2 else None


def _weights_era(line: str, version: str | None, first_date: str | None) -> str | None:
    """Which sum memory.weights.total is: "with kv" (up to v0.6.0), "blocks" (v0.6.1-v0.6.2),
    "blocks+output" (v0.6.3 on), or None when neither the version nor the date tells."""
    vt = _version_tuple(version)
    if vt is not None:
        return "with kv" if vt < _ERA_V061[0] else "blocks" if vt < _ERA_V063[0] else "blocks+output"
    if 'msg="offload to ' in line:  # the "offload to <library>" wording ended with v0.5.11
        return "with kv"
    if first_date is not None and first_date < _ERA_V061[1]:
        return "with kv"
    if first_date is not None and first_date >= _ERA_V063[1]:
        return "blocks+output"  # assumed: a log dated after v0.6.3 is taken to come from it or later
    return None


def _planner(
    offload: dict[str, Figure], line: str, version: str | None, first_date: str | None
) -> tuple[tuple[Buffer, ...], tuple[Buffer, ...], tuple[Buffer, ...], list[str]]:
    """The planner line's figures (llm/memory.go MemoryEstimate, printed by llm/server.go) as buffers.

    - weights: the blocks and the output layer, from memory.weights.total read by its era (see above);
      the token embedding is left out, as the planner leaves it out.
    - KV: memory.required.kv, for num_ctx x parallel cells, all layers.
    - compute: memory.graph.full when every layer is on the GPUs, else memory.graph.partial, reserved on
      each GPU that holds layers (llm/memory.go adds it to every such GPU's allocation)."""
    notes = [
        "this Ollama log has only its planner's offload line (llm/memory.go): the figures are Ollama's "
        "own prediction for the whole model, not what the runner allocated"
    ]
    weights = _one(offload, "memory.weights.total")
    kv = _one(offload, "memory.required.kv")
    era = _weights_era(line, version, first_date)
    total, kvf = offload.get("memory.weights.total"), offload.get("memory.required.kv")
    out = offload.get("memory.weights.nonrepeating")
    if era == "with kv" and total and kvf and out:
        fig = Figure(
            total.bytes - kvf.bytes + out.bytes,
            total.resolution + kvf.resolution + out.resolution,
            f"{total.text} - {kvf.text} + {out.text}",
            total.line,
        )
        weights = (Buffer("all devices", False, fig),)
        notes.append(
            "up to v0.6.0 the planner's memory.weights.total is the blocks plus the KV cache, without the "
            "output layer (llm/memory.go): the weights are weights.total - required.kv + weights.nonrepeating"
        )
    elif era == "blocks" and total and out:
        fig = Figure(
            total.bytes + out.bytes,
            total.resolution + out.resolution,
            f"{total.text} + {out.text}",
            total.line,
        )
        weights = (Buffer("all devices", False, fig),)
        notes.append(
            "in v0.6.1-v0.6.2 the planner's memory.weights.total is the blocks only (llm/memory.go): the "
            "weights are weights.total + weights.nonrepeating"
        )
    elif era is None:
        notes.append(
            "the log states no version and its date does not bound it: its memory.weights.total is read "
            "as v0.6.3+ prints it (blocks + output layer); before v0.6.3 it held other sums (llm/memory.go)"
        )
    notes.append(
        "the planner's weights leave out the token embedding (llm/memory.go counts it only when the "
        "model ties it to the output layer)"
    )
    compute: tuple[Buffer, ...] = ()
    m = re.search(r"layers\.model=(\d+) layers\.offload=(\d+) layers\.split=(\S*)", line)
    lib = re.search(r'msg=(?:"offload to (\w+)"|offload library=(\w+))', line)
    if m and lib and int(m[2]) > 0:
        full = m[1] == m[2]
        key = "memory.graph.full" if full else "memory.graph.partial"
        split = [int(x) for x in re.findall(r"\d+", m[3])]
        n_gpus = sum(1 for x in split if x > 0) if split else 1
        name = {"cuda": "CUDA", "rocm": "ROCm", "metal": "Metal"}.get((lib[1] or lib[2]).lower(), "GPU")
        if key in offload:
            compute = tuple(Buffer(f"{name}{i}", False, offload[key]) for i in range(n_gpus))
    elif "memory.graph.full" in offload:
        compute = _one(offload, "memory.graph.full")
    return weights, kv, compute, notes


def _flags(cmd: str) -> dict[str, str]:
    """The runner flags of `starting llama server` (llm/server.go): --ctx-size, --parallel, ..."""
    out: dict[str, str] = {}
    words = cmd.split()
    for i, w in enumerate(words):
        if not w.startswith("--"):
            continue
        nxt = words[i + 1] if i + 1 < len(words) and not words[i + 1].startswith("--") else "true"
        out[w[2:]] = nxt
    flags = {
        k2: out[k1]
        for k1, k2 in (
            ("ctx-size", "ctx"),
            ("parallel", "parallel"),
            ("n-gpu-layers", "gpu_layers"),
            ("kv-cache-type", "kv_type"),
            ("flash-attn", "flash"),
            ("batch-size", "batch"),
        )
        if k1 in out
    }
    if "ctx-size" in out and "flash-attn" not in out:
        # the llama.cpp runner's command carries --flash-attn when Ollama enables it (llm/server.go,
        # up to v0.11; OLLAMA_FLASH_ATTENTION was off by default): without it, flash attention was off
        flags["flash"] = "false"
    return flags


def _request(req: str) -> dict[str, str]:
    """The fields of the runner's load request (runner/ollamarunner LoadRequest, printed with %+v)."""
    out: dict[str, str] = {}
    for key, name in (
        ("KvSize", "ctx"),
        ("Parallel", "parallel"),
        ("KvCacheType", "kv_type"),
        ("FlashAttention", "flash"),
    ):
        m = re.search(rf"\b{key}:(\S*)", req)
        if m and m[1]:
            out[name] = m[1]
    if m := re.search(r"\bGPULayers:(\d+)\[", req):
        out["gpu_layers"] = m[1]
    elif re.search(r"\bGPULayers:\[\]", req):
        out["gpu_layers"] = "0"
    return out


def _settings(
    s: Settings, cmd: dict[str, str], env: dict[str, str], gpu_name: str | None, gpu_total: Figure | None
) -> Settings:
    parallel = int(cmd["parallel"]) if cmd.get("parallel", "").isdigit() else s.parallel
    if (
        parallel is None
        and env.get("OLLAMA_NUM_PARALLEL", "").isdigit()
        and int(env["OLLAMA_NUM_PARALLEL"]) > 0
    ):
        parallel = int(env["OLLAMA_NUM_PARALLEL"])
    n_ctx = int(cmd["ctx"]) if cmd.get("ctx", "").isdigit() else s.n_ctx
    context = s.context
    if n_ctx is not None and parallel:
        context = n_ctx // parallel  # Ollama starts the runner with num_ctx x parallel (llm/server.go)
    kv_type = cmd.get("kv_type") or env.get("OLLAMA_KV_CACHE_TYPE") or None
    flash = s.flash_attn
    if "flash" in cmd:
        flash = cmd["flash"].lower() in ("true", "enabled", "1", "on")
    gpu_layers = int(cmd["gpu_layers"]) if cmd.get("gpu_layers", "").isdigit() else s.gpu_layers
    total = int(cmd["layers_total"]) if cmd.get("layers_total", "").isdigit() else s.layers_total
    gpus = int(cmd["gpus"]) if cmd.get("gpus", "").isdigit() else s.gpus
    return replace(
        s,
        context=context,
        n_ctx=n_ctx,
        parallel=parallel,
        type_k=s.type_k or kv_type,
        type_v=s.type_v or kv_type,
        kv_dtype=ggml_kv_dtype(s.type_k or kv_type),
        flash_attn=flash,
        gpu_layers=gpu_layers,
        layers_total=total,
        gpus=gpus,
        gpu_name=s.gpu_name or gpu_name,
        gpu_total=gpu_total,
    )
