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
"""

from __future__ import annotations

import re
from dataclasses import replace

from vramplan.logs import ggml
from vramplan.logs.types import Buffer, Figure, ParsedLog, Settings, any_of, parse_size
from vramplan.runtimes import Runtime

RE_DEVICE_LINE = re.compile(
    r'msg="(?P<what>model weights|kv cache|compute graph)" device=(?P<dev>\S+) size="(?P<size>[^"]+)"'
)
RE_OFFLOAD = re.compile(r'msg=(?:"offload to \w+"|offload)\s.*memory\.required\.full=')
RE_KV = re.compile(r'(?P<key>memory\.[\w.]+)="(?P<val>[^"]*)"')
RE_CMD = re.compile(r'msg="starting llama server" cmd="(?P<cmd>[^"]*)"')
RE_LOAD_REQUEST = re.compile(r'msg=load request="\{(?P<req>[^}]*)\}')
RE_INFERENCE = re.compile(r'msg="inference compute"(?P<rest>.*)$')
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
MEMORY = any_of(RE_DEVICE_LINE, RE_OFFLOAD, ggml.MEMORY)
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


def parse(text: str) -> ParsedLog:
    base = ggml.parse(text, Runtime.OLLAMA)
    devices: dict[str, list[Buffer]] = {"model weights": [], "kv cache": [], "compute graph": []}
    offload: dict[str, Figure] = {}
    cmd: dict[str, str] = {}
    env: dict[str, str] = {}
    version = None
    gpu_name: str | None = None
    gpu_total: Figure | None = None
    for no, line in enumerate(text.splitlines(), 1):
        if m := RE_DEVICE_LINE.search(line):
            fig = parse_size(m["size"], no)
            if fig is not None:
                dev = m["dev"]
                devices[m["what"]].append(Buffer(dev, ggml.is_host_buffer(dev), fig))
        elif RE_OFFLOAD.search(line):
            offload = {}
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
        elif m := RE_VERSION.search(line):
            version = m["v"]
        for e in RE_ENV.finditer(line):
            env.setdefault(e["key"], e["val"])
    weights, kv, compute, planner = base.weights, base.kv, base.compute, False
    notes = list(base.notes)
    if not (weights or kv or compute) and any(devices.values()):
        weights = tuple(devices["model weights"])
        kv = tuple(devices["kv cache"])
        compute = tuple(devices["compute graph"])
    elif not (weights or kv or compute) and offload:
        planner = True
        weights = _one(offload, "memory.weights.total")
        kv = _one(offload, "memory.required.kv")
        compute = _one(offload, "memory.graph.full")
        notes.append(
            "this Ollama log has only its planner's offload line (llm/memory.go): the figures are Ollama's "
            "own prediction for the whole model (all layers, one device), not what the runner allocated"
        )
    settings = _settings(base.settings, cmd, env, gpu_name, gpu_total)
    return replace(
        base,
        version=version or base.version,
        settings=settings,
        weights=weights,
        kv=kv,
        compute=compute,
        planner=planner,
        notes=tuple(notes),
    )


def _one(values: dict[str, Figure], key: str) -> tuple[Buffer, ...]:
    return (Buffer("all devices", False, values[key]),) if key in values else ()


def _flags(cmd: str) -> dict[str, str]:
    """The runner flags of `starting llama server` (llm/server.go): --ctx-size, --parallel, ..."""
    out: dict[str, str] = {}
    words = cmd.split()
    for i, w in enumerate(words):
        if not w.startswith("--"):
            continue
        nxt = words[i + 1] if i + 1 < len(words) and not words[i + 1].startswith("--") else "true"
        out[w[2:]] = nxt
    return {
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
        flash_attn=flash,
        gpu_layers=gpu_layers,
        layers_total=total,
        gpus=gpus,
        gpu_name=s.gpu_name or gpu_name,
        gpu_total=gpu_total,
    )
