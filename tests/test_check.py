"""`vramplan check`: parsing each runtime's log lines, the comparison with the estimate, the CLI.

The logs are tests/fixtures/logs/synthetic/*.log (reconstructed from published figures, not verbatim); each file's header says where its line formats and figures come
from. Table tests have --json twins; bad inputs answer in one line with exit code 2.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from golden_util import assert_golden

from vramplan.catalog import Catalog
from vramplan.check import check_log
from vramplan.hardware import parse_gpu
from vramplan.logs import detect, parse_log, read_log
from vramplan.logs.identify import ftype_from_log
from vramplan.logs.types import GiB, MiB
from vramplan.runtimes import Runtime

LOGS = Path(__file__).parent / "fixtures" / "logs" / "synthetic"


def log_path(name: str) -> str:
    return str(LOGS / name)


def b(value: float, unit: int) -> int:
    return round(value * unit)


# ------------------------------------------------------------------------------------------ parsing


@pytest.mark.parametrize(
    ("name", "runtime"),
    [
        ("vllm_r1_0528_fp8_tp8.log", Runtime.VLLM),
        ("sglang_distill_qwen_7b_3090.log", Runtime.SGLANG),
        ("llama_server_distill_qwen_32b.log", Runtime.LLAMA_CPP),
        ("ollama_offload_671b.log", Runtime.OLLAMA),
        ("ollama_runner_distill_qwen_7b.log", Runtime.OLLAMA),
        ("ollama_device_lines.log", Runtime.OLLAMA),
    ],
)
def test_detects_the_runtime(name: str, runtime: Runtime) -> None:
    assert detect((LOGS / name).read_text()) is runtime


def test_vllm_lines() -> None:
    p = read_log(log_path("vllm_r1_0528_fp8_tp8.log"))
    assert (p.runtime, p.version, p.model) == (Runtime.VLLM, "0.11.2", "deepseek-ai/DeepSeek-R1-0528")
    s = p.settings
    assert (s.context, s.tp, s.pp, s.quantization, s.kv_cache_dtype, s.dtype) == (
        8192, 8, 1, "fp8", "auto", "torch.bfloat16",
    )  # fmt: skip
    assert s.gpu_memory_utilization == 0.9
    assert [(w.device, w.figure.bytes, w.figure.text, w.figure.line) for w in p.weights] == [
        ("rank 0", b(79.7390, GiB), "79.7390 GiB", 12),
        ("rank 1", b(79.7390, GiB), "79.7390 GiB", 13),
        ("rank 7", b(79.7390, GiB), "79.7390 GiB", 14),
    ]
    assert p.kv_available is not None and p.kv_available.bytes == b(41.60, GiB)
    assert p.kv_available.resolution == b(0.01, GiB)
    assert (p.kv_tokens, p.max_concurrency, p.concurrency_len) == (635_648, 77.59, 8192)


def test_sglang_lines_weights_from_the_drop_in_free_memory() -> None:
    p = read_log(log_path("sglang_distill_qwen_7b_3090.log"))
    assert (p.runtime, p.model) == (Runtime.SGLANG, "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B")
    s = p.settings
    assert (s.context, s.tp, s.mem_fraction_static, s.kv_cache_dtype, s.quantization, s.max_running_requests) == (
        4096, 1, 0.88, "auto", None, 2049,
    )  # fmt: skip
    # before SGLang printed "mem usage", the weights are avail mem before - after: 22.76 - 8.37 GB
    assert [(w.device, w.figure.bytes, w.figure.text) for w in p.weights] == [
        ("TP0", b(14.39, GiB), "14.39 GB")
    ]
    assert [(k.device, k.figure.bytes) for k in p.kv] == [("TP0", b(2.82, GiB) * 2)]
    assert p.kv_tokens == 105_531


def test_sglang_mla_pool_and_mem_usage_lines() -> None:
    # memory_pool.py MLATokenToKVPool prints one "KV size"; model_runner.py "mem usage" since 2025
    text = (
        "[2025-11-04 05:27:13 DP0 TP0 EP0] Load weight end. type=DeepseekV3ForCausalLM, dtype=torch.bfloat16, "
        "avail mem=75.11 GB, mem usage=107.07 GB.\n"
        "[2025-11-04 05:27:13 DP0 TP0 EP0] KV Cache is allocated. #tokens: 524288, KV size: 17.16 GB\n"
    )
    p = parse_log(text)
    assert p.runtime is Runtime.SGLANG
    assert [(w.device, w.figure.bytes) for w in p.weights] == [("TP0", b(107.07, GiB))]
    assert [(k.device, k.figure.bytes) for k in p.kv] == [("TP0", b(17.16, GiB))]
    assert p.kv_tokens == 524_288


def test_llama_server_lines_of_early_2025() -> None:
    p = read_log(log_path("llama_server_distill_qwen_32b.log"))
    assert (p.runtime, p.version, p.model) == (Runtime.LLAMA_CPP, "4714", "DeepSeek R1 Distill Qwen 32B")
    assert [(w.device, w.host, w.figure.bytes) for w in p.weights] == [
        ("CUDA0", False, b(18508.35, MiB)),
        ("CPU_Mapped", True, b(417.66, MiB)),
    ]
    assert [(k.device, k.figure.bytes) for k in p.kv] == [("CUDA0", 4096 * MiB)]
    assert p.compute == ()
    s = p.settings
    assert (s.context, s.n_ctx, s.parallel, s.type_k, s.type_v, s.flash_attn, s.cells) == (
        16384, 16384, 1, "f16", "f16", True, 16384,
    )  # fmt: skip
    assert (s.quantization, s.gpu_name, s.gpu_layers, s.layers_total) == (
        "Q4_K - Medium", "NVIDIA GeForce RTX 4090", 65, 65,
    )  # fmt: skip
    assert p.hparam("n_layer") == "64" and p.hparam("n_head_kv") == "8"


def test_ollama_planner_line() -> None:
    p = read_log(log_path("ollama_offload_671b.log"))
    assert p.planner is True and p.model is None
    # up to v0.6.0 memory.weights.total is blocks + KV without the output layer (llm/memory.go)
    assert [(x.device, x.figure.bytes, x.figure.text) for x in p.weights] == [
        ("all devices", b(385.0, GiB) - b(9.5, GiB) + b(725.0, MiB), "385.0 GiB - 9.5 GiB + 725.0 MiB")
    ]
    assert [x.figure.bytes for x in p.kv] == [b(9.5, GiB)]
    # 5 of 62 layers on the GPU: memory.graph.partial on that GPU
    assert [(x.device, x.figure.bytes) for x in p.compute] == [("CUDA0", b(1019.5, MiB))]
    s = p.settings
    assert (s.context, s.n_ctx, s.parallel, s.gpu_layers, s.layers_total, s.gpus) == (2048, 2048, 1, 5, 62, 1)


def test_ollama_with_its_llama_cpp_runner_lines() -> None:
    p = read_log(log_path("ollama_runner_distill_qwen_7b.log"))
    assert p.planner is False and p.model == "DeepSeek R1 Distill Qwen 7B"
    assert p.weights == ()
    assert [(k.device, k.host, k.figure.bytes) for k in p.kv] == [("SYCL0", False, 224 * MiB)]
    assert [(c.device, c.host, c.figure.bytes) for c in p.compute] == [
        ("SYCL0", False, 304 * MiB),
        ("SYCL_Host", True, b(15.01, MiB)),
    ]
    s = p.settings
    assert (s.context, s.parallel, s.flash_attn, s.type_k, s.quantization) == (
        4096,
        1,
        False,
        "f16",
        "Q4_K - Medium",
    )


def test_ollama_device_lines() -> None:
    p = read_log(log_path("ollama_device_lines.log"))
    assert (p.version, p.model, p.planner) == ("0.12.3", None, False)
    assert [(w.device, w.host, w.figure.bytes) for w in p.weights] == [
        ("CUDA0", False, b(4.1, GiB)),
        ("CPU", True, b(292.4, MiB)),
    ]
    assert [(k.device, k.figure.bytes) for k in p.kv] == [("CUDA0", 224 * MiB)]
    assert [(c.device, c.figure.bytes) for c in p.compute] == [("CUDA0", 304 * MiB), ("CPU", 8 * MiB)]
    s = p.settings
    assert (s.context, s.parallel, s.flash_attn, s.gpu_layers, s.gpu_name) == (
        4096, 1, True, 29, "NVIDIA GeForce RTX 4090",
    )  # fmt: skip
    assert s.gpu_total is not None and s.gpu_total.bytes == 24 * GiB


@pytest.mark.parametrize(
    ("text", "ftype"),
    [("Q4_K - Medium", "Q4_K_M"), ("all F32", "F32"), ("IQ1_S - 1.5625 bpw", "IQ1_S"), ("Q2_K - Medium", "Q2_K"),
     ("IQ3_S mix - 3.66 bpw", "IQ3_M"), ("Q8_0", "Q8_0"), ("Q5_K - Small (guessed)", "Q5_K_S"), ("MXFP4 MoE", None)],
)  # fmt: skip
def test_llama_cpp_file_type_names(text: str, ftype: str | None) -> None:
    assert ftype_from_log(text) == ftype


# ------------------------------------------------------------------------------------------ comparison


def test_vllm_pool_and_concurrency_against_the_estimate(catalog: Catalog) -> None:
    r = check_log(catalog, read_log(log_path("vllm_r1_0528_fp8_tp8.log")), "x", gpu=parse_gpu("h200:8"))
    assert (r.estimate.model, r.estimate.quant, r.estimate.context) == ("deepseek-r1-0528", "fp8", 8192)
    assert (r.estimate.topology.tensor_parallel, r.request.gpu_memory_utilization) == (8, 0.9)
    parts = {(p.part, p.scope): p for p in r.parts}
    assert set(parts) == {
        ("weights", "GPU 0-1"), ("weights", "GPU 7"), ("KV per token", "GPU 0"),
        ("KV pool", "GPU 0"), ("KV tokens", "engine"), ("max concurrency", "engine"),
    }  # fmt: skip
    # the MLA latent is 576 bf16 elements x 61 layers per token, whole on every TP rank
    assert parts["KV per token", "GPU 0"].estimate == 576 * 2 * 61
    assert parts["KV per token", "GPU 0"].error == 0.0
    w = parts["weights", "GPU 0-1"]
    assert w.estimate == r.estimate.per_gpu[0].weights_bytes and abs(w.error) < 0.01
    assert abs(parts["KV pool", "GPU 0"].error) < 0.05


def test_sglang_against_the_estimate(catalog: Catalog) -> None:
    r = check_log(
        catalog, read_log(log_path("sglang_distill_qwen_7b_3090.log")), "x", gpu=parse_gpu("rtx-3090")
    )
    parts = {p.part: p for p in r.parts}
    assert parts["KV per token"].estimate == 28 * 2 * 512 * 2  # 28 layers x K,V x 4 heads x 128 x bf16
    assert parts["KV per token"].error == 0.0
    assert abs(parts["weights"].error) < 0.02


def test_llama_server_kv_matches_exactly(catalog: Catalog) -> None:
    r = check_log(catalog, read_log(log_path("llama_server_distill_qwen_32b.log")), "x")
    assert (r.estimate.model, r.estimate.quant, r.estimate.kv_cells) == (
        "deepseek-r1-distill-qwen-32b",
        "q4_K_M",
        16384,
    )
    kv = [p for p in r.parts if p.part == "KV cache"]
    assert [(p.scope, p.measured, p.estimate, p.error) for p in kv] == [
        ("GPUs (CUDA0)", 4096 * MiB, 4096 * MiB, 0.0)
    ]


def test_ollama_planner_against_the_estimate(catalog: Catalog) -> None:
    r = check_log(catalog, read_log(log_path("ollama_offload_671b.log")), "x", model="deepseek-r1:671b")
    assert (r.estimate.kv_layout, r.estimate.kv_cells, r.request.gpu_layers) == ("mha", 2048, 5)
    kv = next(p for p in r.parts if p.part == "KV cache")
    # the pre-MLA GGUF caches K (192) and V (128) for all 128 heads: 2048 x 61 x 128 x 320 x 2 bytes
    assert kv.estimate == 2048 * 61 * 128 * 320 * 2 and kv.error == 0.0
    assert any("prediction" in n for n in r.notes)


# ------------------------------------------------------------------------------------------ CLI


CASES = {
    "vllm": (["vllm_r1_0528_fp8_tp8.log", "--gpu", "h200:8"], "check_vllm_r1_0528_h200x8"),
    "sglang": (["sglang_distill_qwen_7b_3090.log", "--gpu", "rtx-3090"], "check_sglang_7b_3090"),
    "llama-server": (["llama_server_distill_qwen_32b.log"], "check_llama_server_32b"),
    "ollama-planner": (
        ["ollama_offload_671b.log", "--model", "deepseek-r1:671b"],
        "check_ollama_offload_671b",
    ),
    "ollama-runner": (["ollama_runner_distill_qwen_7b.log"], "check_ollama_runner_7b"),
    "ollama-devices": (["ollama_device_lines.log", "-m", "deepseek-r1:7b"], "check_ollama_devices_7b"),
}


def _args(args: list[str]) -> list[str]:
    return ["check", log_path(args[0]), *args[1:]]


@pytest.mark.parametrize("case", CASES)
def test_check_table(case: str, run: Callable[..., Result], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(LOGS)
    args, golden = CASES[case]
    result = run("check", args[0], *args[1:])
    assert result.exit_code == 0, result.output
    assert_golden(f"cli/{golden}.txt", result.stdout)


@pytest.mark.parametrize("case", CASES)
def test_check_json(case: str, run: Callable[..., Result], catalog: Catalog) -> None:
    args, _ = CASES[case]
    result = run(*_args(args), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["log"] == log_path(args[0])
    assert doc["runtime"] == detect((LOGS / args[0]).read_text()).value  # type: ignore[union-attr]
    for part in doc["parts"]:
        assert set(part) == {
            "part",
            "scope",
            "unit",
            "measured",
            "estimate",
            "error",
            "measured_text",
            "line",
        }
        if part["unit"] == "bytes":
            assert isinstance(part["measured"], int) and isinstance(part["estimate"], int)
        if part["measured"]:
            expected = 0.0 if part["error"] == 0 else (part["estimate"] - part["measured"]) / part["measured"]
            assert part["error"] == pytest.approx(expected, abs=1e-4)
    # the JSON holds the same rows as the table
    table = run(*_args(args))
    for part in doc["parts"]:
        assert part["part"] in table.stdout


def test_check_json_twin_of_llama_server(run: Callable[..., Result]) -> None:
    doc = json.loads(run(*_args(["llama_server_distill_qwen_32b.log"]), "--json").stdout)
    assert doc["model"] == "deepseek-r1-distill-qwen-32b" and doc["quant"] == "q4_K_M"
    assert doc["runtime_version"] == "4714"
    assert {"setting": "context", "value": "16384", "source": "the log"} in doc["settings"]
    rows = [(p["part"], p["scope"], p["measured"], p["error"]) for p in doc["parts"]]
    assert rows[2] == ("KV cache", "GPUs (CUDA0)", 4096 * MiB, 0.0)
    assert rows[0][:3] == ("weights", "GPUs (CUDA0)", b(18508.35, MiB))


# ------------------------------------------------------------------------------------------ bad inputs


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.log"], "Error: {path}: no such log file"),
        (["empty.log"], "Error: {path}: the log is empty"),
        (
            ["no_memory_lines.log"],
            "Error: {path}: the llama.cpp log has no memory lines (model, KV cache or compute buffer sizes); "
            "give the full startup log, from launch until the server is ready",
        ),
        (
            ["unknown_model_no_hparams.log"],
            "Error: the llama.cpp log names 'Mystery Model 3B', which the catalog does not know; "
            "give --model (a catalog id, alias or HF repo)",
        ),
        (
            ["ollama_device_lines.log"],
            "Error: the ollama log does not name its model; give --model (a catalog id, alias or HF repo)",
        ),
        (
            ["vllm_r1_0528_fp8_tp8.log", "--model", "deepseek-r1-zer"],
            "Error: unknown model 'deepseek-r1-zer'; ",
        ),
        (
            ["vllm_r1_0528_fp8_tp8.log", "--quant", "q4_K_M"],
            "Error: vllm cannot load deepseek-r1-0528 q4_K_M",
        ),
        (
            ["vllm_r1_0528_fp8_tp8.log", "--gpu", "h100:x"],
            "Error: GPU count in 'h100:x' must be a whole number",
        ),
    ],
)
def test_bad_inputs_answer_in_one_line(args: list[str], message: str, run: Callable[..., Result]) -> None:
    result = run(*_args(args))
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and result.stdout == ""
    assert lines[0].startswith(message.format(path=log_path(args[0])))


def test_a_directory_or_unreadable_file(run: Callable[..., Result], tmp_path: Path) -> None:
    result = run("check", str(tmp_path))
    assert (result.exit_code, result.stderr) == (2, f"Error: {tmp_path}: is a directory, not a log file\n")
    text = tmp_path / "not-a-log.txt"
    text.write_text("hello\nworld\n")
    result = run("check", str(text))
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: {text}: no memory lines of llama.cpp, llama-server, Ollama, vLLM or SGLang found in the log "
        "(see docs/check.md for the lines vramplan reads)\n"
    )


def test_vllm_v0_lines(catalog: Catalog) -> None:
    # the formats of V0's vllm/worker/model_runner.py and vllm/worker/worker.py (as printed in
    # vllm-project/vllm issue 15340); the figures are illustrative
    text = (
        "INFO 03-22 18:40:01 [llm_engine.py:241] Initializing a V0 LLM engine (v0.8.1) with config: "
        "model='/models/DeepSeek-R1-Distill-Qwen-14B', dtype=torch.bfloat16, max_seq_len=16384, "
        "tensor_parallel_size=2, pipeline_parallel_size=1, quantization=None, kv_cache_dtype=auto\n"
        "(VllmWorkerProcess pid=282) INFO 03-22 18:52:52 [model_runner.py:1146] Model loading took 13.9281 GB "
        "and 24.575245 seconds\n"
        "INFO 03-22 18:53:21 [worker.py:267] the current vLLM instance can use total_gpu_memory (23.58GiB) x "
        "gpu_memory_utilization (0.94) = 22.29GiB\n"
        "INFO 03-22 18:53:21 [worker.py:267] model weights take 13.93GiB; non_torch_memory takes 0.20GiB; "
        "PyTorch activation peak memory takes 1.23GiB; the rest of the memory reserved for KV Cache is 6.93GiB.\n"
    )
    p = parse_log(text)
    assert (p.runtime, p.version, p.model) == (Runtime.VLLM, "0.8.1", "/models/DeepSeek-R1-Distill-Qwen-14B")
    assert [(w.device, w.figure.bytes) for w in p.weights] == [("rank 0", b(13.9281, GiB))]
    assert p.kv_available is not None and p.kv_available.bytes == b(6.93, GiB)
    s = p.settings
    assert (s.context, s.tp, s.gpu_memory_utilization, s.quantization) == (16384, 2, 0.94, None)
    assert s.gpu_total is not None and s.gpu_total.bytes == b(23.58, GiB)
    # the log's total_gpu_memory stands in for a GPU: the pool can be compared without --gpu
    r = check_log(catalog, p, "x")
    assert ("GPU", "23.58 GiB each", "the log") in r.settings
    assert {x.part for x in r.parts} == {"weights", "KV pool", "activation peak"}


@pytest.mark.parametrize(
    "name",
    [
        "/models/DeepSeek-R1-Distill-Qwen-14B",
        "/root/.cache/huggingface/hub/models--deepseek-ai--DeepSeek-R1-Distill-Qwen-14B/snapshots/abc123",
        "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B",
    ],
)
def test_model_paths_resolve_through_the_catalog(name: str, catalog: Catalog) -> None:
    text = (
        f"INFO [core.py:93] Initializing a V1 LLM engine (v0.9.2) with config: model='{name}', "
        "dtype=torch.bfloat16, max_seq_len=8192, tensor_parallel_size=1, pipeline_parallel_size=1, "
        "quantization=None, kv_cache_dtype=auto\n"
        "INFO [gpu_model_runner.py:1595] Model loading took 27.5952 GiB and 10.1 seconds\n"
    )
    r = check_log(catalog, parse_log(text), "x")
    assert (r.estimate.model, r.estimate.quant) == ("deepseek-r1-distill-qwen-14b", "bf16")


def test_runtime_option_reads_the_log_as_that_runtime(run: Callable[..., Result]) -> None:
    doc = json.loads(
        run(*_args(["ollama_runner_distill_qwen_7b.log", "--runtime", "llama.cpp"]), "--json").stdout
    )
    assert doc["runtime"] == "llama.cpp"
    assert [p["part"] for p in doc["parts"]] == ["KV cache", "compute buffer"]


def test_late_2024_llama_cpp_names_and_identification_by_shape(catalog: Catalog) -> None:
    # llm_load_print_meta / llm_load_tensors / llama_kv_cache_init / llama_init_from_model, the names of
    # llama.cpp (and of Ollama's bundled runner) until early 2025; the shape and sizes are those of the
    # 7B distill in containers/ramalama issue 616 (n_ff 18944, n_embd_k_gqa 512, "model ftype = Q4_K -
    # Medium", "model size = 4.36 GiB") and JamePeng/llama-cpp-python PR 1 (28 layers, 2048 cells:
    # "CUDA0 KV buffer size = 112.00 MiB", "KV self size = 112.00 MiB, K (f16): 56.00 MiB, V (f16): 56.00 MiB")
    meta = {"arch": "qwen2", "n_vocab": 152064, "n_ctx_train": 131072, "n_embd": 3584, "n_layer": 28,
            "n_head": 28, "n_head_kv": 4, "n_embd_head_k": 128, "n_ff": 18944}  # fmt: skip
    text = "".join(f"llm_load_print_meta: {k:<16} = {v}\n" for k, v in meta.items())
    text += (
        "llm_load_print_meta: model ftype      = Q4_K - Medium\n"
        "llm_load_print_meta: model size       = 4.36 GiB (4.91 BPW) \n"
        "llm_load_tensors: offloaded 29/29 layers to GPU\n"
        "llm_load_tensors:        CPU buffer size =   292.36 MiB\n"
        "llm_load_tensors:      CUDA0 buffer size =  4168.09 MiB\n"
        "llama_init_from_model: n_ctx         = 2048\n"
        "llama_kv_cache_init: kv_size = 2048, offload = 1, type_k = 'f16', type_v = 'f16', n_layer = 28\n"
        "llama_kv_cache_init:      CUDA0 KV buffer size =   112.00 MiB\n"
        "llama_init_from_model: KV self size  =  112.00 MiB, K (f16):   56.00 MiB, V (f16):   56.00 MiB\n"
    )
    p = parse_log(text)
    assert p.runtime is Runtime.LLAMA_CPP and p.model is None
    assert [(w.device, w.host, w.figure.bytes) for w in p.weights] == [
        ("CPU", True, b(292.36, MiB)),
        ("CUDA0", False, b(4168.09, MiB)),
    ]
    assert p.file_size is not None and p.file_size.bytes == b(4.36, GiB)
    assert (p.settings.quantization, p.settings.context, p.settings.cells) == ("Q4_K - Medium", 2048, 2048)
    r = check_log(catalog, p, "x")
    assert (r.estimate.model, r.estimate.quant) == ("deepseek-r1-distill-qwen-7b", "q4_K_M")
    assert r.identified.how == "its shape (n_layer, n_embd, n_head, n_vocab), deepseek-r1-distill-qwen-7b's"
    kv = next(x for x in r.parts if x.part == "KV cache")
    assert (kv.measured, kv.estimate, kv.error) == (112 * MiB, 112 * MiB, 0.0)


def test_sglang_load_line_without_the_model_class() -> None:
    # recent SGLang: "Load weight end. quant=fp8, fmt=e4m3, avail mem=.., mem usage=.." (SemiAnalysisAI/InferenceX
    # issue 2128)
    p = parse_log(
        "[2026-07-09 10:00:00 TP0] Load weight end. quant=fp8, fmt=e4m3, avail mem=12.25 GB, mem usage=125.65 GB.\n"
    )
    assert [(w.device, w.figure.bytes) for w in p.weights] == [("TP0", b(125.65, GiB))]


def test_llama_server_slots_line() -> None:
    # tools/server/server-context.cpp: "initializing, n_slots = %d, n_ctx_slot = %d, kv_unified = '%s'"
    text = (
        "load_tensors:   CPU_Mapped model buffer size =  4460.45 MiB\n"
        "srv    load_model: initializing, n_slots = 4, n_ctx_slot = 4096, kv_unified = 'false'\n"
    )
    s = parse_log(text).settings
    assert (s.parallel, s.context) == (4, 4096)


def test_ollama_runner_flags() -> None:
    # llm/server.go appends --flash-attn and --kv-cache-type when OLLAMA_FLASH_ATTENTION / OLLAMA_KV_CACHE_TYPE ask
    text = (
        'time=2025-03-01T10:00:00.000Z level=INFO source=server.go:376 msg="starting llama server" '
        'cmd="/usr/bin/ollama runner --model /m/blobs/sha256-abc --ctx-size 32768 --batch-size 512 '
        '--n-gpu-layers 29 --threads 8 --flash-attn --kv-cache-type q8_0 --parallel 4 --port 41000"\n'
        "llama_kv_cache_init:      CUDA0 KV buffer size =   476.00 MiB\n"
    )
    p = parse_log(text)
    s = p.settings
    assert p.runtime is Runtime.OLLAMA
    assert (s.n_ctx, s.parallel, s.context, s.flash_attn, s.type_k, s.gpu_layers) == (
        32768,
        4,
        8192,
        True,
        "q8_0",
        29,
    )


def test_vllm_utilization_default_by_version(catalog: Catalog) -> None:
    line = (
        "INFO [core.py:93] Initializing a V1 LLM engine (v{v}) with config: model='deepseek-ai/DeepSeek-R1-Distill-Qwen-7B', "
        "dtype=torch.bfloat16, max_seq_len=4096, tensor_parallel_size=1, pipeline_parallel_size=1, quantization=None\n"
        "INFO [gpu_model_runner.py:1595] Model loading took 14.2488 GiB and 10.1 seconds\n"
    )
    old = check_log(catalog, parse_log(line.format(v="0.9.2")), "x", gpu=parse_gpu("l40s"))
    assert ("gpu_memory_utilization", "0.9", "assumed: the default of vLLM 0.9.2") in old.settings
    assert old.request.gpu_memory_utilization == 0.9
    new = check_log(catalog, parse_log(line.format(v="0.33.0")), "x", gpu=parse_gpu("l40s"))
    assert new.request.gpu_memory_utilization is None  # the estimator's own default, 0.92 since 0.33


REAL = Path(__file__).parent / "fixtures" / "logs" / "real"


def test_a_model_named_against_the_log_is_refused(run: Callable[..., Result]) -> None:
    """Before: `check LOG -m WRONG-MODEL` planned the named model with the log's settings (errors of
    -77 %, or a tensor-parallel error). Now the log's own model is named and the check stops."""
    res = run("check", str(LOGS / "llama_server_distill_qwen_32b.log"), "-m", "r1-7b")
    assert res.exit_code != 0
    assert res.stderr == (
        "Error: the log is of deepseek-r1-distill-qwen-32b (it names 'DeepSeek R1 Distill Qwen 32B'), "
        "not of r1-7b (deepseek-r1-distill-qwen-7b); drop --model, or check a log of that model\n"
    )
    cpu = REAL / "llamacpp" / "llama-perplexity_r1-q8_0_xeon-cpu-amx_4seq_b4905.log"
    res = run("check", str(cpu), "-m", "r1-1.5b")
    assert res.stderr.startswith(
        "Error: the log is of deepseek-r1 (n_layer 61, n_embd 7168, n_head 128), not of r1-1.5b"
    )
    # the model the log names, or one of the same architecture (a re-release), is accepted
    ok = run("check", str(LOGS / "llama_server_distill_qwen_32b.log"), "-m", "deepseek-r1-distill-qwen-32b")
    assert ok.exit_code == 0, ok.output


def test_the_header_says_a_llama_cpp_build_is_a_build(run: Callable[..., Result]) -> None:
    out = run("check", str(LOGS / "llama_server_distill_qwen_32b.log")).stdout
    assert "llama.cpp build 4714 log" in " ".join(out.split())


def test_an_unstated_quantization_is_said_in_words() -> None:
    """Before: "(it states: not stated)"."""
    from vramplan.catalog import load_catalog
    from vramplan.errors import UnknownModelError
    from vramplan.logs.identify import identify

    log = read_log(
        str(REAL / "llamacpp" / "llama-server_distill-qwen-32b-q4_k_m_1gpu-cuda-fa_b47xx-excerpt.log")
    )
    with pytest.raises(UnknownModelError) as err:
        identify(load_catalog(), log, model="r1-32b")
    assert "(it states no quantization or dtype); give --quant" in str(err.value)
