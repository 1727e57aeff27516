"""Invariants of the estimator, checked by hypothesis over the whole catalog.

- memory grows (never shrinks) with context, with concurrency, and with precision;
- each device's total is the sum of its parts, and the plan's total the sum of its devices.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vramplan.catalog import Quant, Variant, load_catalog
from vramplan.estimate import Estimate, Request, estimate
from vramplan.hardware import gpu_spec
from vramplan.precision import KVDtype
from vramplan.runtimes import Runtime

CATALOG = load_catalog()
CASES = [(v, q, rt) for v in CATALOG.variants for q in v.quants for rt in q.runtimes]
GPUS = ["h200", "h100-80gb", "a100-80gb", "l40s", "rtx-4090"]


@st.composite
def plans(draw: st.DrawFn) -> tuple[Variant, Quant, Runtime, int, int, str, int]:
    v, q, rt = draw(st.sampled_from(CASES))
    ctx = draw(st.integers(1, v.architecture.max_position_embeddings // 2))
    conc = draw(st.integers(1, 16))
    gpu = draw(st.sampled_from(GPUS))
    count = draw(st.sampled_from([1, 2, 4, 8]))
    return v, q, rt, ctx, conc, gpu, count


def run(
    v: Variant, q: Quant, rt: Runtime, ctx: int, conc: int, gpu: str, count: int, **kw: object
) -> Estimate:
    return estimate(
        Request(v, q, rt, context=ctx, concurrency=conc, gpu=gpu_spec(gpu), gpus_per_node=count, **kw)
    )  # type: ignore[arg-type]


def check_sums(e: Estimate) -> None:
    for d in (*e.per_gpu, e.host):
        assert d.total_bytes == d.weights_bytes + d.kv_cache_bytes + d.activation_bytes + d.overhead_bytes
        assert min(d.weights_bytes, d.kv_cache_bytes, d.activation_bytes, d.overhead_bytes) >= 0
    assert e.gpu_bytes == sum(d.total_bytes for d in e.per_gpu)
    assert e.total_bytes == e.gpu_bytes + e.host.total_bytes  # the host part of an offload included
    assert e.kv_cache_bytes == sum(d.kv_cache_bytes for d in (*e.per_gpu, e.host))


@settings(max_examples=150, deadline=None)
@given(plans(), st.integers(1, 65536))
def test_monotone_in_context(plan: tuple, extra: int) -> None:  # type: ignore[type-arg]
    v, q, rt, ctx, conc, gpu, count = plan
    more = min(ctx + extra, v.architecture.max_position_embeddings)
    a = run(v, q, rt, ctx, conc, gpu, count)
    b = run(v, q, rt, more, conc, gpu, count)
    check_sums(a)
    check_sums(b)
    assert b.kv_cache_bytes >= a.kv_cache_bytes
    assert b.total_bytes >= a.total_bytes
    assert all(db.total_bytes >= da.total_bytes for da, db in zip(a.per_gpu, b.per_gpu, strict=True))


@settings(max_examples=150, deadline=None)
@given(plans(), st.integers(1, 16))
def test_monotone_in_concurrency(plan: tuple, extra: int) -> None:  # type: ignore[type-arg]
    v, q, rt, ctx, conc, gpu, count = plan
    a = run(v, q, rt, ctx, conc, gpu, count)
    b = run(v, q, rt, ctx, conc + extra, gpu, count)
    assert b.kv_cache_bytes >= a.kv_cache_bytes
    assert b.total_bytes >= a.total_bytes


# Precision orders, least to most bytes: weights and KV cache.
WEIGHT_ORDER = ["q4_K_M", "q8_0", "f16"]
HF_ORDER = ["int4", "fp8", "bf16"]  # int4: the variant's AWQ or GPTQ build
KV_ORDER = {
    Runtime.LLAMA_CPP: [KVDtype.Q4_0, KVDtype.Q8_0, KVDtype.FP16],
    Runtime.OLLAMA: [KVDtype.Q4_0, KVDtype.Q8_0, KVDtype.FP16],
    Runtime.VLLM: [KVDtype.FP8, KVDtype.BF16],
    Runtime.SGLANG: [KVDtype.FP8, KVDtype.BF16],
}


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from([v for v in CATALOG.variants if v.family == "distill"]),
    st.integers(256, 32768),
    st.sampled_from(GPUS),
)
def test_monotone_in_weight_precision(v: Variant, ctx: int, gpu: str) -> None:
    int4 = next(q.name for q in v.quants if q.format.value in ("awq-int4", "gptq-int4"))
    for order, rt in ((WEIGHT_ORDER, Runtime.LLAMA_CPP), (HF_ORDER, Runtime.VLLM)):
        names = [int4 if n == "int4" else n for n in order]
        totals = [run(v, v.quant(name), rt, ctx, 1, gpu, 1).total_bytes for name in names]
        assert totals == sorted(totals)


@settings(max_examples=100, deadline=None)
@given(plans())
def test_monotone_in_kv_precision(plan: tuple) -> None:  # type: ignore[type-arg]
    v, q, rt, ctx, conc, gpu, count = plan
    per_token = [
        run(v, q, rt, ctx, conc, gpu, count, kv_cache_dtype=d).kv_bytes_per_token for d in KV_ORDER[rt]
    ]
    assert per_token == sorted(per_token)
    # Whole cache: vLLM pages an fp8 MLA cache in 64-token blocks (FlashMLA) and a bf16 one in 16, so
    # below 64 tokens the fp8 cache can be the larger; compare at whole 64-token blocks.
    ctx = max(64, ctx // 64 * 64)
    kvs = [run(v, q, rt, ctx, conc, gpu, count, kv_cache_dtype=d).kv_cache_bytes for d in KV_ORDER[rt]]
    assert kvs == sorted(kvs)


@settings(max_examples=60, deadline=None)
@given(plans())
def test_max_context_fits_and_next_does_not(plan: tuple) -> None:  # type: ignore[type-arg]
    v, q, rt, ctx, conc, gpu, count = plan
    e = run(v, q, rt, ctx, conc, gpu, count)
    assert e.max_context is not None
    if e.max_context >= 1:
        assert run(v, q, rt, e.max_context, conc, gpu, count).fits
    if 0 < e.max_context < v.architecture.max_position_embeddings:
        assert not run(v, q, rt, e.max_context + 1, conc, gpu, count).fits
