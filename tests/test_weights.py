"""Parameter counts from the architectures, and weight bytes against published file sizes."""

from __future__ import annotations

import pytest

from vramplan.arch import active_param_count, param_count, tensors
from vramplan.catalog import Catalog
from vramplan.precision import Storage, storage_bytes
from vramplan.quantmix import checkpoint_bytes, gguf_types


def test_671b_parameter_count(catalog: Catalog) -> None:
    a = catalog.get("deepseek-r1").architecture
    assert param_count(a) == 671_026_419_200  # deepseek-r1-facts.md: computed from config_671B.json
    mtp = param_count(a, include_mtp=True) - param_count(a)
    assert 13.4e9 < mtp < 13.5e9  # the MTP module with its own embedding and head copies: 13.46 B
    assert 37.4e9 < active_param_count(a) < 37.6e9  # about 37.5 B activated per token


@pytest.mark.parametrize(
    ("model", "params"),
    [
        # Qwen2.5 / Llama 3 sizes as their model cards give them (billions, rounded)
        ("deepseek-r1-distill-qwen-1.5b", 1.78e9),
        ("deepseek-r1-distill-qwen-7b", 7.62e9),
        ("deepseek-r1-distill-llama-8b", 8.03e9),
        ("deepseek-r1-distill-qwen-14b", 14.77e9),
        ("deepseek-r1-distill-qwen-32b", 32.76e9),
        ("deepseek-r1-distill-llama-70b", 70.55e9),
        ("deepseek-r1-0528-qwen3-8b", 8.19e9),
    ],
)
def test_distill_parameter_counts(catalog: Catalog, model: str, params: float) -> None:
    assert param_count(catalog.get(model).architecture) == pytest.approx(params, rel=0.003)


def test_fp8_checkpoint_matches_published_bytes(catalog: Catalog) -> None:
    """688,586,727,753 bytes of safetensors (MTP included) against the block-scaled FP8 model."""
    v = catalog.get("deepseek-r1")
    q = v.quant("fp8")
    computed = checkpoint_bytes(v.architecture, q.scheme, include_mtp=True)
    assert q.size is not None
    assert computed == pytest.approx(q.size.bytes, rel=0.0005)


def published_cases(catalog: Catalog) -> list[tuple[str, str]]:
    return [(v.id, q.name) for v in catalog.variants for q in v.quants if q.size and q.name != "fp8"]


# How far a modelled checkpoint may sit from its published size, beyond the figure's own rounding.
# llama.cpp's rules reproduce its own quantizer; Ollama built some tags with its own quantizer, whose
# choices for the token embedding differ (the Qwen3 8B tags: 5.2 GB listed, 5.02 GB modelled).
TOLERANCE = 0.04


def test_weights_against_every_published_size(catalog: Catalog) -> None:
    checked = 0
    for model, quant in published_cases(catalog):
        v = catalog.get(model)
        q = v.quant(quant)
        assert q.size is not None
        computed = checkpoint_bytes(v.architecture, q.scheme)
        slack = q.size.rounding + TOLERANCE * q.size.bytes
        assert abs(computed - q.size.bytes) <= slack, (model, quant, computed, q.size.text)
        checked += 1
    assert checked >= 25


def test_q4_k_m_mix_follows_llamacpp_rules(catalog: Catalog) -> None:
    """llama-quant.cpp: output Q6_K; attn_v and ffn_down Q6_K on 'use_more_bits' layers, else Q4_K."""
    v = catalog.get("deepseek-r1-distill-qwen-7b")
    tl = tensors(v.architecture)
    types = {
        t.name: g.name
        for t, g in zip(tl, gguf_types(v.architecture, v.quant("q4_K_M").scheme, tl), strict=True)
    }
    assert types["output.weight"] == "Q6_K"
    assert types["token_embd.weight"] == "Q4_K"
    assert types["blk.0.attn_v.weight"] == "Q6_K"  # 0 < 28/8
    assert types["blk.4.attn_v.weight"] == "Q4_K"
    assert types["blk.5.attn_v.weight"] == "Q6_K"  # (5 - 3) % 3 == 2
    assert types["blk.27.ffn_down.weight"] == "Q6_K"  # >= 7*28/8
    assert types["blk.10.attn_q.weight"] == "Q4_K"
    assert types["blk.10.attn_q.bias"] == "F32"
    assert types["blk.10.attn_norm.weight"] == "F32"


def test_row_fallback_for_unaligned_rows(catalog: Catalog) -> None:
    """tensor_type_fallback: Q4_K rows of 128 elements (the MLA k_b) fall back to Q5_0."""
    v = catalog.get("deepseek-r1")
    tl = [t for t in tensors(v.architecture, mla_gguf=True) if t.name == "blk.5.attn_k_b.weight"]
    assert [g.name for g in gguf_types(v.architecture, v.quant("q4_K_M").scheme, tl)] == ["Q5_0"]


def test_storage_side_tensors() -> None:
    # DeepSeek FP8: 1 byte per weight + a float32 per 128x128 block
    assert storage_bytes(Storage.FP8_BLOCK128, 256, 256) == 256 * 256 + 4 * 4
    # AWQ g128: 0.5 B per weight, per group of 128 inputs: 4-bit zeros and fp16 scales for each output
    assert storage_bytes(Storage.AWQ_INT4_G128, 64, 256) == 64 * 256 // 2 + 2 * 64 // 2 + 2 * 64 * 2
    # NVFP4: 0.5 B per weight + one fp8 scale per 16 + two fp32 per-tensor scales
    assert storage_bytes(Storage.NVFP4_G16, 32, 64) == 32 * 64 // 2 + 32 * 4 + 8


def test_weights_from_size_uses_the_published_total(catalog: Catalog) -> None:
    """unsloth's dynamic quants: the shards' total is exact, the documented mix only apportions it."""
    from vramplan.estimate import Request, estimate
    from vramplan.runtimes import Runtime

    v = catalog.get("deepseek-r1")
    for name in ("UD-IQ1_S", "UD-IQ1_M", "UD-IQ2_XXS", "UD-Q2_K_XL"):
        q = v.quant(name)
        assert q.weights_from_size and q.size is not None
        e = estimate(Request(v, q, Runtime.LLAMA_CPP, context=4096))
        assert e.weights_bytes == q.size.bytes
    assert v.quant("UD-IQ1_S").size.bytes == 140_200_000_000  # type: ignore[union-attr]
