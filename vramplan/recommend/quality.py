"""How good a plan is: the published quality of its variant, the loss of its quantization, and the
order of plans (quality first while the difference is larger than the evaluation noise, then speed)."""

from __future__ import annotations

from collections.abc import Iterable

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

# Evaluation noise, as a share of a score. Two measurements of the same unquantized checkpoint differ
# by more than this: DeepSeek publishes R1-0528 at AIME 2024 91.4 and GPQA Diamond 81.0 (mean 86.20,
# its model card), while ISTA-DASLab, re-running it with DeepSeek's settings (pass@1 over 10 seeds,
# temperature 0.6, top-p 0.95), measured 88.66 and 79.65 (mean 84.16, 2.4 % lower), and a 4-bit GPTQ
# of it 101.21 % of that on GPQA Diamond (model card of ISTA-DASLab/DeepSeek-R1-0528-GPTQ-4b-128g-
# experts). A smaller difference in quality is not evidence that one plan answers better: speed
# decides. The 70B and 32B distills (67.60 and 67.35) are one quality; the 14B (64.40) is not.
QUALITY_NOISE = 0.02

# 8-bit formats lose less than the noise: Neural Magic's FP8 and INT8 (W8A8) quantizations of every
# R1 distill recover at least 99 % of the unquantized scores on AIME 2024, MATH-500 and GPQA Diamond,
# except INT8 of the 1.5B (97 %) (neuralmagic.com, "Quantized DeepSeek-R1 Models: Deployment-Ready
# Reasoning Models", 2025-02-27), and GGUF Q8_0 adds +0.0026 perplexity on Llama-3-8B, the least of
# any type (llama.cpp tools/quantize/quantize.cpp QUANT_OPTIONS). 4-bit formats lose more: the same
# study's INT4 (W4A16) recovers "97 %+" for 7B and larger, up to 3 %, beyond the noise.
WITHIN_NOISE_RANK = 1  # quant ranks 0 (release precision) and 1 (8-bit) are one quality


def quality_groups(scores: Iterable[float | None]) -> dict[float | None, int]:
    """Each score's quality group, 0 the best: from the highest score down, a score within
    QUALITY_NOISE of its group's first (highest) score joins the group, a lower one starts the next.
    Variants without a score form the last group."""
    groups: dict[float | None, int] = {}
    leader: float | None = None
    n = -1
    for s in sorted({s for s in scores if s is not None}, reverse=True):
        if leader is None or s < leader * (1 - QUALITY_NOISE):
            leader, n = s, n + 1
        groups[s] = n
    groups[None] = n + 1
    return groups


def loss_class(rank: int) -> int:
    """The quantization's loss as ranking sees it: the ranks within the noise of the release precision
    (0 and 1) are one class; the others keep their rank."""
    return 0 if rank <= WITHIN_NOISE_RANK else rank


def rank_key(c: Candidate) -> tuple[int, int, float, float, int, int, int, str, str]:
    """Best first: the variant's quality group (scores within QUALITY_NOISE are one quality), then the
    quantization's loss class (16- and 8-bit are one), then the decode-speed bound; then the exact
    score and quantization rank, runtimes `vramplan deploy` starts, fewer GPUs; names break the
    last ties."""
    quality = c.quality if c.quality is not None else -1.0
    return (
        c.quality_group,
        loss_class(c.quant_rank),
        -(c.tokens_per_second or 0.0),
        -quality,
        c.quant_rank,
        RUNTIME_ORDER.index(c.runtime),
        c.gpus_used,
        c.variant.id,
        c.quant.name,
    )
