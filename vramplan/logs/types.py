"""What a startup log states about memory, as plain data: sizes in bytes with the precision printed."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from vramplan.precision import KVDtype
from vramplan.runtimes import Runtime

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
_UNITS = {"B": 1, "KiB": KiB, "MiB": MiB, "GiB": GiB, "TiB": 1 << 40, "KB": KiB, "MB": MiB, "GB": GiB}


@dataclass(frozen=True)
class Figure:
    """A size as a log prints it: `bytes` rounded from the text, `resolution` one unit of its last digit."""

    bytes: int
    resolution: int  # bytes of one unit in the last printed digit (e.g. 0.01 MiB); 1 for exact counts
    text: str  # as printed, e.g. "448.00 MiB"
    line: int  # 1-based line number in the log


def figure(number: str, unit: str, line: int, *, binary_gb: bool = True) -> Figure:
    """`number` in `unit` as bytes. Every runtime here prints binary units, whatever it calls them:
    llama.cpp "MiB" (1024.0*1024.0), vLLM "GiB" (`format_gib`, 2**30), Ollama "GiB"/"MiB"
    (format.HumanBytes2, 1024-based) and SGLang "GB" (srt/mem_cache/memory_pool.py:
    `GB = 1024 * 1024 * 1024`)."""
    if unit in ("KB", "MB", "GB") and not binary_gb:  # pragma: no cover - no runtime here prints SI units
        raise ValueError(unit)
    scale = _UNITS[unit]
    decimals = len(number.split(".")[1]) if "." in number else 0
    value = float(number)
    return Figure(round(value * scale), max(1, round(scale / 10**decimals)), f"{number} {unit}", line)


SIZE_RE = r"(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>B|KiB|MiB|GiB|TiB|KB|MB|GB)"


def parse_size(text: str, line: int) -> Figure | None:
    m = re.fullmatch(r"\s*" + SIZE_RE + r"\s*", text)
    return figure(m["num"], m["unit"], line) if m else None


@dataclass(frozen=True)
class Buffer:
    """One allocation the log reports: which device holds it and how big it is."""

    device: str  # as the log names it: CUDA0, CPU_Mapped, CUDA_Host, "rank 0", "TP0"
    host: bool  # host memory (CPU buffers, pinned CUDA_Host buffers)
    figure: Figure


@dataclass(frozen=True)
class Settings:
    """The settings a log states (None: not stated)."""

    context: int | None = None  # tokens per sequence: max_seq_len, context_len, n_ctx_seq, num_ctx
    n_ctx: int | None = None  # llama.cpp: cells across all sequences (-c)
    parallel: int | None = None  # sequences: n_seq_max / --parallel / OLLAMA_NUM_PARALLEL
    max_running_requests: int | None = None  # SGLang / vLLM max_num_seqs
    type_k: str | None = None  # llama.cpp cache types as printed (f16, q8_0)
    type_v: str | None = None
    kv_cache_dtype: str | None = None  # vLLM / SGLang kv_cache_dtype (auto, fp8, fp8_e4m3, bf16)
    # the KV cache type above (type_k, or kv_cache_dtype) in vramplan's terms, mapped by the reader from its
    # runtime's names (GGML_KV_TYPES, TORCH_KV_TYPES); None: not stated, or a name vramplan does not model
    kv_dtype: KVDtype | None = None
    tp: int | None = None
    pp: int | None = None
    gpu_memory_utilization: float | None = None
    mem_fraction_static: float | None = None
    # SGLang (ServerArgs, or the launch_server command line when the log has no ServerArgs line)
    dp: int | None = None  # dp_size / --dp (data parallel attention replicas with enable_dp_attention)
    dp_attention: bool | None = None  # enable_dp_attention
    nnodes: int | None = None  # nnodes / --nnodes (TP spanning several nodes)
    max_total_tokens: int | None = None  # max_total_tokens / --max-total-tokens (caps the KV pool)
    chunked_prefill_size: int | None = None  # ServerArgs or the scheduler's max_total_num_tokens line
    cuda_graph_max_bs: int | None = None
    block_size: int | None = None
    # vLLM: --max-num-batched-tokens and --enforce-eager as the engine config / args state them
    max_num_batched_tokens: int | None = None
    enforce_eager: bool | None = None
    # vLLM: False when it printed "Custom allreduce is disabled because your platform lacks GPU P2P
    # capability" (custom_all_reduce.py): the GPUs talk over PCIe without P2P, whatever the card's spec
    p2p: bool | None = None
    dtype: str | None = None  # model dtype (torch.bfloat16)
    quantization: str | None = None  # vLLM/SGLang quantization=; llama.cpp "file type"
    gpu_name: str | None = None  # the GPU's name as the log prints it
    gpu_total: Figure | None = None  # one GPU's total memory, when the log states it
    flash_attn: bool | None = None
    gpu_layers: int | None = None  # llama.cpp layers offloaded to GPUs
    layers_total: int | None = None  # llama.cpp offloadable layers (n_layer + output)
    n_ubatch: int | None = None
    n_batch: int | None = None  # llama.cpp logical batch (-b), `n_batch = N`
    kv_unified: bool | None = None  # llama.cpp `kv_unified = true|false` (printed since mid-2025): one
    # KV stream that all n_seq_max sequences share (llama-server's default with auto --parallel)
    n_outputs_max: int | None = None  # llama.cpp `n_outputs_max = N` (newest builds): logits rows reserved
    pipeline_copies: int | None = None  # llama.cpp `pipeline parallelism enabled (n_copies=N)`
    gpu_repeating_layers: int | None = None  # llama.cpp `offloading N repeating layers to GPU`
    output_on_gpu: bool | None = None  # llama.cpp printed `offloading output layer to GPU` (False: the
    # offload summary without it; which layers -ngl N puts where changed between builds, the log says it)
    cpu_moe_blocks: tuple[int, ...] | None = None  # llama.cpp blocks whose routed experts a tensor
    # override (-ot / --n-cpu-moe) put in host memory: `tensor blk.N.ffn_*_exps.weight ... overridden to CPU`
    cells: int | None = None  # llama.cpp KV cells per stream, from the KV size line
    streams: int | None = None
    gpus: int | None = None  # GPUs the log says it planned for (Ollama's offload line)
    v_cache_empty: bool | None = None  # llama.cpp printed "V (f16): 0.00 MiB" (an MLA latent-only cache)
    k_cache: Figure | None = None  # llama.cpp's K part of the KV size line ("K (f16): 1098.00 MiB")
    kv_layers: int | None = (
        None  # llama.cpp layers with a KV cache (the size line's `L layers`, `n_layer = L`)
    )


@dataclass(frozen=True)
class ParsedLog:
    """The memory lines of one runtime's startup log. Lists of buffers hold one entry per device and
    allocation as the log prints them (per rank for vLLM / SGLang, which log on every worker)."""

    runtime: Runtime
    version: str | None = None
    model: str | None = None  # the model as the log names it: an HF id, a path, or general.name
    settings: Settings = field(default_factory=Settings)
    weights: tuple[Buffer, ...] = ()
    kv: tuple[Buffer, ...] = ()
    compute: tuple[Buffer, ...] = ()
    kv_tokens: int | None = None  # vLLM "GPU KV cache size: N tokens"; SGLang "#tokens: N"
    kv_available: Figure | None = None  # vLLM "Available KV cache memory" (per GPU)
    # SGLang: "Load weight begin. avail mem=X GB" per rank (free memory before the weights)
    avail_before_weights: tuple[Buffer, ...] = ()
    # CUDA-graph memory per rank: SGLang "Capture cuda graph end. ... mem usage=X GB", vLLM "Graph capturing
    # finished in N secs, took X GiB" (or V1's "X GiB for CUDAGraph memory")
    cuda_graph: tuple[Buffer, ...] = ()
    kv_from_avail: bool = False  # SGLang: the KV pool is "Load weight end" - "Memory pool end" avail mem
    max_concurrency: float | None = None  # vLLM "Maximum concurrency for L tokens per request: Xx"
    concurrency_len: int | None = None  # the L of that line
    # vLLM: what the memory profiler printed besides the pool, per GPU (rank 0's, or the first printed)
    non_torch: Figure | None = None  # V0 "non_torch_memory takes X GiB" (NCCL, CUDA context growth)
    activation_peak: Figure | None = None  # V0 "PyTorch activation peak memory takes X GiB"
    usable: Figure | None = None  # V0 "... x gpu_memory_utilization (U) = X GiB": total x U
    kv_blocks: int | None = None  # V0 / early V1 "# GPU blocks: N" ("# CUDA blocks" in 0.7-0.8)
    kv_tokens_from: str | None = None  # which line gave kv_tokens: "size", "blocks", "refusal"
    # vLLM: "V0" / "V1" by the lines printed (V0 was removed in v0.11). Ollama: which runner loaded the
    # model, from its command line (llm/server.go): "ollama" (the Go engine, `--ollama-engine`), "llama"
    # (the llama.cpp runner). None: not printed.
    engine: str | None = None
    # a log without its version: the first release that no longer printed one of its lines as it is
    # printed here (SGLang "Load weight end." without "elapsed=": before 0.5), so `check` can take the
    # rules of the last releases before it. None: no bound known.
    printed_before: str | None = None
    file_size: Figure | None = None  # llama.cpp "file size" of the GGUF
    build_commit: str | None = None  # llama.cpp `build: N (commit)`: the commit beside the build number
    repacked: tuple[Buffer, ...] = ()  # llama.cpp CPU repack buffers (CPU_AARCH64, CPU_REPACK, AMX, ...):
    # copies of tensors in the layout the CPU kernels want, beside the mapped file (not in `weights`)
    hparams: tuple[tuple[str, str], ...] = ()  # llama.cpp print_info key / value pairs
    planner: bool = False  # the figures are Ollama's own prediction ("offload" line), not allocations
    date: str | None = None  # the date (YYYY-MM-DD) of the log's first timestamp, where it prints one
    # the oldest and newest release (None: open) whose line formats match the log's (Ollama: the
    # planner's wording); with `date`, it bounds the version of a log that does not print one
    format_versions: tuple[str | None, str | None] = (None, None)
    notes: tuple[str, ...] = ()

    @property
    def has_memory_lines(self) -> bool:
        return bool(self.weights or self.kv or self.compute or self.kv_available or self.kv_tokens)

    def hparam(self, key: str) -> str | None:
        for k, v in self.hparams:
            if k == key:
                return v
        return None


# ggml's cache type names (llama.cpp `--cache-type-k/-v`, Ollama's OLLAMA_KV_CACHE_TYPE) that vramplan models
GGML_KV_TYPES = {"f16": KVDtype.FP16, "bf16": KVDtype.BF16, "q8_0": KVDtype.Q8_0, "q4_0": KVDtype.Q4_0}
# vLLM's `CacheDType` (vllm/config/cache.py) and SGLang's `--kv-cache-dtype` names, and torch dtype names
TORCH_KV_TYPES = {
    "auto": KVDtype.AUTO,
    "fp8": KVDtype.FP8,
    "fp8_e4m3": KVDtype.FP8,
    "fp8_e5m2": KVDtype.FP8,
    "bf16": KVDtype.BF16,
    "bfloat16": KVDtype.BF16,
    "fp16": KVDtype.FP16,
    "float16": KVDtype.FP16,
    "half": KVDtype.FP16,
}


def ggml_kv_dtype(name: str | None) -> KVDtype | None:
    return None if name is None else GGML_KV_TYPES.get(name.strip().lower())


def torch_kv_dtype(name: str | None) -> KVDtype | None:
    return None if name is None else TORCH_KV_TYPES.get(name.strip().lower().replace("torch.", ""))


def any_of(*patterns: re.Pattern[str]) -> re.Pattern[str]:
    """One pattern matching where any of `patterns` does (their group names dropped, so they may repeat)."""
    return re.compile("|".join(re.sub(r"\(\?P<\w+>", "(?:", p.pattern) for p in patterns))
