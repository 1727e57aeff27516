"""Architectures: the config.json fields the estimator needs, and the tensors they imply.

`tensors()` lists every weight tensor of a model with its shape in ggml order (ne0 = the input
dimension, the row length; ne1 = output rows; ne2 = experts) and its GGUF name, so that one inventory
serves parameter counts, per-tensor quantization rules, tensor / pipeline splits and llama.cpp layer
offload. The lists follow the model definitions of llama.cpp (`src/models/qwen2.cpp`, `llama.cpp`,
`qwen3.cpp`, `deepseek2.cpp` in ggml-org/llama.cpp) and of the Hugging Face configs named in the catalog.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache


@dataclass(frozen=True)
class Architecture:
    """A transformer as its Hugging Face config.json describes it (field names as in config.json)."""

    model_type: str  # qwen2, llama, qwen3, deepseek_v3 (deepseek_v2 too)
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    max_position_embeddings: int
    head_dim: int | None = None  # None: hidden_size // num_attention_heads
    tie_word_embeddings: bool = False
    attention_bias: bool = False  # q/k/v projections carry biases (Qwen2)
    qk_norm: bool = False  # per-head RMSNorm on q and k (Qwen3)
    # Multi-head latent attention (DeepSeek-V2/V3)
    q_lora_rank: int | None = None
    kv_lora_rank: int | None = None
    qk_nope_head_dim: int | None = None
    qk_rope_head_dim: int | None = None
    v_head_dim: int | None = None
    # Mixture of experts (DeepSeek-V3)
    n_routed_experts: int | None = None
    n_shared_experts: int | None = None
    num_experts_per_tok: int | None = None
    moe_intermediate_size: int | None = None
    first_k_dense_replace: int = 0
    num_nextn_predict_layers: int = 0  # multi-token-prediction modules stored in the checkpoint

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank is not None

    @property
    def is_moe(self) -> bool:
        return self.n_routed_experts is not None

    @property
    def attn_head_dim(self) -> int:
        if self.head_dim is not None:
            return self.head_dim
        return self.hidden_size // self.num_attention_heads

    @property
    def gguf_arch(self) -> str:
        """The `general.architecture` llama.cpp uses for this model type."""
        return {"deepseek_v3": "deepseek2", "deepseek_v2": "deepseek2"}.get(self.model_type, self.model_type)

    @property
    def mla_latent_dim(self) -> int:
        """Elements of the compressed KV latent per token and layer: kv_lora_rank + qk_rope_head_dim."""
        assert self.kv_lora_rank is not None and self.qk_rope_head_dim is not None
        return self.kv_lora_rank + self.qk_rope_head_dim

    def is_moe_layer(self, layer: int) -> bool:
        return self.is_moe and layer >= self.first_k_dense_replace


class Split(enum.Enum):
    """How tensor parallelism divides a tensor among the ranks (vLLM's layer classes)."""

    REPLICATED = "replicated"  # ReplicatedLinear, norms, MoE router
    SHARDED = "sharded"  # Column/RowParallelLinear, vocab-parallel embedding and head, experts
    KV_HEADS = "kv_heads"  # K/V projections: each rank keeps max(1, kv_heads / tp) heads

    def fraction(self, tp: int, kv_heads: int) -> Fraction:
        if self is Split.REPLICATED:
            return Fraction(1)
        if self is Split.SHARDED:
            return Fraction(1, tp)
        return Fraction(max(1, kv_heads // tp), kv_heads)


# Sanity bounds on an architecture's sizes, so that a mistyped catalog entry, config.json or GGUF header
# fails with a message instead of exhausting memory or overflowing float arithmetic (the estimator walks
# every layer). Each is far above any published model: 126 layers (Llama-3.1-405B config.json), hidden
# size 18432 (Nemotron-4-340B), 262144 tokens of vocabulary (Gemma 3), 10M tokens of context
# (Llama-4-Scout), 384 routed experts (Kimi-K2).
MAX_LAYERS = 4096
MAX_DIM = 1 << 20  # hidden, intermediate, head and LoRA sizes; heads; experts
MAX_VOCAB = 1 << 24
MAX_POSITIONS = 1 << 30


def out_of_bounds(a: Architecture) -> str | None:
    """The first size of `a` beyond vramplan's sanity bounds (or below 1 where a model needs one), as
    a phrase naming the field; None if all are within them."""
    limits = {"num_hidden_layers": MAX_LAYERS, "num_nextn_predict_layers": MAX_LAYERS}
    limits |= {"first_k_dense_replace": MAX_LAYERS, "vocab_size": MAX_VOCAB}
    limits["max_position_embeddings"] = MAX_POSITIONS
    for name, value in vars(a).items():
        if isinstance(value, int) and not isinstance(value, bool):
            limit = limits.get(name, MAX_DIM)
            if value > limit:
                return f"{name} {value} exceeds {limit}, more than any model has"
            if value < 1 and name in _POSITIVE:
                return f"{name} is {value}; it must be at least 1"
    return None


_POSITIVE = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "vocab_size",
    "max_position_embeddings",
)


@dataclass(frozen=True)
class Tensor:
    """One weight tensor of a model, as a GGUF file names and shapes it."""

    name: str  # GGUF name, e.g. "blk.3.attn_q.weight"
    shape: tuple[int, ...]  # ggml order: (ne0 = input dim, ne1 = output rows, ne2 = experts)
    layer: int | None  # None: outside the repeating blocks (token_embd, output_norm, output)
    split: Split
    is_mtp: bool = False  # a multi-token-prediction module's tensor (not loaded for plain decoding)

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)

    @property
    def is_vector(self) -> bool:
        return len(self.shape) == 1

    @property
    def is_expert(self) -> bool:
        return "_exps." in self.name

    @property
    def kind(self) -> str:
        """The name without the block prefix: 'attn_q.weight', 'token_embd.weight'."""
        return self.name.split(".", 2)[2] if self.layer is not None else self.name


R = Split.REPLICATED
S = Split.SHARDED


def _dense_layer(a: Architecture, i: int) -> list[Tensor]:
    hd = a.attn_head_dim
    n_q = a.num_attention_heads * hd
    n_kv = a.num_key_value_heads * hd
    h = a.hidden_size
    p = f"blk.{i}."
    out = [
        Tensor(p + "attn_norm.weight", (h,), i, R),
        Tensor(p + "attn_q.weight", (h, n_q), i, S),
        Tensor(p + "attn_k.weight", (h, n_kv), i, Split.KV_HEADS),
        Tensor(p + "attn_v.weight", (h, n_kv), i, Split.KV_HEADS),
        Tensor(p + "attn_output.weight", (n_q, h), i, S),
    ]
    if a.attention_bias:
        out += [
            Tensor(p + "attn_q.bias", (n_q,), i, S),
            Tensor(p + "attn_k.bias", (n_kv,), i, Split.KV_HEADS),
            Tensor(p + "attn_v.bias", (n_kv,), i, Split.KV_HEADS),
        ]
    if a.qk_norm:
        out += [
            Tensor(p + "attn_q_norm.weight", (hd,), i, R),
            Tensor(p + "attn_k_norm.weight", (hd,), i, R),
        ]
    out.append(Tensor(p + "ffn_norm.weight", (h,), i, R))
    return out + _mlp(p, h, a.intermediate_size, i)


def _mlp(p: str, h: int, ff: int, i: int, suffix: str = "", is_mtp: bool = False) -> list[Tensor]:
    """gate / up / down projections (SwiGLU) of one feed-forward block."""
    return [
        Tensor(p + f"ffn_gate{suffix}.weight", (h, ff), i, S, is_mtp),
        Tensor(p + f"ffn_up{suffix}.weight", (h, ff), i, S, is_mtp),
        Tensor(p + f"ffn_down{suffix}.weight", (ff, h), i, S, is_mtp),
    ]


def _mla_layer(a: Architecture, i: int, *, mla_gguf: bool, is_mtp: bool = False) -> list[Tensor]:
    assert a.kv_lora_rank is not None and a.qk_rope_head_dim is not None
    assert a.qk_nope_head_dim is not None and a.v_head_dim is not None
    h, nh = a.hidden_size, a.num_attention_heads
    qk_head = a.qk_nope_head_dim + a.qk_rope_head_dim
    p = f"blk.{i}."
    m = is_mtp
    out = [Tensor(p + "attn_norm.weight", (h,), i, R, m)]
    if a.q_lora_rank:
        out += [
            Tensor(p + "attn_q_a_norm.weight", (a.q_lora_rank,), i, R, m),
            Tensor(p + "attn_q_a.weight", (h, a.q_lora_rank), i, R, m),
            Tensor(p + "attn_q_b.weight", (a.q_lora_rank, nh * qk_head), i, S, m),
        ]
    else:
        out.append(Tensor(p + "attn_q.weight", (h, nh * qk_head), i, S, m))
    out += [
        Tensor(p + "attn_kv_a_norm.weight", (a.kv_lora_rank,), i, R, m),
        Tensor(p + "attn_kv_a_mqa.weight", (h, a.mla_latent_dim), i, R, m),
    ]
    if mla_gguf:  # llama.cpp MLA layout (PR 12801): kv_b split per head into k_b and v_b
        out += [
            Tensor(p + "attn_k_b.weight", (a.qk_nope_head_dim, a.kv_lora_rank, nh), i, S, m),
            Tensor(p + "attn_v_b.weight", (a.kv_lora_rank, a.v_head_dim, nh), i, S, m),
        ]
    else:
        kv_b_rows = nh * (a.qk_nope_head_dim + a.v_head_dim)
        out.append(Tensor(p + "attn_kv_b.weight", (a.kv_lora_rank, kv_b_rows), i, S, m))
    out.append(Tensor(p + "attn_output.weight", (nh * a.v_head_dim, h), i, S, m))
    out.append(Tensor(p + "ffn_norm.weight", (h,), i, R, m))
    if not a.is_moe_layer(i):
        return out + _mlp(p, h, a.intermediate_size, i, is_mtp=m)
    assert a.n_routed_experts and a.moe_intermediate_size
    ne, ff = a.n_routed_experts, a.moe_intermediate_size
    out += [
        Tensor(p + "ffn_gate_inp.weight", (h, ne), i, R, m),
        Tensor(p + "exp_probs_b.bias", (ne,), i, R, m),
        Tensor(p + "ffn_gate_exps.weight", (h, ff, ne), i, S, m),
        Tensor(p + "ffn_up_exps.weight", (h, ff, ne), i, S, m),
        Tensor(p + "ffn_down_exps.weight", (ff, h, ne), i, S, m),
    ]
    if a.n_shared_experts:
        out += _mlp(p, h, ff * a.n_shared_experts, i, suffix="_shexp", is_mtp=m)
    return out


def tensors(a: Architecture, *, include_mtp: bool = False, mla_gguf: bool = False) -> list[Tensor]:
    """Every weight tensor of the model, in file order (a fresh list of the memoised inventory).

    include_mtp: add the multi-token-prediction modules a checkpoint stores after the last layer
    (DeepSeek-V3: one, with its own embedding and head copies; README_WEIGHTS.md of
    deepseek-ai/DeepSeek-V3). Serving engines skip them unless speculative decoding uses them.
    mla_gguf: split MLA's kv_b into llama.cpp's attn_k_b / attn_v_b (same element count).
    """
    return list(_tensors(a, include_mtp, mla_gguf))


@lru_cache(maxsize=64)
def _tensors(a: Architecture, include_mtp: bool, mla_gguf: bool) -> tuple[Tensor, ...]:
    h, v = a.hidden_size, a.vocab_size
    out = [Tensor("token_embd.weight", (h, v), None, S)]
    for i in range(a.num_hidden_layers):
        out += _mla_layer(a, i, mla_gguf=mla_gguf) if a.is_mla else _dense_layer(a, i)
    out.append(Tensor("output_norm.weight", (h,), None, R))
    if not a.tie_word_embeddings:
        out.append(Tensor("output.weight", (h, v), None, S))
    if include_mtp:
        for j in range(a.num_nextn_predict_layers):
            i = a.num_hidden_layers + j
            p = f"blk.{i}."
            out += [
                Tensor(p + "nextn.embed_tokens.weight", (h, v), i, S, True),
                Tensor(p + "nextn.enorm.weight", (h,), i, R, True),
                Tensor(p + "nextn.hnorm.weight", (h,), i, R, True),
                Tensor(p + "nextn.eh_proj.weight", (2 * h, h), i, R, True),
            ]
            out += _mla_layer(a, i, mla_gguf=mla_gguf, is_mtp=True)
            out += [
                Tensor(p + "nextn.shared_head_norm.weight", (h,), i, R, True),
                Tensor(p + "nextn.shared_head_head.weight", (h, v), i, S, True),
            ]
    return tuple(out)


@lru_cache(maxsize=64)
def param_count(a: Architecture, *, include_mtp: bool = False) -> int:
    """Parameters of the model as loaded for decoding (MTP modules only when asked); memoised, since
    every estimate asks for it."""
    return sum(t.n_elements for t in tensors(a, include_mtp=include_mtp))


def active_param_count(a: Architecture) -> int:
    """Parameters read per decoded token: every tensor, but only the routed experts a token uses."""
    total = 0
    for t in tensors(a):
        if t.is_expert:
            assert a.n_routed_experts and a.num_experts_per_tok
            total += t.n_elements // a.n_routed_experts * a.num_experts_per_tok
        else:
            total += t.n_elements
    return total


_REPLICATED_KINDS = ("_norm.weight", "ffn_gate_inp", "exp_probs_b", "attn_q_a.weight", "attn_kv_a_mqa.weight")


def file_tensor(name: str, shape: tuple[int, ...]) -> Tensor:
    """A tensor read from a file (GGUF name, ggml shape), with its layer and TP split derived from the
    name as `tensors()` would assign them."""
    layer = None
    if name.startswith("blk."):
        layer = int(name.split(".", 2)[1])
    if len(shape) == 1 or any(k in name for k in _REPLICATED_KINDS):
        split = Split.REPLICATED
    elif ".attn_k." in name or ".attn_v." in name:
        split = Split.KV_HEADS
    else:
        split = Split.SHARDED
    return Tensor(name, tuple(shape), layer, split, is_mtp=".nextn." in name)
