"""Apple silicon as `--gpu` targets: every M1 to M4 Pro / Max / Ultra memory size, the Metal share of
the unified memory as the GPU's capacity, the host's part out of the same memory, and llama.cpp /
Ollama the only runtimes that plan there."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from vramplan.errors import CatalogError, HardwareError
from vramplan.gpus import GiB, MiB, gpu_spec, parse_gpu_entry
from vramplan.hardware import GPU_SPECS, parse_gpu
from vramplan.host import metal_gpu_share

Run = Callable[..., Result]
LOGS = Path(__file__).parent / "fixtures" / "logs" / "real" / "llamacpp"

# What Apple sold, from its tech-spec pages (the sources in gpus.yaml): chip -> memory sizes in GB.
SOLD = {
    "m1-pro": (16, 32),
    "m1-max": (32, 64),
    "m1-ultra": (64, 128),
    "m2-pro": (16, 32),
    "m2-max": (32, 64, 96),
    "m2-ultra": (64, 128, 192),
    "m3-pro": (18, 36),
    "m3-max": (36, 48, 64, 96, 128),
    "m3-ultra": (96, 256, 512),
    "m4-pro": (24, 48, 64),
    "m4-max": (36, 48, 64, 128),
}


def test_every_pro_max_ultra_size_apple_sold_is_a_target_with_its_source() -> None:
    apple = {g.name: g for g in GPU_SPECS if g.unified}
    want = {f"{chip}-{gb}gb" for chip, sizes in SOLD.items() for gb in sizes}
    assert set(apple) == want
    for name, g in apple.items():
        gb = int(name.rsplit("-", 1)[1].removesuffix("gb"))
        assert g.unified_memory_bytes == gb * GiB, name  # Apple's "GB" of RAM are GiB (hw.memsize)
        assert g.source.startswith("https://support.apple.com/en-us/"), name
        assert f"{gb}GB" in g.source, name  # the page lists this size
        assert f"{g.bandwidth_gbps:g}GB/s" in g.source, name
        assert g.max_per_node == 1 and not g.fp8 and not g.fp4


def test_the_metal_share_is_two_thirds_up_to_32_gib_and_three_quarters_above() -> None:
    assert gpu_spec("m3-pro-18gb").memory_bytes == 18 * GiB * 2 // 3
    assert gpu_spec("m1-max-32gb").memory_bytes == 32 * GiB * 2 // 3
    # 28991.03 MB (10^6 bytes) on a 36 GB M4 Max: 27 GiB, three quarters (host.py's sources)
    assert gpu_spec("m4-max-36gb").memory_bytes == 27 * GiB
    assert abs(27 * GiB / 1e6 - 28991.03) < 0.005
    assert gpu_spec("m3-max-48gb").memory_bytes == 36 * GiB
    assert gpu_spec("m4-max-128gb").memory_bytes == 96 * GiB
    assert gpu_spec("m2-ultra-192gb").memory_bytes == 144 * GiB


def test_the_rule_gives_what_metal_reported_on_a_16_gb_m4() -> None:
    """llama.cpp prints recommendedMaxWorkingSetSize / 1e6 as "MB"; the M4 16 GB log's figure is the
    rule's 2/3 of 16 GiB."""
    log = next(LOGS.glob("*apple-m4-metal*")).read_text()
    mb = float(re.search(r"recommendedMaxWorkingSetSize\s*=\s*([\d.]+) MB", log)[1])  # type: ignore[index]
    rule = metal_gpu_share(16 * GiB, None)
    assert abs(rule / 1e6 - mb) < 0.005
    assert rule / MiB != pytest.approx(mb, abs=1)  # MB here are 10^6 bytes, not MiB
    assert gpu_spec("m1-pro-16gb").memory_bytes == rule


def test_names_as_apple_writes_them_find_the_card() -> None:
    assert gpu_spec("Apple M3 Max 128GB").name == "m3-max-128gb"
    assert gpu_spec("M4 Max 128GB").name == "m4-max-128gb"
    assert gpu_spec("m2_ultra_192gb").name == "m2-ultra-192gb"


def test_a_family_without_its_size_lists_the_sizes() -> None:
    with pytest.raises(HardwareError) as err:
        gpu_spec("m3-max")
    assert str(err.value) == (
        "--gpu 'm3-max' comes in 5 memory sizes; name one: m3-max-36gb, m3-max-48gb, m3-max-64gb, "
        "m3-max-96gb, m3-max-128gb"
    )
    with pytest.raises(HardwareError, match="m3-ultra-96gb, m3-ultra-256gb, m3-ultra-512gb"):
        gpu_spec("Apple M3 Ultra")


def test_a_mac_has_one_gpu() -> None:
    assert parse_gpu("m4-max-128gb:1").count == 1
    with pytest.raises(HardwareError, match="a Mac has one Apple silicon GPU; write --gpu m4-max-128gb"):
        parse_gpu("m4-max-128gb:2")


def test_a_user_card_gives_one_kind_of_memory() -> None:
    base = {
        "name": "my-mac",
        "label": "My Mac",
        "memory_source": "hw.memsize",
        "bandwidth_gbps": 100,
        "fp8": False,
        "fp4": False,
        "interconnect": "none",
        "max_per_node": 1,
        "source": "me",
    }
    spec, _ = parse_gpu_entry({**base, "unified_memory_mib": 24576}, "f.yaml", "gpus[0]", user=True)
    assert spec.unified_memory_bytes == 24 * GiB and spec.memory_bytes == 16 * GiB
    with pytest.raises(CatalogError, match=r"give memory_mib .* or unified_memory_mib"):
        parse_gpu_entry({**base, "unified_memory_mib": 1, "memory_mib": 1}, "f.yaml", "gpus[0]", user=True)
    with pytest.raises(CatalogError, match="one per machine"):
        parse_gpu_entry({**base, "unified_memory_mib": 1, "max_per_node": 2}, "f.yaml", "gpus[0]", user=True)


def plan(run: Run, *args: str) -> dict:  # type: ignore[type-arg]
    result = run("estimate", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_a_plan_uses_the_metal_share_and_gives_the_host_what_the_gpu_leaves(run: Run) -> None:
    doc = plan(run, "deepseek-r1-distill-qwen-32b", "--gpu", "m3-max-128gb", "--context", "32768")
    assert (doc["runtime"], doc["quant"]) == ("llama.cpp", "q4_K_M")  # Metal: llama.cpp on a GGUF
    gpu, host = doc["per_gpu"][0], doc["host"]
    assert gpu["capacity_bytes"] == 96 * GiB
    assert host["capacity_bytes"] == 128 * GiB - gpu["total_bytes"]  # one memory, never counted twice
    assert host["usable_bytes"] == host["capacity_bytes"]
    assert doc["fits"] is True
    assert any(n.startswith("Apple silicon: 128.0 GiB of unified memory") for n in doc["notes"])


def test_an_offload_plan_on_a_mac_fits_only_in_what_the_gpu_leaves(run: Run) -> None:
    # the 671B's 1.58-bit GGUF (131 GiB) on a 192 GB M2 Ultra: 144 GiB for the GPU, and layers kept
    # on the host must fit in the 48 GiB the GPU part leaves of the same memory
    doc = plan(
        run, "deepseek-r1", "-q", "UD-IQ1_S", "--gpu", "m2-ultra-192gb", "-c", "8192", "--gpu-layers", "40"
    )
    gpu, host = doc["per_gpu"][0], doc["host"]
    assert host["weights_bytes"] > 20 * GiB
    assert gpu["total_bytes"] + host["capacity_bytes"] == 192 * GiB
    assert doc["fits"] is (gpu["total_bytes"] <= 144 * GiB and host["total_bytes"] <= host["capacity_bytes"])


def test_an_ollama_tag_keeps_ollama_on_a_mac(run: Run) -> None:
    assert plan(run, "deepseek-r1:14b", "--gpu", "m4-pro-48gb")["runtime"] == "ollama"
    assert (
        plan(run, "deepseek-r1-distill-qwen-14b", "--gpu", "m4-pro-48gb", "-r", "ollama")["runtime"]
        == "ollama"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["deepseek-r1-distill-qwen-7b", "--gpu", "m2-max-96gb", "-r", "vllm"],
            "vllm has no Metal backend and cannot use the GPU of m2-max-96gb (Apple silicon); plan with "
            "--runtime llama.cpp or --runtime ollama and a GGUF quantization (--quant q4_K_M, q8_0, f16, ...)",
        ),
        (
            ["deepseek-r1-distill-qwen-7b", "--gpu", "m2-max-96gb", "-r", "sglang"],
            "sglang has no Metal backend and cannot use the GPU of m2-max-96gb (Apple silicon); plan with "
            "--runtime llama.cpp or --runtime ollama and a GGUF quantization (--quant q4_K_M, q8_0, f16, ...)",
        ),
        (
            ["deepseek-r1-distill-qwen-7b", "--gpu", "m2-max-96gb", "-q", "fp8"],
            "vllm has no Metal backend and cannot use the GPU of m2-max-96gb (Apple silicon); plan with "
            "--runtime llama.cpp or --runtime ollama and a GGUF quantization (--quant q4_K_M, q8_0, f16, ...)",
        ),
        (
            ["deepseek-r1:7b", "--gpu", "m2-max-96gb", "--host-memory", "64"],
            "--host-memory: the host of m2-max-96gb is the same unified memory as its GPU "
            "(96.0 GiB), planned from the card; drop --host-memory",
        ),
        (
            ["deepseek-r1:7b", "--gpu", "m2-max"],
            "--gpu 'm2-max' comes in 3 memory sizes; name one: m2-max-32gb, m2-max-64gb, m2-max-96gb",
        ),
    ],
)
def test_what_a_mac_cannot_run_is_one_line(run: Run, args: list[str], message: str) -> None:
    result = run("estimate", *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"Error: {message}\n"


def test_recommend_for_a_mac_plans_llama_cpp_and_ollama(run: Run) -> None:
    result = run("recommend", "--gpu", "m4-max-128gb", "--top", "3", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["candidates"] and {c["runtime"] for c in doc["candidates"]} <= {"llama.cpp", "ollama"}
    result = run("recommend", "--gpu", "m4-max-128gb", "--runtime", "sglang")
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: sglang has no Metal backend and cannot use the GPU of m4-max-128gb (Apple silicon); "
        "plan with --runtime llama.cpp or --runtime ollama\n"
    )


def test_the_probes_mac_plans_its_gpu_with_the_limit_the_user_set() -> None:
    from vramplan import host
    from vramplan.catalog import load_catalog
    from vramplan.estimate import estimate
    from vramplan.hardware import probe_machine
    from vramplan.request import Choices, build_request

    sysctl = {"hw.memsize": 128 * GiB, "iogpu.wired_limit_mb": 114688}.get  # 112 GiB for the GPU
    mac = probe_machine(
        environ={}, host=host.read_host("darwin", "arm64", sysctl=sysctl), find_driver=lambda: "x"
    )
    e = estimate(
        build_request(load_catalog(), Choices(model="deepseek-r1-distill-llama-70b", context=8192), mac)
    )
    assert (e.runtime, e.topology.gpu, e.per_gpu[0].capacity_bytes) == (
        "llama.cpp",
        "apple-silicon-128gb",
        112 * GiB,
    )
    assert any("Metal lets the GPU use 112.0 GiB of it (set by iogpu.wired_limit_mb)" in n for n in e.notes)
    # vLLM on a Mac: no Metal backend, and no GPU to plan for
    vllm = build_request(load_catalog(), Choices(model="deepseek-r1-distill-llama-70b", quant="bf16"), mac)
    assert vllm.gpu is None and not vllm.cpu_only
