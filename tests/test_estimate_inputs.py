"""The runtime inputs `vramplan estimate` takes (vLLM's --gpu-memory-utilization, --max-num-seqs,
--max-num-batched-tokens, SGLang's --mem-fraction-static, --host-memory) and the memory the probe
sees in use, through click's CliRunner: parsing, what each changes, where each value came from,
and one clear line for a value out of range or a flag the runtime does not have."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import Result
from nvml_fake import FakeNVML, recording

from vramplan import hardware
from vramplan.errors import HardwareError
from vramplan.hardware import parse_size, probe_machine, size_text
from vramplan.host import HostInfo

Run = Callable[..., Result]
GiB = 1 << 30
MiB = 1 << 20
L4 = 23034 * MiB  # vramplan's l4 entry (gpus.yaml)

BASE = ["estimate", "deepseek-r1-distill-qwen-7b", "--quant", "bf16", "--gpu", "l4", "--context", "8192"]


def doc_of(run: Run, *args: str) -> dict[str, Any]:
    res = run(*args, "--json")
    assert res.exit_code == 0, res.output
    doc: dict[str, Any] = json.loads(res.stdout)
    return doc


def inputs(doc: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {i["flag"]: (i["value"], i["source"]) for i in doc["inputs"]}


def one_error(res: Result) -> str:
    assert res.exit_code == 2, (res.exit_code, res.output)
    assert "Traceback" not in res.output
    (line,) = res.stderr.splitlines()
    return line


# --------------------------------------------------------------------------- vLLM


def test_vllm_defaults_are_shown_with_their_source(run: Run) -> None:
    doc = doc_of(run, *BASE, "--runtime", "vllm")
    # vllm serve on a GPU under 70 GiB: 2048 tokens, 256 sequences (arg_utils.py get_batch_defaults)
    assert inputs(doc) == {
        "--gpu-memory-utilization": ("0.92", "default"),
        "--max-num-seqs": ("256", "default"),
        "--max-num-batched-tokens": ("2048", "default"),
    }
    out = run(*BASE, "--runtime", "vllm").stdout
    assert "inputs: --gpu-memory-utilization 0.92 (default), --max-num-seqs 256 (default)" in out


def test_gpu_memory_utilization_sets_the_usable_share(run: Run) -> None:
    doc = doc_of(run, *BASE, "--runtime", "vllm", "--gpu-memory-utilization", "0.5")
    assert doc["per_gpu"][0]["usable_bytes"] == int(L4 * 0.5)
    assert inputs(doc)["--gpu-memory-utilization"] == ("0.5", "flag")
    assert doc["fits"] is False  # 14.2 GiB of weights and the rest do not fit 11.2 GiB
    assert "vllm reserves --gpu-memory-utilization 0.50 x 22.5 GiB = 11.2 GiB per GPU" in doc["notes"][0]


def test_batch_flags_size_the_activation_profile(run: Run) -> None:
    default = doc_of(run, *BASE, "--runtime", "vllm")
    bigger = doc_of(
        run, *BASE, "--runtime", "vllm", "--max-num-batched-tokens", "16384", "--max-num-seqs", "64"
    )
    assert (bigger["batch_tokens"], bigger["batch_sequences"]) == (16384, 64)
    assert bigger["per_gpu"][0]["activation_bytes"] > default["per_gpu"][0]["activation_bytes"]
    assert inputs(bigger)["--max-num-batched-tokens"] == ("16384", "flag")
    assert inputs(bigger)["--max-num-seqs"] == ("64", "flag")
    # the weights, KV cache and overhead do not depend on the batch
    for key in ("weights_bytes", "kv_cache_bytes", "overhead_bytes"):
        assert bigger["per_gpu"][0][key] == default["per_gpu"][0][key]


def test_max_num_seqs_caps_the_largest_concurrency(run: Run) -> None:
    doc = doc_of(run, *BASE, "--runtime", "vllm", "--max-num-seqs", "3", "--context", "1024")
    assert doc["max_concurrency"] == 3


# --------------------------------------------------------------------------- SGLang


def test_sglang_default_fraction_is_shown(run: Run) -> None:
    doc = doc_of(run, *BASE, "--runtime", "sglang")
    value, source = inputs(doc)["--mem-fraction-static"]
    assert source == "default" and 0.6 < float(value) < 0.8


def test_mem_fraction_static_bounds_weights_and_kv(run: Run) -> None:
    doc = doc_of(run, *BASE, "--runtime", "sglang", "--mem-fraction-static", "0.6")
    g = doc["per_gpu"][0]
    assert inputs(doc)["--mem-fraction-static"] == ("0.6", "flag")
    # weights + KV cache must fit 0.6 x total; activations and graphs come on top
    assert g["usable_bytes"] == int(0.6 * L4) + g["activation_bytes"] + g["overhead_bytes"]
    assert doc["fits"] is False and g["weights_bytes"] > 0.6 * L4
    assert any("--mem-fraction-static 0.6 x 22.5 GiB = 13.5 GiB per GPU" in n for n in doc["notes"])


# --------------------------------------------------------------------------- --host-memory


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("64", 64 * GiB),
        ("64GiB", 64 * GiB),
        ("512G", 512 * GiB),
        ("500GB", 500 * 10**9),
        ("1.5TiB", 3 << 39),
        ("1536MiB", 1536 * MiB),
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text, "--host-memory") == size


@pytest.mark.parametrize("n", [64 * GiB, 1536 * MiB, 12345, 3 << 39])
def test_size_text_reads_back(n: int) -> None:
    assert parse_size(size_text(n), "--host-memory") == n


@pytest.mark.parametrize("text", ["", "GiB", "12Q", "64 GiBs", "1,5G"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(HardwareError, match=r"--host-memory must be a size such as 64GiB, 512G or 64"):
        parse_size(text, "--host-memory")


def test_host_memory_checks_an_offload(run: Run) -> None:
    args = [
        "estimate", "deepseek-r1", "-q", "UD-IQ1_S", "--gpu", "rtx-4090:2", "--context", "4096",
        "--n-cpu-moe", "50",
    ]  # fmt: skip
    unknown = doc_of(run, *args)
    assert unknown["host"]["capacity_bytes"] is None and "--host-memory" not in inputs(unknown)
    small = doc_of(run, *args, "--host-memory", "64GiB")
    assert small["host"]["capacity_bytes"] == 64 * GiB and small["fits"] is False
    assert inputs(small)["--host-memory"] == ("64GiB", "flag")
    big = doc_of(run, *args, "--host-memory", "512G")
    assert big["host"]["capacity_bytes"] == 512 * GiB
    assert big["host"]["weights_bytes"] == small["host"]["weights_bytes"] > 0


def test_host_memory_replaces_the_probed_ram(run: Run) -> None:
    probed = doc_of(run, "estimate", "deepseek-r1:7b")  # conftest's machine: no GPU, 64 GiB
    assert inputs(probed)["--host-memory"] == ("64GiB", "probe")
    given = doc_of(run, "estimate", "deepseek-r1:7b", "--host-memory", "2")
    assert given["host"]["capacity_bytes"] == 2 * GiB and given["fits"] is False


def test_probed_ram_reads_in_mib(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """/proc/meminfo counts KiB: a probe's odd byte count is shown rounded down to a whole MiB (a plan
    for no more memory than there is), not as 25276203008B."""
    from vramplan.hardware import Machine

    odd = 25276203008
    monkeypatch.setattr(hardware, "probe", lambda: Machine(gpus=(), host_memory_bytes=odd, cpu_cores=8))
    doc = doc_of(run, "estimate", "deepseek-r1:7b")
    assert inputs(doc)["--host-memory"] == (f"{odd // MiB}MiB", "probe, rounded down to a MiB")
    assert (
        inputs(doc_of(run, "estimate", "deepseek-r1:7b", "--host-memory", "8"))["--host-memory"][0] == "8GiB"
    )


# --------------------------------------------------------------------------- bad input


ERRORS = [
    (["-r", "sglang", "--gpu-memory-utilization", "0.5"],
     "Error: --gpu-memory-utilization is a vLLM option; sglang has no such setting; its share of the GPU "
     "is --mem-fraction-static"),
    (["-r", "vllm", "--mem-fraction-static", "0.5"],
     "Error: --mem-fraction-static is an SGLang option; vllm has no such setting; its share of the GPU is "
     "--gpu-memory-utilization"),
    (["-r", "sglang", "--max-num-seqs", "8"], "Error: --max-num-seqs is a vLLM option; sglang has no such setting"),
    (["-q", "q4_K_M", "--max-num-batched-tokens", "512"],
     "Error: --max-num-batched-tokens is a vLLM option; llama.cpp has no such setting"),
    (["-r", "vllm", "--gpu-memory-utilization", "0"],
     "Error: --gpu-memory-utilization must be above 0 and at most 1, got 0"),
    (["-r", "vllm", "--gpu-memory-utilization", "1.2"],
     "Error: --gpu-memory-utilization must be above 0 and at most 1, got 1.2"),
    (["-r", "vllm", "--gpu-memory-utilization", "nan"],
     "Error: --gpu-memory-utilization must be above 0 and at most 1, got nan"),
    (["-r", "sglang", "--mem-fraction-static", "1"], "Error: --mem-fraction-static must be above 0 and below 1, got 1"),
    (["-r", "vllm", "--max-num-seqs", "0"], "Error: --max-num-seqs must be at least 1, got 0"),
    (["-r", "vllm", "--max-num-batched-tokens", "-5"], "Error: --max-num-batched-tokens must be at least 1, got -5"),
    (["-r", "vllm", "--max-num-seqs", "2", "-n", "4"],
     "Error: --concurrency 4 exceeds --max-num-seqs 2: vLLM runs at most that many requests at once"),
    (["-r", "vllm", "--max-num-seqs", "x"], "Error: Invalid value for '--max-num-seqs': 'x' is not a valid integer."),
    (["--host-memory", "0"], "Error: --host-memory must be a positive size in GiB, got 0"),
    (["--host-memory", "-inf"], "Error: --host-memory must be a positive size in GiB, got -inf"),
    (["--host-memory", "lots"], "Error: --host-memory must be a size such as 64GiB, 512G or 64 (GiB), got 'lots'"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "line"), ERRORS)
def test_bad_input_is_one_line(run: Run, args: list[str], line: str) -> None:
    assert one_error(run(*BASE, *args)) == line


# --------------------------------------------------------------------------- memory already in use


def _with_used(name: str, used: int) -> dict[str, Any]:
    """A real recording with `used` bytes in use on its first GPU (a desktop, another process), free
    memory lowered to match: a synthetic state of a real card."""
    rec = copy.deepcopy(recording(name))
    mem = rec["devices"][0]["memory"]
    mem["used"], mem["free"] = used, mem["total"] - used
    rec["about"] = f"synthetic: {name} with {used} bytes in use on GPU 0"
    return rec


@pytest.fixture
def probe_used(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, int], None]:
    def use(name: str, used: int) -> None:
        host = HostInfo(memory_bytes=64 * GiB, available_bytes=60 * GiB, cpu_cores=16)
        m = probe_machine(FakeNVML(_with_used(name, used)), environ={}, host=host)
        monkeypatch.setattr(hardware, "probe", lambda: m)

    return use


def test_used_memory_comes_off_a_llamacpp_plan(run: Run, probe_used: Callable[[str, int], None]) -> None:
    probe_used("rtx_4090", 6 * GiB)
    doc = doc_of(run, "estimate", "deepseek-r1-distill-qwen-14b", "-q", "q4_K_M", "--context", "8192")
    g = doc["per_gpu"][0]
    assert doc["gpu_in_use_bytes"] == 6 * GiB
    assert g["usable_bytes"] == g["capacity_bytes"] - 6 * GiB  # llama.cpp allocates from free memory
    assert any(n.startswith("6.0 GiB of GPU 0's 24.0 GiB was in use before the start") for n in doc["notes"])
    table = run("estimate", "deepseek-r1-distill-qwen-14b", "-q", "q4_K_M", "--context", "8192").stdout
    assert (
        "note: 6.0 GiB of GPU 0's 24.0 GiB was in use before the start (other processes, a desktop, the "
        "driver's reservation; NVML): the plan takes it off every GPU, leaving 18.0 GiB free"
    ) in " ".join(table.split())  # the note wraps under its label


def test_used_memory_makes_vllm_lower_its_share(run: Run, probe_used: Callable[[str, int], None]) -> None:
    probe_used("rtx_4090", 4 * GiB)
    args = ["estimate", "deepseek-r1-distill-qwen-1.5b", "-r", "vllm", "--context", "8192"]
    doc = doc_of(run, *args)
    g = doc["per_gpu"][0]
    free = g["capacity_bytes"] - 4 * GiB
    # 0.92 x 24 GiB is more than the 20 GiB free: vLLM V1 would refuse to start (gpu_worker.py)
    assert g["usable_bytes"] == free
    assert any(
        n.startswith("vLLM refuses to start when the free memory is below --gpu-memory-utilization 0.92")
        and "the plan assumes --gpu-memory-utilization 0.83" in n
        for n in doc["notes"]
    )
    # a share the free memory covers: nothing to lower
    low = doc_of(run, *args, "--gpu-memory-utilization", "0.8")
    assert low["per_gpu"][0]["usable_bytes"] == int(g["capacity_bytes"] * 0.8)
    assert not any("refuses to start" in n for n in low["notes"])


def test_named_gpu_ignores_the_probe(run: Run, probe_used: Callable[[str, int], None]) -> None:
    probe_used("rtx_4090", 6 * GiB)
    doc = doc_of(run, "estimate", "deepseek-r1-distill-qwen-14b", "-q", "q4_K_M", "--gpu", "rtx-4090")
    assert doc["gpu_in_use_bytes"] == 0
    assert not any("in use before the start" in n for n in doc["notes"])


def test_used_memory_shrinks_the_sglang_pool(run: Run, probe_used: Callable[[str, int], None]) -> None:
    probe_used("rtx_4090", 2 * GiB)
    args = ["estimate", "deepseek-r1-distill-qwen-1.5b", "-r", "sglang", "--context", "8192"]
    g = doc_of(run, *args, "--mem-fraction-static", "0.5")["per_gpu"][0]
    # model_runner.py profile_max_num_token: the pool is free memory after loading less (1 - F) x total
    assert (
        g["usable_bytes"]
        == int(0.5 * g["capacity_bytes"]) - 2 * GiB + g["activation_bytes"] + g["overhead_bytes"]
    )


def test_a_little_used_memory_leaves_vllm_unchanged(run: Run, probe_used: Callable[[str, int], None]) -> None:
    probe_used("rtx_4090", 1 * GiB)  # a desktop: 0.92 x total is still free
    doc = doc_of(run, "estimate", "deepseek-r1-distill-qwen-1.5b", "-r", "vllm", "--context", "8192")
    g = doc["per_gpu"][0]
    assert g["usable_bytes"] == int(g["capacity_bytes"] * 0.92)
    assert any(
        n.endswith("vLLM's 0.92 x total is still free, so the plan is unchanged") for n in doc["notes"]
    )
