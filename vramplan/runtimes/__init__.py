"""What each runtime allocates: one rules object per runtime and version, looked up in one registry.

`rules_for(runtime, version)` gives the `Rules` of vLLM, SGLang, llama.cpp (llama-server) or Ollama at a
version (None: current releases): KV cells and layout, KV dtype, batch shape, activation / compute
buffer, overhead, usable memory, KV pool and defaults. Each version-dependent value is a `Versioned`
table of (since, value, source) rows in its runtime's module. This package is the only place that
branches on the runtime for a memory rule; the shared types (Runtime, KVLayout, KVShape, Cells, Device,
BatchShape) and the layout arithmetic live in `types`. Every rule names the source it follows; the
modelled terms say how they were derived in their docstrings and in docs/estimation.md.
"""

from __future__ import annotations

from vramplan.arch import Architecture
from vramplan.precision import KVDtype, WeightFormat
from vramplan.runtimes.base import PlanFlags, Rules, RunSettings
from vramplan.runtimes.llamacpp import (
    LLAMA_CPP_CTX_PAD,
    LLAMA_CPP_UBATCH,
    LlamaCppRules,
    compute_buffer_ggml,
)
from vramplan.runtimes.ollama import OllamaRules
from vramplan.runtimes.sglang import SGLangRules, sglang_reserved_bytes
from vramplan.runtimes.types import (
    BatchShape,
    Cells,
    Device,
    GiB,
    KVLayout,
    KVShape,
    MiB,
    Runtime,
    kv_heads_per_rank,
    kv_layer_bytes,
    kv_shape,
)
from vramplan.runtimes.version import Version, Versioned, parse_version
from vramplan.runtimes.vllm import (
    SAMPLER_COPIES,
    VLLM_BLOCK,
    VLLM_MLA_BLOCK,
    VLLMRules,
    activation_bytes_torch,
    vllm_block_size,
    vllm_cudagraph_bytes,
    vllm_non_torch_bytes,
)

__all__ = [
    "LLAMA_CPP_CTX_PAD",
    "LLAMA_CPP_UBATCH",
    "SAMPLER_COPIES",
    "VLLM_BLOCK",
    "VLLM_GPU_MEMORY_UTILIZATION",
    "VLLM_MLA_BLOCK",
    "BatchShape",
    "Cells",
    "Device",
    "GiB",
    "KVLayout",
    "KVShape",
    "LlamaCppRules",
    "MiB",
    "OllamaRules",
    "PlanFlags",
    "Rules",
    "RunSettings",
    "Runtime",
    "SGLangRules",
    "VLLMRules",
    "Version",
    "Versioned",
    "activation_bytes_torch",
    "compute_buffer_ggml",
    "default_context",
    "kv_cells",
    "kv_heads_per_rank",
    "kv_layer_bytes",
    "kv_layout",
    "kv_shape",
    "parse_version",
    "resolve_kv_dtype",
    "rules_for",
    "sglang_reserved_bytes",
    "usable_fraction",
    "vllm_block_size",
    "vllm_cudagraph_bytes",
    "vllm_non_torch_bytes",
]

_RULES: dict[Runtime, type[Rules]] = {
    Runtime.VLLM: VLLMRules,
    Runtime.SGLANG: SGLangRules,
    Runtime.LLAMA_CPP: LlamaCppRules,
    Runtime.OLLAMA: OllamaRules,
}
_BOUND: dict[tuple[Runtime, str | None], Rules] = {}


def rules_for(runtime: Runtime, version: Version | str | None = None) -> Rules:
    """The rules of `runtime` at `version` (a `Version` or the runtime's own spelling of one; None or
    a version that cannot be read: current releases). Bound once per runtime and version."""
    text = version.text if isinstance(version, Version) else version
    key = (runtime, text)
    found = _BOUND.get(key)
    if found is None:
        parsed = version if isinstance(version, Version) else parse_version(version)
        found = _BOUND[key] = _RULES[runtime](parsed)
    return found


# ----------------------------------------------------------------------------- current releases
# The answers of `rules_for(runtime)` under the names the rules had before the registry.

# vLLM's default --gpu-memory-utilization in current releases
VLLM_GPU_MEMORY_UTILIZATION = VLLMRules().gpu_memory_utilization


def kv_layout(arch: Architecture, runtime: Runtime, gguf_mla: bool | None) -> KVLayout:
    return rules_for(runtime).kv_layout(arch, gguf_mla)


def resolve_kv_dtype(runtime: Runtime, requested: KVDtype, weight_format: WeightFormat) -> KVDtype:
    return rules_for(runtime).resolve_kv_dtype(requested, weight_format)


def kv_cells(runtime: Runtime, context: int, concurrency: int, block: int = VLLM_BLOCK) -> Cells:
    return rules_for(runtime).kv_cells(context, concurrency, block)


def default_context(runtime: Runtime, arch: Architecture, gpu_total_bytes: int | None) -> int:
    return rules_for(runtime).default_context(arch, gpu_total_bytes)


def usable_fraction(runtime: Runtime, override: float | None = None) -> float:
    return rules_for(runtime).usable_fraction(override)
