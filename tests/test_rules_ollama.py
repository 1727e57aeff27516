"""Ollama's rules by version (vramplan.runtimes.ollama) and `check` on its planner lines.

The planner figures below are printed by real logs (tests/fixtures/logs/real/ollama/, each file names its
source); Ollama prints them with format.HumanBytes2, one decimal, so each is matched within half a unit
of that decimal.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vramplan.catalog import Catalog
from vramplan.check import check_log
from vramplan.logs import read_log
from vramplan.runtimes import KVLayout, OllamaRules, rules_for
from vramplan.runtimes.ollama import (
    DEFAULT_CONTEXT,
    DEFAULT_PARALLEL,
    assumed_version,
    planner_graph_bytes,
    planner_kv_bytes,
)
from vramplan.runtimes.types import GiB, MiB, Runtime

REAL = Path(__file__).parent / "fixtures" / "logs" / "real" / "ollama"


def _within(value: int, printed: float, unit: int) -> bool:
    return abs(value - printed * unit) <= 0.05 * unit


def _ollama(version: str | None) -> OllamaRules:
    rules = rules_for(Runtime.OLLAMA, version)
    assert isinstance(rules, OllamaRules)
    return rules


# ------------------------------------------------------------------------------------------ defaults


@pytest.mark.parametrize(
    "version, context",
    [("0.5.7", 2048), ("0.6.6", 2048), ("0.6.7", 4096), ("0.15.4", 4096), ("0.15.5", "vram"), (None, "vram")],
)
def test_default_num_ctx_by_version(version: str | None, context: object) -> None:
    assert DEFAULT_CONTEXT.at(version) == context


def test_default_num_ctx_of_an_old_release_ignores_the_vram(catalog: Catalog) -> None:
    arch = catalog.get("deepseek-r1-distill-qwen-14b").architecture
    assert _ollama("0.5.11").default_context(arch, 80 * GiB) == 2048
    assert _ollama("0.9.6").default_context(arch, 80 * GiB) == 4096
    assert _ollama(None).default_context(arch, 80 * GiB) == min(262144, arch.max_position_embeddings)
    assert _ollama(None).default_context(arch, 16 * GiB) == 4096


@pytest.mark.parametrize("version, parallel", [("0.5.7", 0), ("0.9.6", 0), ("0.10.0", 1), (None, 1)])
def test_default_parallel_auto_until_0_10(version: str | None, parallel: int) -> None:
    assert DEFAULT_PARALLEL.at(version) == parallel


@pytest.mark.parametrize(
    "model, version, on",
    [
        ("deepseek-r1-distill-llama-8b", "0.12.3", False),
        ("deepseek-r1-0528-qwen3-8b", "0.12.3", False),
        ("deepseek-r1-0528-qwen3-8b", "0.12.4", True),  # the Go engine's list
        ("deepseek-r1-distill-llama-8b", "0.12.4", False),
        ("deepseek-r1-distill-qwen-7b", "0.13.4", True),  # llama.cpp runner: auto
        ("deepseek-r1", "0.13.4", False),  # deepseek2 on the Go engine, not in its list
        ("deepseek-r1", "0.30.0", True),  # llama-server --flash-attn auto
        ("deepseek-r1", None, True),
    ],
)
def test_default_flash_attention(catalog: Catalog, model: str, version: str | None, on: bool) -> None:
    assert _ollama(version).default_flash_attn(catalog.get(model).architecture) is on


# ------------------------------------------------------------------------------------------ version


@pytest.mark.parametrize(
    "bounds, date, expected",
    [
        ((None, "0.5.11"), "2025-01-16", "0.5.11"),  # older than every dated row: the wording's bound
        ((None, "0.5.11"), "2025-06-01", "0.5.11"),  # the wording ended with v0.5.11
        (("0.5.12", "0.12.10"), "2025-06-05", "0.6.7"),  # the newest rule row dated before the log
        (("0.5.12", "0.12.10"), "2025-02-20", "0.5.12"),  # a date before the wording: its lower bound
        ((None, None), "2026-07-01", "0.30.0"),
        ((None, None), None, None),
    ],
)
def test_assumed_version(
    bounds: tuple[str | None, str | None], date: str | None, expected: str | None
) -> None:
    assert assumed_version(bounds, date) == expected


# ------------------------------------------------------------------------------------------ the planner


@pytest.mark.parametrize(
    "model, layout, cells, kv, partial, full",
    [
        # ollama#8667 / #8447: deepseek-r1:671b, num_ctx 2048, the pre-MLA GGUF (128 heads, K 192, V 128)
        ("deepseek-r1", KVLayout.MHA, 2048, (9.5, GiB), (1019.5, MiB), (654.0, MiB)),
        # ollama#9414: the same model on 8 GPUs, 2048 x 4 (one graph: 3.0 GiB, partial = full)
        ("deepseek-r1", KVLayout.MHA, 8192, (38.1, GiB), (3.0, GiB), None),
        # ollama#8923: a Llama-3 8B at 65536 cells
        ("deepseek-r1-distill-llama-8b", KVLayout.GQA, 65536, (8.0, GiB), (4.4, GiB), (4.2, GiB)),
        # ollama#9245: a Qwen2.5-14B at 2048 cells
        ("deepseek-r1-distill-qwen-14b", KVLayout.GQA, 2048, (384.0, MiB), (916.1, MiB), (307.0, MiB)),
        # qwq:32b (2urs.com): 2048 x 4
        ("deepseek-r1-distill-qwen-32b", KVLayout.GQA, 8192, (2.0, GiB), (916.1, MiB), (676.0, MiB)),
        # ollama#10984: qwen3 has no GraphSize case: GQA x KV / 6 for both
        ("deepseek-r1-0528-qwen3-8b", KVLayout.GQA, 4096, (576.0, MiB), (384.0, MiB), (384.0, MiB)),
    ],
)
def test_planner_reproduces_the_printed_figures(
    catalog: Catalog,
    model: str,
    layout: KVLayout,
    cells: int,
    kv: tuple[float, int],
    partial: tuple[float, int],
    full: tuple[float, int] | None,
) -> None:
    arch = catalog.get(model).architecture
    kv_bytes = planner_kv_bytes(arch, layout, cells, "f16")
    assert _within(kv_bytes, *kv)
    p, f = planner_graph_bytes(arch, layout, cells, min(cells, 512), kv_bytes)
    assert _within(p, *partial)
    if full is not None:
        assert _within(f, *full)


def test_planner_kv_quantized_types_halve_it(catalog: Catalog) -> None:
    arch = catalog.get("deepseek-r1-distill-qwen-14b").architecture
    f16 = planner_kv_bytes(arch, KVLayout.GQA, 2048, "f16")
    assert f16 == 384 * MiB
    assert planner_kv_bytes(arch, KVLayout.GQA, 2048, "q8_0") * 2 == f16
    assert planner_kv_bytes(arch, KVLayout.GQA, 2048, "q4_0") * 4 == f16


@pytest.mark.parametrize(
    "full_offload, gpus, metal, graph",
    [
        (True, 1, False, "full"),
        (False, 1, False, "partial"),
        (True, 8, False, "partial"),
        (False, 1, True, "full"),
    ],
)
def test_which_graph_the_planner_reserves(full_offload: bool, gpus: int, metal: bool, graph: str) -> None:
    assert _ollama("0.5.12").planner_graph_reserved(full_offload, gpus, metal) == graph


# ------------------------------------------------------------------------------------------ check


def _check(catalog: Catalog, name: str, **kw: str):  # type: ignore[no-untyped-def]
    return check_log(catalog, read_log(REAL / name), name, **kw)


def test_check_takes_the_context_from_the_planner_kv_not_a_default(catalog: Catalog) -> None:
    r = _check(
        catalog,
        "llama-8b-q4km-rtx4090d-v0.5.x-planner.log",
        model="deepseek-r1-distill-llama-8b",
        quant="q4_K_M",
    )
    assert r.estimate.context * r.estimate.concurrency == 65536
    assert ("num_ctx x parallel", "65536") == r.settings[1][:2]
    assert any("not Ollama 0.5.11's default num_ctx 2048" in n for n in r.notes)
    # the KV figure gave the context, so it is not compared
    assert [p.part for p in r.parts] == ["weights", "compute buffer"]
    graph = next(p for p in r.parts if p.part == "compute buffer")
    assert graph.error == 0.0 and graph.scope == "planner, CUDA0"


def test_check_lists_the_assumed_version_and_defaults(catalog: Catalog) -> None:
    r = _check(catalog, "r1-671b-q4km-docker-23.3gib-v0.5.x-planner.log", model="deepseek-r1", quant="q4_K_M")
    settings = {name: (value, source) for name, value, source in r.settings}
    assert settings["Ollama version"][0] == "0.5.11 rules"
    assert "its line formats (any to 0.5.11)" in settings["Ollama version"][1]
    assert settings["parallel sequences"] == (
        "1",
        "assumed: Ollama 0.5.11's automatic parallel (1 for a partial offload)",
    )
    assert settings["flash attention"][0] == "off"
    assert r.request.runtime_version == "0.5.11"


def test_check_compares_the_kv_when_the_runner_command_states_the_context(catalog: Catalog) -> None:
    r = _check(catalog, "r1-671b-q4km-8gpu-94.7gib-v0.5.12-planner.log", model="deepseek-r1", quant="q4_K_M")
    kv = next(p for p in r.parts if p.part == "KV cache")
    assert kv.estimate == 8192 * 61 * 128 * (192 + 128) * 2 and kv.error == 0.0
    graph = next(p for p in r.parts if p.part == "compute buffer")
    assert graph.scope.count("CUDA") == 8 and graph.error == 0.0  # 3.0 GiB on each GPU, partial = full
    weights = next(p for p in r.parts if p.part == "weights")
    assert weights.estimate < r.estimate.weights_bytes  # without the token embedding (untied)


# Synthetic (not copied from a run): an Ollama v0.13.0 log of deepseek-r1:7b on the llama.cpp runner (no
# --ollama-engine), whose device lines are Ollama's estimate (llm/server.go llamaServer.Load, v0.12.11+),
# in the formats of ml/device.go BackendMemory.Log; two GPUs, every layer on them, num_ctx 4096.
# Planner figures by fs/ggml GraphSize for qwen2 (28 layers, 4 KV heads x 128, 3584 hidden, 28 heads,
# 152064 vocab): KV 4096 x 28 x 256 x 4 x 2 B = 224.0 MiB (112.0 MiB per GPU), the full-offload graph
# 4 x 512 x (3584 + 152064) B = 304.0 MiB on each GPU.
DEVICE_LINES_V0_13 = """\
time=2025-11-20T08:00:00.000Z level=INFO source=routes.go:1 msg="Listening on 127.0.0.1:11434 (version 0.13.0)"
time=2025-11-20T08:00:01.000Z level=INFO source=types.go:42 msg="inference compute" id=GPU-a library=CUDA name=CUDA0 description="NVIDIA GeForce RTX 4090" total="24.0 GiB" available="23.5 GiB"
time=2025-11-20T08:00:05.000Z level=INFO source=server.go:1 msg="starting runner" cmd="/usr/bin/ollama runner --model /root/.ollama/models/blobs/sha256-0 --port 40000"
time=2025-11-20T08:00:05.100Z level=INFO source=runner.go:1 msg=load request="{Operation:commit LoraPath:[] Parallel:1 BatchSize:512 FlashAttention:Disabled KvSize:4096 KvCacheType: NumThreads:8 GPULayers:29[ID:GPU-a Layers:15(0..14) ID:GPU-b Layers:14(15..28)] MultiUserCache:false ProjectorPath: MainGPU:0 UseMmap:false}"
time=2025-11-20T08:00:05.200Z level=INFO source=device.go:1 msg="model weights" device=CUDA0 size="2.0 GiB"
time=2025-11-20T08:00:05.200Z level=INFO source=device.go:1 msg="model weights" device=CUDA1 size="2.1 GiB"
time=2025-11-20T08:00:05.200Z level=INFO source=device.go:1 msg="kv cache" device=CUDA0 size="112.0 MiB"
time=2025-11-20T08:00:05.200Z level=INFO source=device.go:1 msg="kv cache" device=CUDA1 size="112.0 MiB"
time=2025-11-20T08:00:05.200Z level=INFO source=device.go:1 msg="compute graph" device=CUDA0 size="304.0 MiB"
time=2025-11-20T08:00:05.200Z level=INFO source=device.go:1 msg="compute graph" device=CUDA1 size="304.0 MiB"
time=2025-11-20T08:00:05.200Z level=INFO source=device.go:1 msg="total memory" size="4.9 GiB"
"""


def test_check_device_lines_of_the_llama_runner_are_the_planner(catalog: Catalog, tmp_path: Path) -> None:
    path = tmp_path / "ollama-0.13.log"
    path.write_text(DEVICE_LINES_V0_13, encoding="utf-8")
    log = read_log(path)
    assert log.planner and log.version == "0.13.0"
    r = check_log(catalog, log, str(path), model="deepseek-r1:7b")
    parts = {p.part: p for p in r.parts}
    assert parts["KV cache"].estimate == 224 * MiB and parts["KV cache"].error == 0.0
    # from v0.12.11 the full-offload graph on each GPU, however many hold layers
    assert parts["compute buffer"].estimate == 2 * 304 * MiB
    assert parts["compute buffer"].scope == "planner, CUDA0, CUDA1"
    assert _ollama("0.12.10").planner_graph_reserved(True, 2, False) == "partial"
