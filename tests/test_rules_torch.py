"""vLLM's and SGLang's version-dependent memory rules: each rule's table over releases, and a real corpus
log (tests/fixtures/logs/real/) that shows the mechanism with the log's own figures.

The mechanism tests feed a rule the figures a log prints (its free memory, weights, total) and compare
with the pool it prints; the check tests run `vramplan check` on the same log and look at the settings it
says it assumed. How close the estimate comes over the whole corpus is benchmarks/corpus.py's question.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from vramplan.arch import Architecture
from vramplan.catalog import Catalog
from vramplan.check import _error, check_log
from vramplan.logs import read_log
from vramplan.logs.types import GiB, ParsedLog
from vramplan.runtimes import Device, Runtime, rules_for
from vramplan.runtimes.sglang import (
    BY_GPU_MEMORY,
    DEFAULT_MEM_FRACTION,
    RESERVATION,
    TP_TABLE,
    SGLangRules,
    mem_fraction_by_gpu_memory,
    mem_fraction_by_tp,
)
from vramplan.runtimes.vllm import (
    NON_TORCH_V0,
    NON_TORCH_V1,
    V0_SAMPLER_BYTES_PER_LOGIT,
    VLLMRules,
    activation_bytes_v0,
    v0_profile_batch,
)

REAL = Path(__file__).parent / "fixtures" / "logs" / "real"


def log(name: str) -> ParsedLog:
    return read_log(REAL / name)


def arch_of(catalog: Catalog, model: str) -> Architecture:
    return catalog.resolve(model).variant.architecture


def sglang(version: str | None) -> SGLangRules:
    r = rules_for(Runtime.SGLANG, version)
    assert isinstance(r, SGLangRules)
    return r


def vllm(version: str | None) -> VLLMRules:
    r = rules_for(Runtime.VLLM, version)
    assert isinstance(r, VLLMRules)
    return r


# ------------------------------------------------------------------------------------------ SGLang


@pytest.mark.parametrize(
    "version, rule",
    [
        ("0.3.0", TP_TABLE),
        ("0.4.3.post4", TP_TABLE),
        ("0.4.7", BY_GPU_MEMORY),
        ("0.5.2", BY_GPU_MEMORY),
        ("0.5.3", RESERVATION),
        ("0.5.23", RESERVATION),
        (None, RESERVATION),
    ],
)
def test_sglang_default_fraction_rule_by_release(version: str | None, rule: str) -> None:
    assert DEFAULT_MEM_FRACTION.at(version) == rule
    assert sglang(version).default_fraction_rule == rule


def test_sglang_tp_table() -> None:
    assert [mem_fraction_by_tp(tp) for tp in (1, 2, 4, 8, 16, 32)] == [0.88, 0.87, 0.85, 0.81, 0.79, 0.79]


def test_sglang_fraction_by_gpu_memory() -> None:
    # PR 7054: reserved 2.8 + tp x pp / 10 GiB below 35 GiB, 9.5 + tp x pp / 2 below 90 GiB
    assert mem_fraction_by_gpu_memory(24 * GiB, 1, 1) == round((24 - 2.9) / 24, 3)
    assert mem_fraction_by_gpu_memory(80 * GiB, 16, 1) == round((80 - 17.5) / 80, 3)
    assert mem_fraction_by_gpu_memory(141 * GiB, 8, 1) == round((141 - 16) / 141, 3)
    assert mem_fraction_by_gpu_memory(192 * GiB, 8, 1) == round((192 - 32) / 192, 3)


def test_sglang_default_fraction_takes_the_release_rule(catalog: Catalog) -> None:
    arch = arch_of(catalog, "deepseek-r1-distill-llama-8b")
    d24 = Device(24 * GiB)
    assert sglang("0.4.2").default_mem_fraction_static(arch, d24, 1, 1) == 0.88
    assert sglang("0.4.9").default_mem_fraction_static(arch, d24, 1, 1) == 0.879
    newest = sglang(None).default_mem_fraction_static(arch, d24, 1, 1)
    assert newest < 0.8  # the reservation rule keeps ~7 GiB of a 24 GiB card


@pytest.mark.parametrize(
    "name, fraction",
    [
        ("distill-qwen-7b_rtx3090_sglang-0.4.2.log", None),  # prints 0.88
        ("qwq-32b_tp4_4xl4_sglang-0.4.3.post4.log", None),  # prints 0.85
        ("llama-3.1-8b_h100_sglang-docs-2025-01.log", None),  # prints 0.88
        ("llama-3.1-8b_24gb_sglang-2025-07.log", 0.879),  # not printed: PR 7054's for 24 GB, tp 1
    ],
)
def test_sglang_pool_is_fraction_of_free_memory_less_weights(name: str, fraction: float | None) -> None:
    """profile_max_num_token with the log's own figures gives the pool it prints, to its rounding."""
    p = log(f"sglang/{name}")
    frac = fraction if fraction is not None else p.settings.mem_fraction_static
    assert frac is not None
    free = min(b.figure.bytes for b in p.avail_before_weights)
    weights = p.weights[0].figure.bytes
    pool = sglang("0.4.2").kv_pool_from_free(free, weights, frac)
    printed = p.kv[0].figure
    assert abs(pool - printed.bytes) <= printed.resolution + 0.01 * GiB


def test_sglang_free_memory_from_the_end_line() -> None:
    # no begin line copied: avail mem 7.37 + mem usage 15.02 GB
    p = log("sglang/llama-3.1-8b_24gb_sglang-2025-07.log")
    assert [(b.device, b.figure.text) for b in p.avail_before_weights] == [("TP0", "22.39 GB")]


@pytest.mark.parametrize(
    "name, bound",
    [
        ("distill-qwen-7b_rtx3090_sglang-0.4.2.log", "0.4.3"),  # KV line without #tokens
        ("llama-3.1-8b_24gb_sglang-2025-07.log", "0.5"),  # weight end line without elapsed=
        ("r1_tp16_2x8xh100_mtp_sglang-0.4.3.log", "0.5"),
    ],
)
def test_sglang_version_bound_from_line_formats(name: str, bound: str) -> None:
    assert log(f"sglang/{name}").printed_before == bound


def test_check_sglang_states_the_assumed_release_and_fraction(catalog: Catalog) -> None:
    from vramplan.hardware import parse_gpu

    p = log("sglang/llama-3.1-8b_24gb_sglang-2025-07.log")
    r = check_log(catalog, p, "x", model="deepseek-r1-distill-llama-8b", gpu=parse_gpu("rtx-3090"))
    assert (
        "sglang version",
        "before 0.5",
        "assumed: the log prints no version; its line formats",
    ) in r.settings
    assert any(n.startswith("mem_fraction_static not printed: 0.879 assumed") for n in r.notes)
    pool = next(x for x in r.parts if x.part == "KV pool")
    assert abs(pool.error) < 0.10


# ------------------------------------------------------------------------------------------ vLLM


@pytest.mark.parametrize(
    "version, accounting",
    [
        ("0.6.3", "since init"),
        ("0.6.4", "device-wide"),
        ("0.6.5", "since baseline"),
        ("0.10.1", "since baseline"),
    ],
)
def test_vllm_v0_non_torch_accounting(version: str, accounting: str) -> None:
    assert NON_TORCH_V0.at(version) == accounting
    assert vllm(version).non_torch_accounting("V0")[0] == accounting


@pytest.mark.parametrize(
    "version, accounting",
    [
        ("0.7.3", "device-wide"),
        ("0.8.4", "device-wide"),
        ("0.9.1", "device-wide"),
        ("0.9.2", "since baseline"),
    ],
)
def test_vllm_v1_non_torch_accounting(version: str, accounting: str) -> None:
    assert NON_TORCH_V1.at(version) == accounting
    assert vllm(version).non_torch_accounting("V1")[0] == accounting


def test_vllm_engine_when_the_log_does_not_say() -> None:
    assert vllm("0.7.2").non_torch_accounting(None)[0] == "since baseline"  # V0 before 0.8
    assert vllm("0.8.4").non_torch_accounting(None)[0] == "device-wide"  # V1 from 0.8
    assert vllm(None).non_torch_accounting(None)[0] == "since baseline"  # current releases


@pytest.mark.parametrize(
    "context, batched, seqs, shape",
    [
        (20000, None, None, (20000, 256)),  # chunked prefill off up to 32K: one max_model_len prompt
        (1000, None, None, (2048, 256)),  # at least 2048
        (131072, None, None, (2048, 256)),  # chunked prefill on above 32K
        (131072, 1, 1, (1, 1)),  # the log's settings
    ],
)
def test_vllm_v0_profile_batch(
    context: int, batched: int | None, seqs: int | None, shape: tuple[int, int]
) -> None:
    b = v0_profile_batch(context, batched, seqs)
    assert (b.tokens, b.sequences) == shape


def test_vllm_v0_has_no_chunked_prefill_for_mla() -> None:
    assert v0_profile_batch(163840, None, None, mla=True).tokens == 163840
    assert v0_profile_batch(163840, None, None, mla=False).tokens == 2048


@pytest.mark.parametrize(
    "name, model",
    [
        ("v080dev_distill_qwen15b_8gb_card.log", "deepseek-r1-distill-qwen-1.5b"),
        ("v073dev_qwen25_7b_bnb_rtx4060_8gb_no_kv.log", "deepseek-r1-distill-qwen-7b"),
    ],
)
def test_vllm_v0_sampler_sort_is_the_printed_peak(catalog: Catalog, name: str, model: str) -> None:
    """Small max_model_len on V0: the peak the profile prints is the top-k / top-p sort of 256 rows."""
    p = log(f"vllm/{name}")
    assert p.activation_peak is not None and p.settings.context is not None
    arch = arch_of(catalog, model)
    act = activation_bytes_v0(arch, 1, v0_profile_batch(p.settings.context, None, None))
    assert act == 256 * arch.vocab_size * V0_SAMPLER_BYTES_PER_LOGIT
    assert abs(act - p.activation_peak.bytes) / p.activation_peak.bytes < 0.05


def test_vllm_v0_whole_prompt_profile(catalog: Catalog) -> None:
    """3090, 20000 and 29000 tokens (vllm issue 10517): the peak over the weights grows with the
    prompt, 2.07 and 2.99 GiB printed (peak_torch_memory less the weights)."""
    arch = arch_of(catalog, "deepseek-r1-distill-llama-8b")
    for context, printed in ((20000, 17.06 - 14.9888), (29000, 17.98 - 14.9888)):
        act = activation_bytes_v0(arch, 1, v0_profile_batch(context, None, None))
        assert abs(act / GiB - printed) / printed < 0.10


def test_vllm_v0_pipeline_refusal_tokens() -> None:
    # 2x RTX 5090, PP 2 (vllm issue 14452): 58,384 tokens = 16 x (7298 blocks // 2)
    assert vllm("0.8.5").v0_tokens_per_scheduler(7298, 16, 2) == 58384
    assert vllm("0.8.5").v0_tokens_per_scheduler(7298, 16, 1) == 7298 * 16


def test_check_v0_log_without_version_takes_v0_rules(catalog: Catalog) -> None:
    from vramplan.hardware import parse_gpu

    p = log("vllm/v064_llama31_8b_rtx3090_20k.log")
    r = check_log(catalog, p, "x", model="deepseek-r1-distill-llama-8b", gpu=parse_gpu("rtx-3090"))
    assert (
        "vllm version",
        "before 0.11",
        "assumed: the log prints no version; its lines are the V0 engine's",
    ) in (r.settings)
    assert r.request.runtime_version == "0.11.dev0"
    assert any("the log's total_gpu_memory 23.58 GiB" in n for n in r.notes)
    assert any(n.startswith("non-torch memory: the log's 0.35 GiB") for n in r.notes)
    parts = {x.part: x for x in r.parts}
    assert abs(parts["KV pool"].error) < 0.10


def test_check_v1_log_without_version_says_current_releases(catalog: Catalog) -> None:
    from vramplan.hardware import parse_gpu

    p = log("vllm/v084_v1_llama31_8b_l40s_32k.log")
    r = check_log(catalog, p, "x", model="deepseek-r1-distill-llama-8b", gpu=parse_gpu("l40s"))
    settings = {k: (v, src) for k, v, src in r.settings}
    assert settings["vllm version"][0] == "current releases"
    assert settings["gpu_memory_utilization"] == ("0.92", "assumed: the default of vLLM current releases")


# ------------------------------------------------------------------------------------------ errors


def test_error_is_finite_and_signed() -> None:
    assert _error(0, 5, 1) == 10.0  # a measured 0 counts as half its last digit
    assert math.isfinite(_error(0, 1e9, 1))
    assert _error(-100, -80, 1) == pytest.approx(0.2)  # the estimate is higher: positive
    assert _error(100, 100.4, 1) == 0.0  # within the log's rounding


def test_estimate_plans_for_current_releases() -> None:
    assert sglang(None).default_fraction_rule == DEFAULT_MEM_FRACTION.rows[-1][1]
    assert vllm(None).cudagraphs_before_pool is True


def test_vllm_log_without_p2p_takes_pcie_non_torch(catalog: Catalog) -> None:
    """custom_all_reduce.py's "lacks GPU P2P capability" line: NCCL over PCIe whatever the card's spec
    (2x A100 80GB PCIe in one node, vLLM 0.10.1.1): the pool with NVLink's 2.5 GiB is 17 % low."""
    from vramplan.hardware import parse_gpu

    p = log("vllm/v0101_qwen2_7b_2x_a100_80gb_tp2_util025.log")
    assert p.settings.p2p is False
    r = check_log(catalog, p, "x", model="deepseek-r1-distill-qwen-7b", gpu=parse_gpu("a100-80gb:2"))
    assert any("custom all-reduce is off for lack of GPU P2P" in n for n in r.notes)
    pool = next(x for x in r.parts if x.part == "KV pool")
    assert abs(pool.error) < 0.03
    assert log("vllm/v084_v1_llama31_8b_l40s_32k.log").settings.p2p is None


def test_sglang_max_total_tokens_caps_the_pool(catalog: Catalog) -> None:
    from vramplan.hardware import parse_gpu

    p = log("sglang/distill-qwen-7b_h100-ci_sglang-docs-2025-06.log")
    assert p.settings.max_total_tokens == 20480
    r = check_log(catalog, p, "x", model="deepseek-r1-distill-qwen-7b", gpu=parse_gpu("h100-80gb"))
    assert any(n.startswith("--max-total-tokens 20,480 caps the KV pool") for n in r.notes)
    tokens = next(x for x in r.parts if x.part == "KV tokens")
    assert tokens.error == 0.0
    assert SGLangRules.capped_pool(10, 1.0, None) == 10 and SGLangRules.capped_pool(10, 1.0, 4) == 4
