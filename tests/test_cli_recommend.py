"""`vramplan recommend` through click's CliRunner: the issue's four scenarios as tables (golden files)
with their --json twins, the emitted deploy commands run for real, and one-line errors for bad input."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from golden_util import assert_golden

Run = Callable[..., Result]
GiB = 1 << 30

CASES = {
    "recommend_no_gpu": ["recommend"],
    "recommend_rtx4090_8k": ["recommend", "--gpu", "rtx-4090", "--context", "8192"],
    "recommend_h200x8": ["recommend", "--gpu", "h200:8"],
    "recommend_h100x8": ["recommend", "--gpu", "h100-80gb:8"],
    "recommend_rtx4090_host192": ["recommend", "--gpu", "rtx-4090", "--host-memory", "192"],
}
KEYS = {
    "model",
    "quant",
    "runtime",
    "fits",
    "total_bytes",
    "per_gpu_peak_bytes",
    "max_context",
    "tokens_per_second",
    "reason",
    "gpus_used",
    "tensor_parallel",
    "pipeline_parallel",
    "nodes",
    "gpu_layers",
    "cpu_moe_layers",
    "deploy_command",
    "quality",
    "slow",
}


def doc_of(run: Run, args: list[str]) -> dict[str, Any]:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", sorted(CASES))
def test_recommend_table(run: Run, name: str) -> None:
    result = run(*CASES[name])
    assert result.exit_code == 0, result.output
    assert_golden(f"cli/{name}.txt", result.stdout)


@pytest.mark.parametrize("name", sorted(CASES))
def test_recommend_json_twin(run: Run, name: str) -> None:
    table = run(*CASES[name]).stdout
    doc = doc_of(run, CASES[name])
    assert set(doc) >= {"machine", "candidates"}
    fitting = [c for c in doc["candidates"] if c["fits"]]
    misfits = [c for c in doc["candidates"] if not c["fits"]]
    assert doc["candidates"] == fitting + misfits  # what fits first, best first
    assert [c["rank"] for c in fitting] == list(range(1, len(fitting) + 1))
    for c in doc["candidates"]:
        assert set(c) >= KEYS
        assert all(isinstance(c[k], int) for k in c if k.endswith("_bytes") and c[k] is not None)
    fast = [c for c in fitting if not c["slow"]]
    assert fitting == fast + [c for c in fitting if c["slow"]]  # the slow ones after the others
    for c in fitting:
        assert c["per_gpu_peak_bytes"] <= c["budget_bytes"]
        speed = c["tokens_per_second"]
        assert (speed is not None and speed < doc["options"]["min_speed"]) == c["slow"]
        if c["slow"]:  # listed apart, one line each
            assert f"  {c['model']} {c['quant']} ({c['runtime']}): " in table
            continue
        # the table's row shows the same plan and numbers
        cells = [line.split() for line in table.splitlines() if line.strip()]
        prefix = re.search(r'model: the id less its "(\S+)" prefix', table)
        short = c["model"].removeprefix(prefix[1]) if prefix and c["model"] != prefix[1][:-1] else c["model"]
        assert any(
            len(w) > 4 and w[0] == str(c["rank"]) and w[1:4] == [short, c["quant"], c["runtime"]]
            for w in cells
        )
        assert f"{c['per_gpu_peak_bytes'] / GiB:.2f}" in table
        command = c["deploy_command"] or c["estimate_command"]
        assert f"$ {command}" in " ".join(table.replace(" \\\n", " ").split())
    for c in misfits:
        assert c["rank"] is None and c["reason"]
        assert f"{c['model']} {c['quant']} ({c['runtime']}): " in table


def test_slow_plans_listed_apart(run: Run) -> None:
    """The issue's case: on one RTX 4090 with 192 GiB of host RAM the 70B distill in f16 (an upper
    bound of 0.6 tokens/s) is no longer ranked among the usable plans: it is listed as fits but slow,
    below its q8_0 (twice the speed), in the table and in --json."""
    args = CASES["recommend_rtx4090_host192"]
    out = run(*args).stdout
    doc = doc_of(run, args)
    assert doc["options"]["min_speed"] == 10.0
    assert "Fits, but slow (below 10 tok/s, --min-speed 10):\n" in out
    slow = [(c["model"], c["quant"]) for c in doc["candidates"] if c["fits"] and c["slow"]]
    q8, f16 = ("deepseek-r1-distill-llama-70b", "q8_0"), ("deepseek-r1-distill-llama-70b", "f16")
    assert slow.index(q8) < slow.index(f16)
    assert out.index("  deepseek-r1-distill-llama-70b q8_0 (ollama): ") < out.index(
        "  deepseek-r1-distill-llama-70b f16 (ollama): "
    )
    assert doc["slow_rows"] >= len(slow)
    first = doc["candidates"][0]
    assert (first["model"], first["quant"], first["slow"]) == ("deepseek-r1-0528-qwen3-8b", "q8_0", False)
    # --min-speed 0 ranks everything together, as before there was a slow list
    together = doc_of(run, [*args, "--min-speed", "0"])
    assert not any(c["slow"] for c in together["candidates"]) and together["slow_rows"] == 0
    assert "Fits, but slow" not in run(*args, "--min-speed", "0").stdout


def test_min_speed_default_is_in_help(run: Run) -> None:
    text = " ".join(run("recommend", "--help").stdout.split())
    assert "--min-speed TOK_S" in text
    assert "reading speed" in text and "[default: 10.0]" in text
    from vramplan.recommend import DEFAULT_MIN_SPEED

    assert f"[default: {DEFAULT_MIN_SPEED}]" in text


def test_no_gpu_plans_host_ram(run: Run) -> None:
    out = run("recommend").stdout
    doc = doc_of(run, ["recommend"])
    assert out.startswith("Recommendations for host RAM (64.0 GiB), no GPU\n")
    assert (
        "note: no GPU found: planning for host RAM (CPU inference) with llama.cpp and Ollama; "
        in out.replace("\n", " ")
    )
    assert doc["machine"]["cpu_only"] is True and doc["machine"]["host_memory_bytes"] == 64 * GiB
    for c in doc["candidates"]:
        assert c["runtime"] in ("llama.cpp", "ollama") and c["gpus_used"] == 0


def test_rtx_4090_ranks_only_what_fits(run: Run) -> None:
    doc = doc_of(run, [*CASES["recommend_rtx4090_8k"], "--top", "100", "--per-model", "0"])
    card = 24564 << 20
    fitting = [c for c in doc["candidates"] if c["fits"]]
    assert len(fitting) > 10
    for c in fitting:
        assert c["per_gpu_peak_bytes"] <= card * 0.9 and c["gpus_used"] == 1 and c["offload"] is None
        for a in c["alternatives"]:
            assert a["per_gpu_peak_bytes"] <= card * 0.9
    assert {c["model"] for c in doc["candidates"] if not c["fits"]} >= {"deepseek-r1", "deepseek-r1-0528"}


def test_h200_ranks_a_671b_first(run: Run) -> None:
    first = doc_of(run, CASES["recommend_h200x8"])["candidates"][0]
    assert (first["model"], first["quant"], first["runtime"], first["gpus_used"]) == (
        "deepseek-r1-0528",
        "fp8",
        "vllm",
        8,
    )


def test_h100_explains_fp8_671b(run: Run) -> None:
    doc = doc_of(run, CASES["recommend_h100x8"])
    r1 = next(c for c in doc["candidates"] if c["model"] == "deepseek-r1" and not c["fits"])
    assert r1["quant"] == "fp8"
    assert "needs 2 nodes of h100-80gb:8 (--nodes 2), or a 4-bit quantization: " in r1["reason"]


@pytest.mark.parametrize("name", ["recommend_h200x8", "recommend_h100x8", "recommend_no_gpu"])
def test_deploy_commands_run(run: Run, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first two deploy commands each recommendation prints write their bundles, and the plan
    written is the one recommended (same context)."""
    monkeypatch.chdir(tmp_path)
    commands = [c["deploy_command"] for c in doc_of(run, CASES[name])["candidates"] if c["deploy_command"]]
    assert len(commands) >= 2
    for i, command in enumerate(commands[:2]):
        args = shlex.split(command)
        assert args[:2] == ["vramplan", "deploy"]
        result = run(*args[1:], "--out", f"out{i}", "--json")
        assert result.exit_code == 0, result.output
        written = json.loads(result.stdout)
        assert written["files"] and all(Path(f).exists() for f in written["files"])
        context = args[args.index("--context") + 1]
        readme = (tmp_path / f"out{i}" / "README.md").read_text()
        assert context in readme


def test_partial_offload_command_runs(run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["recommend", "--gpu", "rtx-4090", "--host-memory", "128", "--context", "8192"]
    doc = doc_of(run, [*args, "-m", "deepseek-r1-distill-llama-70b", "-q", "q4_K_M"])
    (c,) = doc["candidates"]
    assert c["offload"] == "layers" and c["runtime"] == "ollama"
    assert c["deploy_command"].endswith(f"--gpu-layers {c['gpu_layers']}")
    # the layers left in host RAM are checked by the deploy against the RAM recommend planned for
    command = shlex.split(c["deploy_command"])[1:]
    assert command[command.index("--host-memory") + 1] == "128GiB"
    result = run(*command, "--out", "out")
    assert result.exit_code == 0, result.output
    assert f"PARAMETER num_gpu {c['gpu_layers']}" in (tmp_path / "out" / "Modelfile").read_text()
    command[command.index("--host-memory") + 1] = "8GiB"
    short = run(*command, "--out", "out8")
    assert short.exit_code != 0 and "does not fit: host RAM needs " in short.output, short.output


def test_estimate_commands_reproduce_the_plan(run: Run) -> None:
    doc = doc_of(
        run,
        ["recommend", "--gpu", "rtx-4090:4", "--host-memory", "256", "-m", "deepseek-r1", "-r", "llama.cpp"],
    )
    c = doc["candidates"][0]
    assert c["offload"] == "experts" and f"--n-cpu-moe {c['cpu_moe_layers']}" in c["estimate_command"]
    assert "--gpu rtx-4090:4 --host-memory 256GiB --context" in c["estimate_command"]
    est = json.loads(run(*shlex.split(c["estimate_command"])[1:], "--json").stdout)
    peak = max(d["total_bytes"] for d in est["per_gpu"])
    assert peak == c["per_gpu_peak_bytes"]
    assert est["host"]["weights_bytes"] > 0


# Machines and filters whose plans cover every kind of estimate line recommend prints: vLLM and SGLang
# (the runtime defaults of --gpu-memory-utilization, --max-num-seqs, --max-num-batched-tokens and
# --mem-fraction-static), llama.cpp and Ollama offload by layers and by experts with --host-memory
# given as GiB alone, as 512G and as 96GiB, and CPU plans on the probed host RAM.
REPRODUCE = [
    ["--gpu", "h100-80gb:8"],
    ["--gpu", "h200:8", "-r", "sglang"],
    [
        "--gpu",
        "rtx-4090",
        "--host-memory",
        "96GiB",
        "--context",
        "8192",
        "-m",
        "deepseek-r1-distill-llama-70b",
    ],
    ["--gpu", "rtx-4090:2", "--host-memory", "512G", "-m", "deepseek-r1", "--top", "3"],
    ["--gpu", "l4", "--host-memory", "64", "-r", "ollama", "-m", "deepseek-r1-distill-qwen-32b"],
    [],  # conftest's machine: no GPU, 64 GiB of host RAM
]


@pytest.mark.parametrize("args", REPRODUCE, ids=lambda a: " ".join(a) or "probed-host")
def test_every_estimate_command_reproduces_its_plan(run: Run, args: list[str]) -> None:
    """Each candidate's (and alternative's) `vramplan estimate ...` line, run, gives the same memory per
    GPU and on the host, checked against the same host RAM; recommend keeps headroom on top, so what it
    recommends also fits the estimate."""
    doc = doc_of(run, ["recommend", *args, "--per-model", "0"])
    plans = [p for c in doc["candidates"] for p in (c, *c["alternatives"])]
    assert any(p.get("fits", True) for p in plans)
    host = doc["machine"]["host_memory_bytes"]
    for p in plans:
        res = run(*shlex.split(p["estimate_command"])[1:], "--json")
        assert res.exit_code == 0, (p["estimate_command"], res.output)
        est = json.loads(res.stdout)
        gpus = [d["total_bytes"] for d in est["per_gpu"]]
        peak = max(gpus) if gpus else est["host"]["total_bytes"]
        assert peak == p["per_gpu_peak_bytes"], p["estimate_command"]
        if p.get("fits", True):  # alternatives are the other plans that fit
            assert est["fits"] is True, p["estimate_command"]
        if est["host"]["total_bytes"]:
            assert est["host"]["capacity_bytes"] == host, p["estimate_command"]
            assert ("--host-memory" in p["estimate_command"]) == (host is not None)


ERRORS = [
    (["--gpu", "h100x:8"], "Error: unknown GPU 'h100x'; did you mean h100-80gb, v100-32gb, h800?"),
    (["--gpu", "h100:0"], "Error: GPU count in 'h100:0' must be at least 1"),
    (["--gpu", "h100:-1"], "Error: GPU count in 'h100:-1' must be at least 1"),
    (
        ["--gpu", "l4:65"],
        "Error: GPU count in 'l4:65' is more than the 64 GPUs one node can hold; use --nodes for more",
    ),
    (["--top", "0"], "Error: Invalid value for --top: must be at least 1, got 0"),
    (["--context", "0"], "Error: Invalid value for --context: must be at least 1, got 0"),
    (["--nodes", "0", "--gpu", "h100:8"], "Error: Invalid value for --nodes: must be at least 1, got 0"),
    (["--concurrency", "-1"], "Error: Invalid value for --concurrency: must be at least 1, got -1"),
    (["--nodes", "2"], "Error: --nodes needs --gpu NAME:COUNT to say what each node holds"),
    (
        ["--runtime", "vllm"],
        "Error: vllm needs a GPU and none was found; plan for one with --gpu NAME[:COUNT]",
    ),
    (
        ["--gpu", "h100:8", "--nodes", "2", "--runtime", "llama.cpp"],
        "Error: llama.cpp run on one node; --nodes needs vllm or sglang",
    ),
    (["--headroom", "95"], "Error: --headroom must be at least 0 and below 90 (percent), got 95"),
    (["--host-memory", "0"], "Error: --host-memory must be a positive size in GiB, got 0"),
    (["--per-model", "-1"], "Error: --per-model must be 0 (no limit) or more, got -1"),
    (
        ["--gpu", "rtx-4090", "--min-speed", "-1"],
        "Error: --min-speed must be 0 (no limit) or a positive number of tokens/s, got -1",
    ),
    (
        ["--gpu", "rtx-4090", "--min-speed", "nan"],
        "Error: --min-speed must be 0 (no limit) or a positive number of tokens/s, got nan",
    ),
    (
        ["--gpu", "rtx-4090", "--min-speed", "fast"],
        "Error: Invalid value for '--min-speed': 'fast' is not a valid float.",
    ),
    (
        ["--runtime", "tgi"],
        "Error: Invalid value for '--runtime' / '-r': 'tgi' is not one of 'vllm', 'sglang', 'llama.cpp', 'ollama'.",
    ),
    (
        ["--model", "deepseek-r2"],
        "Error: unknown model 'deepseek-r2'; did you mean deepseek-r1, deepseek-r1:32b, deepseek-r1-0528?",
    ),
    (
        ["--model", "r1-7b", "--quant", "q3_K_S"],
        "Error: no quantization named q3_k_s among the models planned; known: bf16, f16, fp8, gptq-int4, q4_K_M, q8_0",
    ),
    (
        ["--context", "200000", "--model", "r1-7b"],
        "Error: --context 200000 exceeds every planned model's maximum (131072)",
    ),
]


@pytest.mark.parametrize(("args", "line"), ERRORS, ids=[" ".join(a) for a, _ in ERRORS])
def test_bad_input_is_one_line_exit_2(run: Run, args: list[str], line: str) -> None:
    result = run("recommend", *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == line + "\n"
