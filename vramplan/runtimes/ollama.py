"""Ollama's memory rules: llama.cpp's underneath, with Ollama's own context settings, KV cache types,
default context and logits rows."""

from __future__ import annotations

from typing import ClassVar

from vramplan.arch import Architecture
from vramplan.precision import KVDtype
from vramplan.runtimes.base import PlanFlags
from vramplan.runtimes.llamacpp import LlamaCppRules
from vramplan.runtimes.types import GiB, KVLayout, Runtime
from vramplan.runtimes.version import Version, Versioned, parse_version

# The context (num_ctx) Ollama uses without num_ctx / OLLAMA_CONTEXT_LENGTH: an int is a fixed default,
# "vram" the VRAM-based tiers below.
DEFAULT_CONTEXT: Versioned[str | int] = Versioned(
    "ollama default context",
    (
        None,
        2048,
        "ollama api/types.go DefaultOptions NumCtx 2048 (envconfig OLLAMA_CONTEXT_LENGTH 2048 from v0.5.13)",
    ),
    ("0.6.7", 4096, "ollama envconfig/config.go OLLAMA_CONTEXT_LENGTH default 4096 (v0.6.7)"),
    ("0.15.5", "vram", 'ollama server/routes.go "vram-based default context" (since v0.15.5)'),
)
# OLLAMA_NUM_PARALLEL's default: 0 is "auto": the scheduler tries 4 parallel sequences (num_ctx x 4 cells)
# and falls back to 1 when the model does not fit (server/sched.go `defaultParallel = 4`,
# pickBestFullFitByLibrary); 1 from v0.10.0.
DEFAULT_PARALLEL: Versioned[int] = Versioned(
    "ollama default parallel",
    (None, 0, "ollama envconfig/config.go OLLAMA_NUM_PARALLEL default 0, server/sched.go defaultParallel 4"),
    ("0.10.0", 1, "ollama envconfig/config.go OLLAMA_NUM_PARALLEL default 1 (v0.10.0)"),
)
AUTO_PARALLEL = 4  # server/sched.go `defaultParallel`
# Flash attention when OLLAMA_FLASH_ATTENTION is unset, as (on for every architecture, the architectures
# that are the exception). Up to v0.12.3 off (llm/server.go passes --flash-attn only with the variable
# set). From v0.12.4 the Go engine's list (fs/ggml/ggml.go `GGML.FlashAttention`: qwen3, qwen3moe, gpt-oss
# among others; deepseek2 never). From v0.13.4 the llama.cpp runner, which runs llama and qwen2
# (fs/ggml `OllamaEngineRequired` lists deepseek2 and qwen3 for the Go engine), gets llama.cpp's auto
# mode, on where the GPU supports it (commit bd6c1d6b4, "flash attn: add auto mode for llama engine").
# From v0.30.0 every GGUF model runs on llama-server with `--flash-attn auto` (llm/llama_server.go,
# commit 9db4bdbad, "use llama-server exclusively for GGML models").
FLASH_ATTENTION: Versioned[tuple[bool, tuple[str, ...]]] = Versioned(
    "ollama default flash attention",
    (None, (False, ()), "ollama llm/server.go: --flash-attn only with OLLAMA_FLASH_ATTENTION=1"),
    (
        "0.12.4",
        (False, ("gptoss", "gpt-oss", "qwen3", "qwen3moe")),
        "ollama fs/ggml/ggml.go GGML.FlashAttention",
    ),
    ("0.13.4", (True, ("deepseek2",)), "ollama llm/server.go FlashAttentionAuto for the llama.cpp runner"),
    ("0.30.0", (True, ()), "ollama llm/llama_server.go appendFlashAttentionArgs: --flash-attn auto"),
)
# The day of the commit each release that starts a row above (and the one before it) was tagged on (git
# tags of ollama/ollama): a log dated D comes from a release whose commit is dated on or before D.
RELEASE_DATES = (
    ("0.5.11", "2025-02-13"),
    ("0.5.12", "2025-02-23"),
    ("0.6.6", "2025-04-18"),
    ("0.6.7", "2025-04-30"),
    ("0.9.6", "2025-07-07"),
    ("0.10.0", "2025-07-30"),
    ("0.12.3", "2025-09-25"),
    ("0.12.4", "2025-10-09"),
    ("0.12.10", "2025-11-05"),
    ("0.12.11", "2025-11-13"),
    ("0.13.3", "2025-12-11"),
    ("0.13.4", "2025-12-15"),
    ("0.15.4", "2026-02-01"),
    ("0.15.5", "2026-02-05"),
    ("0.24.0", "2026-05-14"),
    ("0.30.0", "2026-06-01"),
)
# Whether the planner reserves the partial-offload graph whenever several GPUs hold layers: llm/memory.go
# EstimateGPULayers ("multigpu should always use the partial graph size"), which printed the offload line
# up to v0.12.10; from v0.12.11 the llama.cpp runner's device lines come from llamaServer.Load
# (llm/server.go, commit f560bd077), which takes the full-offload graph whenever every layer is on the GPUs.
PLANNER_MULTI_GPU_PARTIAL: Versioned[bool] = Versioned(
    "ollama planner graph on several GPUs",
    (None, True, "ollama llm/memory.go EstimateGPULayers: multigpu always uses the partial graph size"),
    ("0.12.11", False, "ollama llm/server.go llamaServer.Load: the full graph when every layer is on GPUs"),
)
# Ollama's planner (llm/memory.go EstimateGPULayers) sizes the graph for a batch of min(num_ctx x parallel,
# num_batch) tokens; num_batch defaults to 512 (api/types.go DefaultOptions NumBatch)
PLANNER_BATCH = 512
# (total VRAM from, default context) of the VRAM-based default, highest first; 4096 below them
# (ollama server/routes.go "vram-based default context")
VRAM_CONTEXT_TIERS = ((47 * GiB, 262144), (23 * GiB, 32768))
VRAM_CONTEXT_FLOOR = 4096


def assumed_version(bounds: tuple[str | None, str | None], date: str | None) -> str | None:
    """The newest release a log can come from that does not print its version: the newest of `bounds`
    (the releases its line formats allow) tagged on or before its `date`; None when nothing bounds it.
    Every rule row between two releases of RELEASE_DATES is the same, so this picks the rules of the
    newest version the log can have."""
    lo, hi = (parse_version(b) if b else None for b in bounds)
    best = hi
    if date is not None:
        dated = [parse_version(v) for v, day in RELEASE_DATES if day <= date]
        newest = max((v for v in dated if v is not None), default=None)
        if newest is not None and (best is None or newest < best):
            best = newest
    if best is not None and lo is not None and best < lo:
        best = lo
    return best.text if best is not None else None


def planner_graph_bytes(
    arch: Architecture, layout: KVLayout, cells: int, batch: int, kv_bytes: int
) -> tuple[int, int]:
    """Ollama's planner's compute graph (partial offload, full offload) for `cells` = num_ctx x parallel
    KV cells and a `batch` of min(cells, num_batch) tokens: fs/ggml/ggml.go `GGML.GraphSize` (llm/ggml.go
    before v0.5.12), identical for llama, qwen2 and deepseek2 from v0.5.7 through v0.15.0. Go's unsigned
    integer arithmetic, in its order. An architecture without a case (qwen3) gets GQA x KV / 6 for both
    (llm/memory.go EstimateGPULayers); `kv_bytes` is the planner's KV cache for all layers."""
    c, b = cells, batch
    e, h, v = arch.hidden_size, arch.num_attention_heads, arch.vocab_size
    hkv, ek = planner_kv_heads(arch, layout)
    eh = e // h  # EmbeddingHeadCount: embedding_length / head_count
    name = arch.gguf_arch
    if name == "llama":
        full = max(4 * b * (1 + 4 * e + c * (1 + h)), 4 * b * (e + v))
        partial = 4 * b * e + max(
            4 * b * (1 + e + max(c, e)) + e * e * 9 // 16 + 4 * c * (b * h + eh * hkv),
            4 * b * (e + v) + e * v * 105 // 128,
        )
        return partial, full
    if name == "qwen2":
        full = max(4 * b * (e + v), 4 * b * (1 + 2 * e + c + c * h))
        partial = max(
            4 * b * (e + v) + e * v * 105 // 128,
            4 * (b * (1 + 2 * e + c * (1 + h)) + e * (1 + c)),
        )
        return partial, full
    if name == "deepseek2":
        full = max(4 * b * (3 * e + v), 4 * b * (3 * e + 2 + c * (1 + hkv) + 2 * ek * hkv))
        partial = max(
            4 * b * (3 * e + v) + e * v * 105 // 128,
            4 * b * (2 * e + 1 + 2 * ek * hkv + c + c * hkv) + 4 * ek * c * hkv + e * ek * hkv * 9 // 16,
        )
        return partial, full
    gqa = h // hkv
    partial = gqa * kv_bytes // 6
    return partial, partial


# bytes per KV element as the planner counts them (fs/ggml/ggml.go kvCacheBytesPerElement): f16 unless
# flash attention is on and a quantized OLLAMA_KV_CACHE_TYPE is set
PLANNER_KV_BYTES = {"f16": 2.0, "q8_0": 1.0, "q4_0": 0.5}


def planner_kv_bytes(arch: Architecture, layout: KVLayout, cells: int, kv_type: str) -> int:
    """The planner's KV cache (memory.required.kv): cells x block_count x (key_length + value_length) x
    head_count_kv x bytes per element (fs/ggml/ggml.go GraphSize, summed over the layers), unpadded."""
    hkv, ek = planner_kv_heads(arch, layout)
    if not arch.is_mla:
        ev = ek
    elif layout is KVLayout.MHA:
        assert arch.v_head_dim is not None
        ev = arch.v_head_dim
    else:
        assert arch.kv_lora_rank is not None
        ev = arch.kv_lora_rank
    per_layer = int(cells * (ek + ev) * hkv * PLANNER_KV_BYTES.get(kv_type, 2.0))
    return per_layer * arch.num_hidden_layers


def planner_kv_heads(arch: Architecture, layout: KVLayout) -> tuple[int, int]:
    """(head_count_kv, key_length) as the GGUF states them, which the planner reads: for deepseek2 the
    Ollama library's GGUF (converted before llama.cpp's MLA, PR 12801) has every head with key_length
    qk_nope + qk_rope; an MLA GGUF one latent head of kv_lora_rank + qk_rope."""
    if not arch.is_mla:
        return arch.num_key_value_heads, arch.attn_head_dim
    assert arch.qk_nope_head_dim is not None and arch.qk_rope_head_dim is not None
    if layout is KVLayout.MHA:
        return arch.num_attention_heads, arch.qk_nope_head_dim + arch.qk_rope_head_dim
    return 1, arch.mla_latent_dim


# vramplan's KV dtype -> OLLAMA_KV_CACHE_TYPE (ollama docs/faq: f16, q8_0, q4_0).
OLLAMA_KV = {KVDtype.FP16: "f16", KVDtype.Q8_0: "q8_0", KVDtype.Q4_0: "q4_0"}


class OllamaRules(LlamaCppRules):
    runtime: ClassVar[Runtime] = Runtime.OLLAMA
    label: ClassVar[str] = "Ollama"
    # `OLLAMA_KV_CACHE_TYPE`
    kv_dtypes: ClassVar[tuple[KVDtype, ...]] = (KVDtype.AUTO, KVDtype.FP16, KVDtype.Q8_0, KVDtype.Q4_0)
    cpu_moe_option: ClassVar[bool] = False

    def __init__(self, version: Version | None = None) -> None:
        super().__init__(version)
        self.default_context_rule = DEFAULT_CONTEXT.at(self.version)
        self.default_parallel = DEFAULT_PARALLEL.at(self.version)
        self.flash_attention = FLASH_ATTENTION.at(self.version)

    def default_flash_attn(self, arch: Architecture) -> bool:
        """Whether Ollama starts this model's runner with flash attention when OLLAMA_FLASH_ATTENTION is
        unset (FLASH_ATTENTION of this version; "auto" counted as on)."""
        on, exceptions = self.flash_attention
        return on != (arch.gguf_arch in exceptions)

    def planner_graph_reserved(self, full_offload: bool, n_gpus: int, metal: bool) -> str:
        """Which graph the planner adds to every GPU holding layers: the full-offload graph when every
        layer and the output are on the GPUs, else the partial one; Metal always the full one
        (llm/memory.go); and up to v0.12.10 the partial one on several GPUs (PLANNER_MULTI_GPU_PARTIAL)."""
        if metal:
            return "full"
        if not full_offload or (n_gpus > 1 and PLANNER_MULTI_GPU_PARTIAL.at(self.version)):
            return "partial"
        return "full"

    def plan_flags(self, plan: PlanFlags) -> tuple[tuple[str, str], ...]:
        """num_gpu where --gpu-layers is given, OLLAMA_KV_CACHE_TYPE other than f16 (it needs flash
        attention), OLLAMA_FLASH_ATTENTION when the plan turns it off or a quantized cache needs it
        (ollama docs/faq)."""
        flags = []
        if plan.gpu_layers is not None:
            flags.append(("num_gpu", str(plan.gpu_layers)))
        quantized = plan.kv_dtype is not KVDtype.FP16 and plan.kv_dtype in OLLAMA_KV
        if quantized:
            flags.append(("OLLAMA_KV_CACHE_TYPE", OLLAMA_KV[plan.kv_dtype]))
        if not plan.flash_attn or quantized:
            flags.append(("OLLAMA_FLASH_ATTENTION", "1" if plan.flash_attn else "0"))
        return tuple(flags)

    def _cell_settings(self, context: int, concurrency: int) -> tuple[tuple[str, str], ...]:
        """Ollama runs llama-server with `-c num_ctx x OLLAMA_NUM_PARALLEL -np OLLAMA_NUM_PARALLEL`
        (ollama llm/llama_server.go), padded as llama.cpp pads."""
        return (("num_ctx", str(context)), ("OLLAMA_NUM_PARALLEL", str(concurrency)))

    def default_context(self, arch: Architecture, gpu_total_bytes: int | None) -> int:
        """Since v0.15.5: 262144 from 47 GiB of total VRAM, 32768 from 23 GiB, else 4096, capped at the
        model's maximum; 4096 with no GPU. An older version's fixed default is its table row."""
        rule = self.default_context_rule
        if isinstance(rule, int):
            return min(rule, arch.max_position_embeddings)
        tier = VRAM_CONTEXT_FLOOR
        for least, ctx in VRAM_CONTEXT_TIERS:
            if gpu_total_bytes is not None and gpu_total_bytes >= least:
                tier = ctx
                break
        return min(tier, arch.max_position_embeddings)

    def kv_dtype_caveat(self, arch: Architecture, gguf_mla: bool | None) -> str | None:
        if gguf_mla is False and arch.is_mla:
            return "Ollama's OLLAMA_KV_CACHE_TYPE was reported not to apply to this model (ollama issue 8763)"
        return None

    def outputs(self, tokens: int, concurrency: int) -> int:
        """A program that leaves the context parameter at 0 gets n_batch, so every token of the
        micro-batch has logits (llama-context.cpp `sched_reserve`), which is what Ollama's runner does."""
        return tokens
