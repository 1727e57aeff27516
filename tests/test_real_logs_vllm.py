"""The corpus of real vLLM startup logs (tests/fixtures/logs/real/vllm/): every log parses into the figures
and settings it prints, and `vramplan check` compares it with the estimate.

Each file's `# ` header names its source (an issue or PR thread), the version, GPU and model, and what was
inferred; index.yaml gives the arguments `check` needs. The expected values below are the log's own text
(bytes = the printed number x 2**30, which is what vLLM divides by whether it prints "GB" or "GiB").
No tolerances here: how close the estimate comes is the benchmark's question, not this file's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import Result

from vramplan.logs import read_log
from vramplan.logs.types import GiB, ParsedLog
from vramplan.logs.vllm import _command
from vramplan.runtimes import Runtime

REAL = Path(__file__).parent / "fixtures" / "logs" / "real" / "vllm"
INDEX: list[dict[str, Any]] = yaml.safe_load((REAL / "index.yaml").read_text())
HEADER_KEYS = ("source", "runtime", "gpu", "model", "settings", "inferred")
# the logs the rules were built on; the held-out ones are read by tests/test_corpus.py and the benchmark
TUNED = [e for e in INDEX if not e["held_out"]]


def gib(text: str) -> int:
    return round(float(text) * GiB)


def header(name: str) -> dict[str, str]:
    """The leading `# key: value` lines of a corpus log."""
    out: dict[str, str] = {}
    for line in (REAL / name).read_text().splitlines():
        if not line.startswith("# "):
            break
        key, _, value = line[2:].partition(": ")
        out[key] = value
    return out


def parsed(name: str) -> ParsedLog:
    return read_log(REAL / name)


# ------------------------------------------------------------------------------------------ the corpus


def test_index_lists_every_log_once_with_its_keys() -> None:
    # the held-out logs are read by tests/test_corpus.py and benchmarks/corpus.py only
    held = {e["file"] for e in INDEX if e["held_out"]}
    files = sorted(p.name for p in REAL.glob("*.log") if p.name not in held)
    tuned = [e for e in INDEX if not e["held_out"]]
    assert sorted(e["file"] for e in tuned) == files
    keys = {"file", "source", "runtime", "version", "model", "same_architecture", "gpu", "args", "held_out"}
    for e in tuned:
        assert set(e) - {"misses"} == keys, e["file"]
        assert e["runtime"] == "vllm"
        assert e["source"].startswith("https://github.com/")


@pytest.mark.parametrize("entry", TUNED, ids=[e["file"] for e in TUNED])
def test_header_names_source_and_inferences(entry: dict[str, Any]) -> None:
    h = header(entry["file"])
    assert tuple(h) == HEADER_KEYS
    assert h["source"].startswith(entry["source"])
    assert h["runtime"].startswith("vllm ")
    # the index's version is the one the log prints, and the reader keeps it as printed
    assert parsed(entry["file"]).version == entry["version"]


@pytest.mark.parametrize("entry", TUNED, ids=[e["file"] for e in TUNED])
def test_check_compares_every_log(entry: dict[str, Any], run: Callable[..., Result]) -> None:
    res = run("check", str(REAL / entry["file"]), *entry["args"], "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["runtime"] == "vllm"
    assert doc["model"] == entry["model"]
    assert doc["parts"], entry["file"]


# ------------------------------------------------------------------------------------------ V0, 0.6.4


def test_v064_one_line_profile_summary_and_blocks_3090_20k() -> None:
    p = parsed("v064_llama31_8b_rtx3090_20k.log")
    assert (p.runtime, p.engine, p.version, p.model) == (Runtime.VLLM, "V0", None, None)
    assert [(w.device, w.figure.bytes, w.figure.text) for w in p.weights] == [
        ("rank 0", gib("14.9888"), "14.9888 GB")
    ]
    assert p.kv_available is not None and p.kv_available.bytes == gib("3.81")
    assert p.non_torch is not None and p.non_torch.bytes == gib("0.35")
    s = p.settings
    assert s.gpu_total is not None and s.gpu_total.bytes == gib("23.58")
    assert (s.gpu_memory_utilization, s.context, s.block_size) == (0.90, 20000, None)
    # "GPU blocks: 1952" (the "# " lost in the paste) x the default block size 16
    assert (p.kv_blocks, p.kv_tokens, p.kv_tokens_from) == (1952, 1952 * 16, "blocks")
    assert (p.max_concurrency, p.concurrency_len) == (1.56, 20000)
    assert any("1952 GPU blocks x 16" in n for n in p.notes)


def test_v064_refusal_is_the_pool_in_tokens_3090_29k() -> None:
    p = parsed("v064_llama31_8b_rtx3090_29k_refusal.log")
    assert p.kv_blocks == 1478
    # the refusal's N is blocks x block_size (vllm/worker/worker.py raise_if_cache_size_invalid)
    assert (p.kv_tokens, p.kv_tokens_from) == (23648, "refusal") and 1478 * 16 == 23648
    assert p.settings.context == 29000
    assert p.kv_available is not None and p.kv_available.bytes == gib("2.89")


# ------------------------------------------------------------------------------------------ V0, 0.6.5 to 0.8


def test_pr10511_one_value_a_line_profile_table() -> None:
    p = parsed("v065dev_llama3_8b_h100_pr10511.log")
    assert p.engine == "V0"
    assert [(w.device, w.figure.bytes) for w in p.weights] == [("rank 0", gib("14.96"))]
    assert p.kv_available is not None and p.kv_available.bytes == gib("53.29")
    assert p.non_torch is not None and p.non_torch.bytes == gib("1.79")
    assert p.activation_peak is not None and p.activation_peak.bytes == gib("1.26")
    assert p.usable is not None and p.usable.bytes == gib("71.29")
    s = p.settings
    assert s.gpu_total is not None and s.gpu_total.bytes == gib("79.22")
    assert s.gpu_memory_utilization == 0.90


def test_v07_command_line_and_refusal_2x4090() -> None:
    p = parsed("v07_distill_qwen14b_2x4090_tp2_refusal.log")
    assert p.model == "/root/autodl-tmp/deepseek-ai/DeepSeek-R1-Distill-Qwen-14B"
    s = p.settings
    assert (s.tp, s.pp, s.gpu_memory_utilization, s.context) == (2, None, 0.98, 131072)
    # the one loading line is a worker's; the driver's was cut off as published
    assert [(w.device, w.figure.bytes) for w in p.weights] == [("rank 0", gib("13.9476"))]
    assert (p.kv_tokens, p.kv_tokens_from) == (81536, "refusal")
    assert p.kv_available is None


def test_v07_ray_two_nodes_tp8_pp2_h20() -> None:
    p = parsed("v07_r1_h20_141gb_tp8_pp2_ray_2nodes.log")
    s = p.settings
    assert (s.tp, s.pp, s.context, s.gpu_memory_utilization) == (8, 2, 131072, 1.0)
    assert (s.max_running_requests, s.max_num_batched_tokens) == (1, 1)
    assert p.model == "/mnt/models/DeepSeek-R1-671B"
    # no loading line survives: the profiler's "model weights take" is the driver's weights
    assert [(w.device, w.figure.bytes) for w in p.weights] == [("rank 0", gib("39.66"))]
    assert p.kv_available is not None and p.kv_available.bytes == gib("97.29")
    assert p.non_torch is not None and p.non_torch.bytes == gib("2.53")
    assert p.activation_peak is not None and p.activation_peak.bytes == gib("0.24")
    assert p.usable is not None and p.usable.bytes == gib("139.72")
    assert s.gpu_total is not None and s.gpu_total.bytes == gib("139.72")


def test_v073_no_blocks_negative_pool_rtx4060() -> None:
    p = parsed("v073dev_qwen25_7b_bnb_rtx4060_8gb_no_kv.log")
    assert (p.version, p.engine) == ("0.7.3.dev233+gad5a35c2", "V0")
    s = p.settings
    assert (s.context, s.tp, s.pp, s.gpu_memory_utilization) == (4096, 1, 1, 0.70)
    assert (s.quantization, s.kv_cache_dtype, s.enforce_eager, s.dtype) == (
        "bitsandbytes",
        "auto",
        False,
        "torch.bfloat16",
    )
    assert [w.figure.bytes for w in p.weights] == [gib("5.2032")]
    assert p.kv_available is not None and p.kv_available.bytes == gib("-1.05")
    assert p.activation_peak is not None and p.activation_peak.bytes == gib("1.42")
    # "# cuda blocks: 0" and "0.00x": no token count to compare, and a note that says why
    assert (p.kv_blocks, p.kv_tokens, p.max_concurrency) == (0, None, None)
    assert any("no KV cache blocks" in n for n in p.notes)


def test_v080_bracketed_prefix_8gb_card() -> None:
    p = parsed("v080dev_distill_qwen15b_8gb_card.log")
    assert [w.figure.text for w in p.weights] == ["3.3414 GB"]
    assert (p.kv_blocks, p.kv_tokens) == (5148, 5148 * 16)
    assert p.kv_available is not None and p.kv_available.bytes == gib("2.20")
    assert p.usable is not None and p.usable.bytes == gib("6.97")
    assert (p.max_concurrency, p.settings.context) == (41.18, 2000)


def test_v085_engine_line_wrapped_and_pp2_refusal_2x5090() -> None:
    p = parsed("v085dev_qwq32b_bnb_2x5090_pp2_refusal.log")
    assert (p.version, p.engine, p.model) == (
        "0.8.5.dev169+gce17db808.d20250423",
        "V0",
        "/models/QwQ-32B-unsloth-bnb-4bit",
    )
    s = p.settings
    assert (s.context, s.tp, s.pp, s.quantization) == (60000, 1, 2, "bitsandbytes")
    assert (p.kv_tokens, p.kv_tokens_from, p.weights) == (58384, "refusal", ())


# ------------------------------------------------------------------------------------------ V1


def test_v084_v1_tokens_and_concurrency_l40s() -> None:
    p = parsed("v084_v1_llama31_8b_l40s_32k.log")
    assert (p.engine, p.version, p.kv_available) == ("V1", None, None)
    assert [(w.device, w.figure.bytes, w.figure.text) for w in p.weights] == [
        ("rank 0", gib("14.9889"), "14.9889 GiB")
    ]
    assert (p.kv_tokens, p.kv_tokens_from) == (158656, "size")
    assert (p.max_concurrency, p.concurrency_len, p.settings.context) == (4.84, 32768, 32768)


# ------------------------------------------------------------------------------------------ formats


def test_command_lines_as_published() -> None:
    assert _command(" deepseek-ai/DeepSeek-R1-Distill-Qwen-32B --tensor-parallel-size 2 --enforce-eager") == {
        "model": "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
        "tensor_parallel_size": "2",
        "enforce_eager": "True",
    }
    assert (
        _command(" --model m -tp 4 --max_model_len=8192 --kv-cache-dtype fp8")["tensor_parallel_size"] == "4"
    )


def test_v1_free_memory_summary_line() -> None:
    # the v0.21+ summary as printed in noonghunna/club-3090 issue 1087 (a Qwen3.8-27B, TP 2, vLLM 0.26)
    from vramplan.logs import parse_log

    line = (
        "(Worker_TP0 pid=223) INFO 08-22 04:42:13 [gpu_worker.py:789] Free memory on device (30.27/31.4 GiB) "
        "on startup. Desired GPU memory utilization is (0.92, 28.88 GiB). Actual usage is 15.03 GiB for "
        "consumed memory (weights + non-torch), 1.59 GiB for peak activation, and 0.09 GiB for CUDAGraph "
        "memory. Replace gpu_memory_utilization config with `--kv-cache-memory=12917635953` (12.03 GiB) to "
        "fit into requested memory, or `--kv-cache-memory=14405811712` (13.42 GiB) to fully utilize gpu "
        "memory. Current kv cache memory in use is 12.26 GiB.\n"
    )
    p = parse_log(line)
    assert (p.runtime, p.engine) == (Runtime.VLLM, "V1")
    assert p.kv_available is not None and p.kv_available.bytes == gib("12.26")
    assert p.activation_peak is not None and p.activation_peak.bytes == gib("1.59")
    assert [b.figure.bytes for b in p.cuda_graph] == [gib("0.09")]
    assert p.usable is not None and p.usable.bytes == gib("28.88")
    assert p.settings.gpu_total is not None and p.settings.gpu_total.bytes == gib("31.4")
    assert p.settings.gpu_memory_utilization == 0.92


# ------------------------------------------------------------------------------------------ V1, 0.8 to 0.10


def test_v081_args_namespace_and_gb_loading_line() -> None:
    # 0.8.1 V1 still prints "GB" in the loading line (gpu_model_runner.py); the value is GiB all the same
    p = parsed("v081_distill_qwen15b_kind_131k.log")
    assert (p.version, p.engine, p.model) == ("0.8.1", "V1", "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B")
    assert [(w.device, w.figure.bytes, w.figure.text) for w in p.weights] == [
        ("rank 0", gib("3.3465"), "3.3465 GB")
    ]
    assert (p.kv_tokens, p.kv_tokens_from, p.kv_available) == (525520, "size", None)
    assert (p.max_concurrency, p.concurrency_len) == (4.01, 131072)
    s = p.settings
    assert (s.context, s.tp, s.gpu_memory_utilization, s.max_num_batched_tokens) == (131072, 1, 0.9, 1024)
    assert [b.figure.bytes for b in p.cuda_graph] == [gib("0.45")]


def test_v082_lora_weights_line_and_namespace_settings() -> None:
    p = parsed("v082_llama31_8b_lora_131k.log")
    assert (p.version, p.engine, p.model) == ("0.8.2", "V1", "meta-llama/Llama-3.1-8B-Instruct")
    # the LoRA slots load with the model: 15.1749 against the bare model's 14.99
    assert [w.figure.bytes for w in p.weights] == [gib("15.1749")]
    assert (p.kv_tokens, p.max_concurrency, p.concurrency_len) == (148096, 1.13, 131072)
    s = p.settings
    # the Namespace prints max_num_seqs=None (the post's YAML says 1024: another revision of the deployment)
    assert (s.context, s.tp, s.gpu_memory_utilization, s.max_running_requests) == (131072, 1, 0.9, None)
    assert [b.figure.bytes for b in p.cuda_graph] == [gib("0.74")]


def test_v085post1_a10_tokens_concurrency_graphs() -> None:
    p = parsed("v085post1_qwen25_15b_a10_32k.log")
    assert (p.version, p.engine, p.model) == ("0.8.5.post1", "V1", "Qwen/Qwen2.5-1.5B-Instruct")
    assert [w.figure.bytes for w in p.weights] == [gib("2.8871")]
    assert (p.kv_tokens, p.max_concurrency, p.concurrency_len) == (567984, 17.33, 32768)
    assert (p.settings.context, p.settings.gpu_memory_utilization) == (32768, 0.9)
    assert [b.figure.bytes for b in p.cuda_graph] == [gib("0.45")]


def test_v0901_non_default_args_without_context() -> None:
    # 0.9.0.1's non-default args name only load_format: the context is the engine config's max_seq_len
    p = parsed("v0901_distill_qwen15b_runai_131k.log")
    assert (p.version, p.engine, p.model) == ("0.9.0.1", "V1", "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B")
    assert [w.figure.bytes for w in p.weights] == [gib("3.3466")]
    assert (p.kv_tokens, p.max_concurrency, p.settings.context) == (1131008, 8.63, 131072)


# ------------------------------------------------------------------------------------------ V1, 0.10.1.1


def test_v0101_hard_wrapped_log_reads_its_cut_records() -> None:
    # dennislee22/vLLM-benchmarking published the log as the terminal wrapped it: the non-default args and
    # the engine config are cut mid-word; joined back, they give the settings
    p = parsed("v0101_qwen2_7b_a100_80gb_util025.log")
    assert (p.version, p.engine, p.model) == ("0.10.1.1", "V1", "Qwen2-7B-Instruct")
    s = p.settings
    assert (s.context, s.tp, s.pp, s.gpu_memory_utilization, s.kv_cache_dtype) == (16384, 1, 1, 0.25, "auto")
    assert [(w.device, w.figure.bytes) for w in p.weights] == [("rank 0", gib("14.2488"))]
    assert p.kv_available is not None and p.kv_available.bytes == gib("5.01")
    assert (p.kv_tokens, p.max_concurrency, p.concurrency_len) == (93872, 5.73, 16384)
    assert [b.figure.bytes for b in p.cuda_graph] == [gib("0.50")]


def test_v0101_half_the_card_single_a100() -> None:
    p = parsed("v0101_qwen2_7b_a100_80gb_util05.log")
    assert p.settings.gpu_memory_utilization == 0.5
    assert p.kv_available is not None and p.kv_available.bytes == gib("24.83")
    assert (p.kv_tokens, p.max_concurrency) == (464848, 28.37)


@pytest.mark.parametrize(
    ("name", "util", "pool", "tokens", "conc", "graphs"),
    [
        ("v0101_qwen2_7b_2x_a100_80gb_tp2_util025.log", 0.25, "12.02", 450192, 27.48, ["0.65", "0.65"]),
        ("v0101_qwen2_7b_2x_a100_80gb_tp2_util05.log", 0.5, "31.83", 1192160, 72.76, ["0.65", "0.65"]),
    ],
)
def test_v0101_tp2_workers_named_vllmworker_tpn(
    name: str, util: float, pool: str, tokens: int, conc: float, graphs: list[str]
) -> None:
    # 0.10's multiprocessing workers print "(VllmWorker TP0 pid=...)": one loading line a rank
    p = parsed(name)
    assert (p.settings.tp, p.settings.gpu_memory_utilization) == (2, util)
    assert [(w.device, w.figure.bytes) for w in p.weights] == [
        ("rank 0", gib("7.1217")),
        ("rank 1", gib("7.1217")),
    ]
    assert p.kv_available is not None and p.kv_available.bytes == gib(pool)
    assert (p.kv_tokens, p.max_concurrency) == (tokens, conc)
    assert [(b.device, b.figure.bytes) for b in p.cuda_graph] == [
        ("rank 0", gib(graphs[0])),
        ("rank 1", gib(graphs[1])),
    ]


def test_v0101_ray_two_nodes_ranks_from_parallel_state() -> None:
    # Ray workers print no rank in their prefix; "rank N in world size 2" names it (pid 1384 is rank 0,
    # though its pid is the larger), and both loading lines were cut by the terminal
    p = parsed("v0101_qwen2_7b_2x_a100_40gb_tp2_ray_2nodes.log")
    assert (p.settings.tp, p.settings.gpu_memory_utilization, p.settings.context) == (2, 0.5, 16384)
    assert [(w.device, w.figure.bytes) for w in p.weights] == [
        ("rank 0", gib("7.1217")),
        ("rank 1", gib("7.1217")),
    ]
    assert p.kv_available is not None and p.kv_available.bytes == gib("11.03")
    assert (p.kv_tokens, p.max_concurrency) == (412944, 25.2)
    assert [(b.device, b.figure.bytes) for b in p.cuda_graph] == [("rank 0", gib("1.00"))]


def test_records_join_only_a_hard_wrapped_log() -> None:
    from vramplan.logs.vllm import _records

    cut = "INFO 09-03 04:41:48 [gpu_model_runner.py:2007] Model loading took 7.1217 GiB and 198.6 seconds and more"
    width = ["INFO " + "x" * 95] * 5  # five records of the terminal's width: the log was wrapped
    wrapped = "\n".join([cut[:100], cut[100:], *width]) + "\n"
    assert _records(wrapped)[0] == (1, cut)
    # the same two lines in a log that was not wrapped stay two records
    plain = cut[:100] + "\n" + cut[100:] + "\n"
    assert [ln for _, ln in _records(plain)] == [cut[:100], cut[100:]]


def test_v0151_eager_offline_llm_a100_40gb() -> None:
    # 0.15.1 prints "Model loading took X GiB memory and T seconds"; eager mode captures no graphs
    p = parsed("v0151_llama31_8b_a100_40gb_eager_131k.log")
    assert (p.version, p.engine) == ("0.15.1", "V1")
    assert p.model == "/home/admin_iloh_altostrat_com/models/Meta-Llama-3.1-8B-Instruct"
    assert [(w.device, w.figure.bytes, w.figure.text) for w in p.weights] == [
        ("rank 0", gib("14.99"), "14.99 GiB")
    ]
    assert p.kv_available is not None and p.kv_available.bytes == gib("19.28")
    assert (p.kv_tokens, p.max_concurrency, p.concurrency_len) == (157936, 1.2, 131072)
    s = p.settings
    assert (s.context, s.tp, s.enforce_eager, s.kv_cache_dtype) == (131072, 1, True, "auto")
    assert p.cuda_graph == ()


def test_v0191_qwen3_8b_graph_pool_line_and_banner_version() -> None:
    # 0.19.1: the version in the banner and the engine line; the graph pool printed twice (capture and pool)
    p = parsed("v0191_qwen3_8b_a100_40gb_40k.log")
    assert (p.version, p.engine, p.model) == ("0.19.1", "V1", "Qwen/Qwen3-8B")
    assert [(w.device, w.figure.bytes, w.figure.text) for w in p.weights] == [
        ("rank 0", gib("15.27"), "15.27 GiB")
    ]
    assert p.kv_available is not None and p.kv_available.bytes == gib("19.36")
    assert (p.kv_tokens, p.max_concurrency, p.concurrency_len) == (140960, 3.44, 40960)
    assert (p.settings.context, p.settings.tp, p.settings.enforce_eager) == (40960, 1, False)
    assert [b.figure.bytes for b in p.cuda_graph] == [gib("2.44")]
