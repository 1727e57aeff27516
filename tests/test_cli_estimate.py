"""`vramplan estimate` and `vramplan catalog` through click's CliRunner: tables, JSON twins, errors."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from click.testing import Result
from golden_util import assert_golden

GiB = 1 << 30

Run = Callable[..., Result]

CASES = {
    "estimate_7b_ollama_cpu": ["estimate", "deepseek-r1:7b"],
    "estimate_7b_vllm_l4": [
        "estimate",
        "deepseek-r1-distill-qwen-7b",
        "--quant",
        "bf16",
        "--runtime",
        "vllm",
        "--context",
        "8192",
        "--gpu",
        "l4",
    ],
    "estimate_671b_fp8_h100x8": ["estimate", "deepseek-r1", "--gpu", "h100-80gb:8", "--context", "32768"],
    "estimate_671b_fp8_h100_2nodes": [
        "estimate",
        "deepseek-r1",
        "--gpu",
        "h100-80gb:8",
        "--nodes",
        "2",
        "--context",
        "32768",
        "--concurrency",
        "4",
    ],
    "estimate_671b_q4km_llamacpp_h200x8": [
        "estimate",
        "deepseek-r1",
        "-q",
        "q4_K_M",
        "--gpu",
        "h200:8",
        "--context",
        "16384",
    ],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_estimate_table(run: Run, name: str) -> None:
    result = run(*CASES[name])
    assert result.exit_code == 0, result.output
    assert_golden(f"cli/{name}.txt", result.stdout)


@pytest.mark.parametrize("name", sorted(CASES))
def test_estimate_json_twin(run: Run, name: str) -> None:
    table = run(*CASES[name]).stdout
    doc = json.loads(run(*CASES[name], "--json").stdout)
    assert set(doc) >= {
        "model",
        "quant",
        "runtime",
        "context",
        "concurrency",
        "kv_cache_dtype",
        "topology",
        "params",
        "weights_bytes",
        "kv_bytes_per_token",
        "kv_cache_bytes",
        "per_gpu",
        "total_bytes",
        "fits",
        "max_context",
        "notes",
    }
    assert set(doc["topology"]) == {"gpu", "gpus_per_node", "nodes", "tensor_parallel", "pipeline_parallel"}
    for d in doc["per_gpu"]:
        assert set(d) >= {
            "index",
            "weights_bytes",
            "kv_cache_bytes",
            "activation_bytes",
            "overhead_bytes",
            "total_bytes",
            "capacity_bytes",
        }
        assert (
            d["total_bytes"]
            == d["weights_bytes"] + d["kv_cache_bytes"] + d["activation_bytes"] + d["overhead_bytes"]
        )
        assert all(isinstance(d[k], int) for k in d if k.endswith("_bytes") and d[k] is not None)
    # the table shows the same numbers
    assert f"total {doc['total_bytes'] / 2**30:.2f} GiB" in table
    assert f"{doc['kv_bytes_per_token']} bytes per token" in table
    assert doc["model"] in table
    if doc["max_context"] is not None:
        requests = "1 request" if doc["concurrency"] == 1 else f"{doc['concurrency']} requests"
        assert f"largest context at {requests}: {doc['max_context'] or 'none fits'}" in table


def test_issue_example(run: Run) -> None:
    out = run(
        "estimate",
        "deepseek-r1-distill-qwen-7b",
        "--quant",
        "bf16",
        "--runtime",
        "vllm",
        "--context",
        "32768",
        "--json",
    )
    doc = json.loads(out.stdout)
    assert doc["kv_bytes_per_token"] == 57344
    assert doc["kv_cache_bytes"] == 32768 * 57344


def test_671b_fits_h200_not_h100(run: Run) -> None:
    h100 = json.loads(
        run(
            "estimate", "deepseek-r1", "--quant", "fp8", "--runtime", "vllm", "--gpu", "h100-80gb:8", "--json"
        ).stdout
    )
    h200 = json.loads(
        run(
            "estimate", "deepseek-r1", "--quant", "fp8", "--runtime", "vllm", "--gpu", "h200:8", "--json"
        ).stdout
    )
    assert (h100["fits"], h200["fits"]) == (False, True)


def test_cpu_plan_says_so(run: Run) -> None:
    out = run("estimate", "deepseek-r1:7b").stdout
    assert "hardware: host RAM (CPU inference)" in out
    assert "note: no GPU found: this plan is for host RAM (CPU inference)" in out


@pytest.mark.parametrize(
    "name", ["r1-7b", "deepseek-r1-distill-qwen-7b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"]
)
def test_alias_id_and_tag_plan_alike_without_gpu(run: Run, name: str) -> None:
    """On a machine with no GPU, an alias, a catalog id and a repo id plan for host RAM as the Ollama
    tag does (llama.cpp, the runtime without a GPU; the tag keeps Ollama), not for a GPU of unknown size."""
    tag = json.loads(run("estimate", "deepseek-r1:7b", "--json").stdout)
    doc = json.loads(run("estimate", name, "--json").stdout)
    assert (tag["runtime"], doc["runtime"]) == ("ollama", "llama.cpp")
    assert doc["quant"] == tag["quant"] == "q4_K_M"
    assert doc["fits"] is tag["fits"] is True
    assert doc["per_gpu"] == tag["per_gpu"] == [] and doc["host"]["capacity_bytes"] == 64 * GiB
    out = run("estimate", name).stdout
    assert "hardware: host RAM (CPU inference)" in out and "GPU of unknown size" not in out


def test_named_runtime_without_gpu_is_kept(run: Run) -> None:
    """--runtime vllm on a GPU-less machine stays vLLM: a named runtime is never swapped."""
    doc = json.loads(run("estimate", "r1-7b", "--runtime", "vllm", "--json").stdout)
    assert doc["runtime"] == "vllm" and doc["fits"] is None


ERRORS = [
    (
        ["estimate", "deepseek-r2"],
        "Error: unknown model 'deepseek-r2'; did you mean deepseek-r1, deepseek-r1:32b, deepseek-r1-0528?",
    ),
    (
        ["estimate", "r1-7b", "--quant", "q3_K_X"],
        "Error: deepseek-r1-distill-qwen-7b has no quantization 'q3_K_X' (published: bf16, fp8, gptq-int4, q4_K_M, "
        "q8_0, f16; or any llama-quantize type: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q2_K_S, Q3_K_S, "
        "Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K, IQ2_XXS, IQ2_XS, IQ2_S, IQ2_M, IQ3_XXS, IQ3_XS, "
        "IQ3_S, IQ3_M, IQ1_S, IQ1_M, IQ4_NL, IQ4_XS, TQ1_0, TQ2_0); did you mean Q3_K_S, Q3_K_M?",
    ),
    (
        ["estimate", "r1-7b", "--quant", "q4_K_M", "--runtime", "vllm"],
        "Error: vllm cannot load deepseek-r1-distill-qwen-7b q4_K_M (gguf); that quantization runs on: ollama, llama.cpp",
    ),
    (
        ["estimate", "r1-7b", "--context", "0"],
        "Error: Invalid value for --context: must be at least 1, got 0",
    ),
    (
        ["estimate", "r1-7b", "--context", "200000"],
        "Error: --context 200000 exceeds deepseek-r1-distill-qwen-7b's maximum of 131072 tokens",
    ),
    (
        ["estimate", "r1-7b", "--concurrency", "-2"],
        "Error: Invalid value for --concurrency: must be at least 1, got -2",
    ),
    (["estimate", "r1-7b", "--tp", "0"], "Error: Invalid value for --tp: must be at least 1, got 0"),
    (
        ["estimate", "r1-7b", "--gpu", "h100:8", "--tp", "8"],
        "Error: tensor parallel size 8 does not divide the model's 28 attention heads; use one of 1, 2, 4",
    ),
    (
        ["estimate", "r1-7b", "--gpu", "h100:65"],
        "Error: GPU count in 'h100:65' is more than the 64 GPUs one node can hold; use --nodes for more",
    ),
    (
        ["estimate", "r1-7b", "--gpu", "h1000"],
        "Error: unknown GPU 'h1000'; did you mean h100-80gb, v100-32gb, h800?",
    ),
    (["estimate", "r1-7b", "--gpu", "h100:x"], "Error: GPU count in 'h100:x' must be a whole number"),
    (
        ["estimate", "r1-7b", "--runtime", "tgi"],
        "Error: Invalid value for '--runtime' / '-r': 'tgi' is not one of 'vllm', 'sglang', 'llama.cpp', 'ollama'.",
    ),
    (
        ["estimate", "r1-7b", "--kv-cache-dtype", "q8_0", "--runtime", "vllm"],
        "Error: vllm cannot store the KV cache as q8_0 (it takes: auto, bf16, fp16, fp8)",
    ),
    (
        ["estimate", "deepseek-r1:7b", "--quant", "bf16"],
        "Error: deepseek-r1:7b is the q4_K_M build; drop --quant or name deepseek-r1-distill-qwen-7b instead",
    ),
    (
        ["estimate", "r1-7b", "--nodes", "2"],
        "Error: --nodes needs --gpu NAME:COUNT to say what each node holds",
    ),
    (["catalog", "show", "gpt-4"], "Error: unknown model 'gpt-4'; `vramplan catalog` lists them"),
]


@pytest.mark.parametrize(("args", "line"), ERRORS, ids=[" ".join(a) for a, _ in ERRORS])
def test_bad_input_is_one_line_exit_2(run: Run, args: list[str], line: str) -> None:
    result = run(*args)
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert lines[-1] == line
    assert "Traceback" not in result.stderr


def test_malformed_user_catalog(run: Run, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.yaml"
    bad.write_text("variants: [ {id: x} ]\n")
    result = run("--catalog", str(bad), "catalog")
    assert result.exit_code == 2
    assert result.stderr == f"Error: {bad}: variants[0].name: missing required field\n"


def test_catalog_list_and_json(run: Run) -> None:
    table = run("catalog").stdout
    doc = json.loads(run("catalog", "--json").stdout)
    ids = [v["id"] for v in doc["variants"]]
    assert len(ids) == 10
    for vid in ids:
        assert vid in table
    assert_golden("cli/catalog.txt", table)


def test_catalog_show_and_json(run: Run) -> None:
    table = run("catalog", "show", "deepseek-r1:7b").stdout
    doc = json.loads(run("catalog", "show", "deepseek-r1:7b", "--json").stdout)
    assert doc["id"] == "deepseek-r1-distill-qwen-7b"
    assert doc["params"] == 7615616512
    assert "parameters 7,615,616,512" in table
    assert [q["name"] for q in doc["quants"]] == ["bf16", "fp8", "gptq-int4", "q4_K_M", "q8_0", "f16"]
    assert "fp8 (fp8)" not in table  # before: the format and what it needs, one word twice
    assert_golden("cli/catalog_show_7b.txt", table)


def test_a_node_of_more_cards_than_its_usual_server_is_planned_with_a_note(run: Run) -> None:
    # a box of ten RTX 3090s is real (issue 9): planned as given, said in a note, not refused
    result = run("estimate", "deepseek-r1-distill-qwen-32b", "--gpu", "rtx-3090:10", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert any(n.startswith("10 x rtx-3090 in one node: more than the 8") for n in doc["notes"])


def test_total_includes_the_host_part_of_an_offload_plan(run: Run) -> None:
    """An offload plan's total is its GPUs' and its host RAM's memory, and says how much is host."""
    args = ["estimate", "deepseek-r1", "-q", "q4_K_M", "-r", "llama.cpp", "--gpu", "rtx-4090"]
    args += ["--n-cpu-moe", "61", "--host-memory", "512", "--context", "2048"]
    doc = json.loads(run(*args, "--json").stdout)
    gpus = sum(d["total_bytes"] for d in doc["per_gpu"])
    host = doc["host"]["total_bytes"]
    assert host > 300 * GiB and doc["gpu_bytes"] == gpus
    assert doc["total_bytes"] == gpus + host
    line = next(ln for ln in run(*args).stdout.splitlines() if ln.startswith("total "))
    assert line.startswith(f"total {(gpus + host) / GiB:.2f} GiB ({host / GiB:.2f} GiB of it in host RAM)")
    cpu = json.loads(run("estimate", "deepseek-r1:7b", "--json").stdout)
    assert cpu["total_bytes"] == cpu["host"]["total_bytes"] and cpu["gpu_bytes"] == 0
    assert "of it in host RAM" not in run("estimate", "deepseek-r1:7b").stdout


@pytest.mark.parametrize(
    ("args", "settings"),
    [
        (
            "deepseek-r1 -q fp8 -r vllm --gpu h200:8 --kv-cache-dtype fp8",
            {"--max-model-len": "163840", "--tensor-parallel-size": "8", "--kv-cache-dtype": "fp8"},
        ),
        (
            "deepseek-r1 -q fp8 -r vllm --gpu h200:8 --nodes 2",
            {"--max-model-len": "163840", "--tensor-parallel-size": "8", "--pipeline-parallel-size": "2"},
        ),
        (
            "deepseek-r1 -q fp8 -r sglang --gpu h200:8 --kv-cache-dtype fp8",
            {
                "--context-length": "163840",
                "--max-running-requests": "1",
                "--tp-size": "8",
                "--kv-cache-dtype": "fp8_e4m3",
            },
        ),
        (
            "deepseek-r1 -q q4_K_M -r llama.cpp --gpu rtx-4090 --n-cpu-moe 61 --host-memory 512 "
            "--context 2048 --kv-cache-dtype q8_0",
            {
                "--ctx-size": "2048",
                "--parallel": "1",
                "--n-cpu-moe": "61",
                "--cache-type-k": "q8_0",
                "--cache-type-v": "q8_0",
            },
        ),
        (
            "r1-7b -r llama.cpp --gpu l40s --context 4096 --no-flash-attn",
            {"--ctx-size": "4096", "--parallel": "1", "--flash-attn": "off"},
        ),
        (
            "deepseek-r1:7b --gpu l4 --kv-cache-dtype q8_0 --gpu-layers 20",
            {
                "num_ctx": "4096",
                "OLLAMA_NUM_PARALLEL": "1",
                "num_gpu": "20",
                "OLLAMA_KV_CACHE_TYPE": "q8_0",
                "OLLAMA_FLASH_ATTENTION": "1",
            },
        ),
        ("r1-7b -r vllm --gpu l40s --context 8192", {"--max-model-len": "8192"}),
    ],
)
def test_settings_reproduce_the_plan(run: Run, args: str, settings: dict[str, str]) -> None:
    """The settings line states every runtime flag the plan depends on and that differs from the
    runtime's default: parallelism, the KV cache type, offload, flash attention."""
    doc = json.loads(run("estimate", *args.split(), "--json").stdout)
    assert doc["runtime_settings"] == settings


def test_counts_read_as_words() -> None:
    from vramplan.words import count

    assert [count(1, "GPU"), count(2, "GPU"), count(1, "request"), count(0, "request")] == [
        "1 GPU",
        "2 GPUs",
        "1 request",
        "0 requests",
    ]


def test_when_no_context_fits_it_says_so_and_why(run: Run) -> None:
    """Before: "largest context at 1 request(s): 0". A 32B in bf16 does not fit one 24 GB card at any
    context: the line says none fits and a note names what is already too much."""
    out = " ".join(run("estimate", "r1-32b", "-r", "vllm", "--gpu", "rtx-4090").stdout.split())
    assert "largest context at 1 request: none fits" in out
    assert "largest concurrency at 131072 tokens: none fits" in out
    assert (
        "note: no context fits: on GPU 0 the weights, activations and overhead alone take 63.7 GiB of "
        "22.1 GiB usable, before any KV cache"
    ) in out
    assert "request(s)" not in out and "node(s)" not in out
    assert "largest context at 4 requests:" in run("estimate", "r1-7b", "--concurrency", "4").stdout


def test_a_host_part_of_unknown_size_says_so(run: Run) -> None:
    """Before: the host row showed `?`. Now its memory column says the size is unknown and a note says
    why and what to give."""
    out = run("estimate", "deepseek-r1:7b", "--gpu", "h100-80gb").stdout
    host = next(ln for ln in out.splitlines() if ln.lstrip().startswith("host "))
    assert host.rstrip().endswith("size unknown") and "?" not in out
    assert "note: host RAM not given: the host part (0.3 GiB) is not checked against it" in out
    given = run("estimate", "deepseek-r1:7b", "--gpu", "h100-80gb", "--host-memory", "64").stdout
    assert "size unknown" not in given and "host RAM not given" not in given
