"""KV bytes per token for every catalog entry, against values computed by hand from config.json.

Standard attention: layers x 2 (K and V) x kv_heads x head_dim x bytes. MLA: see each test.
"""

from __future__ import annotations

import pytest

from vramplan.catalog import Catalog
from vramplan.estimate import Request, estimate
from vramplan.hardware import gpu_spec
from vramplan.precision import KVDtype
from vramplan.runtimes import KVLayout, Runtime

# (catalog id, layers, kv heads, head_dim) straight from each repo's config.json
DISTILLS = [
    ("deepseek-r1-distill-qwen-1.5b", 28, 2, 128),
    ("deepseek-r1-distill-qwen-7b", 28, 4, 128),
    ("deepseek-r1-distill-llama-8b", 32, 8, 128),
    ("deepseek-r1-distill-qwen-14b", 48, 8, 128),
    ("deepseek-r1-distill-qwen-32b", 64, 8, 128),
    ("deepseek-r1-distill-llama-70b", 80, 8, 128),
    ("deepseek-r1-0528-qwen3-8b", 36, 8, 128),
]


def kv_per_token(catalog: Catalog, model: str, quant: str, runtime: Runtime, **kw: object) -> int:
    v = catalog.get(model)
    return estimate(Request(v, v.quant(quant), runtime, context=4096, **kw)).kv_bytes_per_token  # type: ignore[arg-type]


@pytest.mark.parametrize(("model", "layers", "kv_heads", "head_dim"), DISTILLS)
def test_distill_bf16_vllm(catalog: Catalog, model: str, layers: int, kv_heads: int, head_dim: int) -> None:
    assert kv_per_token(catalog, model, "bf16", Runtime.VLLM) == layers * 2 * kv_heads * head_dim * 2


@pytest.mark.parametrize(("model", "layers", "kv_heads", "head_dim"), DISTILLS)
def test_distill_fp8_kv(catalog: Catalog, model: str, layers: int, kv_heads: int, head_dim: int) -> None:
    got = kv_per_token(catalog, model, "bf16", Runtime.VLLM, kv_cache_dtype=KVDtype.FP8)
    assert got == layers * 2 * kv_heads * head_dim


@pytest.mark.parametrize(("model", "layers", "kv_heads", "head_dim"), DISTILLS)
def test_distill_gguf_q8_0_cache(
    catalog: Catalog, model: str, layers: int, kv_heads: int, head_dim: int
) -> None:
    # llama.cpp q8_0 rows: 34 bytes per 32 elements (ggml-common.h block_q8_0)
    got = kv_per_token(catalog, model, "q4_K_M", Runtime.LLAMA_CPP, kv_cache_dtype=KVDtype.Q8_0)
    assert got == layers * 2 * (kv_heads * head_dim // 32 * 34)


def test_example_from_issue(catalog: Catalog) -> None:
    assert kv_per_token(catalog, "deepseek-r1-distill-qwen-7b", "bf16", Runtime.VLLM) == 57344


# The 671B: 61 layers; kv_lora_rank 512, qk_rope_head_dim 64, 128 heads of qk 192 (128 nope + 64 rope), v 128.
def test_671b_vllm_latent(catalog: Catalog) -> None:
    assert kv_per_token(catalog, "deepseek-r1", "fp8", Runtime.VLLM) == 61 * (512 + 64) * 2
    got = kv_per_token(catalog, "deepseek-r1", "fp8", Runtime.VLLM, kv_cache_dtype=KVDtype.FP8)
    assert got == 61 * 576


def test_671b_sglang_latent(catalog: Catalog) -> None:
    assert kv_per_token(catalog, "deepseek-r1", "fp8", Runtime.SGLANG) == 61 * 576 * 2


def test_671b_llamacpp_pre_mla_gguf(catalog: Catalog) -> None:
    # The Ollama library GGUF: head_count_kv 128, key_length 192, value_length 128, f16
    assert kv_per_token(catalog, "deepseek-r1", "q4_K_M", Runtime.LLAMA_CPP) == 61 * 128 * (192 + 128) * 2
    assert kv_per_token(catalog, "deepseek-r1", "q4_K_M", Runtime.OLLAMA) == 4_997_120


def test_671b_llamacpp_mla_gguf_with_v(catalog: Catalog) -> None:
    # MLA GGUF (PR 12801) before the V-less cache: K 576 + V 512
    got = kv_per_token(catalog, "deepseek-r1", "q4_K_M", Runtime.LLAMA_CPP, kv_layout=KVLayout.MLA_KV)
    assert got == 61 * (576 + 512) * 2


def test_671b_llamacpp_vless(catalog: Catalog) -> None:
    # current llama.cpp on an MLA GGUF: the latent only (PR 19067)
    got = kv_per_token(catalog, "deepseek-r1", "q4_K_M", Runtime.LLAMA_CPP, kv_layout=KVLayout.MLA_LATENT)
    assert got == 61 * 576 * 2


def test_every_catalog_entry_has_a_kv_size(catalog: Catalog) -> None:
    """Every variant x quant x runtime it runs on gives a positive per-token KV size."""
    for v in catalog.variants:
        for q in v.quants:
            for rt in q.runtimes:
                assert estimate(Request(v, q, rt, context=1024)).kv_bytes_per_token > 0


@pytest.mark.parametrize("tp", [1, 2, 4, 8])
def test_mla_latent_replicated_per_tp_rank(catalog: Catalog, tp: int) -> None:
    """vLLM keeps the whole latent on every TP rank: per-GPU KV does not shrink as TP grows."""
    v = catalog.get("deepseek-r1")
    e = estimate(
        Request(v, v.quant("fp8"), Runtime.VLLM, context=8192, gpu=gpu_spec("h200"), gpus_per_node=8, tp=tp)
    )
    per_gpu = {d.kv_cache_bytes for d in e.per_gpu}
    assert per_gpu == {8192 * 61 * 576 * 2}


def test_gqa_sharded_by_tp_and_replicated_past_kv_heads(catalog: Catalog) -> None:
    v = catalog.get("deepseek-r1-distill-qwen-7b")  # 4 KV heads
    sizes = {}
    for tp in (1, 2, 4):
        e = estimate(
            Request(
                v, v.quant("bf16"), Runtime.VLLM, context=4096, gpu=gpu_spec("l40s"), gpus_per_node=4, tp=tp
            )
        )
        sizes[tp] = e.per_gpu[0].kv_cache_bytes
    assert sizes[1] == 4096 * 57344
    assert sizes[2] == sizes[1] // 2
    assert sizes[4] == sizes[1] // 4
    v32 = catalog.get("deepseek-r1-distill-qwen-32b")  # 40 heads, 8 KV heads
    e8 = estimate(
        Request(v32, v32.quant("bf16"), Runtime.VLLM, context=4096, gpu=gpu_spec("h100"), gpus_per_node=8)
    )
    assert e8.per_gpu[0].kv_cache_bytes == 4096 * 64 * 2 * 1 * 128 * 2  # one KV head per GPU
