"""llama.cpp's memory rules of a run (vramplan/runtimes/llamacpp.py) and `check` reading them from a log:
the micro-batch, one KV stream shared by all sequences or one per sequence, the logits rows of the reserve
graph, the MLA layout a log's K size shows, the -ngl placement of early-2025 builds and an expert override
that a log does not print per tensor.

The llama-server-0.5.0-dev_* logs in tests/fixtures/llamacpp/ were made here by the newest llama-server
(llama.cpp 0.5.0-dev, the source in llama-cpp-python 0.3.36's sdist) on a tiny GGUF (each file's header
says how); the others are the published logs of tests/fixtures/logs/real/llamacpp/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vramplan.catalog import Catalog
from vramplan.check import CheckResult, check_log
from vramplan.estimate import HOST, ggml_layer_devices
from vramplan.hardware import parse_gpu
from vramplan.logs import read_log
from vramplan.precision import KVDtype
from vramplan.runtimes import KVLayout, LlamaCppRules, RunSettings, Runtime, rules_for
from vramplan.runtimes.llamacpp import LLAMA_CPP_UBATCH, mla_layout_from_k

FIXTURES = Path(__file__).parent / "fixtures"
MADE = FIXTURES / "llamacpp"
REAL = FIXTURES / "logs" / "real" / "llamacpp"
MiB = 1 << 20


def _check(catalog: Catalog, path: Path, **kw: str) -> CheckResult:
    gpu = kw.pop("gpu", None)
    return check_log(catalog, read_log(path), str(path), gpu=parse_gpu(gpu) if gpu else None, **kw)


def _parts(r: CheckResult) -> dict[tuple[str, str], float]:
    return {(p.part, p.scope.split(" ")[0]): p.error for p in r.parts}


def _settings(r: CheckResult) -> dict[str, tuple[str, str]]:
    return {name: (value, source) for name, value, source in r.settings}


# ----------------------------------------------------------------------------- the rules themselves


def test_a_unified_stream_holds_the_context_once_for_all_sequences() -> None:
    split = LlamaCppRules()
    unified = split.with_run(RunSettings(kv_unified=True))
    # -c 3000 -np 4, a stream per sequence: 3000 x 4 padded, 3072 per sequence
    assert split.kv_cells(3000, 4)[:2] == (12288, 3072)
    # the newest llama-server's auto --parallel 4 with kv_unified = true: 3072 cells that the four share,
    # and the reserve graph attends to all of them
    assert unified.kv_cells(3000, 4)[:2] == (3072, 3072)
    assert ("--kv-unified", "on") in unified.kv_cells(3000, 4).settings
    assert split.run == RunSettings()  # with_run binds a copy
    assert rules_for(Runtime.LLAMA_CPP).with_run(RunSettings()) is rules_for(Runtime.LLAMA_CPP)


def test_the_micro_batch_and_the_logits_rows_follow_the_run() -> None:
    from vramplan.runtimes import Device

    rules = LlamaCppRules()
    assert rules.batch_shape(Device(), 4).tokens == LLAMA_CPP_UBATCH == 512
    assert rules.with_run(RunSettings(n_ubatch=128)).batch_shape(Device(), 4).tokens == 128
    # current llama-server: n_outputs_max = its slots
    assert rules.outputs(512, 4) == 4
    assert rules.with_run(RunSettings(n_outputs_max=1)).outputs(512, 4) == 1
    # builds that do not print n_outputs_max reserve logits for every micro-batch token
    assert rules.with_run(RunSettings(all_outputs=True)).outputs(512, 4) == 512


def test_the_mla_layout_follows_the_k_size(catalog: Catalog) -> None:
    arch = catalog.resolve("deepseek-r1").variant.architecture
    # V3-0324 on b5250-b5600: K (f16) 1098.00 MiB over 16384 cells and 61 layers = 576 elements
    assert mla_layout_from_k(arch, 1098 * MiB, 16384, 61, KVDtype.FP16) is KVLayout.MLA_LATENT
    # R1 before PR 12801: K (f16) 2928.00 MiB over 1024 cells and 61 layers = 128 heads x 192
    assert mla_layout_from_k(arch, 2928 * MiB, 1024, 61, KVDtype.FP16) is KVLayout.MHA
    assert mla_layout_from_k(arch, 1000 * MiB, 1024, 61, KVDtype.FP16) is None


def test_ngl_placement_of_early_2025_builds() -> None:
    # current builds: -ngl 61 of 62 offloads the output layer and blocks 1..60
    now = ggml_layer_devices(61, 2, 61)
    assert now[0] == HOST and now[61] != HOST
    # early-2025 builds: the last 61 blocks, the output layer on the CPU
    old = ggml_layer_devices(61, 2, 61, blocks_first=True)
    assert old[0] == 0 and old[60] == 1 and old[61] == HOST
    assert ggml_layer_devices(61, 2, 62, blocks_first=True) == ggml_layer_devices(61, 2, 62)


# ----------------------------------------------------------------------------- the newest llama-server


@pytest.mark.parametrize(
    ("log", "cells", "ubatch", "unified", "fa"),
    [
        ("c3000-auto", 3072, 512, "on", "on"),
        ("c3000-ub128", 3072, 128, "on", "on"),
        ("c3000-np1", 3072, 512, "off", "on"),
        ("c3000-np4", 3072, 512, "off", "on"),
        ("c3000-np4-nofa", 3072, 512, "off", "off"),
    ],
)
def test_newest_llama_server_logs(
    catalog: Catalog, log: str, cells: int, ubatch: int, unified: str, fa: str
) -> None:
    r = _check(catalog, MADE / f"llama-server-0.5.0-dev_tiny-qwen2-v4096_{log}.log")
    assert r.estimate.kv_cells == cells
    s = _settings(r)
    assert s["micro-batch (n_ubatch)"] == (str(ubatch), "the log")
    assert s["unified KV cache"] == (unified, "the log")
    assert s["flash attention"] == (fa, "the log")
    errors = _parts(r)
    assert errors[("weights", "host")] == 0.0
    assert errors[("KV cache", "host")] == 0.0  # was +300 % with the four slots' cells counted apart
    assert abs(errors[("compute buffer", "host")]) <= 0.25  # was +357 % at -ub 128 planned with 512


# ----------------------------------------------------------------------------- the published logs


def test_an_unstated_micro_batch_is_listed_as_assumed(catalog: Catalog) -> None:
    r = _check(
        catalog,
        REAL / "llama-server_r1-q4_k_m_rtx4090-kv-on-gpu_ctx1024_b48xx-excerpt.log",
        model="deepseek-r1",
        quant="q4_K_M",
        gpu="rtx-4090:1",
    )
    s = _settings(r)
    assert s["micro-batch (n_ubatch)"] == ("512", "assumed: llama.cpp's default")
    # `llama_init_from_model:` lines: a build before PR 15434 (b6325), when flash attention was opt-in
    assert s["flash attention"] == (
        "off",
        "assumed: the default before build b6325 (the log's line prefixes are older)",
    )
    assert s["logits rows reserved"][1] == "assumed: no n_outputs_max line"


def test_flash_attention_default_by_build() -> None:
    from vramplan.runtimes.llamacpp import DEFAULT_FLASH_ATTN

    assert DEFAULT_FLASH_ATTN.at("b4905") is False
    assert DEFAULT_FLASH_ATTN.at("b6324") is False
    assert DEFAULT_FLASH_ATTN.at("b6325") is True
    assert DEFAULT_FLASH_ATTN.at(None) is True


def test_unprinted_flash_attention_follows_the_build_era(catalog: Catalog) -> None:
    # 5 x MI50, Qwen2.5-32B class, no flash-attention line, `llama_init_from_model:` prefixes: off, so
    # the KQ scores of -c 32768 at ubatch 512 fill the compute buffer (-91 % when taken as on)
    r = _check(
        catalog,
        REAL / "llama-server_qwen2.5-32b-q4_k_m_5x-mi50-rocm_ctx32768_b48xx-excerpt.log",
        model="deepseek-r1-distill-qwen-32b",
        quant="q4_K_M",
    )
    assert _settings(r)["flash attention"][0] == "off"
    assert abs(_parts(r)[("compute buffer", "GPUs")]) <= 0.05


def test_a_quantized_v_cache_means_flash_attention(catalog: Catalog) -> None:
    r = _check(
        catalog,
        REAL / "llama-server_qwen2.5-coder-32b_rx7900xtx-rocm-ctk-q8_0_ctx32768_b45xx-excerpt.log",
        model="deepseek-r1-distill-qwen-32b",
        quant="q4_K_M",
    )
    assert _settings(r)["flash attention"] == (
        "on",
        "the log's q8_0 V cache, which llama.cpp allocates only with flash attention",
    )


def test_several_sequences_on_a_build_before_split_streams(catalog: Catalog) -> None:
    # b4905, 4 sequences over n_ctx 2048 on the CPU, no flash attention: the KQ scores span all 2048
    # cells of the one shared cache (was -50.6 % with 512 per sequence)
    r = _check(catalog, REAL / "llama-perplexity_r1-q8_0_xeon-cpu-amx_4seq_b4905.log")
    assert r.estimate.kv_cells == 2048
    assert _settings(r)["unified KV cache"][1].startswith("assumed")
    errors = _parts(r)
    assert errors[("KV cache", "host")] == 0.0
    assert abs(errors[("compute buffer", "host")]) <= 0.10


def test_the_logs_micro_batch_sizes_the_compute_buffer(catalog: Catalog) -> None:
    # ipex-llm's llama-cli runs n_ubatch 2528 (was -87.9 % at 512)
    r = _check(catalog, REAL / "llama-cli_distill-qwen-7b-q4_k_m_arc-sycl_ipex-llm.log")
    assert _settings(r)["micro-batch (n_ubatch)"] == ("2528", "the log")
    assert abs(_parts(r)[("compute buffer", "GPUs")]) <= 0.05


def test_the_mla_cache_with_v_is_read_from_the_k_size(catalog: Catalog) -> None:
    r = _check(
        catalog,
        REAL / "llama-server_v3-0324_4gpu-ot-ub1024_mla-kv_b5300-excerpt.log",
        model="deepseek-r1",
        quant="UD-Q2_K_XL",
    )
    assert r.estimate.kv_layout == KVLayout.MLA_KV.value  # was mha: +3665 %
    assert _parts(r)[("KV cache", "GPUs")] == 0.0


def test_old_ngl_placement_keeps_the_output_layer_on_the_cpu(catalog: Catalog) -> None:
    r = _check(
        catalog,
        REAL / "llama-cli_r1-ud-iq1_s_2gpu-ngl61_ctx8192_b46xx-excerpt.log",
        model="deepseek-r1",
        quant="UD-IQ1_S",
    )
    assert "-ngl placement" in _settings(r)
    errors = _parts(r)
    assert abs(errors[("weights", "host")]) <= 0.03  # token_embd + output: was -33.4 %
    assert abs(errors[("weights", "GPUs")]) <= 0.03


def test_an_unprinted_expert_override_is_inferred_from_the_gpu_buffer(catalog: Catalog) -> None:
    r = _check(
        catalog,
        REAL / "llama-server_r1-q4_k_m_1gpu-ot-experts-cpu_ctx163840_b4800-excerpt.log",
        model="deepseek-r1",
        quant="q4_K_M",
    )
    assert _settings(r)["routed experts in host memory"][1].startswith("inferred")
    errors = _parts(r)
    assert abs(errors[("weights", "GPUs")]) <= 0.03  # was +3973 %
    assert abs(errors[("weights", "host")]) <= 0.03


def test_no_override_is_inferred_when_the_gpu_holds_the_experts(catalog: Catalog) -> None:
    r = _check(catalog, REAL / "llama-cli_r1-q4_0_graviton4-cpu-aarch64-repack_b4963.log")
    assert "routed experts in host memory" not in _settings(r)
    r = _check(catalog, REAL / "llama-server_distill-qwen-1.5b-q6_k_rtx2060-vulkan_b4539.log")
    assert "routed experts in host memory" not in _settings(r)


def test_op_offload_copies_a_host_weight_into_the_first_gpus_compute_buffer(catalog: Catalog) -> None:
    from vramplan.arch import tensors
    from vramplan.estimate import Request, estimate
    from vramplan.hardware import gpu_spec
    from vramplan.quantmix import tensor_bytes

    v = catalog.get("deepseek-r1")
    q = v.quant("q4_K_M")
    base = dict(
        variant=v, quant=q, runtime=Runtime.LLAMA_CPP, context=4096, gpu=gpu_spec("h200"), gpus_per_node=8
    )

    def plan(**kw: object) -> list[int]:
        e = estimate(Request(**base, **kw), solve_context=False, solve_concurrency=False)  # type: ignore[arg-type]
        return [g.activation_bytes for g in e.per_gpu]

    on_gpu, moe10 = plan(), plan(cpu_moe_layers=10)
    tl = tensors(v.architecture, mla_gguf=False)
    sizes = tensor_bytes(v.architecture, q.scheme, tl)
    largest = max(
        b for t, b in zip(tl, sizes, strict=True) if t.is_expert and t.layer is not None and t.layer < 10
    )
    assert moe10[0] - on_gpu[0] == largest  # the first GPU only
    assert moe10[1:] == on_gpu[1:]
    # below 32 tokens a micro-batch runs on the CPU beside the weight: no copy
    small = plan(cpu_moe_layers=10, run=RunSettings(n_ubatch=16))
    assert small[0] == plan(run=RunSettings(n_ubatch=16))[0]


def test_check_quant_takes_any_llama_quantize_type(catalog: Catalog) -> None:
    from vramplan.errors import UnknownModelError

    path = REAL / "snap-llama-server_distill-qwen-7b-q4_k_m_6gb-gpu_ctx4096_b66xx-excerpt.log"
    r = _check(catalog, path, model="deepseek-r1-distill-qwen-7b", quant="IQ4_XS")
    assert r.identified.quant.name == "IQ4_XS"  # not a published build: sized by llama-quantize's rules
    with pytest.raises(UnknownModelError, match="or any llama-quantize type"):
        _check(catalog, path, model="deepseek-r1-distill-qwen-7b", quant="q9_X")


def test_gpu_blocks_from_the_kv_split_when_no_offload_line(catalog: Catalog) -> None:
    # RX 5500M excerpt: "CPU KV buffer size = 96.00 MiB", "ROCm0 KV buffer size = 128.00 MiB" and no
    # offload lines: 28 x 128 / 224 = 16 blocks on the GPU (was: the whole cache planned on the GPU)
    r = _check(
        catalog,
        REAL / "llama-cli_distill-qwen-7b_rx5500m-rocm-partial-offload_b46xx-excerpt.log",
        model="deepseek-r1-distill-qwen-7b",
        quant="q4_K_M",
    )
    assert _settings(r)["GPU layers"] == ("16 of 28 blocks", "the log's KV buffers per device")
    errors = _parts(r)
    assert errors[("KV cache", "GPUs")] == 0.0 and errors[("KV cache", "host")] == 0.0
