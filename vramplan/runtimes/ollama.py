"""Ollama's memory rules: llama.cpp's underneath, with Ollama's own context settings, KV cache types,
default context and logits rows."""

from __future__ import annotations

from typing import ClassVar

from vramplan.arch import Architecture
from vramplan.precision import KVDtype
from vramplan.runtimes.llamacpp import LlamaCppRules
from vramplan.runtimes.types import GiB, Runtime
from vramplan.runtimes.version import Version, Versioned

# The context Ollama uses without num_ctx / OLLAMA_CONTEXT_LENGTH: "vram" is the VRAM-based tiers below.
# Versions before 0.15.5 had fixed defaults (2048, later 4096): their rows go before this one, each with
# its release note; until they are written, an older log is read with this row (the oldest known).
DEFAULT_CONTEXT: Versioned[str | int] = Versioned(
    "ollama default context",
    ("0.15.5", "vram", 'ollama server/routes.go "vram-based default context" (since v0.15.5)'),
)
# (total VRAM from, default context) of the VRAM-based default, highest first; 4096 below them
# (ollama server/routes.go "vram-based default context")
VRAM_CONTEXT_TIERS = ((47 * GiB, 262144), (23 * GiB, 32768))
VRAM_CONTEXT_FLOOR = 4096


class OllamaRules(LlamaCppRules):
    runtime: ClassVar[Runtime] = Runtime.OLLAMA
    label: ClassVar[str] = "Ollama"
    # `OLLAMA_KV_CACHE_TYPE`
    kv_dtypes: ClassVar[tuple[KVDtype, ...]] = (KVDtype.AUTO, KVDtype.FP16, KVDtype.Q8_0, KVDtype.Q4_0)
    cpu_moe_option: ClassVar[bool] = False

    def __init__(self, version: Version | None = None) -> None:
        super().__init__(version)
        self.default_context_rule = DEFAULT_CONTEXT.at(self.version)

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
