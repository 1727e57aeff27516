"""`vramplan check` on logs written by real llama.cpp runs (llama-cpp-python 0.3.36, the version the test
extra pins): tiny random-weight GGUFs (tests/support/tiny_gguf.py) loaded by tests/support/llamacpp_probe.py
in a child process, with llama-server's defaults (flash attention auto, n_ubatch 512) and two parallel
sequences. The log is what llama.cpp prints at INFO level; the probe also reads the exact bytes through
llama.cpp's API (llama_get_memory_breakdown), which the parsed figures must match to the log's rounding.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from vramplan.catalog import Catalog
from vramplan.check import check_log
from vramplan.logs import read_log
from vramplan.logs.types import MiB
from vramplan.runtimes import Runtime

pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")

N_CTX, N_SEQ = 1024, 2


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict[str, Any]]]:
    from support.llamacpp_probe import measure
    from support.tiny_gguf import spec_for, write_tiny_gguf

    out: dict[str, tuple[Path, dict[str, Any]]] = {}
    tmp = tmp_path_factory.mktemp("llamacpp-logs")
    for arch in ("qwen2", "deepseek2"):
        model = write_tiny_gguf(
            tmp / f"tiny-{arch}.gguf", spec_for(arch), weight_type="F16", name=f"tiny {arch}"
        )
        r = measure(model.path, n_ctx=N_CTX, n_seq_max=N_SEQ, flash_attn="auto")
        assert r["ok"], r.get("error")
        log = tmp / f"tiny-{arch}.log"
        log.write_text(r["log"], encoding="utf-8")
        out[arch] = (log, r)
    # a q8_0 K and V cache (needs flash attention), one sequence
    r = measure(tmp / "tiny-qwen2.gguf", n_ctx=N_CTX, type_k="q8_0", type_v="q8_0", flash_attn=True)
    assert r["ok"], r.get("error")
    (tmp / "tiny-qwen2-q8_0.log").write_text(r["log"], encoding="utf-8")
    out["qwen2-q8_0"] = (tmp / "tiny-qwen2-q8_0.log", r)
    return out


def _mib(n: int) -> str:
    return f"{n / MiB:.2f} MiB"


@pytest.mark.parametrize("arch", ["qwen2", "deepseek2"])
def test_the_log_states_what_llama_cpp_allocated(
    arch: str, runs: dict[str, tuple[Path, dict[str, Any]]]
) -> None:
    path, r = runs[arch]
    p = read_log(path)
    assert p.runtime is Runtime.LLAMA_CPP and p.model == f"tiny {arch}"
    assert [(b.device, b.host, b.figure.text) for b in p.weights] == [
        ("CPU_Mapped", True, _mib(r["model_buffer_bytes"]))
    ]
    assert [(b.device, b.host, b.figure.text) for b in p.kv] == [("CPU", True, _mib(r["kv_bytes"]))]
    assert [(b.device, b.host, b.figure.text) for b in p.compute] == [("CPU", True, _mib(r["compute_bytes"]))]
    s = p.settings
    # -c 1024 over 2 sequences: 512 cells in each of 2 streams; flash attention "auto" resolves to enabled on CPU
    assert (s.n_ctx, s.context, s.parallel, s.cells, s.streams) == (N_CTX, 512, N_SEQ, 512, 2)
    assert (s.type_k, s.type_v, s.flash_attn, s.quantization, s.n_ubatch) == ("f16", "f16", True, "F16", 512)
    assert p.file_size is not None and p.file_size.text.endswith("MiB")


# KV bytes per cell and layer: qwen2 2 KV heads x 32 (K and V) in f16; deepseek2 the MLA latent
# kv_lora_rank 64 + rope 32 in f16, no V (llama-kv-cache.cpp since PR 19067)
KV_BYTES = {"qwen2": N_CTX * 2 * (2 * 64 * 2), "deepseek2": N_CTX * 3 * (96 * 2)}


@pytest.mark.parametrize("arch", ["qwen2", "deepseek2"])
def test_check_matches_llama_cpp_kv_exactly(
    arch: str, runs: dict[str, tuple[Path, dict[str, Any]]], catalog: Catalog
) -> None:
    path, r = runs[arch]
    result = check_log(catalog, read_log(path), str(path))
    e = result.estimate
    # not in the catalog: the architecture comes from the log's print_info lines, the weights from its file size
    assert result.identified.how == "not in the catalog: its shape from the log's print_info lines"
    assert (e.runtime, e.context, e.concurrency, e.kv_cells, e.cpu_plan) == (
        "llama.cpp",
        512,
        N_SEQ,
        N_CTX,
        True,
    )
    assert e.kv_layout == ("mla-latent" if arch == "deepseek2" else "gqa")
    assert e.kv_cache_bytes == r["kv_bytes"] == KV_BYTES[arch]
    parts = {p.part: p for p in result.parts}
    assert set(parts) == {"weights", "KV cache", "compute buffer"}
    assert parts["KV cache"].error == 0.0
    assert abs(parts["weights"].error) < 0.01
    # a few MiB of compute buffer on a toy model: the modelled terms (logits, FFN) are within a factor of 2
    assert -0.75 < parts["compute buffer"].error < 0.75


def test_check_cli_on_a_real_log(
    runs: dict[str, tuple[Path, dict[str, Any]]], run: Callable[..., Result]
) -> None:
    path, r = runs["deepseek2"]
    result = run("check", str(path), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["runtime"] == "llama.cpp" and doc["model_in_log"] == "tiny deepseek2"
    kv = next(p for p in doc["parts"] if p["part"] == "KV cache")
    assert (kv["scope"], kv["estimate"], kv["error"], kv["measured_text"]) == (
        "host (CPU)", r["kv_bytes"], 0.0, _mib(r["kv_bytes"]),
    )  # fmt: skip
    table = run("check", str(path))
    assert table.exit_code == 0 and "KV cache" in table.stdout and "0 (within rounding)" in table.stdout


def test_a_quantized_kv_cache(runs: dict[str, tuple[Path, dict[str, Any]]], catalog: Catalog) -> None:
    path, r = runs["qwen2-q8_0"]
    p = read_log(path)
    assert (p.settings.type_k, p.settings.type_v, p.settings.flash_attn, p.settings.parallel) == (
        "q8_0",
        "q8_0",
        True,
        1,
    )
    result = check_log(catalog, p, str(path))
    assert (result.estimate.kv_cache_dtype, result.estimate.kv_cells) == ("q8_0", N_CTX)
    # q8_0 rows: 34 bytes per 32 elements (ggml-common.h block_q8_0); 64 K and 64 V elements per layer
    assert result.estimate.kv_cache_bytes == r["kv_bytes"] == N_CTX * 2 * 2 * (64 // 32 * 34)
    assert next(x for x in result.parts if x.part == "KV cache").error == 0.0
