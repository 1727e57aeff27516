"""`vramplan hardware [--json]` on recorded machines (tables as golden files, JSON twins), plans made
without --gpu on the probed machine, and bad --gpu input."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from click.testing import CliRunner, Result
from golden_util import assert_golden
from nvml_fake import FakeNVML

from vramplan import hardware
from vramplan.cli import cli
from vramplan.hardware import Machine, probe_machine
from vramplan.host import HostInfo

Run = Callable[..., Result]
MiB = 1 << 20
GiB = 1 << 30
HOST = HostInfo(memory_bytes=2015 * GiB, available_bytes=1990 * GiB, cpu_cores=224)
Probe = Callable[..., Machine]


@pytest.fixture
def probed(monkeypatch: pytest.MonkeyPatch) -> Probe:
    """Make `hardware.probe()` answer from a recording (conftest's default is a machine without GPUs)."""

    def use(recording: str, cvd: str | None = None, host: HostInfo = HOST) -> Machine:
        env = {} if cvd is None else {"CUDA_VISIBLE_DEVICES": cvd}
        m = probe_machine(FakeNVML(recording), environ=env, host=host)
        monkeypatch.setattr(hardware, "probe", lambda: m)
        return m

    return use


CASES = {
    "hardware_h100x8": ("h100_sxm_x8", None),
    "hardware_h100_visible_2_5": ("h100_sxm_x8", "2,5"),
    "hardware_a100_mig": ("a100_40gb_mig", None),
    "hardware_l40": ("l40_x2", None),
    "hardware_gpu2_lost": ("h100_x4_gpu2_lost", None),
    "hardware_no_driver": ("no_library", None),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_hardware_table(run: Run, probed: Probe, name: str) -> None:
    probed(*CASES[name])
    result = run("hardware")
    assert result.exit_code == 0, result.output
    assert_golden(f"cli/{name}.txt", result.stdout)


@pytest.mark.parametrize("name", sorted(CASES))
def test_hardware_json_twin(run: Run, probed: Probe, name: str) -> None:
    m = probed(*CASES[name])
    table = run("hardware").stdout
    doc = json.loads(run("hardware", "--json").stdout)
    assert list(doc) == [
        "gpus",
        "driver_version",
        "cuda_driver_version",
        "host_memory_bytes",
        "host_available_bytes",
        "cpu_cores",
        "unified_memory_bytes",
        "gpu_share_bytes",
        "plan",
        "notes",
    ]
    assert len(doc["gpus"]) == len(m.gpus)
    for g in doc["gpus"]:
        assert list(g) == [
            "index",
            "nvml_index",
            "name",
            "uuid",
            "memory_total_bytes",
            "memory_free_bytes",
            "memory_used_bytes",
            "compute_capability",
            "spec",
            "mig_enabled",
            "mig",
        ]
        assert all(isinstance(g[k], int) for k in g if k.endswith("_bytes"))
        assert f"{g['memory_total_bytes'] / GiB:.2f}" in table
        assert g["name"] in table
        assert (g["spec"] or "unknown card") in table
        for mig in g["mig"]:
            assert f"MIG {mig['profile']}" in table
            assert isinstance(mig["memory_total_bytes"], int)
    assert set(doc["plan"]) == {"target", "gpu", "gpu_count", "capacity_bytes"}
    for note in doc["notes"]:
        assert note.split(";")[0] in " ".join(table.split())
    assert doc["notes"] == list(m.notes)


def test_h100_json_numbers(run: Run, probed: Probe) -> None:
    probed("h100_sxm_x8")
    doc = json.loads(run("hardware", "--json").stdout)
    g = doc["gpus"][3]
    assert (g["index"], g["nvml_index"], g["name"], g["spec"]) == (3, 3, "NVIDIA H100 80GB HBM3", "h100-80gb")
    assert (g["memory_total_bytes"], g["memory_used_bytes"]) == (85520809984, 529 * MiB)
    assert g["compute_capability"] == "9.0"
    assert (doc["driver_version"], doc["cuda_driver_version"]) == ("550.54.15", "12.4")
    assert doc["plan"] == {"target": "gpu", "gpu": "h100-80gb", "gpu_count": 8, "capacity_bytes": 85520809984}


def test_mig_json(run: Run, probed: Probe) -> None:
    probed("a100_40gb_mig")
    doc = json.loads(run("hardware", "--json").stdout)
    (g,) = doc["gpus"]
    assert g["mig_enabled"] is True
    assert [(m["profile"], m["gpu_instance_id"], m["memory_total_bytes"]) for m in g["mig"]] == [
        ("3g.20gb", 2, 20096 * MiB),
        ("2g.10gb", 3, 9984 * MiB),
    ]
    assert doc["plan"] == {
        "target": "gpu",
        "gpu": "a100-40gb-mig-3g.20gb",
        "gpu_count": 1,
        "capacity_bytes": 20096 * MiB,
    }


def test_no_gpu_machine_plans_for_host_ram(run: Run) -> None:
    # conftest's default probe: no GPU, 64 GiB, 16 cores
    out = run("hardware").stdout
    assert out == (
        "GPUs: none found\n"
        "host: 64.00 GiB RAM  ·  16 CPU cores\n"
        "no GPU: plans are for host RAM (CPU inference), 64.00 GiB\n"
        "note: no NVIDIA GPU found\n"
    )
    doc = json.loads(run("hardware", "--json").stdout)
    assert doc["gpus"] == []
    assert doc["plan"] == {"target": "host", "gpu": None, "gpu_count": 0, "capacity_bytes": 64 * GiB}


def test_apple_silicon_machine(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    from vramplan import host

    apple = host.read_host("darwin", "arm64", sysctl={"hw.memsize": 64 * GiB, "iogpu.wired_limit_mb": 0}.get)
    m = probe_machine(environ={}, host=apple, find_driver=lambda: "macOS has no NVIDIA driver")
    monkeypatch.setattr(hardware, "probe", lambda: m)
    out = run("hardware").stdout
    assert (
        "plan: llama.cpp / Ollama on the Apple silicon GPU, 48.00 GiB (Metal's share) of 64.00 GiB unified "
        "memory; vLLM and SGLang do not run here"
    ) in " ".join(out.split())
    doc = json.loads(run("hardware", "--json").stdout)
    assert (doc["unified_memory_bytes"], doc["gpu_share_bytes"]) == (64 * GiB, 48 * GiB)
    assert doc["plan"] == {
        "target": "gpu",
        "gpu": "apple-silicon-64gb",
        "gpu_count": 1,
        "capacity_bytes": 48 * GiB,
    }
    # estimate plans this Mac's GPU as `--gpu` plans a named one: Metal's share, the host from the rest
    plan = json.loads(run("estimate", "deepseek-r1-distill-qwen-14b", "-c", "8192", "--json").stdout)
    assert (plan["runtime"], plan["quant"], plan["topology"]["gpu"]) == (
        "llama.cpp",
        "q4_K_M",
        "apple-silicon-64gb",
    )
    assert plan["per_gpu"][0]["capacity_bytes"] == 48 * GiB
    assert plan["host"]["capacity_bytes"] == 64 * GiB - plan["per_gpu"][0]["total_bytes"]
    named = json.loads(
        run("estimate", "deepseek-r1-distill-qwen-14b", "-c", "8192", "--gpu", "m1-max-64gb", "--json").stdout
    )
    assert named["per_gpu"] == plan["per_gpu"] and named["host"] == plan["host"]
    tag = json.loads(run("estimate", "deepseek-r1:14b", "-c", "8192", "--json").stdout)
    assert (tag["runtime"], tag["topology"]["gpu"]) == ("ollama", "apple-silicon-64gb")


def test_estimate_without_gpu_uses_the_probed_mig_device(run: Run, probed: Probe) -> None:
    probed("a100_40gb_mig")
    doc = json.loads(run("estimate", "deepseek-r1-distill-qwen-1.5b", "--runtime", "vllm", "--json").stdout)
    assert doc["topology"]["gpu"] == "a100-40gb-mig-3g.20gb"
    assert doc["topology"]["gpus_per_node"] == 1
    assert doc["per_gpu"][0]["capacity_bytes"] == 20096 * MiB


def test_estimate_without_gpu_uses_the_probed_gpus(run: Run, probed: Probe) -> None:
    probed("h100_sxm_x8", "0,1")
    doc = json.loads(run("estimate", "deepseek-r1-distill-qwen-32b", "--json").stdout)
    assert doc["topology"]["gpu"] == "h100-80gb"
    assert doc["topology"]["gpus_per_node"] == 2


def test_estimate_with_no_driver_is_a_cpu_plan(run: Run, probed: Probe) -> None:
    probed("no_library")
    out = run("estimate", "deepseek-r1:7b").stdout
    assert "hardware: host RAM (CPU inference)" in out


BAD_GPU = [
    (["--gpu", "h100-sxm5"], "Error: unknown GPU 'h100-sxm5'; did you mean h100-80gb, h100-pcie, h100-nvl?"),
    (["--gpu", "rtx4090:2"], "Error: unknown GPU 'rtx4090'; did you mean rtx-4090, rtx-4090d, rtx-5090?"),
    (["--gpu", "h100:0"], "Error: GPU count in 'h100:0' must be at least 1"),
    (["--gpu", "h100:-1"], "Error: GPU count in 'h100:-1' must be at least 1"),
    (["--gpu", "l4:two"], "Error: GPU count in 'l4:two' must be a whole number"),
    (
        ["--gpu", "t4:65"],
        "Error: GPU count in 't4:65' is more than the 64 GPUs one node can hold; use --nodes for more",
    ),
    (["--gpu", ":8"], "Error: --gpu ':8' names no GPU; write NAME[:COUNT], e.g. h100-80gb:8"),
    (["--gpu", " "], "Error: --gpu needs a GPU name, e.g. h100-80gb:8"),
]


@pytest.mark.parametrize(("args", "line"), BAD_GPU, ids=[a[1] for a, _ in BAD_GPU])
def test_bad_gpu_is_one_line_exit_2(run: Run, args: list[str], line: str) -> None:
    result = run("estimate", "deepseek-r1:7b", *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == line + "\n"


def test_hardware_takes_no_model(run: Run) -> None:
    result = run("hardware", "deepseek-r1")
    assert result.exit_code == 2
    assert "Got unexpected extra argument (deepseek-r1)" in result.stderr


def test_gpu_takes_a_name_as_nvml_reports_it(run: Run) -> None:
    doc = json.loads(run("estimate", "deepseek-r1", "--gpu", "NVIDIA H200:8", "--json").stdout)
    assert (doc["topology"]["gpu"], doc["topology"]["gpus_per_node"]) == ("h200", 8)


def test_a_user_catalog_gpu_plans_from_vramplan_catalog(
    run: Run, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "mine.yaml"
    path.write_text(
        "gpus:\n"
        "  - name: my-card\n"
        "    label: My Card 20GB\n"
        "    memory_mib: 20480\n"
        "    memory_source: nvidia-smi on my box\n"
        "    bandwidth_gbps: 500\n"
        "    compute_capability: '8.9'\n"
        "    fp8: true\n"
        "    fp4: false\n"
        "    interconnect: pcie\n"
        "    max_per_node: 4\n"
        "    source: https://example.com/my-card\n"
    )
    monkeypatch.setenv("VRAMPLAN_CATALOG", str(path))
    doc = json.loads(run("estimate", "deepseek-r1:7b", "--gpu", "my-card:2", "--json").stdout)
    assert doc["topology"]["gpu"] == "my-card"
    assert {g["capacity_bytes"] for g in doc["per_gpu"]} == {20480 * 2**20}


def test_a_bad_gpus_yaml_entry_is_one_line(run: Run, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "mine.yaml"
    path.write_text("gpus:\n  - name: my-card\n    colour: green\n")
    monkeypatch.setenv("VRAMPLAN_CATALOG", str(path))
    result = CliRunner().invoke(cli, ["estimate", "deepseek-r1:7b", "--gpu", "h100"])
    assert result.exit_code == 2
    assert result.stderr == f"Error: {path}: gpus[0] (my-card).colour: unknown field\n"
