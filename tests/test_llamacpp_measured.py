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
- compute buffer: vramplan's modelled bytes within COMPUTE_TOLERANCE of the breakdown's compute bytes.

llama-cpp-python is a test dependency (the `test` extra, built from source by the README's command); if
it cannot be imported these tests fail, they do not skip.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support import llamacpp_probe, tiny_gguf
from tests.support.tiny_gguf import TinySpec, spec_for, write_tiny_gguf
from tests.support.tiny_variant import LLAMA_FTYPES, request_for
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


# The test models: rows of 256 so the K- and IQ-quants apply without falling back; n_ctx_train 1M so a
# 1M-cell context is a context vramplan accepts. deepseek2 has one dense and one MoE layer (4 experts,
# 2 used, 1 shared), q LoRA as in R1, and is written both ways: MLA (latent only cached) and pre-MLA.
_CTX_TRAIN = 1 << 20
MODELS: dict[str, TinySpec] = {
    "llama": spec_for("llama", hidden=256, head_dim=64, ffn=256, vocab=320, n_ctx_train=_CTX_TRAIN),
    "qwen2": spec_for("qwen2", hidden=256, head_dim=64, ffn=256, vocab=320, n_ctx_train=_CTX_TRAIN),
    "qwen3": spec_for("qwen3", hidden=256, head_dim=128, ffn=256, vocab=320, n_ctx_train=_CTX_TRAIN),
    "deepseek2-mla": spec_for(
        "deepseek2",
        hidden=256,
        layers=2,
        ffn=256,
        vocab=320,
        q_lora_rank=256,
        kv_lora_rank=256,
        v_head_dim=64,
        expert_ffn=256,
        n_ctx_train=_CTX_TRAIN,
    ),
}
MODELS["deepseek2-legacy"] = MODELS["deepseek2-mla"].with_(mla=False)

# Every model in every one of these file types. F16 / BF16 are what the converter writes; the others are
# made from the F16 file by llama.cpp's quantizer. IQ4_XS is the IQ type (the lower IQ types need an
# importance matrix and take seconds per model to quantize; IQ3_XXS is covered on one model below).
FTYPES = ("F16", "BF16", "Q8_0", "Q4_0", "Q4_K_M", "Q6_K", "IQ4_XS")
EXTRA_FTYPES = {"llama": ("Q2_K", "Q3_K_M", "Q5_K_M", "IQ3_XXS"), "deepseek2-legacy": ("Q2_K", "Q4_K_S")}
# llama-quant.cpp `tensor_requires_imatrix`: these cannot be made without one (ones change no type choice)
_NEEDS_IMATRIX = {"IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "Q2_K_S"}


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


@dataclass
class Lab:
    """Writes, quantizes and measures the test models once per session, in parallel children."""

    root: Path
    files: dict[tuple[str, str], Path] = field(default_factory=dict)
    sizes: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    measured: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)

    def build(self, cache: Path) -> None:
        """Every model in every file type; quantized files are kept in pytest's cache, keyed by the
        writer's source, the spec and llama-cpp-python's version, so a rerun only measures."""
        import llama_cpp

        key_src = inspect.getsource(tiny_gguf) + llama_cpp.__version__
        jobs: list[tuple[str, list[tuple[Path, Path, int, dict[str, int] | None]]]] = []
        for name, spec in MODELS.items():
            digest = hashlib.sha256((key_src + repr(spec)).encode()).hexdigest()[:16]
            d = cache / f"{name}-{digest}"
            d.mkdir(parents=True, exist_ok=True)
            src = d / "F16.gguf"
            if src.exists():
                written = write_tiny_gguf(self.root / f"{name}-shape.gguf", spec, "F16", shape_only=True)
            else:
                written = write_tiny_gguf(_part(src), spec, "F16")
                os.replace(written.path, src)
            imatrix = {
                t.name: t.ne[0] * (t.ne[2] if len(t.ne) > 2 else 1) for t in written.tensors if len(t.ne) > 1
            }
            mine = []
            for ft in FTYPES + EXTRA_FTYPES.get(name, ()):
                path = d / f"{ft}.gguf"
                self.files[name, ft] = path
                if ft == "F16" or path.exists():
                    continue
                if ft == "BF16":
                    os.replace(write_tiny_gguf(_part(path), spec, "BF16").path, path)
                    continue
                tmp = _part(path)
                mine.append((tmp, path, LLAMA_FTYPES[ft], imatrix if ft in _NEEDS_IMATRIX else None))
            jobs.append((name, mine))

        def run(job: list[tuple[Path, Path, int, dict[str, int] | None]], src: Path) -> list[str]:
            if not job:
                return []
            res = llamacpp_probe.quantize_many([(src, tmp, ft, im) for tmp, _, ft, im in job], n_threads=1)
            errors = []
            for (tmp, final, _, _), r in zip(job, res, strict=True):
                if r["ok"]:
                    os.replace(tmp, final)  # atomic: parallel sessions (pytest -n) write the same bytes
                else:
                    errors.append(f"{final}: {r.get('error') or r.get('log', '')[-500:]}")
            return errors

        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(run, job, self.files[name, "F16"]) for name, job in jobs]
            errors = [e for f in futures for e in f.result()]
        assert not errors, "llama.cpp's quantizer failed:\n" + "\n".join(errors)
        keys = list(self.files)
        sizes = llamacpp_probe.model_sizes([self.files[k] for k in keys])
        self.sizes = dict(zip(keys, sizes, strict=True))

    def measure(self, plan: list[tuple[str, bool, dict[str, Any]]]) -> None:
        """Measure every (model, no_alloc, context) of `plan`: one child per model and mode, two at once."""
        groups: dict[tuple[str, bool], list[dict[str, Any]]] = {}
        for name, no_alloc, ctx in plan:
            groups.setdefault((name, no_alloc), []).append(ctx)

        def run(name: str, no_alloc: bool, ctxs: list[dict[str, Any]]) -> None:
            res = llamacpp_probe.measure_many(self.files[name, "F16"], ctxs, no_alloc)
            for ctx, r in zip(ctxs, res, strict=True):
                self.measured[_key(name, no_alloc, ctx)] = r

        with ThreadPoolExecutor(max_workers=2) as pool:
            for f in [pool.submit(run, n, a, c) for (n, a), c in groups.items()]:
                f.result()

    def get(self, name: str, no_alloc: bool, ctx: dict[str, Any]) -> dict[str, Any]:
        r = self.measured[_key(name, no_alloc, ctx)]
        assert r["ok"], (
            f"llama.cpp failed: {r.get('error')}\n{r.get('stderr', '')[-2000:]}\n{r.get('log', '')[-3000:]}"
        )
        return r


def _part(path: Path) -> Path:
    """A private name to write `path` under before renaming it into place."""
    return path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.part")


def _key(name: str, no_alloc: bool, ctx: dict[str, Any]) -> tuple[Any, ...]:
    return (name, no_alloc, *sorted(ctx.items()))


# --------------------------------------------------------------------------- the configurations


@dataclass(frozen=True)
class Ctx:
    """One context: total cells `n_ctx` over `n_seq` slots, as llama-server's -c / -np give them."""

    n_ctx: int
    n_seq: int = 1
    kv: str = "f16"
    flash_attn: bool = False
    no_alloc: bool = False

    def params(self) -> dict[str, Any]:
        # llama-server reserves one output row per slot (tools/server/server-context.cpp)
        return llamacpp_probe.context_params(
            self.n_ctx, self.n_seq, self.kv, self.kv, self.flash_attn, n_outputs_max=self.n_seq
        )

    def __str__(self) -> str:
        fa = "-fa" if self.flash_attn else ""
        mode = "-sized" if self.no_alloc else ""
        return f"ctx{self.n_ctx}x{self.n_seq}-{self.kv}{fa}{mode}"


CONTEXTS = [
    Ctx(256),
    Ctx(1000),  # padded to 1024
    Ctx(4096),
    Ctx(3000, 2),  # 3072 cells, 1536 per slot
    Ctx(4096, 4),  # the slots split n_ctx: 1024 each
    Ctx(1000, 4),  # 1024 total, 256 per slot
    Ctx(4096, 1, "q8_0", True),
    Ctx(6000, 2, "q8_0", True),
    Ctx(4096, 1, "f16", True),
    Ctx(131072, 1, "f16", True, no_alloc=True),
    Ctx(131072, 4, "q8_0", True, no_alloc=True),
    Ctx(32768, 1, "f16", False, no_alloc=True),
    Ctx(1 << 20, 1, "q8_0", True, no_alloc=True),
]


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
