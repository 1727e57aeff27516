"""llama.cpp's (llama-server's) memory rules: padded KV cells split over slots, the layer split over
GPUs, and the compute buffer of its worst-case reserve graph."""

from __future__ import annotations

from typing import ClassVar

from vramplan.arch import Architecture
from vramplan.precision import KVDtype, WeightFormat, kv_row_bytes
from vramplan.runtimes.base import PlanFlags, Rules
from vramplan.runtimes.types import BatchShape, Cells, Device, GiB, KVLayout, KVShape, Runtime, pad
from vramplan.runtimes.version import Versioned

# Flash attention when the command line does not say: opt-in (`-fa`) from its arrival (PR 5021, 2024)
# until PR 15434 made `-fa auto` the default (on where the backend supports it).
DEFAULT_FLASH_ATTN: Versioned[bool] = Versioned(
    "llama.cpp flash attention without -fa",
    (None, False, "common/common.h `flash_attn = false`: FlashAttention opt-in with -fa (PR 5021)"),
    (
        "b6325",
        True,
        "PR 15434 (merged 2025-08-30, build b6325): `-fa auto`, on where the backend supports it",
    ),
)

# llama.cpp pads n_ctx to 256 cells (llama-context.cpp: `cparams.n_ctx = GGML_PAD(cparams.n_ctx, 256)`)
LLAMA_CPP_CTX_PAD = 256
# llama.cpp's micro-batch, the token count of its worst-case reserve graph (common/common.h `n_ubatch = 512`)
LLAMA_CPP_UBATCH = 512
# the smallest batch for which a GPU backend runs an op on a weight in host memory (ggml-cuda.cu
# `ggml_backend_cuda_device_offload_op`: `const int min_batch_size = 32`, GGML_OP_OFFLOAD_MIN_BATCH)
LLAMA_CPP_OFFLOAD_MIN_BATCH = 32


def mla_layout_from_k(
    arch: Architecture, k_bytes: int, cells: int, layers: int, dtype: KVDtype
) -> KVLayout | None:
    """The KV layout a llama.cpp log's K size shows for an MLA model, or None when it matches none.

    llama.cpp has cached a deepseek2 model three ways, and the GGUF and the build decide which
    (src/llama-kv-cache.cpp, n_embd_k_gqa per layer): every head's K, heads x (qk_nope + qk_rope)
    elements per cell and layer (GGUFs converted before PR 12801); the latent and its rope part,
    kv_lora_rank + qk_rope (an MLA GGUF, PR 12801 on), with V beside it until PR 19067 dropped it. The
    K part of the size line (`K (f16): X MiB`, printed by every build) over cells x layers tells them
    apart whatever the catalog entry assumed; V (0.00 MiB or not) separates the two MLA forms, which
    `check` reads from the same line."""
    if not arch.is_mla or cells <= 0 or layers <= 0:
        return None
    assert arch.kv_lora_rank is not None and arch.qk_rope_head_dim is not None
    assert arch.qk_nope_head_dim is not None
    per_cell = k_bytes / (cells * layers)
    candidates = (
        (KVLayout.MLA_LATENT, arch.kv_lora_rank + arch.qk_rope_head_dim),
        (KVLayout.MHA, arch.num_attention_heads * (arch.qk_nope_head_dim + arch.qk_rope_head_dim)),
    )
    for layout, elements in candidates:
        if abs(kv_row_bytes(dtype, elements) - per_cell) <= 0.01 * per_cell:
            return layout
    return None


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


# vramplan's KV dtype -> llama-server --cache-type-k / --cache-type-v (common/arg.cpp `kv_cache_types`)
GGML_KV = {KVDtype.FP16: "f16", KVDtype.BF16: "bf16", KVDtype.Q8_0: "q8_0", KVDtype.Q4_0: "q4_0"}


class LlamaCppRules(Rules):
    runtime: ClassVar[Runtime] = Runtime.LLAMA_CPP
    label: ClassVar[str] = "llama.cpp"
    # llama.cpp `--cache-type-k/-v`
    kv_dtypes: ClassVar[tuple[KVDtype, ...]] = (
        KVDtype.AUTO,
        KVDtype.FP16,
        KVDtype.BF16,
        KVDtype.Q8_0,
        KVDtype.Q4_0,
    )
    mla_layouts: ClassVar[tuple[KVLayout, ...]] = (KVLayout.MLA_LATENT, KVLayout.MLA_KV, KVLayout.MHA)
    layer_split: ClassVar[bool] = True
    runs_on_host: ClassVar[bool] = True
    metal: ClassVar[bool] = True
    spans_nodes: ClassVar[bool] = False
    flash_attn_option: ClassVar[bool] = True
    cpu_moe_option: ClassVar[bool] = True

    def kv_layout(self, arch: Architecture, gguf_mla: bool | None) -> KVLayout:
        """MLA depends on the GGUF: one converted before llama.cpp's MLA support (PR 12801, e.g. the
        Ollama library's `deepseek-r1:671b`) has `head_count_kv` 128 with key_length 192 and
        value_length 128 and caches every head; an MLA GGUF caches the latent only in current
        llama.cpp (`llama-kv-cache.cpp`: `has_v = !is_mla`, since PR 19067)."""
        if not arch.is_mla:
            return KVLayout.GQA
        return KVLayout.MLA_LATENT if gguf_mla else KVLayout.MHA

    def auto_kv_dtype(self, weight_format: WeightFormat) -> KVDtype:
        """f16, the default cache type."""
        return KVDtype.FP16

    def plan_flags(self, plan: PlanFlags) -> tuple[tuple[str, str], ...]:
        """--n-gpu-layers and --n-cpu-moe where given, --cache-type-k / -v other than f16, and
        flash attention when turned off (common/arg.cpp)."""
        flags = []
        if plan.gpu_layers is not None:
            flags.append(("--n-gpu-layers", str(plan.gpu_layers)))
        if plan.cpu_moe_layers:
            flags.append(("--n-cpu-moe", str(plan.cpu_moe_layers)))
        if plan.kv_dtype is not KVDtype.FP16 and plan.kv_dtype in GGML_KV:
            flags += [("--cache-type-k", GGML_KV[plan.kv_dtype]), ("--cache-type-v", GGML_KV[plan.kv_dtype])]
        if not plan.flash_attn:
            flags.append(("--flash-attn", "off"))
        return tuple(flags)

    @property
    def kv_unified(self) -> bool:
        """One KV stream that all sequences share. Before llama.cpp PR 14363 (July 2025, "add
        high-throughput mode") every build had that single cache; since then a stream per sequence is
        the default with an explicit --parallel, and --kv-unified (or llama-server's auto --parallel,
        "n_parallel is set to auto, using n_parallel = 4 and kv_unified = true") asks for one. A log
        states which (`kv_unified = true|false`, printed since that PR); a plan for current builds with
        --concurrency N is llama-server -np N: a stream per sequence."""
        return bool(self.run.kv_unified)

    def _cells(self, context: int, concurrency: int, block: int) -> Cells:
        """`-c` is the total across `-np` slots; n_ctx is padded to 256, split per slot and each slot
        padded to 256 again (llama-context.cpp, non-unified KV). A unified cache (`kv_unified`) holds
        n_ctx = pad(-c) cells that every sequence may fill and attend: `context` is then -c itself."""
        if self.kv_unified:
            n_ctx = pad(context, LLAMA_CPP_CTX_PAD)
            cell_settings = (
                ("--ctx-size", str(context)),
                ("--parallel", str(concurrency)),
                ("--kv-unified", "on"),
            )
            return Cells(n_ctx, n_ctx, cell_settings)
        n_ctx = pad(context * concurrency, LLAMA_CPP_CTX_PAD)
        per_seq = pad(n_ctx // concurrency, LLAMA_CPP_CTX_PAD)
        return Cells(per_seq * concurrency, per_seq, self._cell_settings(context, concurrency))

    def _cell_settings(self, context: int, concurrency: int) -> tuple[tuple[str, str], ...]:
        return (("--ctx-size", str(context * concurrency)), ("--parallel", str(concurrency)))

    def default_context(self, arch: Architecture, gpu_total_bytes: int | None) -> int:
        """`-c 0`, the trained context (common/common.h `n_ctx = 0`); llama-server then shrinks it to fit
        free memory (`--fit`, on by default), which vramplan does not assume."""
        return arch.max_position_embeddings

    def batch_shape(self, device: Device, concurrency: int) -> BatchShape:
        """n_ubatch: the run's -ub when a log states it, else 512 (common/common.h)."""
        return BatchShape(self.run.n_ubatch or LLAMA_CPP_UBATCH, concurrency)

    def outputs(self, tokens: int, concurrency: int) -> int:
        """Rows of logits in the worst-case reserve graph. Current builds: min(n_tokens, n_outputs_max),
        and llama-server passes n_outputs_max = its slot count, one sampled token per slot without
        speculative decoding (tools/server/server-context.cpp `server_output_limits`); a log that prints
        `n_outputs_max = N` gives N. Builds before that print reserved logits for every micro-batch
        token (llama-context.cpp `graph_reserve(n_tokens, n_seqs, n_tokens, ...)`, and earlier
        `llm_build_context`'s `n_outputs(worst_case ? n_tokens : ...)`): `RunSettings.all_outputs`."""
        if self.run.n_outputs_max is not None:
            return min(tokens, self.run.n_outputs_max)
        if self.run.all_outputs:
            return tokens
        return min(tokens, concurrency)

    def activation_bytes(
        self,
        arch: Architecture,
        shape: KVShape,
        *,
        tp: int,
        pp: int,
        device: Device,
        batch: BatchShape,
        cells: Cells,
        concurrency: int,
        flash_attn: bool,
        on_host: bool,
        has_output: bool,
        has_layers: bool,
    ) -> int:
        """The compute buffer (`compute_buffer_ggml`) on every device that holds layers or the output,
        the host included; n_tokens = min(n_ctx, n_ubatch)."""
        if not (has_layers or has_output):
            return 0
        tokens = min(batch.tokens, cells.total)
        outputs = self.outputs(tokens, concurrency)
        return compute_buffer_ggml(
            arch, shape, cells.per_sequence, tokens, outputs, flash_attn, has_output=has_output
        )

    def offload_copy_bytes(self, host_largest: int, batch: BatchShape) -> int:
        """Op offload: with a micro-batch of at least 32 tokens, the GPU backend takes a matmul whose
        weight sits in host memory and copies the weight into its compute buffer (ggml-backend.cpp
        `ggml_backend_sched_backend_id_from_cur`, "1.off", asking the highest-priority GPU first;
        ggml-cuda.cu `ggml_backend_cuda_device_offload_op`: batch >= 32, GGML_OP_OFFLOAD_MIN_BATCH).
        Each such weight starts a split of its own, "so the memory of the previously offloaded weights
        can be reused" (ggml-backend.cpp, pass 5), so the buffer holds at least the largest one. A
        lower bound: published logs show more (R1 Q4_K_M with the experts in host RAM: 5011.50 MiB,
        about two expert tensors, as ggml-alloc does not always fit the next copy into the freed one).
        Ollama's runner does the same; its rules keep 0 until their owner checks their logs."""
        if self.runtime is not Runtime.LLAMA_CPP or batch.tokens < LLAMA_CPP_OFFLOAD_MIN_BATCH:
            return 0
        return host_largest

    def overhead_bytes(self, arch: Architecture, tp: int, pp: int, device: Device) -> int:
        """The CUDA context, about 0.5 GiB (modelled; docs/accuracy.md)."""
        return GiB // 2
