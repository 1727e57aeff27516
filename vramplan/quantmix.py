"""Which storage each tensor gets under a quantization scheme, and the bytes that follow.

Two kinds of scheme:
- GGUF file types (`Q4_K_M`, `Q8_0`, `F16`, ...): the per-tensor type rules of llama.cpp's quantizer
  (`src/llama-quant.cpp`: `llama_tensor_get_type_impl`, `tensor_type_fallback`,
  `tensor_allows_quantization`, `llama_ftype_get_default_type`) applied to the tensors a
  `convert_hf_to_gguf.py` conversion writes (`conversion/base.py`: 1-D tensors, norms, biases and the
  MoE router stay F32). Catalog entries may override types by regular expression (unsloth's dynamic
  quants pin their own per-tensor types).
- Hugging Face checkpoints (bf16, fp8, AWQ, GPTQ, NVFP4): the quantized linear layers get the format's
  storage; embeddings, head, norms and router keep the base dtype (per the model cards named in the
  catalog); overrides by regular expression as above.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from vramplan.arch import Architecture, Tensor, tensors
from vramplan.errors import PlanError
from vramplan.precision import (
    GGML_TYPES,
    GGMLType,
    Storage,
    WeightFormat,
    ggml_tensor_bytes,
    storage_bytes,
)

# llama_ftype_get_default_type: the base type of each file type.
GGUF_FTYPES: dict[str, str] = {
    "F32": "F32",
    "F16": "F16",
    "BF16": "BF16",
    "Q4_0": "Q4_0",
    "Q4_1": "Q4_1",
    "Q5_0": "Q5_0",
    "Q5_1": "Q5_1",
    "Q8_0": "Q8_0",
    "Q2_K": "Q2_K",
    "Q2_K_S": "Q2_K",
    "Q3_K_S": "Q3_K",
    "Q3_K_M": "Q3_K",
    "Q3_K_L": "Q3_K",
    "Q4_K_S": "Q4_K",
    "Q4_K_M": "Q4_K",
    "Q5_K_S": "Q5_K",
    "Q5_K_M": "Q5_K",
    "Q6_K": "Q6_K",
    "IQ2_XXS": "IQ2_XXS",
    "IQ2_XS": "IQ2_XS",
    "IQ2_S": "IQ2_XS",
    "IQ2_M": "IQ2_S",
    "IQ3_XXS": "IQ3_XXS",
    "IQ3_XS": "IQ3_S",
    "IQ3_S": "IQ3_S",
    "IQ3_M": "IQ3_S",
    "IQ1_S": "IQ1_S",
    "IQ1_M": "IQ1_M",
    "IQ4_NL": "IQ4_NL",
    "IQ4_XS": "IQ4_XS",
    # ternary types (llama.cpp PR 8151): every quantized tensor TQ*, the token embedding Q4_K
    "TQ1_0": "TQ1_0",
    "TQ2_0": "TQ2_0",
}

# tensor_type_fallback: what a type falls back to when a row is not a whole number of its blocks.
_FALLBACK = {
    **dict.fromkeys(("IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ4_XS"), "IQ4_NL"),
    **dict.fromkeys(("Q2_K", "Q3_K", "TQ1_0", "TQ2_0"), "Q4_0"),
    "Q4_K": "Q5_0",
    "Q5_K": "Q5_1",
    "Q6_K": "Q8_0",
}

_IQ_LOW = ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M")
# file types whose output.weight gets Q5_K (llama_tensor_get_type_impl: the IQ1 / IQ2 types and IQ3_XXS)
_OUTPUT_Q5_K = (*_IQ_LOW, "IQ3_XXS")


def _use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _category(name: str) -> str:
    """tensor_get_category of llama-quant.cpp."""
    for needle, cat in (
        ("attn_qkv.weight", "attn_v"),
        ("attn_kv_b.weight", "attn_v"),
        ("attn_v.weight", "attn_v"),
        ("attn_k.weight", "attn_k"),
        ("attn_q.weight", "attn_q"),
        ("attn_output.weight", "attn_output"),
        ("ffn_up", "ffn_up"),
        ("ffn_gate", "ffn_gate"),
        ("ffn_down", "ffn_down"),
    ):
        if needle in name:
            return cat
    return "other"


def _converted_type(t: Tensor, outtype: str) -> str:
    """The type convert_hf_to_gguf.py writes before quantization."""
    if t.is_vector or t.name.endswith("_norm.weight") or "ffn_gate_inp" in t.name:
        return "F32"
    return outtype


def _allows_quantization(t: Tensor) -> bool:
    """tensor_allows_quantization: 2-D+ weights except norms and the MoE router."""
    return (
        len(t.shape) >= 2
        and t.name.endswith(".weight")
        and not t.name.endswith("_norm.weight")
        and "ffn_gate_inp.weight" not in t.name
    )


@dataclass
class _MixState:
    """The counters llama.cpp's quantizer keeps while walking the tensors (quantize_state_impl)."""

    arch: Architecture
    ftype: str
    n_attention_wv: int
    i_attention_wv: int = 0
    i_ffn_down: int = 0
    n_expert: int = 1
    legacy_mla: bool = False  # a deepseek2 GGUF with the unsplit attn_kv_b (converted before MLA support)

    @property
    def n_gqa(self) -> int:
        """hparams.n_gqa() as the GGUF states it: n_head / head_count_kv."""
        a = self.arch
        if a.is_mla:
            # MLA GGUFs store one latent "head" (head_count_kv 1); the old layout has head_count_kv =
            # n_head (checked against llama.cpp's quantizer in tests/test_llamacpp_measured.py)
            return 1 if self.legacy_mla else a.num_attention_heads
        return a.num_attention_heads // a.num_key_value_heads


def _ftype_rule(st: _MixState, t: Tensor, new: str) -> str:
    """llama_tensor_get_type_impl for the K-quant, legacy and IQ file types."""
    ft, cat, a = st.ftype, _category(t.name), st.arch
    n_layer = a.num_hidden_layers
    if t.name == "output.weight" or (a.tie_word_embeddings and t.name == "token_embd.weight"):
        if t.shape[0] % GGML_TYPES[new].block_size:
            return "Q8_0"
        if ft in _OUTPUT_Q5_K:
            return "Q5_K"
        return new if new == "Q8_0" else "Q6_K"
    if t.name == "token_embd.weight":
        if ft in ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ1_M"):
            return "Q2_K"
        if ft in ("IQ2_S", "IQ2_M", "IQ3_XXS"):
            return "IQ3_S"
        if ft in ("TQ1_0", "TQ2_0"):
            return "Q4_K"
        return new
    if ft in _IQ_LOW:
        if cat == "attn_v":
            st.i_attention_wv += 1
            if st.n_gqa >= 4 or st.n_expert >= 4:
                return "Q4_K"
            return "IQ3_S" if ft in ("IQ2_S", "IQ2_M") else "Q2_K"
        if cat == "ffn_down":
            i = st.i_ffn_down
            st.i_ffn_down += 1
            if i < n_layer // 8:
                return "IQ3_S" if ft in ("IQ2_S", "IQ2_M") else "Q2_K"
            return new
        if cat == "attn_output":
            if ft in ("IQ1_S", "IQ1_M"):
                return "IQ2_XXS"
            if ft in ("IQ2_S", "IQ2_M"):
                return "IQ3_S"
        return new
    if cat == "attn_v":
        i, n = st.i_attention_wv, st.n_attention_wv
        st.i_attention_wv += 1
        if ft == "Q2_K":
            new = "Q4_K" if st.n_gqa >= 4 else "Q3_K"
        elif ft == "Q2_K_S" and st.n_gqa >= 4:
            new = "Q4_K"
        elif ft == "IQ3_XXS":
            # IQ3_S without an importance matrix, but IQ3_XXS cannot be made without one
            # (llama-quant.cpp `tensor_requires_imatrix`), so the imatrix branch is the one taken
            new = "Q4_K" if st.n_gqa >= 4 else "IQ3_XXS"
        elif ft in ("IQ3_XS", "IQ3_S") and st.n_gqa >= 4:
            new = "Q4_K"
        elif ft == "IQ3_M":
            new = "Q4_K"
        elif ft == "Q3_K_M":
            new = "Q5_K" if i < 2 else "Q4_K"
        elif ft == "Q3_K_L":
            new = "Q5_K"
        elif ft in ("IQ4_NL", "IQ4_XS") and st.n_gqa >= 4:
            new = "Q5_K"
        elif ft in ("Q4_K_M", "Q5_K_M") and _use_more_bits(i, n):
            new = "Q6_K"
        elif ft == "Q4_K_S" and i < 4:
            new = "Q5_K"
        if a.gguf_arch == "llama" and n_layer == 80 and new in ("Q3_K", "Q4_K"):
            new = "Q5_K"  # LLM_TYPE_70B: attn_v gets more bits
        return new
    if cat == "ffn_down":
        # MoE models take the layer from the tensor's name; dense ones count ffn_down tensors.
        i = t.layer if (st.n_expert > 1 and t.layer is not None) else st.i_ffn_down
        st.i_ffn_down += 1
        if ft == "Q2_K":
            return "Q3_K"
        if ft == "Q2_K_S":
            return "Q4_K" if i < n_layer // 8 else new
        if ft == "Q3_K_M":
            return "Q5_K" if i < n_layer // 16 else "Q4_K"
        if ft == "Q3_K_L":
            return "Q5_K"
        if ft in ("Q4_K_M", "Q5_K_M"):
            return "Q6_K" if _use_more_bits(i, n_layer) else new
        if ft == "IQ3_M" and i < n_layer // 8:
            return "Q4_K"
        if ft in ("IQ4_NL", "IQ4_XS") and i < n_layer // 8:
            return "Q5_K"
        if ft == "Q4_K_S" and i < n_layer // 8:
            return "Q5_K"
        return new
    if cat in ("ffn_up", "ffn_gate"):
        # IQ3_XS: the middle three quarters of the layers get IQ3_XXS (layer from the tensor's name, as
        # llama-quant.cpp's layer_info takes it for MoE models; dense models have one per layer)
        if ft == "IQ3_XS" and t.layer is not None and n_layer // 8 <= t.layer < 7 * n_layer // 8:
            return "IQ3_XXS"
        return new
    if cat in ("attn_q", "attn_k"):
        return {"IQ3_XS": "IQ3_XXS", "IQ3_XXS": "IQ2_S"}.get(ft, new)
    if cat == "attn_output":
        return {"Q2_K": "Q3_K", "IQ3_XXS": "IQ3_S", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K", "IQ3_M": "Q4_K"}.get(
            ft, new
        )
    return new


def _fallback(t: Tensor, gtype: str) -> str:
    ncols = t.shape[0]
    if ncols % GGML_TYPES[gtype].block_size == 0:
        return gtype
    ret = _FALLBACK.get(gtype, gtype)
    if ncols % GGML_TYPES[ret].block_size:
        ret = "F16"
    return ret


def _match(overrides: Iterable[tuple[str, str]], name: str) -> str | None:
    for pattern, value in overrides:
        if re.search(pattern, name):
            return value
    return None


@dataclass(frozen=True)
class Scheme:
    """A quantization scheme: a format plus, for GGUF, its file type, and per-tensor overrides."""

    format: WeightFormat
    gguf_ftype: str | None = None  # GGUF only: Q4_K_M, Q8_0, F16, IQ1_S, ...
    base_dtype: str = "bf16"  # the dtype of unquantized tensors (HF) / of the conversion (GGUF)
    storage: str | None = None  # HF only: the quantized layers' storage, when not the format's default
    overrides: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # (regex, type or storage)


_HF_STORAGE = {
    WeightFormat.BF16: Storage.BF16,
    WeightFormat.FP16: Storage.FP16,
    WeightFormat.FP8: Storage.FP8_BLOCK128,
    WeightFormat.AWQ_INT4: Storage.AWQ_INT4_G128,
    WeightFormat.GPTQ_INT4: Storage.GPTQ_INT4_G128,
    WeightFormat.NVFP4: Storage.NVFP4_G16,
}


def gguf_types(arch: Architecture, scheme: Scheme, tlist: list[Tensor]) -> list[GGMLType]:
    """The GGML type of each tensor in a GGUF of `scheme`, in the order of `tlist`."""
    assert scheme.gguf_ftype is not None
    ft = scheme.gguf_ftype.upper()
    if ft not in GGUF_FTYPES:
        raise PlanError(f"unknown GGUF file type {scheme.gguf_ftype!r}; known: {', '.join(GGUF_FTYPES)}")
    base = GGUF_FTYPES[ft]
    outtype = "BF16" if scheme.base_dtype == "bf16" else "F16"
    st = _MixState(
        arch=arch,
        ftype=ft,
        n_attention_wv=sum(1 for t in tlist if _category(t.name) == "attn_v"),
        n_expert=arch.n_routed_experts or 1,
        legacy_mla=any(t.name.endswith("attn_kv_b.weight") for t in tlist),
    )
    out = []
    for t in tlist:
        forced = _match(scheme.overrides, t.name)
        if forced is not None:
            out.append(GGML_TYPES[forced.upper()])
            continue
        conv = _converted_type(t, outtype if ft not in ("F16", "BF16", "F32") else ft)
        if not _allows_quantization(t) or base in ("F16", "BF16", "F32"):
            out.append(GGML_TYPES[conv])
            continue
        out.append(GGML_TYPES[_fallback(t, _ftype_rule(st, t, base))])
    return out


def _hf_storage(scheme: Scheme, t: Tensor) -> Storage:
    forced = _match(scheme.overrides, t.name)
    if forced is not None:
        return Storage(forced)
    base = Storage.FP16 if scheme.base_dtype == "fp16" else Storage.BF16
    if t.name == "exp_probs_b.bias" or t.name.endswith("exp_probs_b.bias"):
        return Storage.F32  # e_score_correction_bias is stored fp32 (DeepSeek-V3 checkpoint)
    if (
        t.is_vector
        or t.name.endswith("_norm.weight")
        or "ffn_gate_inp" in t.name
        or t.name in ("token_embd.weight", "output.weight")
        or ".nextn.embed_tokens" in t.name
        or ".nextn.shared_head_head" in t.name
    ):
        return base
    return Storage(scheme.storage) if scheme.storage else _HF_STORAGE[scheme.format]


def tensor_bytes(arch: Architecture, scheme: Scheme, tlist: list[Tensor]) -> list[int]:
    """Bytes each tensor of `tlist` takes under `scheme`, in order."""
    if scheme.format is WeightFormat.GGUF:
        return [
            ggml_tensor_bytes(g, t.shape) for g, t in zip(gguf_types(arch, scheme, tlist), tlist, strict=True)
        ]
    out = []
    for t in tlist:
        storage = _hf_storage(scheme, t)
        if t.is_vector:
            out.append(t.n_elements * (4 if storage is Storage.F32 else 2))
        else:
            count = t.shape[2] if len(t.shape) > 2 else 1
            out.append(storage_bytes(storage, t.shape[1], t.shape[0], count))
    return out


def checkpoint_bytes(arch: Architecture, scheme: Scheme, *, include_mtp: bool = False) -> int:
    """Bytes of every tensor of a checkpoint (a file's size less its headers and metadata)."""
    tl = tensors(arch, include_mtp=include_mtp, mla_gguf=False)
    return sum(tensor_bytes(arch, scheme, tl))
