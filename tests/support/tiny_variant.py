"""vramplan's own view of a tiny test model: the Architecture, Variant and Quant for a `TinySpec`.

The measured-memory tests load a tiny GGUF in llama.cpp and compare what it allocates with what vramplan
estimates for the same shape. The estimate must come from vramplan's rules alone: the architecture is
built from the spec's config-level fields (as a config.json would state them), and the weights from
vramplan's tensor inventory and its llama-quantize rules (`quantmix`) for the file type, never from the
file's own tensor sizes, which would make the weights check circular.
"""

from __future__ import annotations

from vramplan.arch import Architecture
from vramplan.catalog import Quant, Variant
from vramplan.estimate import Request
from vramplan.precision import KVDtype, WeightFormat
from vramplan.quantmix import Scheme
from vramplan.runtimes import Runtime

from .tiny_gguf import TinySpec

# the llama_ftype ids of the file types the tests quantize to (include/llama.h `enum llama_ftype`)
LLAMA_FTYPES = {
    "F32": 0,
    "F16": 1,
    "Q4_0": 2,
    "Q4_1": 3,
    "Q8_0": 7,
    "Q5_0": 8,
    "Q5_1": 9,
    "Q2_K": 10,
    "Q3_K_S": 11,
    "Q3_K_M": 12,
    "Q3_K_L": 13,
    "Q4_K_S": 14,
    "Q4_K_M": 15,
    "Q5_K_S": 16,
    "Q5_K_M": 17,
    "Q6_K": 18,
    "IQ2_XXS": 19,
    "IQ2_XS": 20,
    "Q2_K_S": 21,
    "IQ3_XS": 22,
    "IQ3_XXS": 23,
    "IQ1_S": 24,
    "IQ4_NL": 25,
    "IQ3_S": 26,
    "IQ3_M": 27,
    "IQ2_S": 28,
    "IQ2_M": 29,
    "IQ4_XS": 30,
    "IQ1_M": 31,
    "BF16": 32,
}

_MODEL_TYPE = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "deepseek2": "deepseek_v3"}


def architecture_for(spec: TinySpec) -> Architecture:
    """The Architecture a config.json of this shape would give (HF field names)."""
    s = spec
    common = {
        "model_type": _MODEL_TYPE[s.arch],
        "hidden_size": s.hidden,
        "intermediate_size": s.ffn,
        "num_hidden_layers": s.layers,
        "num_attention_heads": s.heads,
        "vocab_size": s.vocab,
        "max_position_embeddings": s.n_ctx_train,
        "tie_word_embeddings": s.tied_embeddings,
    }
    if s.arch == "deepseek2":
        return Architecture(
            **common,
            num_key_value_heads=s.heads,  # DeepSeek-V3 config.json: num_key_value_heads = heads
            q_lora_rank=s.q_lora_rank or None,
            kv_lora_rank=s.kv_lora_rank,
            qk_nope_head_dim=s.qk_nope_head_dim,
            qk_rope_head_dim=s.qk_rope_head_dim,
            v_head_dim=s.v_head_dim,
            n_routed_experts=s.n_expert,
            n_shared_experts=s.n_expert_shared or None,
            num_experts_per_tok=s.n_expert_used,
            moe_intermediate_size=s.expert_ffn,
            first_k_dense_replace=s.n_dense_lead,
        )
    return Architecture(
        **common,
        num_key_value_heads=s.kv_heads,
        head_dim=None if s.head_dim * s.heads == s.hidden else s.head_dim,
        attention_bias=s.arch == "qwen2",
        qk_norm=s.arch == "qwen3",
    )


def variant_for(spec: TinySpec, ftype: str, base_dtype: str = "bf16") -> tuple[Variant, Quant]:
    """A one-quant Variant for `spec` stored as GGUF file type `ftype` (F16, BF16, Q8_0, Q4_K_M, ...).

    base_dtype is what the conversion wrote before quantizing ("f16" when the tests quantize an F16
    file), as the catalog's `base_dtype` states it for real GGUFs.
    """
    arch = architecture_for(spec)
    quant = Quant(
        name=ftype,
        format=WeightFormat.GGUF,
        runtimes=(Runtime.LLAMA_CPP, Runtime.OLLAMA),
        scheme=Scheme(WeightFormat.GGUF, ftype.upper(), base_dtype),
        gguf_mla=spec.mla if spec.arch == "deepseek2" else None,
    )
    variant = Variant(
        id=f"tiny-{spec.arch}",
        name=f"tiny {spec.arch}",
        hf_repo=f"test/tiny-{spec.arch}",
        family="test",
        architecture=arch,
        architecture_id=f"tiny-{spec.arch}",
        architecture_source="tests/support/tiny_gguf.py",
        default_quant=ftype,
        quants=(quant,),
    )
    return variant, quant


_KV = {"f16": KVDtype.FP16, "bf16": KVDtype.BF16, "q8_0": KVDtype.Q8_0, "q4_0": KVDtype.Q4_0}


def request_for(
    spec: TinySpec,
    ftype: str,
    n_ctx: int,
    n_seq_max: int = 1,
    type_kv: str = "f16",
    flash_attn: bool = False,
    base_dtype: str = "bf16",
    runtime: Runtime = Runtime.LLAMA_CPP,
) -> Request:
    """The CPU-only llama.cpp plan for what `measure(...)` loads: `n_ctx` total cells over `n_seq_max`
    slots (llama-server's `-c n_ctx -np n_seq_max`, so vramplan's per-request context is n_ctx / n_seq_max).
    """
    variant, quant = variant_for(spec, ftype, base_dtype)
    if n_ctx % n_seq_max:
        raise ValueError("n_ctx must be a multiple of n_seq_max (vramplan plans a context per request)")
    return Request(
        variant,
        quant,
        runtime,
        context=n_ctx // n_seq_max,
        concurrency=n_seq_max,
        kv_cache_dtype=_KV[type_kv],
        cpu_only=True,
        flash_attn=flash_attn,
    )


_ARCH_OF = {v: k for k, v in _MODEL_TYPE.items()} | {"deepseek_v2": "deepseek2"}


def spec_for_architecture(arch: Architecture, mla: bool = True) -> TinySpec:
    """The TinySpec of a real Architecture (a catalog model's shape), for sizing-only runs of
    `write_tiny_gguf(..., shape_only=True)`; the inverse of `architecture_for`."""
    a = arch
    common = {
        "arch": _ARCH_OF[a.model_type],
        "hidden": a.hidden_size,
        "layers": a.num_hidden_layers,
        "heads": a.num_attention_heads,
        "ffn": a.intermediate_size,
        "vocab": a.vocab_size,
        "n_ctx_train": a.max_position_embeddings,
        "tied_embeddings": a.tie_word_embeddings,
    }
    if a.is_mla:
        assert a.kv_lora_rank and a.qk_nope_head_dim and a.qk_rope_head_dim and a.v_head_dim
        assert a.n_routed_experts and a.num_experts_per_tok and a.moe_intermediate_size
        return TinySpec(
            **common,
            kv_heads=a.num_attention_heads,
            head_dim=a.qk_nope_head_dim + a.qk_rope_head_dim,
            mla=mla,
            q_lora_rank=a.q_lora_rank or 0,
            kv_lora_rank=a.kv_lora_rank,
            qk_rope_head_dim=a.qk_rope_head_dim,
            qk_nope_head_dim=a.qk_nope_head_dim,
            v_head_dim=a.v_head_dim,
            n_dense_lead=a.first_k_dense_replace,
            n_expert=a.n_routed_experts,
            n_expert_used=a.num_experts_per_tok,
            n_expert_shared=a.n_shared_experts or 0,
            expert_ffn=a.moe_intermediate_size,
        )
    return TinySpec(**common, kv_heads=a.num_key_value_heads, head_dim=a.attn_head_dim)
