"""The shared vocabulary of the runtime rules: runtimes, KV layouts and shapes, cells, devices, batches.

Nothing here depends on which runtime runs: a KV shape's bytes follow from the layout and the dtype.
The rules that differ between runtimes (and between versions of one) live in the per-runtime modules.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

from vramplan.arch import Architecture
from vramplan.precision import KVDtype, kv_row_bytes

GiB = 1 << 30
MiB = 1 << 20


class Runtime(str, enum.Enum):
    VLLM = "vllm"
    SGLANG = "sglang"
    LLAMA_CPP = "llama.cpp"
    OLLAMA = "ollama"

    @property
    def is_ggml(self) -> bool:
        """llama.cpp and Ollama: GGUF weights, ggml buffers, layer split across GPUs."""
        return self in (Runtime.LLAMA_CPP, Runtime.OLLAMA)


class KVLayout(str, enum.Enum):
    """How the KV cache of one token and one layer is laid out."""

    GQA = "gqa"  # K and V for each KV head (the distills)
    MLA_LATENT = "mla-latent"  # one compressed latent, kv_lora_rank + qk_rope_head_dim, no V
    MLA_KV = "mla-kv"  # llama.cpp MLA GGUF before PR 19067: K = latent (576), V = kv_lora_rank (512)
    MHA = "mha"  # llama.cpp deepseek2 GGUF converted before MLA: every head's K (192) and V (128)


# NamedTuples, not dataclasses: as immutable and typed, and ten times cheaper to define at import
# (`vramplan estimate` imports this package on every start; see the note in vramplan/estimate.py).
class KVShape(NamedTuple):
    """Elements per token and layer of one model replica, and how many heads TP can divide."""

    layout: KVLayout
    k_elements: int
    v_elements: int
    heads: int  # 1 for a latent: replicated on every tensor-parallel rank


class Cells(NamedTuple):
    """The KV cells a runtime allocates for `concurrency` sequences of `context` tokens."""

    total: int  # cells across all sequences
    per_sequence: int
    settings: tuple[tuple[str, str], ...]  # the runtime's own flags that give this allocation


class Device(NamedTuple):
    """What the runtime rules need to know of a GPU (None fields: not known)."""

    memory_bytes: int | None = None
    compute_capability: tuple[int, int] | None = None
    is_a100: bool = False
    interconnect: str | None = None  # nvlink, pcie, infinity-fabric (vramplan/gpus.py)


class BatchShape(NamedTuple):
    """The batch a runtime sizes its activation / compute buffers for."""

    tokens: int  # tokens in one forward pass at worst (vLLM max_num_batched_tokens, llama.cpp n_ubatch)
    sequences: int  # sequences sampled at once (vLLM max_num_seqs)


def kv_shape(arch: Architecture, layout: KVLayout) -> KVShape:
    if layout is KVLayout.GQA:
        n = arch.num_key_value_heads * arch.attn_head_dim
        return KVShape(layout, n, n, arch.num_key_value_heads)
    assert arch.kv_lora_rank is not None and arch.qk_nope_head_dim is not None
    assert arch.qk_rope_head_dim is not None and arch.v_head_dim is not None
    if layout is KVLayout.MLA_LATENT:
        return KVShape(layout, arch.mla_latent_dim, 0, 1)
    if layout is KVLayout.MLA_KV:
        return KVShape(layout, arch.mla_latent_dim, arch.kv_lora_rank, 1)
    heads = arch.num_attention_heads
    k = heads * (arch.qk_nope_head_dim + arch.qk_rope_head_dim)
    return KVShape(layout, k, heads * arch.v_head_dim, heads)


def kv_heads_per_rank(shape: KVShape, tp: int) -> int:
    """KV heads one tensor-parallel rank holds: heads / tp, at least 1 (vLLM replicates K/V heads when
    tp > num_key_value_heads: `QKVParallelLinear`, `ModelConfig.get_num_kv_heads`)."""
    return max(1, shape.heads // tp)


def kv_layer_bytes(shape: KVShape, dtype: KVDtype, tp: int = 1) -> int:
    """Bytes of one token in one layer on one tensor-parallel rank."""
    h = kv_heads_per_rank(shape, tp)
    k = shape.k_elements // shape.heads * h
    v = shape.v_elements // shape.heads * h
    return kv_row_bytes(dtype, k) + (kv_row_bytes(dtype, v) if v else 0)


def pad(n: int, to: int) -> int:
    """n rounded up to a multiple of `to`."""
    return -(-n // to) * to


def gib_text(n: int) -> str:
    return f"{n / GiB:.1f} GiB"
