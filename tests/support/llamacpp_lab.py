"""The llama.cpp test bench: the tiny models, the file types and contexts they are measured at, and the
`Lab` that writes, quantizes (llama.cpp's own quantizer) and measures them in child processes.

Shared by tests/test_llamacpp_measured.py (which asserts vramplan's estimate against every measurement)
and benchmarks/accuracy.py (which tabulates them in docs/accuracy.md).
"""

from __future__ import annotations

import hashlib
import inspect
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import llamacpp_probe, tiny_gguf
from .tiny_gguf import TinySpec, spec_for, write_tiny_gguf
from .tiny_variant import LLAMA_FTYPES

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
