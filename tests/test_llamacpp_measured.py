"""Measured ground truth: vramplan's estimate against what real llama.cpp allocates.

Tiny random-weight GGUFs of the catalog's architectures (llama, qwen2, qwen3, deepseek2 with MLA and with
the pre-MLA layout, MoE) are written with the `gguf` package, quantized by llama.cpp's own quantizer
(llama-cpp-python's `llama_model_quantize`), and loaded by llama.cpp (CPU, in child processes, see
tests/support/llamacpp_probe.py). Then, for the same settings:

- weights: vramplan's bytes (its tensor inventory and its llama-quantize rules for the file type, never
  the file's sizes) equal `llama_model_size()` exactly, all placed on the host for a CPU run;
- KV cache: vramplan's bytes equal the context bytes of `llama_get_memory_breakdown()` exactly, over
  n_ctx values on and off the 256 grid, 1 / 2 / 4 parallel slots, f16 and q8_0 caches (flash attention),
  real allocations and llama.cpp's sizing-only mode (no_alloc) for 131072 and 1M cells;
- compute buffer: vramplan's modelled bytes within COMPUTE_TOLERANCE of the breakdown's compute bytes;
- the catalog's real shapes (header-only GGUFs in sizing-only mode): KV exact, compute within 10 %.

llama-cpp-python is a test dependency (the `test` extra, built from source by the README's command); if
it cannot be imported these tests fail, they do not skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support import llamacpp_probe, tiny_gguf
from tests.support.llamacpp_lab import CONTEXTS, EXTRA_FTYPES, FTYPES, MODELS, Ctx, Lab
from tests.support.tiny_gguf import write_tiny_gguf
from tests.support.tiny_variant import request_for, spec_for_architecture
from vramplan.catalog import load_catalog
from vramplan.estimate import HOST, estimate
from vramplan.runtimes import Runtime

pytestmark = pytest.mark.llamacpp

MiB = 1 << 20

# The compute buffer is a model of ggml-alloc's peak, not an identity (runtimes.compute_buffer_ggml):
# within 10 % of llama.cpp's own figure (every catalog shape is), or 1.5 MiB for the tiny models' few-MiB
# buffers, where ggml-alloc's placement of a few small tensors is a large share (docs/estimation.md,
# "llama.cpp compute buffer").
COMPUTE_TOLERANCE = 0.10
COMPUTE_SLACK = 3 * MiB // 2


def compute_ok(modelled: int, measured: int) -> bool:
    return abs(modelled - measured) <= max(COMPUTE_TOLERANCE * measured, COMPUTE_SLACK)


def _require_llama_cpp() -> None:
    try:
        import gguf  # noqa: F401
        import llama_cpp  # noqa: F401
    except ImportError as e:  # a test dependency: fail loudly, never skip
        pytest.fail(
            f"the measured-memory tests need llama-cpp-python and gguf ({e}); install the test extra: "
            'CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install -e ".[test]"',
            pytrace=False,
        )


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Lab]:
    _require_llama_cpp()
    lab = Lab(tmp_path_factory.mktemp("llamacpp"))
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
    lab.build(Path(cache.mkdir("llamacpp-tiny-models")) if cache else lab.root / "models")
    lab.measure([(name, c.no_alloc, c.params()) for name in MODELS for c in CONTEXTS])
    yield lab


# --------------------------------------------------------------------------- weights


@pytest.mark.parametrize(
    ("name", "ftype"),
    [(n, ft) for n in MODELS for ft in FTYPES + EXTRA_FTYPES.get(n, ())],
)
def test_weights_equal_llama_model_size(lab: Lab, name: str, ftype: str) -> None:
    measured = lab.sizes[name, ftype]
    assert measured["ok"], measured
    spec = MODELS[name]
    est = estimate(request_for(spec, ftype, 4096, base_dtype="bf16" if ftype == "BF16" else "f16"))
    assert est.weights_bytes == measured["model_size_bytes"]
    # a CPU plan keeps everything on the host
    assert est.per_gpu == () and est.host.index == HOST
    assert est.host.weights_bytes == est.weights_bytes
    assert est.params == measured["model_n_params"]


# --------------------------------------------------------------------------- KV cache and compute buffer


@pytest.mark.parametrize("ctx", CONTEXTS, ids=str)
@pytest.mark.parametrize("name", list(MODELS))
def test_kv_cache_equals_llama_cpp(lab: Lab, name: str, ctx: Ctx) -> None:
    m = lab.get(name, ctx.no_alloc, ctx.params())
    est = estimate(request_for(MODELS[name], "F16", ctx.n_ctx, ctx.n_seq, ctx.kv, ctx.flash_attn))
    # cells: n_ctx padded to 256, split over the slots (each padded again), not multiplied by them
    assert est.kv_cells == m["n_ctx"] == m["kv_size"] * m["n_stream"]
    assert est.kv_cells // ctx.n_seq == m["n_ctx_seq"]
    assert est.kv_cache_bytes == m["kv_bytes"]
    assert est.host.kv_cache_bytes == est.kv_cache_bytes
    if name == "deepseek2-mla":  # the latent only: no V cache at all
        assert m["kv_line"]["v_mib"] == 0.0 and m["v_bytes"] == 0


@pytest.mark.parametrize("ctx", CONTEXTS, ids=str)
@pytest.mark.parametrize("name", list(MODELS))
def test_compute_buffer_within_tolerance(lab: Lab, name: str, ctx: Ctx) -> None:
    m = lab.get(name, ctx.no_alloc, ctx.params())
    est = estimate(request_for(MODELS[name], "F16", ctx.n_ctx, ctx.n_seq, ctx.kv, ctx.flash_attn))
    measured, modelled = m["compute_bytes"], est.host.activation_bytes
    assert compute_ok(modelled, measured), (
        f"compute buffer: vramplan {modelled / MiB:.2f} MiB, llama.cpp {measured / MiB:.2f} MiB"
    )


def test_sizing_only_mode_reports_what_an_allocation_gets(lab: Lab) -> None:
    """no_alloc sizing (used above for the large contexts) gives the bytes a real allocation gets."""
    ctx = Ctx(4096, 2, "q8_0", True).params()
    lab.measure([(name, True, ctx) for name in MODELS] + [(name, False, ctx) for name in MODELS])
    for name in MODELS:
        sized, real = lab.get(name, True, ctx), lab.get(name, False, ctx)
        assert (sized["kv_bytes"], sized["compute_bytes"]) == (real["kv_bytes"], real["compute_bytes"])


def test_ollama_reserves_logits_for_every_token(lab: Lab) -> None:
    """A program that leaves n_outputs_max at 0 (Ollama's runner) reserves logits for the whole
    micro-batch: vramplan's Ollama plan says so, its llama.cpp (server) plan reserves one row per slot."""
    spec = MODELS["llama"].with_(vocab=4096)
    path = lab.root / "llama-vocab4096.gguf"
    write_tiny_gguf(path, spec, "F16")
    ctxs = [llamacpp_probe.context_params(4096, 1, flash_attn=True, n_outputs_max=n) for n in (0, 1)]
    every, one = llamacpp_probe.measure_many(path, ctxs)
    assert every["ok"] and one["ok"]
    for runtime, m in ((Runtime.OLLAMA, every), (Runtime.LLAMA_CPP, one)):
        est = estimate(request_for(spec, "F16", 4096, flash_attn=True, runtime=runtime))
        assert compute_ok(est.host.activation_bytes, m["compute_bytes"]), runtime
    assert every["compute_bytes"] > one["compute_bytes"]


def test_logs_carry_the_figures(lab: Lab) -> None:
    """What `vramplan check` reads: the log lines agree with the API's exact bytes."""
    m = lab.get("qwen2", False, Ctx(4096).params())
    parsed = llamacpp_probe.parse_log(m["log"])
    assert abs(parsed["kv_line"]["mib"] * MiB - m["kv_bytes"]) <= 0.005 * MiB
    assert abs(sum(parsed["compute_buffers_mib"].values()) * MiB - m["compute_bytes"]) <= 0.005 * MiB
    assert parsed["kv_line"]["cells"] == 4096


@pytest.mark.parametrize("name", list(MODELS))
def test_quantized_model_in_a_real_context(lab: Lab, name: str) -> None:
    """A Q4_K_M file loaded for real (mmap, no repacking): the weights sit in one host buffer that is
    the file's tensor bytes plus GGUF's 32-byte alignment between tensors, and KV and compute buffers
    do not depend on the weight type."""
    ctx = Ctx(4096, 2, "q8_0", True)
    m = llamacpp_probe.measure_many(lab.files[name, "Q4_K_M"], [ctx.params()])[0]
    assert m["ok"], m.get("error")
    est = estimate(request_for(MODELS[name], "Q4_K_M", ctx.n_ctx, ctx.n_seq, ctx.kv, ctx.flash_attn))
    n_tensors = len(tiny_gguf.tensor_plan(MODELS[name]))
    assert est.host.weights_bytes == m["model_size_bytes"]
    assert est.host.weights_bytes <= m["model_buffer_bytes"] <= est.host.weights_bytes + 32 * n_tensors
    assert est.kv_cache_bytes == m["kv_bytes"]
    assert compute_ok(est.host.activation_bytes, m["compute_bytes"])


# --------------------------------------------------------------------------- catalog shapes, sized only

# Real shapes of the catalog, sized by llama.cpp without allocating (header-only GGUFs): the smallest
# and a mid distill, and the 671B with and without MLA, at llama-server's -c / -np / cache type / -fa.
SHAPES = {
    "qwen2-1.5b": ("deepseek-r1-distill-qwen-1.5b", True),
    "llama-8b": ("deepseek-r1-distill-llama-8b", True),
    "671b-mla": ("deepseek-r1", True),
    "671b-pre-mla": ("deepseek-r1", False),
}
SHAPE_CONTEXTS = [Ctx(8192, 1, "f16", False, True), Ctx(65536, 4, "q8_0", True, True)]


@pytest.fixture(scope="session")
def shapes(lab: Lab) -> dict[str, list[dict[str, object]]]:
    catalog = load_catalog()

    def size(label: str) -> list[dict[str, object]]:
        model, mla = SHAPES[label]
        spec = spec_for_architecture(catalog.get(model).architecture, mla=mla)
        path = write_tiny_gguf(lab.root / f"shape-{label}.gguf", spec, "Q8_0", shape_only=True).path
        return llamacpp_probe.measure_many(path, [c.params() for c in SHAPE_CONTEXTS], no_alloc=True)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(SHAPES, pool.map(size, SHAPES), strict=True))


@pytest.mark.parametrize("ctx", SHAPE_CONTEXTS, ids=str)
@pytest.mark.parametrize("label", list(SHAPES))
def test_catalog_shapes_sized_by_llama_cpp(
    shapes: dict[str, list[dict[str, object]]], label: str, ctx: Ctx
) -> None:
    m = shapes[label][SHAPE_CONTEXTS.index(ctx)]
    assert m["ok"], m.get("error")
    model, mla = SHAPES[label]
    spec = spec_for_architecture(load_catalog().get(model).architecture, mla=mla)
    est = estimate(request_for(spec, "Q8_0", ctx.n_ctx, ctx.n_seq, ctx.kv, ctx.flash_attn))
    assert est.kv_cache_bytes == m["kv_bytes"]
    measured = m["compute_bytes"]
    assert isinstance(measured, int)
    assert abs(est.host.activation_bytes - measured) <= COMPUTE_TOLERANCE * measured
