"""What each runtime allocates: KV layout and dtype rules, what "context" means, and the modelled terms.

Runtimes: vLLM, SGLang, llama.cpp (llama-server) and Ollama (llama.cpp underneath). Every rule names
the source it follows; the modelled terms (activations, compute buffers, overheads) say how they were
derived in their docstrings and in docs/estimation.md.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

from vramplan.arch import Architecture
from vramplan.errors import PlanError
from vramplan.precision import KVDtype, WeightFormat, kv_row_bytes

GiB = 1 << 30
MiB = 1 << 20


class Runtime(str, enum.Enum):
    VLLM = "vllm"
    SGLANG = "sglang"
    LLAMA_CPP = "llama.cpp"
    OLLAMA = "ollama"

    @property
    def is_ggml(self) -> bool:
        """llama.cpp and Ollama: GGUF weights, ggml buffers, layer split across GPUs."""
        return self in (Runtime.LLAMA_CPP, Runtime.OLLAMA)


class KVLayout(str, enum.Enum):
    """How the KV cache of one token and one layer is laid out."""

    GQA = "gqa"  # K and V for each KV head (the distills)
    MLA_LATENT = "mla-latent"  # one compressed latent, kv_lora_rank + qk_rope_head_dim, no V
    MLA_KV = "mla-kv"  # llama.cpp MLA GGUF before PR 19067: K = latent (576), V = kv_lora_rank (512)
    MHA = "mha"  # llama.cpp deepseek2 GGUF converted before MLA: every head's K (192) and V (128)


# A NamedTuple, not a dataclass: as immutable and typed, and ten times cheaper to define at import
# (`vramplan estimate` imports this module on every start; see the note in vramplan/estimate.py).
class KVShape(NamedTuple):
    """Elements per token and layer of one model replica, and how many heads TP can divide."""

    layout: KVLayout
    k_elements: int
    v_elements: int
    heads: int  # 1 for a latent: replicated on every tensor-parallel rank


def kv_layout(arch: Architecture, runtime: Runtime, gguf_mla: bool | None) -> KVLayout:
    """The layout `runtime` uses for `arch`.

    - Standard attention: GQA everywhere.
    - MLA in vLLM and SGLang: the latent only (vLLM `MLACommonBackend`, `get_num_kv_heads()` returns 1
      for MLA; SGLang `MLATokenToKVPool`).
    - MLA in llama.cpp/Ollama depends on the GGUF: one converted before llama.cpp's MLA support
      (PR 12801, e.g. the Ollama library's `deepseek-r1:671b`) has `head_count_kv` 128 with key_length 192
      and value_length 128 and caches every head; an MLA GGUF caches the latent only in current
      llama.cpp (`llama-kv-cache.cpp`: `has_v = !is_mla`, since PR 19067).
    """
    if not arch.is_mla:
        return KVLayout.GQA
    if runtime.is_ggml and not gguf_mla:
        return KVLayout.MHA
    return KVLayout.MLA_LATENT


def kv_shape(arch: Architecture, layout: KVLayout) -> KVShape:
    if layout is KVLayout.GQA:
        n = arch.num_key_value_heads * arch.attn_head_dim
        return KVShape(layout, n, n, arch.num_key_value_heads)
    assert arch.kv_lora_rank is not None and arch.qk_nope_head_dim is not None
    assert arch.qk_rope_head_dim is not None and arch.v_head_dim is not None
    if layout is KVLayout.MLA_LATENT:
        return KVShape(layout, arch.mla_latent_dim, 0, 1)
    if layout is KVLayout.MLA_KV:
        return KVShape(layout, arch.mla_latent_dim, arch.kv_lora_rank, 1)
    heads = arch.num_attention_heads
    k = heads * (arch.qk_nope_head_dim + arch.qk_rope_head_dim)
    return KVShape(layout, k, heads * arch.v_head_dim, heads)


def kv_heads_per_rank(shape: KVShape, tp: int) -> int:
    """KV heads one tensor-parallel rank holds: heads / tp, at least 1 (vLLM replicates K/V heads when
    tp > num_key_value_heads: `QKVParallelLinear`, `ModelConfig.get_num_kv_heads`)."""
    return max(1, shape.heads // tp)


def kv_layer_bytes(shape: KVShape, dtype: KVDtype, tp: int = 1) -> int:
    """Bytes of one token in one layer on one tensor-parallel rank."""
    h = kv_heads_per_rank(shape, tp)
    k = shape.k_elements // shape.heads * h
    v = shape.v_elements // shape.heads * h
    return kv_row_bytes(dtype, k) + (kv_row_bytes(dtype, v) if v else 0)


# ----------------------------------------------------------------------------- KV dtypes

# The KV-cache types each runtime accepts (vLLM `CacheDType` in vllm/config/cache.py; SGLang
# `--kv-cache-dtype`; llama.cpp `--cache-type-k/-v`; Ollama `OLLAMA_KV_CACHE_TYPE`).
_KV_DTYPES = {
    Runtime.VLLM: (KVDtype.AUTO, KVDtype.BF16, KVDtype.FP16, KVDtype.FP8),
    Runtime.SGLANG: (KVDtype.AUTO, KVDtype.BF16, KVDtype.FP16, KVDtype.FP8),
    Runtime.LLAMA_CPP: (KVDtype.AUTO, KVDtype.FP16, KVDtype.BF16, KVDtype.Q8_0, KVDtype.Q4_0),
    Runtime.OLLAMA: (KVDtype.AUTO, KVDtype.FP16, KVDtype.Q8_0, KVDtype.Q4_0),
}


def resolve_kv_dtype(runtime: Runtime, requested: KVDtype, weight_format: WeightFormat) -> KVDtype:
    """The KV dtype `runtime` really uses. `auto` is the model dtype in vLLM/SGLang (bf16 for the
    R1 family, fp16 for fp16 checkpoints), and f16 in llama.cpp/Ollama (their default cache type)."""
    if requested not in _KV_DTYPES[runtime]:
        ok = ", ".join(d.value for d in _KV_DTYPES[runtime])
        raise PlanError(f"{runtime.value} cannot store the KV cache as {requested.value} (it takes: {ok})")
    if requested is not KVDtype.AUTO:
        return requested
    if runtime.is_ggml:
        return KVDtype.FP16
    return KVDtype.FP16 if weight_format is WeightFormat.FP16 else KVDtype.BF16


# ----------------------------------------------------------------------------- context semantics


class Cells(NamedTuple):
    """The KV cells a runtime allocates for `concurrency` sequences of `context` tokens."""

    total: int  # cells across all sequences
    per_sequence: int
    settings: tuple[tuple[str, str], ...]  # the runtime's own flags that give this allocation


def _pad(n: int, to: int) -> int:
    return -(-n // to) * to


# llama.cpp pads n_ctx to 256 cells (llama-context.cpp: `cparams.n_ctx = GGML_PAD(cparams.n_ctx, 256)`)
LLAMA_CPP_CTX_PAD = 256
# vLLM pages the KV cache in blocks: 16 tokens by default; the MLA backends use 64
# (FlashMLA requires block_size 64; vllm/platforms/cuda.py forces it for MLA models).
VLLM_BLOCK = 16
VLLM_MLA_BLOCK = 64


def kv_cells(runtime: Runtime, context: int, concurrency: int, block: int = VLLM_BLOCK) -> Cells:
    """How `runtime` turns a per-request context and a number of parallel requests into KV cells.

    - llama.cpp: `-c` is the total across `-np` slots; n_ctx is padded to 256, split per slot and
      each slot padded to 256 again (llama-context.cpp, non-unified KV).
    - Ollama: runs llama-server with `-c num_ctx x OLLAMA_NUM_PARALLEL -np OLLAMA_NUM_PARALLEL`
      (ollama llm/llama_server.go), padded alike.
    - vLLM: max_model_len per request, paged in `block`-token blocks (`vllm_block_size`); a full
      request holds ceil(len / block) blocks (vllm/v1/kv_cache_interface.py `max_memory_usage_bytes`).
    - SGLang: a token-granular pool (page size 1 by default): context x concurrency tokens.
    """
    if context <= 0:
        raise PlanError(f"context must be a positive number of tokens, got {context}")
    if concurrency <= 0:
        raise PlanError(f"concurrency must be at least 1, got {concurrency}")
    settings: tuple[tuple[str, str], ...]
    if runtime.is_ggml:
        n_ctx = _pad(context * concurrency, LLAMA_CPP_CTX_PAD)
        per_seq = _pad(n_ctx // concurrency, LLAMA_CPP_CTX_PAD)
        if runtime is Runtime.LLAMA_CPP:
            settings = (("--ctx-size", str(context * concurrency)), ("--parallel", str(concurrency)))
        else:
            settings = (("num_ctx", str(context)), ("OLLAMA_NUM_PARALLEL", str(concurrency)))
        return Cells(per_seq * concurrency, per_seq, settings)
    if runtime is Runtime.VLLM:
        per_seq = _pad(context, block)
        settings = (("--max-model-len", str(context)),)
        return Cells(per_seq * concurrency, per_seq, settings)
    settings = (("--context-length", str(context)), ("--max-running-requests", str(concurrency)))
    return Cells(context * concurrency, context, settings)


def default_context(runtime: Runtime, arch: Architecture, gpu_total_bytes: int | None) -> int:
    """The context a runtime uses when started without a context flag.

    - vLLM / SGLang: the model's max_position_embeddings (vLLM `ModelConfig.max_model_len`; SGLang
      `--context-length` None).
    - llama.cpp: `-c 0`, the trained context (common/common.h `n_ctx = 0`); llama-server then shrinks
      it to fit free memory (`--fit`, on by default), which vramplan does not assume.
    - Ollama (since v0.15.5): 262144 from 47 GiB of total VRAM, 32768 from 23 GiB, else 4096, capped at
      the model's maximum (ollama server/routes.go "vram-based default context"); 4096 with no GPU.
    """
    if runtime is not Runtime.OLLAMA:
        return arch.max_position_embeddings
    if gpu_total_bytes is not None and gpu_total_bytes >= 47 * GiB:
        tier = 262144
    elif gpu_total_bytes is not None and gpu_total_bytes >= 23 * GiB:
        tier = 32768
    else:
        tier = 4096
    return min(tier, arch.max_position_embeddings)


# vLLM's default --gpu-memory-utilization (vllm 0.33.0 vllm/config/cache.py: `default=0.92`; 0.9 before).
VLLM_GPU_MEMORY_UTILIZATION = 0.92


class Device(NamedTuple):
    """What the runtime rules need to know of a GPU (None fields: not known)."""

    memory_bytes: int | None = None
    compute_capability: tuple[int, int] | None = None
    is_a100: bool = False


def usable_fraction(runtime: Runtime, override: float | None = None) -> float:
    """The share of each GPU's total memory the plan may fill.

    vLLM: `--gpu-memory-utilization` x total memory, inside which weights, the profile run's
    activation peak, non-torch memory, the CUDA-graph estimate and the KV pool must all fit
    (vllm/v1/worker/gpu_worker.py `determine_available_memory`).
    SGLang: the whole card; its own reservation for activations and graphs is modelled as terms
    (`sglang_reserved_bytes`), so weights + KV stay within `--mem-fraction-static`.
    llama.cpp / Ollama: no reservation; the whole card, less what the driver keeps (in overhead).
    `override` is a `--gpu-memory-utilization` the user or a log gives.
    """
    if override is not None:
        return override
    return VLLM_GPU_MEMORY_UTILIZATION if runtime is Runtime.VLLM else 1.0


def vllm_block_size(arch: Architecture, device: Device, kv_dtype: KVDtype) -> int:
    """The KV block size vLLM 0.33 settles on (vllm/platforms/cuda.py backend priority, each MLA
    backend's supported block sizes): 16 for standard attention; for MLA on Hopper FlashAttention-MLA
    (16) with a bf16 cache and FlashMLA (64) with fp8; FlashInfer-MLA (32) on Blackwell SM100;
    Triton-MLA (16) elsewhere."""
    if not arch.is_mla:
        return VLLM_BLOCK
    cc = device.compute_capability
    if cc is not None and cc[0] == 10:
        return 32
    if cc == (9, 0) and kv_dtype is KVDtype.FP8:
        return VLLM_MLA_BLOCK
    return VLLM_BLOCK


# llama.cpp's micro-batch, the token count of its worst-case reserve graph (common/common.h `n_ubatch = 512`)
LLAMA_CPP_UBATCH = 512


class BatchShape(NamedTuple):
    """The batch a runtime sizes its activation / compute buffers for."""

    tokens: int  # tokens in one forward pass at worst (vLLM max_num_batched_tokens, llama.cpp n_ubatch)
    sequences: int  # sequences sampled at once (vLLM max_num_seqs)


def batch_shape(runtime: Runtime, device: Device, concurrency: int) -> BatchShape:
    """The worst-case batch each runtime profiles or reserves for.

    - vLLM `vllm serve` (vllm/engine/arg_utils.py `get_batch_defaults`): 16384 tokens / 1024 sequences
      on GPUs of 160 GiB and more, 8192 / 1024 from 70 GiB (A100 excepted), else 2048 / 256; H100-class
      when the GPU is not known.
    - SGLang: chunked_prefill_size 2048 below 20 GiB, 4096 below 90 GiB... as `_sglang_sizes`.
    - llama.cpp: n_ubatch = 512 (common/common.h).
    """
    if runtime.is_ggml:
        return BatchShape(LLAMA_CPP_UBATCH, concurrency)
    if runtime is Runtime.SGLANG:
        chunk, _ = _sglang_sizes(device.memory_bytes, 1)
        return BatchShape(chunk, concurrency)
    mem = device.memory_bytes
    if mem is not None and mem >= 160 * GiB:
        tokens, seqs = 16384, 1024
    elif mem is None or (mem >= 70 * GiB and not device.is_a100):
        tokens, seqs = 8192, 1024
    else:
        tokens, seqs = 2048, 256
    return BatchShape(tokens, max(seqs, concurrency))


# The sampler's float32 logits, probabilities and sort buffers over the vocabulary: three copies per
# sampled row (vllm/v1/worker/gpu_model_runner.py `_dummy_sampler_run`); calibrated in docs/accuracy.md.
SAMPLER_COPIES = 3


def activation_bytes_torch(arch: Architecture, tp: int, batch: BatchShape, act_bytes: int = 2) -> int:
    """The torch peak of vLLM's profile run on one GPU (modelled).

    The forward pass over `tokens` and the sampler run one after the other, so the peak is the larger:
    - forward: the dense MLP of one layer (gate+up 2 x ff/tp, the SwiGLU product ff/tp, input and
      residual 2 x hidden) in bf16; for MoE layers the fused-MoE workspaces, two buffers of
      tokens x top_k x max(2 x moe_ff/tp, hidden) in bf16 (vllm fused_moe `experts/triton_moe.py`);
    - sampler: `sequences` rows of fp32 logits over the vocabulary, SAMPLER_COPIES times.
    """
    t = batch.tokens
    forward = t * (3 * (arch.intermediate_size // tp) + 2 * arch.hidden_size) * act_bytes
    if arch.moe_intermediate_size is not None and arch.num_experts_per_tok is not None:
        width = max(2 * arch.moe_intermediate_size // tp, arch.hidden_size)
        forward = max(forward, 2 * t * arch.num_experts_per_tok * width * act_bytes)
    rows = min(batch.tokens, batch.sequences)
    sampler = SAMPLER_COPIES * rows * arch.vocab_size * 4
    return max(forward, sampler)


def _sglang_sizes(gpu_mem: int | None, tp: int) -> tuple[int, int]:
    """SGLang's chunked_prefill_size and decode CUDA-graph max batch by GPU memory
    (sglang 0.5.23 srt/arg_groups/memory_hook.py `handle_gpu_memory_settings`)."""
    mem = gpu_mem if gpu_mem is not None else 80 * GiB
    if mem < 20 * GiB:
        return 2048, 8
    if mem < 35 * GiB:
        return 4096, 48 if tp < 4 else 160
    if mem < 60 * GiB:
        return 4096, 32 if tp < 4 else 160
    if mem < 160 * GiB:
        return 8192, 256 if tp < 4 else 512
    return 16384, 512


def sglang_reserved_bytes(arch: Architecture, device: Device, tp: int, pp: int) -> tuple[int, int]:
    """What SGLang keeps out of `--mem-fraction-static` (its default is (total - reserved) / total),
    split into (activations, overhead), in bytes.

    reserved MiB = 512 + 1.5 x max(chunked_prefill_size, 2048) + tp x pp / 8 x 1024
                   + graphs (2 x decode max_bs, + 1536 for the MLA prefill graph, else 8 per prefill size)
    and at least 10 GiB on GPUs above 60 GiB (sglang 0.5.23 memory_hook.py lines 306-326, 357-395).
    """
    chunk, max_bs = _sglang_sizes(device.memory_bytes, tp)
    activations = int(1.5 * max(chunk, 2048)) * MiB
    graphs = 2 * max_bs + (1536 if arch.is_mla else 8 * 16)
    overhead = (512 + tp * pp * 1024 // 8 + graphs) * MiB
    mem = device.memory_bytes
    if mem is not None and mem > 60 * GiB:
        overhead = max(overhead, 10 * GiB - activations)
    return activations, overhead


def ggml_outputs(runtime: Runtime, tokens: int, concurrency: int) -> int:
    """Rows of logits in llama.cpp's worst-case reserve graph: min(n_tokens, n_outputs_max).

    llama-server passes n_outputs_max = its slot count, one sampled token per slot without speculative
    decoding (tools/server/server-context.cpp `server_output_limits`); a program that leaves the context
    parameter at 0 gets n_batch, so every token of the micro-batch has logits (llama-context.cpp
    `sched_reserve`), which is what Ollama's runner does."""
    if runtime is Runtime.LLAMA_CPP:
        return min(tokens, concurrency)
    return tokens


def compute_buffer_ggml(
    arch: Architecture,
    shape: KVShape,
    cells_per_seq: int,
    tokens: int,
    outputs: int,
    flash_attn: bool,
    *,
    has_output: bool = True,
) -> int:
    """llama.cpp's compute buffer on the device that runs the output layer (the largest one).

    llama.cpp sizes it once, from the graph of a worst-case micro-batch (llama-context.cpp
    `sched_reserve`: n_tokens = min(n_ctx, n_ubatch) tokens over every sequence, each attending to all
    n_kv = cells-per-sequence cells), and ggml-alloc reuses memory between nodes, so the buffer is the
    largest set of tensors alive at once. The peak is the largest of three phases, all F32 and per
    micro-batch token unless said (E hidden, H heads, D head dim, N cells per sequence, T tokens):

    - attention: the mask [N, T] (F16 with flash attention, llama-graph.cpp `build_attn_inp_kq_mask`,
      else F32); without flash attention also the scores KQ [N, T, H] (softmax runs in place) and the
      layer's q, k, v, kqv and residual: 3E + H(Dk + Dv) + Hkv(Dk + Dv) (deepseek2 without MLA with
      flash attention: 3E + 3H(Dk + Dv), the expanded K and V and kv_b's output beside q). MLA
      (absorbed, deepseek2.cpp) keeps instead 4E + H(2 kv_lora_rank + 2(qk_nope + qk_rope)) with or
      without flash attention: the absorbed query [kv_lora_rank + rope, H] and the output before `wv_b`
      (scores no larger than the freed [kv_lora_rank, H] query block reuse it and add nothing);
    - feed-forward: the mask (it lives until the last layer) and gate, up and their product
      3 n_ff plus 4E (input, norm, residual);
    - output: the logits [n_vocab, n_outputs] and 2E per token (final norm, last hidden state).

    The coefficients were read off llama.cpp's own reserve (sizing-only runs of every catalog shape and
    of tiny models, tests/test_llamacpp_measured.py); ggml-alloc's placement adds a little
    fragmentation, so this is a model within the tolerance docs/estimation.md states, not an identity.
    """
    t, n, f32 = tokens, cells_per_seq, 4
    e, h = arch.hidden_size, arch.num_attention_heads
    mask = n * t * (2 if flash_attn else 4)
    if arch.is_mla and shape.layout is not KVLayout.MHA:
        assert arch.kv_lora_rank is not None and arch.qk_nope_head_dim is not None
        assert arch.qk_rope_head_dim is not None
        per_token = 4 * e + h * (2 * arch.kv_lora_rank + 2 * (arch.qk_nope_head_dim + arch.qk_rope_head_dim))
        scores = 0 if flash_attn else n * t * h * f32
        # scores no larger than the freed absorbed query [kv_lora_rank, H] take its place (short contexts)
        if scores <= h * arch.kv_lora_rank * t * f32:
            scores = 0
        attn = mask + scores + per_token * t * f32
    else:
        if shape.layout is KVLayout.MHA:  # deepseek2 without MLA: every head's K (nope + rope) and V
            assert arch.qk_nope_head_dim is not None and arch.qk_rope_head_dim is not None
            assert arch.v_head_dim is not None
            dk, dv, hkv = arch.qk_nope_head_dim + arch.qk_rope_head_dim, arch.v_head_dim, h
        else:
            dk = dv = arch.attn_head_dim
            hkv = arch.num_key_value_heads
        per_token = 3 * e + h * (dk + dv) + hkv * (dk + dv)
        if flash_attn and shape.layout is KVLayout.MHA:
            per_token = 3 * e + 3 * h * (dk + dv)  # the expanded K and V and kv_b's output beside q
        attn = mask + (0 if flash_attn else n * t * h * f32) + per_token * t * f32
    ff = arch.intermediate_size
    ffn = (mask if flash_attn else 0) + (3 * ff + 4 * e) * t * f32
    logits = (arch.vocab_size * outputs + 2 * e * t) * f32 if has_output else 0
    return max(attn, ffn, logits)


def vllm_non_torch_bytes(tp: int, pp: int) -> int:
    """vLLM's non-torch memory per GPU (CUDA context, cuBLAS, NCCL and custom all-reduce buffers):
    0.75 GiB on one GPU, 2.5 GiB once GPUs talk ("non_torch_memory takes 2.53GiB" for R1 on
    TP 8 x PP 2, vllm-project/vllm issue 13074)."""
    return (5 * GiB) // 2 if tp * pp > 1 else (3 * GiB) // 4


def vllm_cudagraph_bytes(arch: Architecture, tp: int) -> int:
    """The CUDA-graph memory vLLM estimates and subtracts before sizing the KV pool (default since
    v0.21, `VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS`): 0.5 GiB for the 671B at TP 8 ("Graph
    capturing finished in 35 secs, took 0.51 GiB", R1-0528 on vLLM 0.11.2), and for dense models
    1.5 GiB / TP, at least 0.25 GiB ("took 1.56 GiB" for a Qwen2-7B on one GPU, vLLM 0.9)."""
    if arch.is_moe:
        return GiB // 2
    return max(GiB // 4, (3 * GiB) // (2 * tp))


def overhead_bytes(runtime: Runtime, arch: Architecture, tp: int, pp: int, device: Device) -> int:
    """Memory beyond weights, KV cache and activations, per GPU (modelled; docs/accuracy.md).

    - vLLM: non-torch memory plus the CUDA-graph estimate (`vllm_non_torch_bytes`,
      `vllm_cudagraph_bytes`).
    - SGLang: its reservation less the activation share (`sglang_reserved_bytes`).
    - llama.cpp / Ollama: the CUDA context, about 0.5 GiB.
    """
    if runtime.is_ggml:
        return GiB // 2
    if runtime is Runtime.SGLANG:
        return sglang_reserved_bytes(arch, device, tp, pp)[1]
    return vllm_non_torch_bytes(tp, pp) + vllm_cudagraph_bytes(arch, tp)
