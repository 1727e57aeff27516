"""What each runtime allocates: KV layout and dtype rules, what "context" means, and the modelled terms.

Runtimes: vLLM, SGLang, llama.cpp (llama-server) and Ollama (llama.cpp underneath). Every rule names
the source it follows; the modelled terms (activations, compute buffers, overheads) say how they were
derived in their docstrings and in docs/estimation.md.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

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


@dataclass(frozen=True)
class KVShape:
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


@dataclass(frozen=True)
class Cells:
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


def kv_cells(runtime: Runtime, arch: Architecture, context: int, concurrency: int) -> Cells:
    """How `runtime` turns a per-request context and a number of parallel requests into KV cells.

    - llama.cpp: `-c` is the total across `-np` slots; n_ctx is padded to 256, split per slot and
      each slot padded to 256 again (llama-context.cpp, non-unified KV).
    - Ollama: allocates num_ctx x OLLAMA_NUM_PARALLEL cells in its llama.cpp runner, padded alike.
    - vLLM: max_model_len per request, paged in blocks; a full request holds ceil(len / block) blocks.
    - SGLang: a token-granular pool (page size 1 by default): context x concurrency tokens.
    """
    if context <= 0:
        raise PlanError(f"context must be a positive number of tokens, got {context}")
    if concurrency <= 0:
        raise PlanError(f"concurrency must be at least 1, got {concurrency}")
    if runtime.is_ggml:
        n_ctx = _pad(context * concurrency, LLAMA_CPP_CTX_PAD)
        per_seq = _pad(n_ctx // concurrency, LLAMA_CPP_CTX_PAD)
        if runtime is Runtime.LLAMA_CPP:
            settings = (("--ctx-size", str(context * concurrency)), ("--parallel", str(concurrency)))
        else:
            settings = (("num_ctx", str(context)), ("OLLAMA_NUM_PARALLEL", str(concurrency)))
        return Cells(per_seq * concurrency, per_seq, settings)
    if runtime is Runtime.VLLM:
        block = VLLM_MLA_BLOCK if arch.is_mla else VLLM_BLOCK
        per_seq = _pad(context, block)
        settings = (("--max-model-len", str(context)), ("--max-num-seqs", str(max(concurrency, 1))))
        return Cells(per_seq * concurrency, per_seq, settings)
    settings = (("--context-length", str(context)), ("--max-running-requests", str(concurrency)))
    return Cells(context * concurrency, context, settings)


def default_context(runtime: Runtime, arch: Architecture, gpu_total_bytes: int | None) -> int:
    """The context a runtime uses when started without a context flag.

    - vLLM / SGLang: the model's max_position_embeddings (vLLM `ModelConfig.max_model_len`).
    - llama.cpp: `-c 0`, the trained context (common/common.h `n_ctx = 0`); llama-server then shrinks
      it to fit free memory (`--fit`, on by default), which vramplan does not assume.
    - Ollama (v0.16+): 4096 below 24 GiB of total VRAM, 32768 below 48 GiB, else 262144, capped at
      the model's maximum (ollama server/routes.go); 4096 when no GPU is known.
    """
    if runtime is not Runtime.OLLAMA:
        return arch.max_position_embeddings
    if gpu_total_bytes is None or gpu_total_bytes < 24 * GiB:
        return min(4096, arch.max_position_embeddings)
    if gpu_total_bytes < 48 * GiB:
        return min(32768, arch.max_position_embeddings)
    return min(262144, arch.max_position_embeddings)


# ----------------------------------------------------------------------------- memory budget


def usable_fraction(runtime: Runtime) -> float:
    """The share of each GPU's total memory the runtime lets itself use.

    vLLM: `--gpu-memory-utilization`, default 0.9 (vllm/config/cache.py `gpu_memory_utilization`).
    SGLang: `--mem-fraction-static` covers weights + KV pool; activations and CUDA graphs use the rest;
    vramplan checks the whole sum against 0.9 of the GPU as for vLLM.
    llama.cpp / Ollama: no reservation; the whole card, less what the driver keeps (in overhead).
    """
    return 0.9 if runtime in (Runtime.VLLM, Runtime.SGLANG) else 1.0


@dataclass(frozen=True)
class BatchShape:
    """The batch a runtime sizes its activation / compute buffers for."""

    tokens: int  # tokens in one forward pass at worst (vLLM max_num_batched_tokens, llama.cpp n_ubatch)
    sequences: int  # sequences sampled at once (vLLM max_num_seqs)


def batch_shape(runtime: Runtime, concurrency: int) -> BatchShape:
    """vLLM V1 online serving profiles with max_num_batched_tokens = 8192 (chunked prefill,
    vllm/engine/arg_utils.py `_set_default_args`), and samples max_num_seqs sequences (default 256 on
    large GPUs, never fewer than the plan's concurrency). SGLang's chunked_prefill_size is 8192 on large
    GPUs (server_args.py). llama.cpp reserves for n_ubatch = 512 tokens (common.h `n_ubatch`)."""
    if runtime.is_ggml:
        return BatchShape(512, concurrency)
    return BatchShape(8192, max(256, concurrency))


def activation_bytes_torch(arch: Architecture, tp: int, batch: BatchShape, act_bytes: int = 2) -> int:
    """Peak activation memory of one GPU during vLLM's / SGLang's profile forward pass.

    Modelled, not measured here: the largest live set is the MLP of one layer for the whole batch
    (gate+up output 2 x ff/tp, the SwiGLU product ff/tp, input and residual 2 x hidden), in the model
    dtype, plus the sampler's fp32 logits for `sequences` rows over the vocabulary (computed twice:
    logits and probabilities). For MoE layers the fused-MoE workspace holds top-k copies of the
    expert intermediate (vllm/model_executor/layers/fused_moe: intermediate_cache1/2/3).
    Checked against published vLLM logs in docs/accuracy.md.
    """
    t = batch.tokens
    ff = arch.intermediate_size // tp
    mlp = t * (3 * ff + 2 * arch.hidden_size) * act_bytes
    moe = 0
    if arch.is_moe:
        assert arch.moe_intermediate_size and arch.num_experts_per_tok
        ffe = arch.moe_intermediate_size // tp if tp > 1 else arch.moe_intermediate_size
        moe = t * arch.num_experts_per_tok * (3 * ffe + arch.hidden_size) * act_bytes
    sampler = 2 * batch.sequences * arch.vocab_size * 4
    return max(mlp, moe) + sampler


def compute_buffer_ggml(
    arch: Architecture,
    shape: KVShape,
    cells: int,
    batch: BatchShape,
    flash_attn: bool,
    *,
    has_output: bool = True,
) -> int:
    """llama.cpp's compute buffer on the device that runs the output layer (the largest one).

    ggml-alloc reuses memory between graph nodes, so the buffer is the peak of live tensors:
    - the logits, F32 [n_vocab, n_outputs] with n_outputs = n_ubatch in the reserve graph
      (llama-context.cpp `graph_reserve(n_tokens, n_seqs, n_outputs_pp)`), beside the normed hidden state;
    - without flash attention, the F32 KQ matrix [n_kv, n_ubatch, n_head] and its softmax;
    - the FFN intermediates, F32 [n_ff, n_ubatch] for gate, up and their product.
    Calibrated against real llama.cpp runs in tests/test_llamacpp_measured.py (docs/accuracy.md).
    """
    u = batch.tokens
    f32 = 4
    logits = (arch.vocab_size + arch.hidden_size) * u * f32 if has_output else 0
    n_head = arch.num_attention_heads
    attn = 0 if flash_attn else 2 * cells * u * n_head * f32
    ff = arch.intermediate_size
    if arch.moe_intermediate_size is not None and arch.num_experts_per_tok is not None:
        ff = max(ff, arch.moe_intermediate_size * arch.num_experts_per_tok)
    ffn = 3 * ff * u * f32
    return max(logits, attn, ffn)


def overhead_bytes(runtime: Runtime, arch: Architecture, n_gpus: int) -> int:
    """Memory a runtime uses beyond weights, KV cache and activations, per GPU.

    - Every CUDA process: the CUDA context with cuBLAS/cuDNN workspaces, about 0.5 GiB on Hopper
      (vLLM logs it as "non-torch memory" at start).
    - vLLM / SGLang: CUDA graphs captured for decode batch sizes up to 512: about 0.5 GiB for the
      distills and 1.5 GiB for the 671B (vLLM "Graph capturing finished ... took X GiB" lines), and
      NCCL buffers once more than one GPU takes part (about 0.25 GiB).
    - Ollama adds nothing of its own beyond the llama.cpp runner on the GPU.
    """
    ctx = GiB // 2
    if runtime.is_ggml:
        return ctx
    graphs = int(1.5 * GiB) if arch.is_moe else GiB // 2
    nccl = GiB // 4 if n_gpus > 1 else 0
    return ctx + graphs + nccl
