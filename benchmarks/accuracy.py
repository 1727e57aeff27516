"""Estimate against measured: every case the project has, with the error of each part.

Cases:
- the corpus of real startup logs users published (tests/fixtures/logs/real/, run through
  `vramplan check` by benchmarks/corpus.py): per runtime and part, the count, median and worst error,
  the share within issue 9's tolerances, and every miss with its cause; the held-out logs (gathered
  after the rules were final, run once) apart;
- published startup logs of vLLM and SGLang serving R1 and the distills (each cited below);
- llama.cpp (llama-cpp-python 0.3.36, CPU), measured here: every configuration of
  tests/test_llamacpp_measured.py (tiny random-weight GGUFs quantized by llama.cpp's own quantizer:
  weights from `llama_model_size()`, KV and compute bytes from `llama_get_memory_breakdown()`), and every
  catalog architecture at its real shape in llama.cpp's sizing-only mode (no_alloc: the KV and compute
  buffers llama.cpp would allocate, without allocating them).

`python benchmarks/accuracy.py` measures, prints the table and rewrites docs/accuracy.md (about a minute on
two cores; it needs the `test` extra, which builds llama-cpp-python).
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vramplan.catalog import load_catalog  # noqa: E402
from vramplan.estimate import Estimate, Request, estimate  # noqa: E402
from vramplan.hardware import gpu_spec  # noqa: E402
from vramplan.precision import KVDtype  # noqa: E402
from vramplan.runtimes import Runtime, vllm_cudagraph_bytes, vllm_non_torch_bytes  # noqa: E402

GiB = 1 << 30


@dataclass
class Case:
    name: str
    source: str
    request: Callable[[], Request]
    # part -> (measured bytes, how to read the estimate's value of that part)
    parts: dict[str, tuple[float, Callable[[Estimate], float]]] = field(default_factory=dict)
    note: str = ""


def _req(model: str, quant: str, runtime: Runtime, **kw: object) -> Callable[[], Request]:
    def make() -> Request:
        v = load_catalog().get(model)
        return Request(v, v.quant(quant), runtime, **kw)  # type: ignore[arg-type]

    return make


def _vllm_pool_before_graphs(e: Estimate) -> float:
    """vLLM before v0.21 did not subtract CUDA graphs: pool = usable - weights - activations - non-torch."""
    g = e.per_gpu[0]
    assert g.usable_bytes is not None
    tp, pp = e.topology.tensor_parallel, e.topology.pipeline_parallel
    return g.usable_bytes - g.weights_bytes - g.activation_bytes - vllm_non_torch_bytes(tp, pp)


def _graphs(e: Estimate) -> float:
    arch = load_catalog().get(e.model).architecture
    return vllm_cudagraph_bytes(arch, e.topology.tensor_parallel)


def _non_torch(e: Estimate) -> float:
    return vllm_non_torch_bytes(e.topology.tensor_parallel, e.topology.pipeline_parallel)


def published_cases() -> list[Case]:
    return [
        Case(
            "R1-0528 FP8, vLLM 0.11.2, TP 8, 8 x H200, util 0.90, 8192 tokens",
            "vLLM startup log in a memory-estimator project's validation fixtures "
            "(gpu_model_runner / gpu_worker / kv_cache_utils lines); GPU taken as H200",
            _req(
                "deepseek-r1-0528",
                "fp8",
                Runtime.VLLM,
                context=8192,
                gpu=gpu_spec("h200"),
                gpus_per_node=8,
                gpu_memory_utilization=0.90,
            ),
            {
                "weights per GPU": (79.7390 * GiB, lambda e: e.per_gpu[0].weights_bytes),
                "KV bytes per token": (41.60 * GiB / 635_648, lambda e: e.kv_bytes_per_token),
                "KV pool per GPU": (41.60 * GiB, _vllm_pool_before_graphs),
                "CUDA graphs (calibration point)": (0.51 * GiB, _graphs),
            },
            "Model loading took 79.7390 GiB; Available KV cache memory: 41.60 GiB; 635,648 tokens",
        ),
        Case(
            "R1 FP8, vLLM 0.7 (V0, Ray), TP 8 x PP 2, 16 x H20 141 GB",
            "https://github.com/vllm-project/vllm/issues/13074",
            _req(
                "deepseek-r1",
                "fp8",
                Runtime.VLLM,
                context=8192,
                gpu=gpu_spec("h200"),
                gpus_per_node=8,
                nodes=2,
                gpu_memory_utilization=1.0,
            ),
            {
                "weights per GPU (stage 0)": (39.66 * GiB, lambda e: e.per_gpu[0].weights_bytes),
                "non-torch memory (calibration point)": (2.53 * GiB, _non_torch),
            },
            "V0 engine: its MLA weight processing differed from V1's",
        ),
        Case(
            "Qwen2-7B (the 7B distill's shapes) bf16, vLLM 0.9, one A100 slice",
            "vLLM startup log in a blog post (2025-07-24): Model loading took 14.2488 GiB; "
            "GPU KV cache size: 63,776 tokens = 3.41 GiB",
            _req("deepseek-r1-distill-qwen-7b", "bf16", Runtime.VLLM, context=4096),
            {
                "weights per GPU": (14.2488 * GiB, lambda e: e.per_gpu[0].weights_bytes),
                "KV bytes per token": (3.41 * GiB / 63_776, lambda e: e.kv_bytes_per_token),
            },
        ),
        Case(
            "R1-Distill-Qwen-7B bf16, SGLang (Feb 2025), RTX 3090, mem fraction 0.88",
            "jerryzsj/my-deepseek-r1 README: avail mem 22.76 -> 8.37 GB after weights; "
            "K size 2.82 GB, V size 2.82 GB, max_total_num_tokens=105531",
            _req(
                "deepseek-r1-distill-qwen-7b",
                "bf16",
                Runtime.SGLANG,
                context=4096,
                kv_cache_dtype=KVDtype.AUTO,
            ),
            {
                "weights per GPU": ((22.76 - 8.37) * GiB, lambda e: e.per_gpu[0].weights_bytes),
                "KV bytes per token": (2 * 2.82 * GiB / 105_531, lambda e: e.kv_bytes_per_token),
            },
            "SGLang's 'GB' are GiB (memory_pool.py GB = 1024**3); the weight figure includes allocator slack",
        ),
    ]


@dataclass
class Row:
    case: str
    part: str
    measured: float
    estimated: float

    @property
    def error(self) -> float:
        return (self.estimated - self.measured) / self.measured


def rows(cases: list[Case]) -> list[Row]:
    out = []
    for c in cases:
        e = estimate(c.request())
        for part, (measured, read) in c.parts.items():
            out.append(Row(c.name, part, measured, float(read(e))))
    return out


def fmt(b: float) -> str:
    if b < 1 << 20:
        return f"{b:,.0f} B"
    if b < GiB:
        return f"{b / (1 << 20):.2f} MiB"
    return f"{b / GiB:.2f} GiB"


# --------------------------------------------------------------------------- llama.cpp, measured here

LLAMACPP_SOURCE = (
    "measured by benchmarks/accuracy.py with llama-cpp-python 0.3.36 (portable CPU build): "
    "`llama_model_size()` and `llama_get_memory_breakdown()`; tiny models as in "
    "tests/test_llamacpp_measured.py, "
    "catalog shapes in llama.cpp's sizing-only mode (no_alloc)"
)

# the catalog shapes: (total cells, slots, KV type, flash attention): llama-server -c / -np / -ctk -ctv / -fa
_REAL_CONTEXTS = (
    (4096, 1, "f16", False),
    (32768, 1, "f16", True),
    (131072, 4, "q8_0", True),
    (131072, 1, "f16", False),
)


def llamacpp_rows() -> list[Row]:
    """Every llama.cpp case: the CI configurations, then the catalog's shapes."""
    import tempfile

    from tests.support import llamacpp_probe
    from tests.support.llamacpp_lab import CONTEXTS, EXTRA_FTYPES, FTYPES, MODELS, Lab
    from tests.support.tiny_gguf import write_tiny_gguf
    from tests.support.tiny_variant import request_for, spec_for_architecture

    out: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="vramplan-accuracy-") as tmp:
        lab = Lab(Path(tmp))
        lab.build(ROOT / ".pytest_cache" / "d" / "llamacpp-tiny-models")
        lab.measure([(name, c.no_alloc, c.params()) for name in MODELS for c in CONTEXTS])
        for name, spec in MODELS.items():
            for ft in FTYPES + EXTRA_FTYPES.get(name, ()):
                base = "bf16" if ft == "BF16" else "f16"
                e = estimate(request_for(spec, ft, 4096, base_dtype=base))
                measured = lab.sizes[name, ft]["model_size_bytes"]
                out.append(
                    Row(f"tiny {name} {ft} (CI)", "llama.cpp weights, tiny models", measured, e.weights_bytes)
                )
        for name, spec in MODELS.items():
            for c in CONTEXTS:
                m = lab.get(name, c.no_alloc, c.params())
                e = estimate(request_for(spec, "F16", c.n_ctx, c.n_seq, c.kv, c.flash_attn))
                case = f"tiny {name}, {_ctx_name(c.n_ctx, c.n_seq, c.kv, c.flash_attn, c.no_alloc)} (CI)"
                out.append(Row(case, "llama.cpp KV cache, tiny models", m["kv_bytes"], e.kv_cache_bytes))
                compute = e.host.activation_bytes
                out.append(Row(case, "llama.cpp compute buffer, tiny models", m["compute_bytes"], compute))
        catalog = load_catalog()
        shapes = []
        seen = set()
        for v in catalog.variants:
            if v.architecture_id not in seen:
                seen.add(v.architecture_id)
                shapes.append((v.architecture_id, v, True))
        r1 = catalog.get("deepseek-r1")
        shapes.append((r1.architecture_id + " pre-MLA GGUF", r1, False))
        for label, v, mla in shapes:
            spec = spec_for_architecture(v.architecture, mla=mla)
            path = Path(tmp) / "shape.gguf"
            write_tiny_gguf(path, spec, "Q8_0", shape_only=True)
            ctxs = [
                llamacpp_probe.context_params(n, s, kv, kv, fa, n_outputs_max=s)
                for n, s, kv, fa in _REAL_CONTEXTS
            ]
            results = llamacpp_probe.measure_many(path, ctxs, no_alloc=True)
            for (n, s, kv, fa), m in zip(_REAL_CONTEXTS, results, strict=True):
                assert m["ok"], m.get("error")
                e = estimate(request_for(spec, "Q8_0", n, s, kv, fa))
                case = f"{label}, {_ctx_name(n, s, kv, fa, True)}"
                out.append(Row(case, "llama.cpp KV cache, catalog shapes", m["kv_bytes"], e.kv_cache_bytes))
                compute = e.host.activation_bytes
                out.append(Row(case, "llama.cpp compute buffer, catalog shapes", m["compute_bytes"], compute))
    return out


def _ctx_name(n_ctx: int, n_seq: int, kv: str, fa: bool, sized: bool) -> str:
    return f"-c {n_ctx} -np {n_seq} {kv} KV{' -fa' if fa else ''}{', sized' if sized else ''}"


def corpus_sections() -> list[str]:
    import corpus  # benchmarks/corpus.py, beside this file

    entries = corpus.load_entries()
    tuned = corpus.run_all([e for e in entries if not e.held_out])
    held = corpus.run_all([e for e in entries if e.held_out])
    tolerances = ", ".join(f"{part} {tol:.0%}" for part, tol in corpus.TOLERANCES.items())
    return [
        "Tolerances (issue 9): " + tolerances + f"; target: {corpus.TARGET_SHARE:.0%} of comparisons within.",
        "A difference within the log's own rounding counts as 0. Every log carries a header with its source",
        "URL, runtime and version, GPU, settings and what is inferred; the index beside it names the",
        "`vramplan check` arguments used.",
        "",
        *corpus.markdown(tuned, "Real logs: the corpus the rules were built on"),
        *corpus.markdown(
            held,
            "Held-out real logs: gathered after the rules were final, run once",
            (
                "Gathered on 2026-12-06 by searches made after the last rule change, taken in the order",
                "the searches found them, and run through `vramplan check` once; no rule, reader or catalog",
                "entry changed after that run. The causes below were written after it. One log the gatherers",
                "found (LM Studio, R1-0528-Qwen3-8B on an RTX 3060 Ti) had been seen while the rules were",
                "written, before its source was known, so it sits in the corpus above, not here.",
            ),
        ),
    ]


def render(cases: list[Case], table: list[Row]) -> str:
    lines = [
        "# Accuracy: estimate against measured",
        "",
        "Generated by `python benchmarks/accuracy.py`; do not edit by hand. Error = (estimate - measured) /",
        "measured. Published logs give MiB / GiB with two decimals, so their last digit is the resolution;",
        "the llama.cpp rows are exact bytes from llama.cpp's API.",
        "",
        *corpus_sections(),
        "## Calibration cases and llama.cpp measured here: summary by part",
        "",
        "| part | cases | equal to the byte | median error | worst error |",
        "|---|---|---|---|---|",
    ]
    by_part: dict[str, list[Row]] = {}
    for r in table:
        key = r.part.split(" (")[0]
        by_part.setdefault(key, []).append(r)
    for part, rs in sorted(by_part.items()):
        errs = [r.error for r in rs]
        worst = max(errs, key=abs)
        exact = sum(r.estimated == r.measured for r in rs)
        lines.append(f"| {part} | {len(rs)} | {exact} | {statistics.median(errs):+.2%} | {worst:+.2%} |")
    lines += [
        "",
        "## Every case",
        "",
        "| case | part | measured | estimate | error |",
        "|---|---|---|---|---|",
    ]
    for r in table:
        lines.append(f"| {r.case} | {r.part} | {fmt(r.measured)} | {fmt(r.estimated)} | {r.error:+.2%} |")
    lines += ["", "## Sources", ""]
    lines.append(f"- **llama.cpp rows**: {LLAMACPP_SOURCE}")
    for c in cases:
        extra = f" — {c.note}" if c.note else ""
        lines.append(f"- **{c.name}**: {c.source}{extra}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    cases = published_cases()
    table = rows(cases) + llamacpp_rows()
    text = render(cases, table)
    (ROOT / "docs" / "accuracy.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
