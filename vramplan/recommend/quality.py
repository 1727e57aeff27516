"""How good a plan is: the published quality of its variant, the loss of its quantization, and the
order of plans (quality first while the difference is larger than the evaluation noise, then speed)."""

from __future__ import annotations

from vramplan.catalog import Quant, Variant
from vramplan.precision import WeightFormat
from vramplan.quantmix import GGUF_FTYPES
from vramplan.recommend.options import Candidate
from vramplan.runtimes import Runtime

# The published scores that rank variants: every variant in the catalog has both (the R1 README's
# evaluation tables and the R1-0528 model card); their mean is the variant's quality score.
QUALITY_METRICS = ("aime_2024", "gpqa_diamond")

# Equal quality and speed: runtimes that `vramplan deploy` can start come first.
RUNTIME_ORDER = (Runtime.VLLM, Runtime.OLLAMA, Runtime.SGLANG, Runtime.LLAMA_CPP)


# The quality loss of a quantization, as a rank (0: none). Basis (docs/recommend.md): the published
# checkpoint's own precision (bf16, or DeepSeek's native FP8 for the 671B) loses nothing; 8-bit
# formats (FP8 of a bf16 model, GGUF Q8_0) next; then 5-6-bit k-quants; then 4-bit formats calibrated
# on data (AWQ, GPTQ) or with fine-grained FP8 scales (NVFP4, 16-element blocks); then 4-bit
# k-quants; then 3-, 2- and 1-bit types, fewer bits ranking lower. The GGUF order follows the
# perplexity each type adds on Llama-3-8B in llama.cpp's tools/quantize/quantize.cpp QUANT_OPTIONS
# (Q8_0 +0.0026, Q6_K +0.0217, Q5_K_M +0.0569, Q4_K_M +0.1754, Q4_0 +0.4685, Q2_K +3.5199; the IQ
# types listed by bits per weight: IQ2_XXS 2.06, IQ1_M 1.75, IQ1_S 1.56).
_GGUF_RANK = {
    "F32": 0,
    "F16": 0,
    "BF16": 0,
    "Q8_0": 1,
    "Q6_K": 2,
    "Q5_K": 2,
    "Q5_0": 2,
    "Q5_1": 2,
    "Q4_K": 4,
    "Q4_0": 4,
    "Q4_1": 4,
    "IQ4_XS": 4,
    "IQ4_NL": 4,
    "Q3_K": 5,
    "IQ3_XXS": 5,
    "IQ3_S": 5,
    "Q2_K": 6,
    "IQ2_S": 7,
    "IQ2_XS": 7,
    "IQ2_XXS": 7,
    "IQ1_M": 8,
    "IQ1_S": 9,
}
RANK_LABELS = {
    0: "full-precision",
    1: "8-bit",
    2: "5- or 6-bit",
    3: "4-bit",
    4: "4-bit",
    5: "3-bit",
    6: "2-bit",
    7: "2-bit",
    8: "1.75-bit",
    9: "1.58-bit",
}


def quality_score(variant: Variant) -> float | None:
    """The mean of the variant's published QUALITY_METRICS (those it has); None when it has none."""
    scores = variant.scores
    have = [scores[m] for m in QUALITY_METRICS if m in scores]
    return sum(have) / len(have) if have else None


def quant_rank(variant: Variant, quant: Quant) -> int:
    """The quantization's quality-loss rank within its variant (0: none); see _GGUF_RANK."""
    fmt = quant.format
    if fmt in (WeightFormat.BF16, WeightFormat.FP16):
        return 0
    if fmt is WeightFormat.FP8:
        native = variant.quant(variant.default_quant).format is WeightFormat.FP8
        return 0 if native else 1
    if fmt in (WeightFormat.NVFP4, WeightFormat.AWQ_INT4, WeightFormat.GPTQ_INT4):
        return 3
    base = GGUF_FTYPES.get((quant.scheme.gguf_ftype or "").upper(), "")
    return _GGUF_RANK.get(base, 4)


# --------------------------------------------------------------------------- ranking


def rank_key(c: Candidate) -> tuple[float, int, float, int, int, str, str]:
    """Best first: published quality, then the quantization's quality loss, then the decode-speed
    bound, then runtimes `vramplan deploy` starts, then fewer GPUs; names break the last ties."""
    quality = c.quality if c.quality is not None else -1.0
    return (
        -quality,
        c.quant_rank,
        -(c.tokens_per_second or 0.0),
        RUNTIME_ORDER.index(c.runtime),
        c.gpus_used,
        c.variant.id,
        c.quant.name,
    )
