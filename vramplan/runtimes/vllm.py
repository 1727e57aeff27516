"""vLLM's memory rules: paged KV blocks, the profile run's activation peak, non-torch memory and CUDA
graphs, and the KV pool it sizes from `--gpu-memory-utilization`."""

from __future__ import annotations

from typing import ClassVar

from vramplan.arch import Architecture
from vramplan.precision import KVDtype, WeightFormat
from vramplan.runtimes.base import PlanFlags, Rules
from vramplan.runtimes.types import (
    BatchShape,
    Cells,
    Device,
    GiB,
    KVShape,
    Runtime,
    gib_text,
    pad,
)
from vramplan.runtimes.version import Version, Versioned, parse_version

# vLLM pages the KV cache in blocks: 16 tokens by default; the MLA backends use 64
# (FlashMLA requires block_size 64; vllm/platforms/cuda.py forces it for MLA models).
VLLM_BLOCK = 16
VLLM_MLA_BLOCK = 64

# The default --gpu-memory-utilization.
GPU_MEMORY_UTILIZATION: Versioned[float] = Versioned(
    "vllm gpu_memory_utilization default",
    (None, 0.9, "vllm/config/cache.py: the default was 0.9 until 0.33 made it 0.92"),
    ("0.33", 0.92, "vllm 0.33.0 vllm/config/cache.py: `default=0.92`"),
)

# Whether vLLM estimates the CUDA-graph memory and subtracts it before sizing the KV pool.
CUDAGRAPHS_BEFORE_POOL: Versioned[bool] = Versioned(
    "vllm subtracts CUDA graphs before the KV pool",
    (None, False, "vLLM before v0.21 sized the KV pool before capturing CUDA graphs"),
    ("0.21", True, "default since v0.21: `VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS`"),
)

# The V0 engine (vllm/engine/llm_engine.py, vllm/worker/) was removed in v0.11; V1 became the default
# in v0.8 and both ran until then (VLLM_USE_V1). A log's own lines say which engine ran.
V0_REMOVED = "0.11"

# What the non-torch memory a profile reports holds, by release (each engine's own table):
# "since init": free memory at worker init less free memory after the profile, so memory other
#   processes held before start cancels out (vllm/worker/worker.py determine_num_available_blocks, to 0.6.3);
# "device-wide": (total - free) - torch's own, taken after the profile, so the CUDA context and every
#   other process on the GPU count against utilization x total;
# "since baseline": the growth over a snapshot taken at worker init (vllm/utils.py memory_profiling).
NON_TORCH_V0: Versioned[str] = Versioned(
    "vllm V0 non-torch memory accounting",
    (None, "since init", "vllm/worker/worker.py determine_num_available_blocks (to v0.6.3)"),
    (
        "0.6.4",
        "device-wide",
        "vllm-project/vllm PR 9352 (v0.6.4): non_torch = (total - free) - torch reserved",
    ),
    (
        "0.6.5",
        "since baseline",
        "vllm-project/vllm PR 10511 (v0.6.5): memory_profiling with a baseline snapshot",
    ),
)
NON_TORCH_V1: Versioned[str] = Versioned(
    "vllm V1 non-torch memory accounting",
    (
        None,
        "device-wide",
        "vllm/v1/worker/gpu_worker.py determine_available_memory (v0.7 to v0.9.1): non_torch_allocations "
        "= (total - free) - torch allocated",
    ),
    (
        "0.9.2",
        "since baseline",
        "vllm-project/vllm PR 19312 (merged June 2025; v0.9.2 by date): V1 reuses memory_profiling, so other "
        "processes no longer count as non-torch",
    ),
)

# V0's profile run (vllm/worker/model_runner.py `profile_run`): max_num_batched_tokens split over
# max_num_seqs sequences. Without chunked prefill max_num_batched_tokens is max(max_model_len, 2048)
# (vllm/config.py SchedulerConfig), so the profile runs a whole max_model_len prompt; V0 turns chunked
# prefill on by default only above 32K tokens (vllm/engine/arg_utils.py: `use_long_context =
# max_model_len > 32768`), never for MLA models (`_set_default_args_v0`: "Chunked prefill not supported
# for Multimodal or MLA in V0"), and then the chunk is 2048 or less (the sampler, below, is the peak at
# those sizes for every model in the catalog).
V0_DEFAULT_BATCHED_TOKENS = 2048
V0_CHUNKED_PREFILL_ABOVE = 32 * 1024
V0_DEFAULT_MAX_NUM_SEQS = 256

# V0's profile samples with top_p=0.99 and top_k=vocab-1 (`profile_run`: "Enable top-k sampling to
# reflect the accurate memory usage"), so without FlashInfer's sampler (not in vLLM's pip wheels)
# vllm/model_executor/layers/sampler.py `_apply_top_k_top_p` sorts the float32 logits. Bytes live per
# logit at the sort: the model's bf16 logits (2), their float32 copy (4), the sorted values (4) and
# int64 indices (8), torch's int64 index input to the pair sort (8) and the segmented sort's alternate
# key and value buffers (4 + 8).
V0_SAMPLER_BYTES_PER_LOGIT = 2 + 4 + 4 + 8 + 8 + 4 + 8

# The sampler's float32 logits, probabilities and sort buffers over the vocabulary: three copies per
# sampled row (vllm/v1/worker/gpu_model_runner.py `_dummy_sampler_run`); calibrated in docs/accuracy.md.
SAMPLER_COPIES = 3


def _release(text: str) -> Version:
    """A release text of this module's tables, parsed."""
    v = parse_version(text)
    assert v is not None, text
    return v


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


def v0_profile_batch(
    context: int, max_num_batched_tokens: int | None, max_num_seqs: int | None, mla: bool = False
) -> BatchShape:
    """The batch V0's profile run takes for a `context`-token max_model_len (the log's settings where it
    states them, else V0's defaults; `V0_DEFAULT_BATCHED_TOKENS`)."""
    if max_num_batched_tokens is None:
        if context > V0_CHUNKED_PREFILL_ABOVE and not mla:
            max_num_batched_tokens = V0_DEFAULT_BATCHED_TOKENS
        else:
            max_num_batched_tokens = max(context, V0_DEFAULT_BATCHED_TOKENS)
    return BatchShape(max_num_batched_tokens, max_num_seqs or V0_DEFAULT_MAX_NUM_SEQS)


def activation_bytes_v0(arch: Architecture, tp: int, batch: BatchShape, act_bytes: int = 2) -> int:
    """The torch peak of V0's profile run on the GPU that samples: the forward pass over batch.tokens
    (as `activation_bytes_torch`) or the top-k / top-p sort over one row of logits per sequence
    (`V0_SAMPLER_BYTES_PER_LOGIT`), whichever is larger."""
    forward = activation_bytes_torch(arch, tp, BatchShape(batch.tokens, 0), act_bytes)
    rows = min(batch.tokens, batch.sequences)
    return max(forward, rows * arch.vocab_size * V0_SAMPLER_BYTES_PER_LOGIT)


def vllm_non_torch_bytes(tp: int, pp: int, interconnect: str | None = None) -> int:
    """vLLM's non-torch memory per GPU (CUDA context, cuBLAS, NCCL and custom all-reduce buffers):
    0.75 GiB on one GPU; 2.5 GiB once GPUs talk over NVLink ("non_torch_memory takes 2.53GiB" for R1 on
    TP 8 x PP 2, vllm-project/vllm issue 13074); 0.25 GiB between PCIe cards, where NCCL has no NVLink
    (NVLS) buffers and vLLM's custom all-reduce is off (custom_all_reduce.py: no P2P on GeForce cards, or
    more than two PCIe-only GPUs): "non_torch_memory takes 0.25GiB" on 2x RTX 4090 (vllm issue 13061),
    0.20 GiB on 16x RTX 3090 (vllm PR 14447)."""
    if tp * pp == 1:
        return (3 * GiB) // 4
    return GiB // 4 if interconnect == "pcie" else (5 * GiB) // 2


def vllm_cudagraph_bytes(arch: Architecture, tp: int) -> int:
    """The CUDA-graph memory vLLM estimates and subtracts before sizing the KV pool (default since
    v0.21, `VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS`): 0.5 GiB for the 671B at TP 8 ("Graph
    capturing finished in 35 secs, took 0.51 GiB", R1-0528 on vLLM 0.11.2), and for dense models
    1.5 GiB / TP, at least 0.25 GiB ("took 1.56 GiB" for a Qwen2-7B on one GPU, vLLM 0.9)."""
    if arch.is_moe:
        return GiB // 2
    return max(GiB // 4, (3 * GiB) // (2 * tp))


# vramplan's KV dtype -> vLLM `--kv-cache-dtype` (vllm/config/cache.py `CacheDType`).
VLLM_KV = {
    KVDtype.AUTO: "auto",
    KVDtype.BF16: "bfloat16",
    KVDtype.FP16: "float16",
    KVDtype.FP8: "fp8",
}


class VLLMRules(Rules):
    runtime: ClassVar[Runtime] = Runtime.VLLM
    label: ClassVar[str] = "vLLM"
    # vLLM `CacheDType` in vllm/config/cache.py
    kv_dtypes: ClassVar[tuple[KVDtype, ...]] = (KVDtype.AUTO, KVDtype.BF16, KVDtype.FP16, KVDtype.FP8)
    default_block: ClassVar[int] = VLLM_BLOCK
    batch_options: ClassVar[bool] = True

    def plan_flags(self, plan: PlanFlags) -> tuple[tuple[str, str], ...]:
        """--tensor-parallel-size / --pipeline-parallel-size (default 1) and --kv-cache-dtype (default
        auto) where the plan sets them (vllm/engine/arg_utils.py)."""
        flags = []
        if plan.tensor_parallel > 1:
            flags.append(("--tensor-parallel-size", str(plan.tensor_parallel)))
        if plan.pipeline_parallel > 1:
            flags.append(("--pipeline-parallel-size", str(plan.pipeline_parallel)))
        if plan.kv_asked is not KVDtype.AUTO and plan.kv_asked in VLLM_KV:
            flags.append(("--kv-cache-dtype", VLLM_KV[plan.kv_asked]))
        return tuple(flags)

    def __init__(self, version: Version | None = None) -> None:
        super().__init__(version)
        self.gpu_memory_utilization = GPU_MEMORY_UTILIZATION.at(self.version)
        self.gpu_memory_utilization_source = GPU_MEMORY_UTILIZATION.source_at(self.version)
        self.cudagraphs_before_pool = CUDAGRAPHS_BEFORE_POOL.at(self.version)

    def non_torch_accounting(self, engine: str | None) -> tuple[str, str]:
        """What this release's profile counts as non-torch memory for `engine` ("V0" / "V1"; None: V1
        from 0.8, V0 before), and its source (`NON_TORCH_V0`, `NON_TORCH_V1`)."""
        before_v1 = self.version is not None and self.version < _release("0.8")
        v0 = engine == "V0" or (engine is None and before_v1)
        table = NON_TORCH_V0 if v0 else NON_TORCH_V1
        return table.at(self.version), table.source_at(self.version)

    def v0_tokens_per_scheduler(self, blocks: int, block: int, pp: int) -> int:
        """The tokens V0's refusal names: each of the pp virtual engines schedules blocks // pp blocks
        (vllm/worker/worker.py `raise_if_cache_size_invalid`, vllm/core/scheduler.py)."""
        return (blocks // pp) * block

    def auto_kv_dtype(self, weight_format: WeightFormat) -> KVDtype:
        """`auto` is the model dtype: bf16 for the R1 family, fp16 for fp16 checkpoints."""
        return KVDtype.FP16 if weight_format is WeightFormat.FP16 else KVDtype.BF16

    def kv_block(self, arch: Architecture, device: Device, kv_dtype: KVDtype) -> int:
        return vllm_block_size(arch, device, kv_dtype)

    def _cells(self, context: int, concurrency: int, block: int) -> Cells:
        """max_model_len per request, paged in `block`-token blocks: a full request holds
        ceil(len / block) blocks (vllm/v1/kv_cache_interface.py `max_memory_usage_bytes`)."""
        per_seq = pad(context, block)
        return Cells(per_seq * concurrency, per_seq, (("--max-model-len", str(context)),))

    def usable_fraction(self, override: float | None = None) -> float:
        """`--gpu-memory-utilization` x total memory, inside which weights, the profile run's
        activation peak, non-torch memory, the CUDA-graph estimate and the KV pool must all fit
        (vllm/v1/worker/gpu_worker.py `determine_available_memory`)."""
        if override is not None:
            return override
        assert self.gpu_memory_utilization is not None
        return self.gpu_memory_utilization

    def batch_shape(self, device: Device, concurrency: int) -> BatchShape:
        """`vllm serve` (vllm/engine/arg_utils.py `get_batch_defaults`): 16384 tokens / 1024 sequences on
        GPUs of 160 GiB and more, 8192 / 1024 from 70 GiB (A100 excepted), else 2048 / 256; H100-class
        when the GPU is not known."""
        mem = device.memory_bytes
        if mem is not None and mem >= 160 * GiB:
            tokens, seqs = 16384, 1024
        elif mem is None or (mem >= 70 * GiB and not device.is_a100):
            tokens, seqs = 8192, 1024
        else:
            tokens, seqs = 2048, 256
        return BatchShape(tokens, max(seqs, concurrency))

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
        return 0 if on_host else activation_bytes_torch(arch, tp, batch)

    def overhead_bytes(self, arch: Architecture, tp: int, pp: int, device: Device) -> int:
        """Non-torch memory plus the CUDA-graph estimate (modelled; docs/accuracy.md)."""
        return vllm_non_torch_bytes(tp, pp, device.interconnect) + vllm_cudagraph_bytes(arch, tp)

    def kv_pool_bytes(
        self,
        arch: Architecture,
        tp: int,
        capacity: int,
        weights: int,
        activations: int,
        overhead: int,
        *,
        utilization: float | None = None,
        mem_fraction_static: float | None = None,
    ) -> int | None:
        """utilization x total less weights, the activation peak and the overhead (non-torch memory and,
        since v0.21, the CUDA-graph estimate: before, the graphs were captured after the pool was sized)."""
        pool = int(capacity * self.usable_fraction(utilization)) - weights - activations - overhead
        if not self.cudagraphs_before_pool:
            pool += vllm_cudagraph_bytes(arch, tp)
        return pool

    def kv_pool_words(
        self, capacity: int, weights: int, activations: int, overhead: int, utilization: float | None
    ) -> str | None:
        reserved = int(capacity * self.usable_fraction(utilization))
        return (
            f"vllm reserves --gpu-memory-utilization {reserved / capacity:.2f} x {gib_text(capacity)} "
            f"= {gib_text(reserved)} per GPU"
        )

    def kv_pool_caveats(self) -> tuple[str, ...]:
        if self.cudagraphs_before_pool:
            return ()
        return (
            f"{self.label} {self.version_words} did not subtract CUDA graphs before sizing the KV pool "
            "(v0.21 does)",
        )

    def precision_fallback_note(self, gpu_name: str, requires: str) -> str | None:
        if requires == "fp8":
            return (
                f"{gpu_name} has no FP8 tensor cores: vLLM runs FP8 weights through its weight-only "
                "Marlin kernels (slower; DeepSeek's block-scaled FP8 MoE was long unsupported there)"
            )
        if requires == "fp4":
            return (
                f"NVFP4 runs natively only on Blackwell; on {gpu_name} vLLM falls back to weight-only "
                "FP4 Marlin kernels (same memory, slower)"
            )
        return None
