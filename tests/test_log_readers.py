"""The log readers share one protocol: one reader per runtime, found by runtime, detected by the lines
only its runtime prints, cutting a log of several startups with its own start and memory lines."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vramplan.logs import READERS, detect, parse_log, reader_for
from vramplan.runtimes import Runtime

REAL = Path(__file__).parent / "fixtures" / "logs" / "real"
FOLDERS = {"vllm": Runtime.VLLM, "sglang": Runtime.SGLANG, "llamacpp": Runtime.LLAMA_CPP}
FOLDERS["ollama"] = Runtime.OLLAMA


def test_one_reader_per_runtime() -> None:
    assert sorted(r.runtime.value for r in READERS) == sorted(rt.value for rt in Runtime)
    for rt in Runtime:
        assert reader_for(rt).runtime is rt


@pytest.mark.parametrize("folder", sorted(FOLDERS))
def test_each_reader_claims_the_real_logs_of_its_runtime(folder: str) -> None:
    index = yaml.safe_load((REAL / folder / "index.yaml").read_text(encoding="utf-8"))
    # a log that holds only its runner's llama.cpp lines is named with --runtime in its entry
    logs = [REAL / folder / e["file"] for e in index if "--runtime" not in e["args"] and not e["held_out"]]
    assert logs
    for path in logs:
        text = path.read_text(encoding="utf-8", errors="replace")
        assert detect(text) is FOLDERS[folder], path.name
        assert reader_for(FOLDERS[folder]).score(text) > 0


def test_keep_holds_only_for_server_lines_of_ollama() -> None:
    line = 'time=2025-02-01T10:00:00Z level=INFO source=routes.go:1238 msg="Listening on 127.0.0.1:11434 (version 0.5.7)"'
    assert reader_for(Runtime.OLLAMA).keep(line)
    assert not reader_for(Runtime.LLAMA_CPP).keep(line)


def test_a_restarted_log_is_cut_to_the_last_startup_by_the_readers_lines() -> None:
    one = (
        "llama_model_loader: loaded meta data\nload_tensors:        CUDA0 model buffer size =  1000.00 MiB\n"
    )
    two = one.replace("1000.00", "2000.00")
    parsed = parse_log(
        "ggml_cuda_init: found 1 CUDA devices:\n" + one + "ggml_cuda_init: found 1 CUDA devices:\n" + two
    )
    assert [b.figure.text for b in parsed.weights] == ["2000.00 MiB"]
    assert any("2 startups" in n for n in parsed.notes)


def test_each_reader_maps_its_kv_cache_names() -> None:
    from vramplan.precision import KVDtype

    ggml = (
        REAL
        / "llamacpp"
        / "llama-server_qwen2.5-coder-32b_rx7900xtx-rocm-ctk-q8_0_ctx32768_b45xx-excerpt.log"
    )
    p = parse_log(ggml.read_text(encoding="utf-8"))
    assert (p.settings.type_k, p.settings.kv_dtype) == ("q8_0", KVDtype.Q8_0)
    vllm = REAL / "vllm" / "v0101_qwen2_7b_2x_a100_80gb_tp2_util05.log"
    p = parse_log(vllm.read_text(encoding="utf-8"))
    assert (p.settings.kv_cache_dtype, p.settings.kv_dtype) == ("auto", KVDtype.AUTO)
    line = "llama_kv_cache_init:      CUDA0 KV buffer size =   100.00 MiB\n"
    unknown = (
        "llama_kv_cache_init: kv_size = 4096, offload = 1, type_k = 'q5_1', type_v = 'q5_1', n_layer = 28\n"
    )
    p = parse_log(unknown + line)
    assert (p.settings.type_k, p.settings.kv_dtype) == ("q5_1", None)  # check names it as not modelled
