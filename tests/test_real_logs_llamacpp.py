"""Published llama.cpp / llama-server / llama-cli startup logs (tests/fixtures/logs/real/llamacpp/, provenance
in each file's header and in index.yaml): every log parses into the figures and settings it prints, and
`vramplan check` gives a comparison for it. No tolerance asserts here: how close the estimate comes is the
benchmark's business."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import Result

from vramplan.logs import read_log
from vramplan.logs.types import ParsedLog
from vramplan.runtimes import Runtime

REAL = Path(__file__).parent / "fixtures" / "logs" / "real" / "llamacpp"
INDEX: list[dict[str, Any]] = yaml.safe_load((REAL / "index.yaml").read_text(encoding="utf-8"))
INDEX_KEYS = {"file", "source", "runtime", "version", "model", "same_architecture", "gpu", "args", "held_out"}
# the logs the rules were built on; the held-out ones are read by tests/test_corpus.py and the benchmark
TUNED = [e for e in INDEX if not e["held_out"]]


def _texts(bufs: tuple[Any, ...]) -> list[tuple[str, str]]:
    return [(b.device, b.figure.text) for b in bufs]


def _mapped(*texts: str) -> list[tuple[str, str]]:
    return [("CPU_Mapped", f"{t} MiB") for t in texts]


# What each log prints: buffers as (device, text), and the settings it states (None: not stated).
EXPECTED: dict[str, dict[str, Any]] = {
    # Seen in round 1 of the corpus (its numbers informed the -ngl placement rule of LM Studio's build) before
    # its source was found, so it is in the tuned set, not the held-out one.
    "lmstudio-llama.cpp_r1-0528-qwen3-8b-q8_0_rtx3060ti-8gb-ngl19_ctx131072_b58xx.log": {
        "version": None,
        "model": "DeepSeek R1 0528 Qwen3 8B",
        "weights": [("CUDA0", "3715.11 MiB"), ("CPU_Mapped", "4585.25 MiB")],
        "kv": [("CUDA0", "9728.00 MiB"), ("CPU", "8704.00 MiB")],
        "compute": [("CUDA0", "9240.00 MiB"), ("CUDA_Host", "264.01 MiB")],
        "settings": dict(
            n_ctx=131072,
            context=131072,
            parallel=1,
            n_ubatch=512,
            flash_attn=False,
            type_k="f16",
            type_v="f16",
            gpu_layers=19,
            layers_total=37,
            gpu_repeating_layers=19,
            output_on_gpu=False,
            quantization="Q8_0",
            kv_unified=True,
        ),
    },
    "llama-cli_distill-qwen-7b-q4_k_m_arc-sycl_ipex-llm.log": {
        "version": None,
        "model": "DeepSeek R1 Distill Qwen 7B",
        "weights": [("SYCL0", "4168.09 MiB"), ("CPU_Mapped", "292.36 MiB")],
        "kv": [("SYCL0", "138.25 MiB")],
        "compute": [("SYCL0", "1501.00 MiB"), ("SYCL_Host", "58.97 MiB")],
        "settings": dict(
            n_ctx=2528,
            context=2528,
            parallel=1,
            n_batch=2528,
            n_ubatch=2528,
            flash_attn=False,
            type_k="f16",
            type_v="f16",
            gpu_name="Intel(R) Arc(TM) Graphics",
            gpu_layers=29,
            layers_total=29,
            gpu_repeating_layers=28,
            output_on_gpu=True,
            quantization="Q4_K - Medium",
            kv_unified=None,
        ),
    },
    "llama-cli_r1-q4_0_graviton4-cpu-aarch64-repack_b4963.log": {
        "version": "4963",
        "commit": "02082f15",
        "model": "DeepSeek R1",
        "weights": _mapped("38134.87", *["35048.27"] * 8, "22690.15"),
        "repacked": [("CPU_AARCH64", "350606.64 MiB")],
        "kv": [("CPU", "19520.00 MiB")],  # the `init:` prefix of b4880-b5000
        "compute": [("CPU", "1186.01 MiB")],
        "settings": dict(
            n_ctx=4096,
            context=4096,
            parallel=1,
            cells=4096,
            n_batch=2048,
            n_ubatch=512,
            flash_attn=False,
            type_k="f16",
            type_v="f16",
            gpu_name=None,
            gpu_layers=None,
            quantization="Q4_0",
            kv_unified=None,
        ),
    },
    "llama-perplexity_r1-q8_0_xeon-cpu-amx_4seq_b4905.log": {
        "version": "4905",
        "commit": "b1b132ef",
        "model": "DeepSeek R1 BF16",
        "weights": _mapped("45565.90", *["46661.11"] * 13, "28077.60"),
        "repacked": [("AMX", "18214.39 MiB")],
        "kv": [("CPU", "9760.00 MiB")],
        "compute": [("CPU", "670.01 MiB")],
        "settings": dict(
            n_ctx=2048,
            context=512,
            parallel=4,
            cells=2048,
            n_batch=2048,
            n_ubatch=512,
            flash_attn=False,
            type_k="f16",
            type_v="f16",
            quantization="Q8_0",
            kv_unified=None,
            streams=None,
        ),
    },
    "llama-server_distill-qwen-1.5b-q6_k_rtx2060-vulkan_b4539.log": {
        "version": "4539",
        "commit": "564804b7",
        "model": "DeepSeek R1 Distill Qwen 1.5B",
        "weights": [("Vulkan0", "1208.10 MiB"), ("CPU_Mapped", "182.57 MiB")],
        "kv": [("Vulkan0", "224.00 MiB")],
        "compute": [("Vulkan0", "299.75 MiB"), ("Vulkan_Host", "19.01 MiB")],
        "settings": dict(
            n_ctx=8192,
            context=8192,
            parallel=1,
            n_batch=2048,
            n_ubatch=512,
            flash_attn=False,
            gpu_name="NVIDIA GeForce RTX 2060 with Max-Q Design",
            gpu_layers=29,
            layers_total=29,
            quantization="Q6_K",
        ),
    },
    "llama-server_distill-qwen-32b-q4_k_m_1gpu-cuda-fa_b47xx-excerpt.log": {
        "version": None,
        "model": None,
        "weights": [("CUDA0", "18508.35 MiB"), ("CPU_Mapped", "417.66 MiB")],
        "kv": [],
        "compute": [],
        "settings": dict(
            n_ctx=16384,
            context=16384,
            parallel=1,
            cells=16384,
            n_batch=512,
            n_ubatch=512,
            flash_attn=True,
            gpu_layers=65,
            layers_total=65,
            gpu_repeating_layers=64,
            output_on_gpu=True,
            quantization=None,
        ),
    },
    "llama-server_qwen2.5-coder-32b_2gpu-ctk-q8_0-pipeline_b44xx-excerpt.log": {
        "version": None,
        "model": None,
        "weights": [],
        "kv": [("CUDA0", "2788.00 MiB"), ("CUDA1", "1564.00 MiB")],
        "compute": [("CUDA0", "233.00 MiB"), ("CUDA1", "237.51 MiB"), ("CUDA_Host", "133.01 MiB")],
        "settings": dict(
            cells=32768,
            n_ctx=32768,
            parallel=None,
            type_k="q8_0",
            type_v="q8_0",
            pipeline_copies=4,
            n_ubatch=None,
            flash_attn=None,
            gpu_layers=None,
        ),
    },
    "llama-server_r1-q4_k_m_1gpu-ot-experts-cpu_ctx163840_b4800-excerpt.log": {
        "version": None,
        "model": None,
        "weights": [
            ("CUDA0", "9460.52 MiB"),
            *_mapped(
                "45358.94",
                "47124.64",
                "47124.64",
                "45927.96",
                "47124.64",
                "46024.76",
                "47124.64",
                "44656.01",
                "14105.06",
            ),
        ],
        "kv": [],
        "compute": [],
        "settings": dict(
            n_ctx=163840,
            context=163840,
            parallel=1,
            n_batch=2048,
            n_ubatch=None,
            flash_attn=False,
            gpu_layers=62,
            layers_total=62,
            output_on_gpu=True,
            cpu_moe_blocks=None,
            type_k=None,
        ),
    },
    "llama-server_v3-0324_4gpu-ot-ub1024_mla-kv_b5300-excerpt.log": {
        "version": None,
        "model": None,
        "weights": [],
        "kv": [
            ("CUDA0", "510.00 MiB"),
            ("CUDA1", "408.00 MiB"),
            ("CUDA2", "408.00 MiB"),
            ("CUDA3", "748.00 MiB"),
        ],
        "compute": [
            ("CUDA0", "3285.00 MiB"),
            ("CUDA1", "788.00 MiB"),
            ("CUDA2", "788.00 MiB"),
            ("CUDA3", "788.01 MiB"),
            ("CUDA_Host", "92.01 MiB"),
        ],
        "settings": dict(
            cells=16384,
            n_ctx=16384,
            type_k="f16",
            type_v="f16",
            v_cache_empty=False,
            n_ubatch=None,
            parallel=None,
        ),
    },
    # second batch
    "llama-server_r1-q4_k_m_rtx4090-kv-on-gpu_ctx1024_b48xx-excerpt.log": {
        "version": None,
        "model": None,
        "weights": [],
        "kv": [("CUDA0", "4880.00 MiB")],
        "compute": [("CUDA0", "5011.50 MiB"), ("CUDA_Host", "16.01 MiB")],
        "settings": dict(
            n_ctx=1024,  # from `kv_size = 1024`: the excerpt starts at the KV lines
            context=1024,
            cells=1024,
            type_k="f16",
            type_v="f16",
            v_cache_empty=False,
            parallel=None,
            n_ubatch=None,
            flash_attn=None,
            gpu_name=None,
        ),
    },
    "llama-cli_r1-ud-iq1_s_2gpu-ngl61_ctx8192_b46xx-excerpt.log": {
        "version": None,
        "model": None,
        "weights": [("CUDA0", "65208.70 MiB"), ("CUDA1", "67299.27 MiB"), ("CPU_Mapped", "1222.09 MiB")],
        "kv": [],
        "compute": [],
        "settings": dict(
            n_ctx=8192,
            context=8192,
            parallel=1,
            n_batch=2048,
            n_ubatch=512,
            gpu_layers=61,
            layers_total=62,
            gpu_repeating_layers=61,
            output_on_gpu=False,  # -ngl 61 < n_layer + 1: output.weight stays in CPU_Mapped
            type_k=None,
            quantization=None,
        ),
    },
    "snap-llama-server_distill-qwen-7b-q4_k_m_6gb-gpu_ctx4096_b66xx-excerpt.log": {
        "version": None,
        "model": None,
        "weights": [("CUDA0", "4168.09 MiB"), ("CPU_Mapped", "292.36 MiB")],  # journald prefixes before them
        "kv": [],
        "compute": [],
        "settings": dict(
            n_ctx=4096,
            context=4096,
            parallel=1,
            gpu_layers=29,
            layers_total=29,
            gpu_repeating_layers=28,
            output_on_gpu=True,
        ),
    },
    # round 2: ROCm, Metal, the MLA branch of PR 11446
    "llama-server_qwen2.5-32b-q4_k_m_5x-mi50-rocm_ctx32768_b48xx-excerpt.log": {
        "version": None,
        "model": None,
        "weights": [],
        "kv": [
            ("ROCm0", "1664.00 MiB"),
            ("ROCm1", "1664.00 MiB"),
            ("ROCm2", "1664.00 MiB"),
            ("ROCm3", "1664.00 MiB"),
            ("ROCm4", "1536.00 MiB"),
        ],
        "compute": [*[(f"ROCm{i}", "2664.00 MiB") for i in range(5)], ("ROCm_Host", "74.01 MiB")],
        "settings": dict(
            n_ctx=32768,
            context=32768,
            cells=32768,
            type_k="f16",
            type_v="f16",
            flash_attn=None,
            n_ubatch=None,
            gpu_name=None,
            gpu_layers=None,
        ),
    },
    "llama-server_qwen2.5-coder-32b_rx7900xtx-rocm-ctk-q8_0_ctx32768_b45xx-excerpt.log": {
        "version": None,
        "model": None,
        "weights": [],
        "kv": [("ROCm0", "4352.00 MiB")],
        "compute": [("ROCm0", "307.00 MiB"), ("ROCm_Host", "74.01 MiB")],
        "settings": dict(
            n_ctx=32768,
            context=32768,
            cells=32768,
            type_k="q8_0",
            type_v="q8_0",
            gpu_name="AMD Radeon RX 7900 XTX",  # from the draft model's `using device` line
        ),
    },
    "llama-cli_distill-qwen-7b_rx5500m-rocm-partial-offload_b46xx-excerpt.log": {
        "version": None,
        "model": None,
        "weights": [],
        "kv": [("CPU", "96.00 MiB"), ("ROCm0", "128.00 MiB")],  # a host and a device KV buffer
        "compute": [],
        # n_ctx from KV self size / (28 layers x (512 + 512) x 2 B): the excerpt lost the kv_size line
        "settings": dict(
            n_ctx=4096, context=4096, cells=None, type_k="f16", type_v="f16", v_cache_empty=False
        ),
    },
    "llama-server_qwen2.5-1.5b-q4_k_m_apple-m4-metal_ctx4096_b4406-excerpt.log": {
        "version": None,
        "model": None,
        "weights": [],
        "kv": [("Metal", "112.00 MiB")],
        "compute": [("Metal", "299.75 MiB"), ("CPU", "11.01 MiB")],
        "settings": dict(
            n_ctx=4096,
            context=4096,
            cells=4096,
            type_k="f16",
            type_v="f16",
            gpu_name="Apple M4",  # `ggml_metal_init: GPU name:`
        ),
    },
    "gpustack-llama-server_distill-qwen-32b_cpu-only-np4_ctx8192_b46xx-excerpt.log": {
        "version": None,
        "model": None,
        "weights": [],
        "kv": [("all devices", "2048.00 MiB")],  # only the "KV self size" line: CPU-only, no buffer line
        "compute": [("CPU", "696.01 MiB")],
        # n_ctx from `setting dry_penalty_last_n to ctx_size = 8192`, 4 slots from `n_slots = 4`
        "settings": dict(n_ctx=8192, context=2048, parallel=4, type_k="f16", type_v="f16", gpu_name=None),
    },
    "llama-cli_r1-or-v3-671b_2gpu-mla-pr11446_ctx32768_b46xx-excerpt.log": {
        "version": None,
        "model": None,
        "weights": [],
        "kv": [("CUDA0", "2110.42 MiB"), ("CUDA1", "2042.34 MiB")],
        "compute": [],
        # the second `KV self size` line (K^R, c^KV) is the MLA cache: latent-only, no V part
        "settings": dict(n_ctx=32768, cells=32768, type_k="f16", type_v="f16", v_cache_empty=True),
    },
}

# `vramplan check` refuses what the estimator cannot model, in one line
CHECK_ERRORS: dict[str, str] = {}


def test_the_index_lists_every_log_once_with_its_keys() -> None:
    # the held-out logs are read by tests/test_corpus.py and benchmarks/corpus.py only
    held = {e["file"] for e in INDEX if e["held_out"]}
    files = sorted(p.name for p in REAL.glob("*.log") if p.name not in held)
    tuned = [e for e in INDEX if not e["held_out"]]
    assert sorted(e["file"] for e in tuned) == files == sorted(EXPECTED)
    for entry in tuned:
        assert set(entry) - {"misses"} == INDEX_KEYS, entry["file"]
        assert entry["runtime"] == "llama.cpp"
        header = (REAL / entry["file"]).read_text(encoding="utf-8").splitlines()[:6]
        assert [h.split(":")[0] for h in header] == [
            "# source", "# runtime", "# gpu", "# model", "# settings", "# inferred",
        ]  # fmt: skip
        assert entry["version"] == EXPECTED[entry["file"]]["version"]


@pytest.fixture(scope="module")
def parsed() -> dict[str, ParsedLog]:
    return {name: read_log(REAL / name) for name in EXPECTED}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_log_parses_into_what_it_prints(name: str, parsed: dict[str, ParsedLog]) -> None:
    p, want = parsed[name], EXPECTED[name]
    assert p.runtime is Runtime.LLAMA_CPP
    assert (p.version, p.build_commit, p.model) == (want["version"], want.get("commit"), want["model"])
    assert _texts(p.weights) == want["weights"]
    assert _texts(p.repacked) == want.get("repacked", [])
    assert _texts(p.kv) == want["kv"]
    assert _texts(p.compute) == want["compute"]
    for key, value in want["settings"].items():
        assert getattr(p.settings, key) == value, key


def test_host_buffers_are_told_from_device_buffers(parsed: dict[str, ParsedLog]) -> None:
    hosts = {
        (b.device, b.host) for p in parsed.values() for b in (*p.weights, *p.repacked, *p.kv, *p.compute)
    }
    assert {d for d, host in hosts if host} == {
        "CPU", "CPU_Mapped", "CPU_AARCH64", "AMX", "CUDA_Host", "Vulkan_Host", "SYCL_Host", "ROCm_Host",
    }  # fmt: skip
    assert {d for d, host in hosts if not host} == {
        "CUDA0", "CUDA1", "CUDA2", "CUDA3", "Vulkan0", "SYCL0", "Metal", "all devices",
        "ROCm0", "ROCm1", "ROCm2", "ROCm3", "ROCm4",
    }  # fmt: skip


def test_a_repack_buffer_is_kept_apart_from_the_mapped_file(parsed: dict[str, ParsedLog]) -> None:
    p = parsed["llama-perplexity_r1-q8_0_xeon-cpu-amx_4seq_b4905.log"]
    # the mapped ranges are the file (664.29 GiB); the AMX copy comes on top of them
    assert p.file_size is not None
    mapped = sum(b.figure.bytes for b in p.weights)
    assert abs(mapped - p.file_size.bytes) < p.file_size.resolution * 2
    assert any("AMX holds 17.8 GiB" in n for n in p.notes)


@pytest.mark.parametrize("entry", TUNED, ids=[e["file"] for e in TUNED])
def test_check_gives_a_comparison(entry: dict[str, Any], run: Callable[..., Result]) -> None:
    result = run("check", str(REAL / entry["file"]), *entry["args"], "--json")
    if entry["file"] in CHECK_ERRORS:
        assert result.exit_code == 2
        assert CHECK_ERRORS[entry["file"]] in result.output
        return
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["runtime"] == "llama.cpp"
    parts = {p["part"] for p in doc["parts"]}
    want = EXPECTED[entry["file"]]
    assert ("weights" in parts) == bool(want["weights"])
    assert ("KV cache" in parts) == bool(want["kv"])


# Lines of formats the corpus does not hold yet, copied from published logs quoted in llama.cpp threads
# (the newest server's auto --parallel line: ggml-org/llama.cpp PR 16962, build 6934) or as llama.cpp prints
# them (tensor overrides: src/llama-model-loader.cpp; ROCm device line: ggml-cuda.cu)
@pytest.mark.parametrize(
    ("line", "field", "value"),
    [
        ("main: setting n_parallel = 4 and kv_unified = true", "parallel", 4),
        ("main: setting n_parallel = 4 and kv_unified = true", "kv_unified", True),
        ("llama_context: kv_unified    = false", "kv_unified", False),
        ("llama_context: n_outputs_max         = 1", "n_outputs_max", 1),
        (
            "tensor blk.3.ffn_up_exps.weight (1344 MiB q4_K) buffer type overridden to CPU",
            "cpu_moe_blocks",
            (3,),
        ),
        (
            "tensor blk.7.ffn_down_exps.weight (99 MiB iq4_nl) buffer type overridden to CUDA0",
            "cpu_moe_blocks",
            None,
        ),
        (
            "  Device 0: AMD Radeon RX 7900 XTX, gfx1100 (0x1100), VMM: no, Wave Size: 32",
            "gpu_name",
            "AMD Radeon RX 7900 XTX",
        ),
        ("ggml_metal_init: GPU name:   Apple M2", "gpu_name", "Apple M2"),
        # LM Studio's engine, July 2025 (a space after the slash)
        (
            "llama_kv_cache_unified: size = 18432.00 MiB (131072 cells,  36 layers,  1/ 1 seqs), "
            "K (f16): 9216.00 MiB, V (f16): 9216.00 MiB",
            "streams",
            1,
        ),
        ("load_tensors: offloading 19 repeating layers to GPU", "gpu_repeating_layers", 19),
        (
            "llama_kv_cache: size = 1024.00 MiB (  2048 cells,  32 layers,  4/4 seqs), K (f16):  512.00 MiB, "
            "V (f16):  512.00 MiB",
            "streams",
            4,
        ),
        # the ik_llama.cpp fork prints the MLA line of PR 11446 without K^R (ik_llama.cpp PR 259 thread)
        (
            "llama_new_context_with_model: KV self size  = 1166.62 MiB, c^KV (q8_0): 1166.62 MiB, kv^T: not used",
            "type_k",
            "q8_0",
        ),
    ],
)
def test_format_variants_without_a_corpus_log_yet(line: str, field: str, value: object) -> None:
    from vramplan.logs import ggml

    p = ggml.parse(line + "\nload_tensors:        CUDA0 model buffer size =  1.00 MiB\n")
    assert getattr(p.settings, field) == value
