"""The estimator: per-GPU parts, topologies, runtime rules, inverse solvers and bad plans."""

from __future__ import annotations

import pytest

from vramplan.catalog import Catalog
from vramplan.errors import PlanError
from vramplan.estimate import HOST, Request, estimate, ggml_layer_devices, pp_layer_ranges
from vramplan.hardware import gpu_spec
from vramplan.precision import KVDtype
from vramplan.runtimes import Device, Runtime, kv_cells, vllm_block_size

GiB = 1 << 30


def req(catalog: Catalog, model: str, quant: str, runtime: Runtime, **kw: object) -> Request:
    v = catalog.get(model)
    return Request(v, v.quant(quant), runtime, **kw)  # type: ignore[arg-type]


def test_671b_fp8_vllm_needs_more_than_one_h100_node(catalog: Catalog) -> None:
    h100 = estimate(
        req(catalog, "deepseek-r1", "fp8", Runtime.VLLM, gpu=gpu_spec("h100-80gb"), gpus_per_node=8)
    )
    h200 = estimate(req(catalog, "deepseek-r1", "fp8", Runtime.VLLM, gpu=gpu_spec("h200"), gpus_per_node=8))
    assert h100.fits is False
    assert h100.max_context == 0  # not even one token: the weights alone exceed 0.9 x 80 GB
    assert h200.fits is True
    assert h200.topology.tensor_parallel == 8
    two_nodes = estimate(
        req(
            catalog,
            "deepseek-r1",
            "fp8",
            Runtime.VLLM,
            gpu=gpu_spec("h100-80gb"),
            gpus_per_node=8,
            nodes=2,
            context=32768,
        )
    )
    assert two_nodes.fits is True
    assert (two_nodes.topology.tensor_parallel, two_nodes.topology.pipeline_parallel) == (8, 2)


def test_per_gpu_parts_add_up(catalog: Catalog) -> None:
    e = estimate(
        req(
            catalog,
            "deepseek-r1-distill-qwen-32b",
            "bf16",
            Runtime.VLLM,
            gpu=gpu_spec("a100-80gb"),
            gpus_per_node=2,
            context=16384,
            concurrency=4,
        )
    )
    for d in e.per_gpu:
        assert d.total_bytes == d.weights_bytes + d.kv_cache_bytes + d.activation_bytes + d.overhead_bytes
    assert e.total_bytes == sum(d.total_bytes for d in e.per_gpu)
    assert e.kv_cache_bytes == sum(d.kv_cache_bytes for d in e.per_gpu)
    # TP 2 halves the sharded weights; norms are replicated, so a little more than half each
    assert e.weights_bytes / 2 < e.per_gpu[0].weights_bytes < e.weights_bytes / 2 * 1.001


def test_vllm_pages_context_in_blocks() -> None:
    assert kv_cells(Runtime.VLLM, 1000, 3).total == 3 * 1008  # 16-token blocks
    assert kv_cells(Runtime.VLLM, 1000, 1, block=64).total == 1024


@pytest.mark.parametrize(
    ("model", "gpu", "kv", "block"),
    [
        ("deepseek-r1-distill-qwen-7b", "h100", KVDtype.AUTO, 16),
        ("deepseek-r1", "h200", KVDtype.AUTO, 16),  # FlashAttention-MLA with a bf16 cache
        ("deepseek-r1", "h200", KVDtype.FP8, 64),  # FlashMLA with an fp8 cache
        ("deepseek-r1", "b200", KVDtype.AUTO, 32),  # FlashInfer-MLA on SM100
        ("deepseek-r1", "a100-80gb", KVDtype.AUTO, 16),  # Triton-MLA
    ],
)
def test_vllm_block_size_by_backend(catalog: Catalog, model: str, gpu: str, kv: KVDtype, block: int) -> None:
    spec = gpu_spec(gpu)
    dev = Device(spec.memory_bytes, spec.compute_capability, spec.name.startswith("a100"))
    dtype = KVDtype.FP8 if kv is KVDtype.FP8 else KVDtype.BF16
    assert vllm_block_size(catalog.get(model).architecture, dev, dtype) == block


def test_llamacpp_context_is_total_cells_padded() -> None:
    cells = kv_cells(Runtime.LLAMA_CPP, 1000, 3)  # -c 3000 -np 3: pad(3000)=3072, 3072/3=1024 per slot
    assert (cells.total, cells.per_sequence) == (3072, 1024)
    assert dict(cells.settings) == {"--ctx-size": "3000", "--parallel": "3"}
    ollama = kv_cells(Runtime.OLLAMA, 2048, 4)  # num_ctx x OLLAMA_NUM_PARALLEL
    assert ollama.total == 8192
    assert dict(ollama.settings) == {"num_ctx": "2048", "OLLAMA_NUM_PARALLEL": "4"}


def test_kv_cache_bytes_follow_cells(catalog: Catalog) -> None:
    e = estimate(
        req(
            catalog,
            "deepseek-r1-distill-qwen-7b",
            "q4_K_M",
            Runtime.LLAMA_CPP,
            context=1000,
            concurrency=3,
            gpu=gpu_spec("rtx-4090"),
        )
    )
    assert e.kv_cells == 3072
    assert e.kv_cache_bytes == 3072 * 57344


def test_llamacpp_keeps_token_embedding_on_host(catalog: Catalog) -> None:
    e = estimate(
        req(
            catalog,
            "deepseek-r1-distill-llama-8b",
            "q8_0",
            Runtime.LLAMA_CPP,
            context=4096,
            gpu=gpu_spec("rtx-4090"),
        )
    )
    embd = 4096 * 128256 // 32 * 34  # token_embd in Q8_0
    assert e.host.weights_bytes == embd
    assert e.per_gpu[0].weights_bytes + e.host.weights_bytes == e.weights_bytes


def test_llamacpp_layer_split_matches_llamacpp() -> None:
    # 61 layers + output over 8 equal GPUs: split points k/8 of 62 indices
    devs = ggml_layer_devices(61, 8, 62)
    assert devs[0] == 0 and devs[61] == 7
    assert [devs.count(k) for k in range(8)] == [8, 8, 8, 7, 8, 8, 8, 7]
    # partial offload: the first layers stay on the host
    part = ggml_layer_devices(28, 1, 10)
    assert part.count(HOST) == 19 and part[28] == 0


def test_partial_offload_moves_kv_to_host(catalog: Catalog) -> None:
    e = estimate(
        req(
            catalog,
            "deepseek-r1-distill-qwen-7b",
            "q4_K_M",
            Runtime.LLAMA_CPP,
            context=8192,
            gpu=gpu_spec("t4"),
            gpu_layers=15,
        )
    )
    assert len(e.per_gpu[0].layers) == 14  # 15 GPU layers include the output layer
    assert e.host.kv_cache_bytes == 8192 * 57344 // 28 * 14


def test_vllm_pipeline_split_follows_get_pp_indices() -> None:
    assert [len(r) for r in pp_layer_ranges(61, 2)] == [31, 30]
    assert [len(r) for r in pp_layer_ranges(61, 4)] == [15, 15, 16, 15]
    assert [len(r) for r in pp_layer_ranges(28, 3)] == [9, 10, 9]


def test_fp8_kv_halves_the_cache(catalog: Catalog) -> None:
    kw = dict(context=32768, gpu=gpu_spec("h100"))
    bf16 = estimate(req(catalog, "deepseek-r1-distill-llama-8b", "bf16", Runtime.VLLM, **kw))
    fp8 = estimate(
        req(catalog, "deepseek-r1-distill-llama-8b", "bf16", Runtime.VLLM, kv_cache_dtype=KVDtype.FP8, **kw)
    )
    assert fp8.kv_cache_bytes * 2 == bf16.kv_cache_bytes
    assert fp8.max_context >= bf16.max_context  # type: ignore[operator]


def test_inverse_solvers_are_tight(catalog: Catalog) -> None:
    base = dict(gpu=gpu_spec("rtx-4090"))
    e = estimate(
        req(catalog, "deepseek-r1-distill-qwen-14b", "q4_K_M", Runtime.LLAMA_CPP, context=4096, **base)
    )
    assert e.max_context is not None and 4096 < e.max_context < 131072
    at = estimate(
        req(
            catalog,
            "deepseek-r1-distill-qwen-14b",
            "q4_K_M",
            Runtime.LLAMA_CPP,
            context=e.max_context,
            **base,
        )
    )
    assert at.fits is True
    over = estimate(
        req(
            catalog,
            "deepseek-r1-distill-qwen-14b",
            "q4_K_M",
            Runtime.LLAMA_CPP,
            context=e.max_context + 256,
            **base,
        )
    )
    assert over.fits is False
    n = e.max_concurrency
    assert n is not None and n >= 1
    assert estimate(
        req(
            catalog,
            "deepseek-r1-distill-qwen-14b",
            "q4_K_M",
            Runtime.LLAMA_CPP,
            context=4096,
            concurrency=n,
            **base,
        )
    ).fits
    assert not estimate(
        req(
            catalog,
            "deepseek-r1-distill-qwen-14b",
            "q4_K_M",
            Runtime.LLAMA_CPP,
            context=4096,
            concurrency=n + 1,
            **base,
        )
    ).fits


def test_no_hardware_means_unknown_fit(catalog: Catalog) -> None:
    e = estimate(req(catalog, "deepseek-r1-distill-qwen-7b", "bf16", Runtime.VLLM, context=4096))
    assert e.fits is None and e.max_context is None and e.per_gpu[0].capacity_bytes is None


def test_cpu_plan_puts_everything_on_host(catalog: Catalog) -> None:
    e = estimate(
        req(
            catalog,
            "deepseek-r1-distill-qwen-7b",
            "q4_K_M",
            Runtime.OLLAMA,
            cpu_only=True,
            host_memory_bytes=16 * GiB,
        )
    )
    assert e.per_gpu == ()
    assert e.host.weights_bytes == e.weights_bytes
    assert e.total_bytes == e.host.total_bytes
    assert e.context == 4096  # Ollama's default below 24 GiB of VRAM
    assert e.fits is True


def test_default_contexts(catalog: Catalog) -> None:
    assert estimate(req(catalog, "deepseek-r1", "fp8", Runtime.VLLM)).context == 163840
    assert (
        estimate(req(catalog, "deepseek-r1-distill-qwen-7b", "q4_K_M", Runtime.LLAMA_CPP)).context == 131072
    )
    big = estimate(
        req(catalog, "deepseek-r1-distill-qwen-7b", "q4_K_M", Runtime.OLLAMA, gpu=gpu_spec("h100"))
    )
    assert big.context == 131072  # Ollama: 256k from 48 GiB up, capped at the model's maximum
    mid = estimate(
        req(catalog, "deepseek-r1-distill-qwen-7b", "q4_K_M", Runtime.OLLAMA, gpu=gpu_spec("rtx-5090"))
    )
    assert mid.context == 32768


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(context=0), "--context must be a positive number of tokens, got 0"),
        (
            dict(context=131073),
            "--context 131073 exceeds deepseek-r1-distill-qwen-7b's maximum of 131072 tokens",
        ),
        (dict(context=10, concurrency=0), "concurrency must be at least 1, got 0"),
        (dict(tp=0), "--tp must be at least 1, got 0"),
        (dict(pp=-1), "--pp must be at least 1, got -1"),
        (
            dict(gpu=gpu_spec("h100"), gpus_per_node=8, tp=8),
            "tensor parallel size 8 does not divide the model's 28 attention heads; use one of 1, 2, 4",
        ),
        (
            dict(gpu=gpu_spec("h100"), gpus_per_node=2, tp=4),
            "tensor parallel 4 x pipeline parallel 1 needs 4 GPUs but the plan has 2 (1 node x 2)",
        ),
    ],
)
def test_bad_plans(catalog: Catalog, kw: dict[str, object], message: str) -> None:
    with pytest.raises(PlanError) as err:
        estimate(req(catalog, "deepseek-r1-distill-qwen-7b", "bf16", Runtime.VLLM, **kw))
    assert str(err.value) == message


def test_runtime_must_load_the_quant(catalog: Catalog) -> None:
    with pytest.raises(
        PlanError,
        match=r"^vllm cannot load deepseek-r1-distill-qwen-7b q4_K_M \(gguf\); that quantization runs on: ollama, llama.cpp$",
    ):
        estimate(req(catalog, "deepseek-r1-distill-qwen-7b", "q4_K_M", Runtime.VLLM))


def test_kv_dtype_must_suit_runtime(catalog: Catalog) -> None:
    with pytest.raises(PlanError, match=r"^vllm cannot store the KV cache as q8_0"):
        estimate(
            req(catalog, "deepseek-r1-distill-qwen-7b", "bf16", Runtime.VLLM, kv_cache_dtype=KVDtype.Q8_0)
        )
    with pytest.raises(PlanError, match="needs flash attention"):
        estimate(
            req(
                catalog,
                "deepseek-r1-distill-qwen-7b",
                "q4_K_M",
                Runtime.LLAMA_CPP,
                kv_cache_dtype=KVDtype.Q4_0,
                flash_attn=False,
            )
        )


def test_llamacpp_rejects_tensor_parallel(catalog: Catalog) -> None:
    with pytest.raises(PlanError, match="splits a model across GPUs by layers"):
        estimate(
            req(
                catalog,
                "deepseek-r1-distill-qwen-7b",
                "q4_K_M",
                Runtime.LLAMA_CPP,
                gpu=gpu_spec("l4"),
                gpus_per_node=2,
                tp=2,
            )
        )
