"""Real SGLang startup logs (tests/fixtures/logs/real/sglang, each with its source in its header and in
index.yaml): every one parses into the figures and settings it prints, and `vramplan check` compares it
(exit 0). How close the estimate comes is the benchmark's business, not these tests'."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import Result

from vramplan.logs import read_log
from vramplan.logs.sglang import parse
from vramplan.logs.types import GiB
from vramplan.runtimes import Runtime

REAL = Path(__file__).parent / "fixtures" / "logs" / "real" / "sglang"
INDEX: list[dict[str, Any]] = yaml.safe_load((REAL / "index.yaml").read_text())
# the logs the rules were built on; the held-out ones are read by tests/test_corpus.py and the benchmark
TUNED = [e for e in INDEX if not e["held_out"]]


def gb(value: float) -> int:
    return round(value * GiB)


def per_rank(bufs: tuple[Any, ...]) -> list[tuple[str, int]]:
    return [(b.device, b.figure.bytes) for b in bufs]


def test_index_lists_every_log_once() -> None:
    # the held-out logs are read by tests/test_corpus.py and benchmarks/corpus.py only
    tuned = [e for e in INDEX if not e["held_out"]]
    held = {e["file"] for e in INDEX if e["held_out"]}
    assert sorted(e["file"] for e in tuned) == sorted(
        p.name for p in REAL.glob("*.log") if p.name not in held
    )
    keys = {"file", "source", "runtime", "version", "model", "same_architecture", "gpu", "args", "held_out"}
    for e in tuned:
        assert set(e) - {"misses"} == keys and e["runtime"] == "sglang"
        header = (REAL / e["file"]).read_text().splitlines()[0]
        assert header == f"# source: {e['source']}"


def test_3090_distill_7b_early_2025_without_token_count_or_mem_usage() -> None:
    p = read_log(REAL / "distill-qwen-7b_rtx3090_sglang-0.4.2.log")
    assert (p.runtime, p.model) == (Runtime.SGLANG, "/sgl-workspace/models/DeepSeek-R1-Distill-Qwen-7B")
    s = p.settings
    assert (s.tp, s.dp, s.nnodes, s.context, s.mem_fraction_static, s.kv_cache_dtype) == (
        1,
        1,
        1,
        131072,
        0.88,
        "auto",
    )
    assert (s.chunked_prefill_size, s.max_running_requests, s.cuda_graph_max_bs, s.dp_attention) == (
        2048,
        2049,
        8,
        False,
    )
    assert s.max_total_tokens is None and s.quantization is None
    # "Load weight begin. avail mem=22.76 GB" - "Load weight end. ... avail mem=8.37 GB"
    assert per_rank(p.weights) == [("TP0", gb(14.39))]
    assert any("drop in available memory" in n for n in p.notes)
    # "KV Cache is allocated. K size: 2.82 GB, V size: 2.82 GB." has no token count: the scheduler's
    assert per_rank(p.kv) == [("TP0", 2 * gb(2.82))] and p.kv_tokens == 105_531
    assert per_rank(p.avail_before_weights) == [("TP0", gb(22.76))]
    assert p.cuda_graph == () and not p.kv_from_avail


def test_qwq_on_four_l4_per_rank_lines() -> None:
    p = read_log(REAL / "qwq-32b_tp4_4xl4_sglang-0.4.3.post4.log")
    s = p.settings
    assert (s.tp, s.context, s.mem_fraction_static, s.chunked_prefill_size, s.cuda_graph_max_bs) == (
        4,
        131072,
        0.85,
        2048,
        80,
    )
    ranks = ["TP0", "TP1", "TP2", "TP3"]
    assert per_rank(p.weights) == [(r, gb(15.54)) for r in ranks]  # "mem usage=15.54 GB."
    assert per_rank(p.kv) == [(r, 2 * gb(1.42)) for r in ranks] and p.kv_tokens == 46_611
    assert per_rank(p.avail_before_weights) == [(r, gb(21.63)) for r in ranks]
    # 0.4.3's order: "Capture cuda graph end. Time elapsed: 7.23 s. avail mem=0.53 GB. mem usage=0.93 GB."
    assert per_rank(p.cuda_graph) == [(r, gb(0.93)) for r in ranks]
    assert p.notes == ()


def test_llama_8b_docs_log_of_january_2025() -> None:
    p = read_log(REAL / "llama-3.1-8b_h100_sglang-docs-2025-01.log")
    s = p.settings
    assert (p.model, s.tp, s.context, s.mem_fraction_static, s.chunked_prefill_size) == (
        "meta-llama/Meta-Llama-3.1-8B-Instruct", 1, 131072, 0.88, 8192,
    )  # fmt: skip
    assert per_rank(p.weights) == [("TP0", gb(78.81 - 63.72))]
    assert per_rank(p.kv) == [("TP0", 2 * gb(27.13))] and p.kv_tokens == 444_500


def test_llama_8b_24gb_excerpt_without_server_args() -> None:
    p = read_log(REAL / "llama-3.1-8b_24gb_sglang-2025-07.log")
    s = p.settings
    assert p.model is None and s.mem_fraction_static is None
    assert (s.tp, s.context, s.chunked_prefill_size, s.max_running_requests) == (1, 131072, 2048, 2048)
    assert any("from the ranks it names" in n for n in p.notes)
    assert per_rank(p.weights) == [("TP0", gb(15.02))]
    assert per_rank(p.kv) == [("TP0", 2 * gb(2.33))] and p.kv_tokens == 38_141
    # 0.4.5 on: "Capture cuda graph end. Time elapsed: 18.07 s. mem usage=0.11 GB. avail mem=0.83 GB."
    assert per_rank(p.cuda_graph) == [("TP0", gb(0.11))]


def test_r1_tp16_two_nodes_tp_from_the_command_line_and_pool_from_avail() -> None:
    p = read_log(REAL / "r1_tp16_2x8xh100_mtp_sglang-0.4.3.log")
    s = p.settings
    assert (p.model, s.tp, s.nnodes) == ("deepseek-ai/DeepSeek-R1", 16, 2)
    assert per_rank(p.weights) == [(r, gb(40.46)) for r in ("TP0", "TP1", "TP3", "TP7")]
    # no MLA KV line in this version: "Load weight end ... avail mem=35.52 GB" - "Memory pool end. avail mem=16.08 GB"
    assert p.kv_from_avail and per_rank(p.kv) == [("TP0", gb(19.44)), ("TP3", gb(19.44))]
    assert p.kv_tokens is None


def test_tp_from_every_form() -> None:
    # ServerArgs beats the command line; the command line's long and short flags; the rank prefixes last
    assert (
        parse(
            "server_args=ServerArgs(model_path='m', tp_size=4, dp_size=2, enable_dp_attention=True)"
        ).settings.tp
        == 4
    )
    for flag in ("--tp 8", "--tp-size 8", "--tensor-parallel-size 8", "--tp=8"):
        s = parse(
            f"python3 -m sglang.launch_server --model-path m {flag} --dp 8 --enable-dp-attention\n"
        ).settings
        assert (s.tp, s.dp, s.dp_attention) == (8, 8, True), flag
    text = "\n".join(
        f"[2025-11-04 05:27:13 DP{i} TP{i} EP{i}] Load weight end. type=DeepseekV3ForCausalLM, dtype=torch.bfloat16, "
        "avail mem=75.11 GB, mem usage=107.07 GB."
        for i in range(8)
    )
    assert parse(text).settings.tp == 8
    assert (
        parse(
            "[gpu_id=1] Load weight end. type=Qwen2ForCausalLM, dtype=torch.bfloat16, avail mem=15.95 GB\n"
        ).settings.tp
        == 2
    )


def test_kv_line_with_dtype_2026() -> None:
    p = parse(
        "[2026-05-28 05:58:18] Load weight end. elapsed=3.30 s, type=LlamaForCausalLM, avail mem=39.15 GB, mem usage=15.49 GB.\n"
        "[2026-05-28 05:58:21] KV Cache is allocated. dtype: torch.bfloat16, #tokens: 20480, K size: 1.25 GB, V size: 1.25 GB\n"
    )
    assert (
        per_rank(p.weights) == [("TP0", gb(15.49))]
        and per_rank(p.kv) == [("TP0", gb(2.5))]
        and p.kv_tokens == 20480
    )


def test_r1_decode_server_dp_attention_two_nodes_0_4_6() -> None:
    # the launch_server command of the thread, then "[time DP2 TP2]" lines (DP attention, before the EP suffix)
    p = read_log(REAL / "r1_decode_dp16_tp16_2x8xh20-3e_sglang-0.4.6.log")
    s = p.settings
    assert (p.model, s.tp, s.dp, s.dp_attention, s.nnodes) == (
        "/pfs/pfs-iQ14no/models/DeepSeek-R1",
        16,
        16,
        True,
        2,
    )
    assert (s.context, s.mem_fraction_static, s.chunked_prefill_size, s.max_running_requests) == (
        4096,
        0.846,
        81920,
        4096,
    )
    assert s.kv_cache_dtype is None and s.max_total_tokens is None
    # "Load weight end. ... avail mem=31.87 GB, mem usage=105.59 GB." on the ranks the copy shows
    assert per_rank(p.weights) == [(r, gb(105.59)) for r in ("TP0", "TP2", "TP3")]
    # MLA: "KV Cache is allocated. #tokens: 161488, KV size: 10.57 GB"
    assert per_rank(p.kv) == [(r, gb(10.57)) for r in ("TP1", "TP3", "TP5", "TP7")]
    assert p.kv_tokens == 161_488 and not p.kv_from_avail and p.cuda_graph == ()


def test_v3_with_cpu_experts_kt_launch_2026() -> None:
    # KTransformers' kt-kernel launch: `--model` (the alias of --model-path), `--tensor-parallel-size`
    p = read_log(REAL / "v3_kt-cpu-experts_tp2_48gb_sglang-kt-2026-01.log")
    s = p.settings
    assert (p.model, s.tp, s.mem_fraction_static, s.max_total_tokens, s.max_running_requests) == (
        "/home/models/DeepSeekV3",
        2,
        0.9,
        10000,
        10,
    )
    assert s.chunked_prefill_size == 4096 and s.context is None
    assert per_rank(p.weights) == [("TP0", gb(13.06))]
    assert per_rank(p.kv) == [("TP0", gb(0.65)), ("TP1", gb(0.65))] and p.kv_tokens == 10_000
    # free memory before the weights from the end line: avail mem + mem usage = 33.80 + 13.06 GB
    assert [(b.device, round(b.figure.bytes / 1e9, 2)) for b in p.avail_before_weights] == [
        ("TP0", round(gb(33.80 + 13.06) / 1e9, 2))
    ]
    assert p.cuda_graph == ()


@pytest.mark.parametrize(
    ("name", "model", "context", "begin", "used"),
    [
        (
            "distill-qwen-7b_h100-ci_sglang-docs-2025-06.log",
            "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
            131072,
            78.48,
            43.12,
        ),
        ("qwen2.5-7b_h100-ci_sglang-docs-2025-06.log", "Qwen/Qwen2.5-7B-Instruct", 32768, 77.30, 30.79),
    ],
)
def test_docs_ci_logs_of_june_2025_with_a_token_cap(
    name: str, model: str, context: int, begin: float, used: float
) -> None:
    # the docs' CI launch: ServerArgs with pp_size (0.4.7 on) and max_total_tokens=20480
    p = read_log(REAL / name)
    s = p.settings
    assert (p.model, s.tp, s.pp, s.dp, s.context, s.mem_fraction_static) == (model, 1, 1, 1, context, 0.874)
    assert (s.max_total_tokens, s.max_running_requests, s.chunked_prefill_size) == (20480, 200, 8192)
    # "mem usage" is the drop in free memory while loading, on a GPU other notebooks load on too
    assert per_rank(p.weights) == [("TP0", gb(used))]
    assert per_rank(p.avail_before_weights) == [("TP0", gb(begin))]
    assert per_rank(p.kv) == [("TP0", 2 * gb(0.55))] and p.kv_tokens == 20480
    assert p.cuda_graph == () and p.notes == ()


def test_r1_nvfp4_on_b200_tp_from_every_rank_line() -> None:
    # only TP0 printed memory lines; "[... TP3] Applied flashinfer weight processing ..." names the others
    p = read_log(REAL / "r1-nvfp4_tp4_4xb200_sglang-2025-08.log")
    assert p.settings.tp == 4 and any("TP0-TP3" in n for n in p.notes)
    assert per_rank(p.weights) == [("TP0", gb(94.51))]
    assert per_rank(p.avail_before_weights) == [("TP0", gb(175.34))]
    assert p.kv == () and p.kv_tokens is None


def test_r1_on_mi308x_weights_only_0_4_6() -> None:
    p = read_log(REAL / "r1_tp8_8xmi308x_sglang-0.4.6.log")
    assert p.settings.tp == 8 and p.model is None
    # "Load weight end. ... avail mem=103.71 GB, mem usage=81.66 GB." on the five ranks the copy keeps
    assert per_rank(p.weights) == [(r, gb(81.66)) for r in ("TP0", "TP2", "TP3", "TP5", "TP7")]
    assert p.kv == ()
    # free memory before the weights from each end line: avail mem + mem usage
    assert [b.device for b in p.avail_before_weights] == ["TP0", "TP2", "TP3", "TP5", "TP7"]
    assert all(abs(b.figure.bytes - gb(185.4)) < gb(0.5) for b in p.avail_before_weights)


def test_llama_8b_pr_excerpt_of_march_2025() -> None:
    p = read_log(REAL / "llama-3.1-8b_h100_sglang-0.4.4-pr4760.log")
    s = p.settings
    assert (p.model, s.tp, s.context, s.mem_fraction_static) == (None, 1, None, None)
    assert per_rank(p.weights) == [("TP0", gb(15.11))]
    assert per_rank(p.kv) == [("TP0", 2 * gb(27.02))] and p.kv_tokens == 442_750
    assert p.cuda_graph == ()  # the copy stops at "Capture cuda graph begin"


def test_eagle3_draft_lines_after_the_target_model_are_not_its_figures() -> None:
    # the draft model loads after the target and prints its own weight and KV lines on the same rank
    p = read_log(REAL / "llama-3.1-8b_eagle3_h100-ci_sglang-docs-2025-06.log")
    s = p.settings
    assert (p.model, s.dtype, s.mem_fraction_static, s.max_total_tokens, s.context) == (
        "meta-llama/Llama-3.1-8B-Instruct",
        "float16",
        0.6,
        20480,
        131072,
    )
    assert per_rank(p.weights) == [("TP0", gb(15.02))]  # not the draft's 1.82 GB
    assert per_rank(p.kv) == [("TP0", 2 * gb(1.25))] and p.kv_tokens == 20480
    assert per_rank(p.avail_before_weights) == [("TP0", gb(78.50))]


@pytest.mark.parametrize("entry", TUNED, ids=[e["file"] for e in TUNED])
def test_check_compares_every_log(entry: dict[str, Any], run: Callable[..., Result]) -> None:
    r = run("check", str(REAL / entry["file"]), *entry["args"], "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    parts = {p["part"] for p in data["parts"]}
    assert "weights" in parts
    if read_log(REAL / entry["file"]).kv:  # a copy with no KV or pool line has no pool to compare
        assert "KV pool" in parts
