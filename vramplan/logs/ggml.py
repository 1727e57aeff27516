"""llama.cpp and llama-server startup logs (also the llama.cpp lines inside Ollama's server log).

Line formats, by the llama.cpp function that prints them (ggml-org/llama.cpp; as vendored by
llama-cpp-python 0.3.36 unless said otherwise):

- `load_tensors: CUDA0 model buffer size = X MiB` (src/llama-model.cpp `load_tensors`); before
  early 2025 `llm_load_tensors: CUDA0 buffer size = X MiB` (and `CPU_Mapped model buffer size`).
- `llama_kv_cache: CUDA0 KV buffer size = X MiB` and `llama_kv_cache: size = X MiB (N cells, L layers,
  S/T seqs), K (f16): X MiB, V (f16): Y MiB` (src/llama-kv-cache.cpp); earlier `llama_kv_cache_unified:`
  and `llama_kv_cache_init: CUDA0 KV buffer size`, with `... KV self size = X MiB, K (f16): ..., V (f16): ...`
  printed by `llama_new_context_with_model` / `llama_init_from_model` / `llama_context`.
- `sched_reserve: CUDA0 compute buffer size = X MiB` (src/llama-context.cpp); earlier printed by
  `llama_context:`, `llama_init_from_model:` or `llama_new_context_with_model:`.
- `llama_context: n_ctx = N`, `n_ctx_seq` (`n_ctx_per_seq` before mid-2025), `n_seq_max`, `n_ubatch`,
  `flash_attn = auto|enabled|disabled` (`1`/`0` before); `... Flash Attention enabled` when auto resolves.
- `print_info: KEY = VALUE` (src/llama-model.cpp `print_info`, src/llama-vocab.cpp `n_vocab`,
  src/llama-model-loader.cpp `file type` / `file size = X GiB (B BPW)`); `llm_load_print_meta:` before
  early 2025 (`model ftype` and `model size` there).
- `load_tensors: offloaded N/M layers to GPU`; `using device CUDA0 (NAME) ... - F MiB free`
  (src/llama.cpp); `Device 0: NAME, compute capability X.Y` (ggml/src/ggml-cuda/ggml-cuda.cu).
- llama-server: `srv load_model: initializing, n_slots = P, n_ctx_slot = C` (tools/server/server-context.cpp);
  older servers printed `initializing slots, n_slots = P` and `new slot ... n_ctx_slot=C` once per slot;
  the newest print `main: setting n_parallel = 4 and kv_unified = true` when --parallel is left on auto.

Format variants read beside those (each seen in a published log of tests/fixtures/logs/real/llamacpp/):
- `init:` as the prefix of the KV lines (`init: kv_size = ...`, `init:        CPU KV buffer size = ...`):
  b4905 and b4963 in this corpus (Mar 2025, after the llama_context refactor), between
  `llama_kv_cache_init:` and `llama_kv_cache_unified:`.
- `llama_kv_cache_unified: size = ... (131072 cells,  36 layers,  1/ 1 seqs)`: a space after the slash.
- `llama_context: kv_unified    = true|false` (mid-2025 on), `n_batch`, `n_outputs_max` (newest).
- Device names of every backend: CUDAn, ROCmn, Vulkann, SYCLn, MTLn / Metal (Apple; `Metal_Mapped`,
  `MTL0_Mapped` under mmap), with `*_Host` pinned buffers; the CUDA/ROCm device line
  (`Device 0: NAME, compute capability 8.9` / `Device 0: NAME, gfx1100 (0x1100)`),
  `ggml_vulkan: 0 = NAME (...)`, `ggml_metal_init: GPU name:   NAME`, and
  `using device SYCL0 (Intel(R) Arc(TM) Graphics) - N MiB free` (a name with parentheses).
- CPU repack buffers: `CPU_AARCH64` (early 2025), `CPU_REPACK` (later), `AMX`, `CPU_KLEIDIAI`: copies of
  the tensors the CPU kernels repack, allocated beside the `CPU_Mapped` ranges that map the file; they are
  kept apart (`ParsedLog.repacked`), as adding both would count those tensors twice.
- Tensor overrides (-ot / --cpu-moe / --n-cpu-moe; not printed by the PR 11397 branch of Feb-Mar 2025):
  `tensor blk.N.ffn_up_exps.weight (134 MiB q4_K) buffer type overridden to CPU` (or CPU_REPACK, CUDA_Host).
- `pipeline parallelism enabled (n_copies=4)`: the scheduler keeps 4 copies of the compute graph's inputs.
- `flash_attn requires n_embd_head_k == n_embd_head_v - forcing off` (deepseek2 before MLA + FA support).
- Layer placement: `offloading N repeating layers to GPU` and `offloading output layer to GPU` (before
  2024 `offloading non-repeating layers`). With -ngl k < n_layer + 1, builds of 2025 (b4568 and ~b5900 in
  this corpus) put the last k blocks on the GPU and kept the output layer on the CPU
  (llama-model.cpp `i_gpu_start = max(n_layer - n_gpu_layers, 0)`); later builds put the output layer
  first and the last k - 1 blocks (`i_gpu_start = max(n_layer + 1 - n_gpu_layers, 0)`); the two lines say
  which.
"""

from __future__ import annotations

import re

from vramplan.logs.types import Buffer, Figure, ParsedLog, Settings, any_of, figure, ggml_kv_dtype
from vramplan.runtimes import Runtime

_NUM = r"(?P<num>\d+(?:\.\d+)?) (?P<unit>MiB|GiB)"
RE_MODEL_BUF = re.compile(r"\b(?:llm_)?load_tensors:\s+(?P<dev>\S+)\s+(?:model\s+)?buffer size\s*=\s*" + _NUM)
# `init:` is the KV prefix of the March 2025 builds (the __func__ of the KV cache's init method)
_KV_PREFIX = r"(?:\bllama_kv_cache\w*|(?<![\w.])init):"
RE_KV_BUF = re.compile(_KV_PREFIX + r"\s+(?P<dev>\S+)\s+KV buffer size\s*=\s*" + _NUM)
RE_KV_SIZE = re.compile(
    r"\bllama_kv_cache\w*: size =\s*" + _NUM + r" \(\s*(?P<cells>\d+) cells,\s*(?P<layers>\d+) layers,"
    r"\s*(?P<seqs>\d+)(?:/\s*(?P<streams>\d+))? seqs\), "
    r"K \((?P<tk>\w+)\):\s*(?P<k>[\d.]+) MiB, V \((?P<tv>\w+)\):\s*(?P<v>[\d.]+) MiB"
)
RE_KV_SELF = re.compile(
    r"\b\w+: KV self size\s*=\s*"
    + _NUM
    + r", K \((?P<tk>\w+)\):\s*(?P<k>[\d.]+) MiB, V \((?P<tv>\w+)\):\s*(?P<v>[\d.]+) MiB"
)
# The MLA cache line of the DeepSeek MLA branch of llama.cpp PR 11446 (early 2025, not merged; the
# ik_llama.cpp fork prints the same `c^KV (type)` part): `KV self size = X MiB, K^R (f16): Y MiB,
# c^KV (f16): Z MiB` -- a latent-only cache (no V part), printed after the standard cache's line.
RE_KV_SELF_MLA = re.compile(
    r"\b\w+: KV self size\s*=\s*" + _NUM + r",(?: K\^R \(\w+\):\s*[\d.]+ MiB,)? c\^KV \((?P<tk>\w+)\):"
)
RE_KV_INIT = re.compile(
    _KV_PREFIX + r" kv_size = (?P<cells>\d+),.*?type_k = '(?P<tk>\w+)', type_v = '(?P<tv>\w+)'"
    r"(?:, n_layer = (?P<layers>\d+))?"
)
RE_COMPUTE = re.compile(r"\b\w+:\s+(?P<dev>\S+)\s+compute buffer size\s*=\s*" + _NUM)
RE_CTX = re.compile(
    r"\b(?:llama_context|llama_new_context_with_model|llama_init_from_model): "
    r"(?P<key>n_ctx|n_ctx_seq|n_ctx_per_seq|n_seq_max|n_batch|n_ubatch|flash_attn|kv_unified|n_outputs_max)"
    r"\s*= (?P<val>\S+)"
)
RE_FA_RESOLVED = re.compile(
    r"Flash Attention (?:was auto, set to )?(?P<v>enabled|disabled)|Flash Attention not supported"
    r"|flash_attn requires .* - forcing off"
)
RE_INFO = re.compile(r"\b(?:print_info|llm_load_print_meta): (?P<key>[\w.]+(?: \w+)?)\s*= (?P<val>.*?)\s*$")
RE_REPEATING = re.compile(r"\b(?:llm_)?load_tensors: offloading (?P<n>\d+) repeating layers to GPU")
RE_OUTPUT_OFFLOAD = re.compile(r"\b(?:llm_)?load_tensors: offloading (?:output|non-repeating) layers? to GPU")
RE_OFFLOADED = re.compile(r"\b(?:llm_)?load_tensors: offloaded (?P<n>\d+)/(?P<m>\d+) layers to GPU")
# the name may hold parentheses ("Intel(R) Arc(TM) Graphics"); newer builds add the PCI id in parentheses
RE_USING_DEVICE = re.compile(
    r"using device (?P<dev>\S+) \((?P<name>.+?)\)(?: \([0-9A-Fa-f:.]+\))? - \d+ MiB free"
)
# CUDA `compute capability 8.9`; ROCm/HIP `gfx1100 (0x1100)` (ggml/src/ggml-cuda/ggml-cuda.cu)
RE_CUDA_DEVICE = re.compile(r"\bDevice \d+: (?P<name>[^,]+), (?:compute capability|gfx)")
RE_VULKAN_DEVICE = re.compile(r"\bggml_vulkan: \d+ = (?P<name>.+?) \(")
RE_METAL_DEVICE = re.compile(r"\bggml_metal_init: GPU name:\s+(?P<name>.+?)\s*$")
RE_SERVER_SLOTS = re.compile(r"initializing, n_slots = (?P<n>\d+), n_ctx_slot = (?P<c>\d+)")
RE_SERVER_SLOTS_OLD = re.compile(r"initializing slots, n_slots = (?P<n>\d+)")
# common/common.cpp `common_init_from_params` prints llama_n_ctx() here (llama-cli / llama-server, since
# the DRY sampler, mid-2024): the context when an excerpt starts after the context lines.
RE_DRY_CTX = re.compile(r"\bsetting dry_penalty_last_n to ctx_size = (?P<n>\d+)")
RE_AUTO_PARALLEL = re.compile(r"setting n_parallel = (?P<n>\d+) and kv_unified = (?P<u>true|false)")
RE_PIPELINE = re.compile(r"pipeline parallelism enabled \(n_copies=(?P<n>\d+)\)")
RE_OVERRIDE = re.compile(
    r"\btensor blk\.(?P<blk>\d+)\.ffn_\w+_exps\.weight .*buffer type overridden to (?P<buf>\S+)"
)
RE_OLD_SLOT = re.compile(r"new slot\b.*?n_ctx_slot\s*=\s*(?P<c>\d+)")
RE_GENERAL_NAME = re.compile(r"llama_model_loader: - kv\s+\d+:\s+general\.name\s+str\s+= (?P<name>.+?)\s*$")
RE_LOADED_FROM = re.compile(r"llama_model_loader: loaded meta data .* from (?P<path>\S+)")
RE_BUILD = re.compile(r"^(?:.*\s)?build: (?P<v>\d+) \((?P<sha>[0-9a-f]+)\)")
RE_FILE_SIZE = re.compile(r"^" + _NUM)

# A fresh llama.cpp process: the CUDA backend's first line (ggml/src/ggml-cuda/ggml-cuda.cu) and the
# build line common_init prints (common/common.cpp). A log holding several startups is read from the last.
# Line prefixes llama.cpp renamed long before it made flash attention the default (PR 15434, build
# b6325, 2025-08-30): `llm_load_*` became `load_tensors:` / `print_info:` (January 2025),
# `llama_new_context_with_model:` became `llama_init_from_model:` and then `llama_context:`, and
# `llama_kv_cache_init:` went with the KV cache refactor (March 2025, PR 12181). A log that prints them
# comes from a build before b6325 (`ParsedLog.printed_before`).
OLD_PREFIXES_BEFORE = "6325"
RE_OLD_PREFIX = re.compile(
    r"\b(?:llm_load_\w+|llama_new_context_with_model|llama_init_from_model|llama_kv_cache_init):"
)
START = re.compile(r"\bggml_cuda_init:|" + RE_BUILD.pattern.removeprefix("^"))
MEMORY = any_of(RE_MODEL_BUF, RE_KV_BUF, RE_KV_SIZE, RE_KV_SELF, RE_COMPUTE)

# The context constructor's prefixes too (`llama_new_context_with_model:` to late 2024,
# `llama_init_from_model:` b4500-b4880, `llama_context:` since): an excerpt may start at "KV self size".
MARKERS = (
    "load_tensors:",
    "llama_kv_cache",
    "print_info:",
    "llm_load_print_meta:",
    "llama_model_loader:",
    "llama_new_context_with_model:",
    "llama_init_from_model:",
    "llama_context:",
)


# CPU "extra" buffer types that hold repacked copies of weights (ggml/src/ggml-cpu: repack.cpp names its
# type CPU_REPACK, CPU_AARCH64 before the 2025 rename; amx/amx.cpp "AMX"; kleidiai "CPU_KLEIDIAI")
REPACK_BUFFERS = ("CPU_AARCH64", "CPU_REPACK", "AMX", "CPU_KLEIDIAI")


def is_host_buffer(name: str) -> bool:
    """Host memory: the CPU buffer types (CPU, CPU_Mapped, CPU_REPACK, AMX, ...) and pinned `*_Host`
    buffers (CUDA_Host, Vulkan_Host, SYCL_Host)."""
    return name.upper().startswith("CPU") or name.endswith("_Host") or name in REPACK_BUFFERS


def _fig(m: re.Match[str], line: int) -> Figure:
    return figure(m["num"], m["unit"], line)


def parse(text: str, runtime: Runtime = Runtime.LLAMA_CPP) -> ParsedLog:
    weights: list[Buffer] = []
    repacked: list[Buffer] = []
    kv: list[Buffer] = []
    compute: list[Buffer] = []
    kv_self: Figure | None = None
    info: dict[str, str] = {}
    ctx: dict[str, str] = {}
    s: dict[str, object] = {}
    fa_resolved: bool | None = None
    model: str | None = None
    loaded_from: str | None = None
    version: str | None = None
    commit: str | None = None
    gpu_name: str | None = None
    slots_old = 0
    moe_host: set[int] = set()
    for no, line in enumerate(text.splitlines(), 1):
        if m := RE_MODEL_BUF.search(line):
            buf = Buffer(m["dev"], is_host_buffer(m["dev"]), _fig(m, no))
            (repacked if m["dev"] in REPACK_BUFFERS else weights).append(buf)
        elif m := RE_KV_BUF.search(line):
            kv.append(Buffer(m["dev"], is_host_buffer(m["dev"]), _fig(m, no)))
        elif m := RE_KV_SIZE.search(line):
            streams = int(m["streams"]) if m["streams"] else None
            s.update(cells=int(m["cells"]), streams=streams, type_k=m["tk"], type_v=m["tv"])
            s.update(
                v_empty=float(m["v"]) == 0, k_cache=figure(m["k"], "MiB", no), kv_layers=int(m["layers"])
            )
            kv_self = _fig(m, no)
        elif m := RE_KV_SELF.search(line):
            s.update(
                type_k=m["tk"], type_v=m["tv"], v_empty=float(m["v"]) == 0, k_cache=figure(m["k"], "MiB", no)
            )
            kv_self = _fig(m, no)
            s["kv_self_bytes"] = kv_self.bytes
        elif m := RE_KV_SELF_MLA.search(line):
            s.update(type_k=m["tk"], type_v=m["tk"], v_empty=True)
            kv_self = _fig(m, no)
        elif m := RE_KV_INIT.search(line):
            s.update(cells=int(m["cells"]), type_k=m["tk"], type_v=m["tv"])
            if m["layers"]:
                s.setdefault("kv_layers", int(m["layers"]))
        elif m := RE_COMPUTE.search(line):
            compute.append(Buffer(m["dev"], is_host_buffer(m["dev"]), _fig(m, no)))
        elif m := RE_CTX.search(line):
            ctx.setdefault(m["key"], m["val"])
        elif m := RE_INFO.search(line):
            info.setdefault(m["key"].strip(), m["val"])
            if m["key"] in ("file size", "model size") and (fm := RE_FILE_SIZE.match(m["val"])):
                s["file_size"] = _fig(fm, no)
        elif m := RE_OFFLOADED.search(line):
            s.update(gpu_layers=int(m["n"]), layers_total=int(m["m"]))
            s.setdefault("output_gpu", False)
        elif m := RE_REPEATING.search(line):
            s["repeating"] = int(m["n"])
        elif m := RE_OUTPUT_OFFLOAD.search(line):
            s["output_gpu"] = True
        elif m := RE_OVERRIDE.search(line):
            if is_host_buffer(m["buf"]):
                moe_host.add(int(m["blk"]))
        elif m := RE_USING_DEVICE.search(line):
            gpu_name = gpu_name or m["name"]
        elif m := (
            RE_CUDA_DEVICE.search(line) or RE_VULKAN_DEVICE.search(line) or RE_METAL_DEVICE.search(line)
        ):
            gpu_name = gpu_name or m["name"].strip()
        elif m := RE_SERVER_SLOTS.search(line):
            s.update(slots=int(m["n"]), slot_ctx=int(m["c"]))
        elif m := RE_SERVER_SLOTS_OLD.search(line):
            s.setdefault("slots", int(m["n"]))
        elif m := RE_DRY_CTX.search(line):
            s.setdefault("dry_ctx", int(m["n"]))
        elif m := RE_AUTO_PARALLEL.search(line):
            s.update(slots=int(m["n"]), unified=m["u"] == "true")
        elif m := RE_PIPELINE.search(line):
            s["copies"] = int(m["n"])
        elif m := RE_OLD_SLOT.search(line):
            slots_old += 1
            s["slot_ctx"] = int(m["c"])
        elif m := RE_GENERAL_NAME.search(line):
            model = model or m["name"]
        elif m := RE_LOADED_FROM.search(line):
            loaded_from = loaded_from or m["path"]
        elif m := RE_BUILD.match(line):
            version = version or m["v"]
            commit = commit or m["sha"]
        if m := RE_FA_RESOLVED.search(line):
            fa_resolved = m["v"] == "enabled" if m["v"] else False
    if not kv and kv_self is not None:
        kv.append(Buffer("all devices", False, kv_self))  # versions without per-buffer lines
    model = info.get("general.name", model) or _basename(loaded_from)
    if moe_host:
        s["moe_host"] = tuple(sorted(moe_host))
    settings = _settings(ctx, info, s, fa_resolved, gpu_name, slots_old)
    notes = []
    if (
        any(b.figure.bytes == 0 for b in weights)
        and kv_self
        and kv_self.bytes
        and kv
        and not kv[0].figure.bytes
    ):
        notes.append("the buffer lines read 0.00 MiB: llama.cpp ran in its sizing-only (no_alloc) mode")
    if repacked:
        names = ", ".join(dict.fromkeys(b.device for b in repacked))
        total = sum(b.figure.bytes for b in repacked) / (1 << 30)
        notes.append(
            f"{names} holds {total:.1f} GiB of weights repacked for the CPU kernels, beside the mapped "
            "file (CPU_Mapped) that also spans them: host RAM holds both while the file stays cached; "
            "the weights compared are the mapped and GPU buffers"
        )
    return ParsedLog(
        runtime=runtime,
        version=version,
        model=model,
        settings=settings,
        weights=tuple(weights),
        kv=tuple(_kv_or_total(kv, kv_self)),
        compute=tuple(compute),
        file_size=s.get("file_size"),  # type: ignore[arg-type]
        build_commit=commit,
        repacked=tuple(repacked),
        hparams=tuple(info.items()),
        printed_before=OLD_PREFIXES_BEFORE if RE_OLD_PREFIX.search(text) else None,
        notes=tuple(notes),
    )


def _kv_or_total(kv: list[Buffer], total: Figure | None) -> list[Buffer]:
    """In sizing-only runs (no_alloc) the KV buffer lines read 0.00 MiB while the size line is real."""
    if total is not None and total.bytes and kv and all(b.figure.bytes == 0 for b in kv):
        return [Buffer("all devices", False, total)]
    return kv


def _basename(path: str | None) -> str | None:
    if not path:
        return None
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    if name.startswith("sha256-"):  # an Ollama blob: the file name says nothing about the model
        return None
    return name[:-5] if name.lower().endswith(".gguf") else name


def _int(v: str | None) -> int | None:
    return int(v) if v is not None and v.isdigit() else None


# bytes per element of the unquantized cache types (ggml.c type_traits)
_KV_ELEM_BYTES = {"f32": 4, "f16": 2, "bf16": 2}


def _cells_from_kv_self(info: dict[str, str], s: dict[str, object]) -> int | None:
    """n_ctx of a single-sequence excerpt that lost its context lines but kept `KV self size` and the
    print_info hyper-parameters: KV bytes = cells x n_layer x (n_embd_k_gqa x K size + n_embd_v_gqa x V
    size) (llama-kv-cache.cpp allocates one [n_embd_*_gqa, kv_size] tensor per layer). Unquantized
    caches only; None unless the division is exact."""
    kv_self = s.get("kv_self_bytes")
    k_size, v_size = _KV_ELEM_BYTES.get(str(s.get("type_k"))), _KV_ELEM_BYTES.get(str(s.get("type_v")))
    n_layer, k, v = (_int(info.get(key)) for key in ("n_layer", "n_embd_k_gqa", "n_embd_v_gqa"))
    if not (isinstance(kv_self, int) and k_size and v_size and n_layer and k and v):
        return None
    per_cell = n_layer * (k * k_size + v * v_size)
    return kv_self // per_cell if kv_self % per_cell == 0 else None


def _settings(
    ctx: dict[str, str],
    info: dict[str, str],
    s: dict[str, object],
    fa_resolved: bool | None,
    gpu_name: str | None,
    slots_old: int,
) -> Settings:
    n_ctx = _int(ctx.get("n_ctx"))
    if n_ctx is None and isinstance(s.get("cells"), int) and not s.get("streams"):
        n_ctx = s["cells"]  # type: ignore[assignment]  # kv_size = n_ctx when the context lines are cut off
    if n_ctx is None and isinstance(s.get("dry_ctx"), int):
        n_ctx = s["dry_ctx"]  # type: ignore[assignment]  # the `ctx_size = N` line of common_init_from_params
    if n_ctx is None:
        n_ctx = _cells_from_kv_self(info, s)
    n_seq = _int(ctx.get("n_seq_max")) or s.get("slots") or (slots_old or None)
    per_seq = _int(ctx.get("n_ctx_seq") or ctx.get("n_ctx_per_seq")) or s.get("slot_ctx")
    if per_seq is None and n_ctx is not None:
        # logs from before n_seq_max was printed (late 2024) ran one sequence
        per_seq = n_ctx // n_seq if isinstance(n_seq, int) else n_ctx
    unified = {"true": True, "false": False}.get(ctx.get("kv_unified", ""))
    if unified is None:
        unified = s.get("unified")  # type: ignore[assignment]
    fa_text = ctx.get("flash_attn")
    flash: bool | None = {"1": True, "0": False, "enabled": True, "disabled": False}.get(fa_text or "")
    if fa_resolved is not None:
        flash = fa_resolved
    return Settings(
        context=per_seq if isinstance(per_seq, int) else None,
        n_ctx=n_ctx,
        parallel=n_seq if isinstance(n_seq, int) else None,
        type_k=s.get("type_k"),  # type: ignore[arg-type]
        type_v=s.get("type_v"),  # type: ignore[arg-type]
        kv_dtype=ggml_kv_dtype(s.get("type_k")),  # type: ignore[arg-type]
        quantization=info.get("file type") or info.get("model ftype"),
        gpu_name=gpu_name,
        flash_attn=flash,
        gpu_layers=s.get("gpu_layers"),  # type: ignore[arg-type]
        layers_total=s.get("layers_total"),  # type: ignore[arg-type]
        n_ubatch=_int(ctx.get("n_ubatch")),
        n_batch=_int(ctx.get("n_batch")),
        kv_unified=unified,
        n_outputs_max=_int(ctx.get("n_outputs_max")),
        pipeline_copies=s.get("copies"),  # type: ignore[arg-type]
        gpu_repeating_layers=s.get("repeating"),  # type: ignore[arg-type]
        output_on_gpu=s.get("output_gpu"),  # type: ignore[arg-type]
        cpu_moe_blocks=s.get("moe_host"),  # type: ignore[arg-type]
        cells=s.get("cells"),  # type: ignore[arg-type]
        streams=s.get("streams"),  # type: ignore[arg-type]
        v_cache_empty=s.get("v_empty"),  # type: ignore[arg-type]
        k_cache=s.get("k_cache"),  # type: ignore[arg-type]
        kv_layers=s.get("kv_layers"),  # type: ignore[arg-type]
    )
