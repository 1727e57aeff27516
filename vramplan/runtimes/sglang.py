"""SGLang's memory rules: a token-granular KV pool inside `--mem-fraction-static`, whose default keeps a
reservation for activations and CUDA graphs; how that default is chosen changed between releases
(`DEFAULT_MEM_FRACTION`)."""

from __future__ import annotations

from typing import ClassVar

from vramplan.arch import Architecture
from vramplan.precision import KVDtype, WeightFormat
from vramplan.runtimes.base import PlanFlags, Rules
from vramplan.runtimes.types import BatchShape, Cells, Device, GiB, KVShape, MiB, Runtime, gib_text
from vramplan.runtimes.version import Version, Versioned

# How SGLang picks --mem-fraction-static when it is not given (server_args.py). The first-release rows
# are dated by each PR's merge date against the release dates, not read from the release tags.
TP_TABLE, BY_GPU_MEMORY, RESERVATION = "tp table", "by GPU memory", "reservation"
DEFAULT_MEM_FRACTION: Versioned[str] = Versioned(
    "sglang default mem_fraction_static",
    (
        None,
        TP_TABLE,
        "sglang server_args.py ServerArgs.__post_init__ (0.3 to 0.4.6): by tp_size, 0.79 from 16, 0.81 "
        "from 8 (0.83 in 2024 releases), 0.85 from 4, 0.87 from 2, else 0.88",
    ),
    (
        "0.4.7",
        BY_GPU_MEMORY,
        "sgl-project/sglang PR 7054 'Simplify the heuristics for setting --mem-fraction-static' (merged "
        "2025-06-10): (gpu_mem - reserved) / gpu_mem, reserved by GPU memory and tp x pp",
    ),
    (
        "0.5.3",
        RESERVATION,
        "sgl-project/sglang PR 10975 (merged 2025-09-27): reserved = 512 MiB + 1.5 x chunked_prefill_size + "
        "CUDA-graph and parallel terms (sglang_reserved_bytes, as 0.5.23 memory_hook.py computes it)",
    ),
)


def mem_fraction_by_tp(tp: int) -> float:
    """The tp-size table of server_args.py before PR 7054 (the tp >= 8 row as 2025 releases have it)."""
    if tp >= 16:
        return 0.79
    if tp >= 8:
        return 0.81
    if tp >= 4:
        return 0.85
    if tp >= 2:
        return 0.87
    return 0.88


def mem_fraction_by_gpu_memory(gpu_mem: int, tp: int, pp: int) -> float:
    """PR 7054's default: (gpu_mem - reserved) / gpu_mem with reserved GiB = 2.8 + tp x pp / 10 below
    35 GiB, 9.5 + tp x pp / 2 below 90 GiB, 12 + tp x pp / 2 below 160 GiB, else 32 (no speculative
    decoding, no DP attention: those add 2 and 4 GiB)."""
    n = tp * pp
    mem = gpu_mem / GiB
    if mem < 35:
        reserved = 2.8 + n / 10
    elif mem < 90:
        reserved = 9.5 + n / 2
    elif mem < 160:
        reserved = 12 + n / 2
    else:
        reserved = 32.0
    return round((mem - reserved) / mem, 3)


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


# vramplan's KV dtype -> SGLang --kv-cache-dtype (arg_groups/fields/model.py `kv_cache_dtype` choices:
# auto, fp8_e5m2, fp8_e4m3, mxfp8, bf16, bfloat16, nvfp4, fp4_mx_block16). It has no fp16 choice: "auto"
# is the model's dtype, which is fp16 for an fp16 checkpoint.
SGLANG_KV = {KVDtype.AUTO: "auto", KVDtype.BF16: "bfloat16", KVDtype.FP8: "fp8_e4m3"}


class SGLangRules(Rules):
    runtime: ClassVar[Runtime] = Runtime.SGLANG
    label: ClassVar[str] = "SGLang"
    needs_native_precision: ClassVar[bool] = True
    # SGLang `--kv-cache-dtype`
    kv_dtypes: ClassVar[tuple[KVDtype, ...]] = (KVDtype.AUTO, KVDtype.BF16, KVDtype.FP16, KVDtype.FP8)
    mem_fraction_option: ClassVar[bool] = True

    def plan_flags(self, plan: PlanFlags) -> tuple[tuple[str, str], ...]:
        """--tp-size / --pp-size (default 1) and --kv-cache-dtype where the plan's differs from the
        model's own dtype, SGLang's auto (srt/server_args.py)."""
        flags = []
        if plan.tensor_parallel > 1:
            flags.append(("--tp-size", str(plan.tensor_parallel)))
        if plan.pipeline_parallel > 1:
            flags.append(("--pp-size", str(plan.pipeline_parallel)))
        if plan.kv_asked is not KVDtype.AUTO and plan.kv_asked in SGLANG_KV:
            flags.append(("--kv-cache-dtype", SGLANG_KV[plan.kv_asked]))
        return tuple(flags)

    def __init__(self, version: Version | None = None) -> None:
        super().__init__(version)
        self.default_fraction_rule = DEFAULT_MEM_FRACTION.at(self.version)
        self.default_fraction_source = DEFAULT_MEM_FRACTION.source_at(self.version)

    def auto_kv_dtype(self, weight_format: WeightFormat) -> KVDtype:
        """`auto` is the model dtype: bf16 for the R1 family, fp16 for fp16 checkpoints."""
        return KVDtype.FP16 if weight_format is WeightFormat.FP16 else KVDtype.BF16

    def default_mem_fraction_static(self, arch: Architecture, device: Device, tp: int, pp: int) -> float:
        """The --mem-fraction-static this release picks when none is given (`DEFAULT_MEM_FRACTION`)."""
        mem = device.memory_bytes if device.memory_bytes is not None else 80 * GiB
        if self.default_fraction_rule == TP_TABLE:
            return mem_fraction_by_tp(tp)
        if self.default_fraction_rule == BY_GPU_MEMORY:
            return mem_fraction_by_gpu_memory(mem, tp, pp)
        act, over = sglang_reserved_bytes(arch, device, tp, pp)
        return round((mem - act - over) / mem, 3)

    def kv_pool_from_free(self, free_before_weights: int, weights: int, fraction: float) -> int:
        """The pool `profile_max_num_token` sizes (model_runner.py, 0.3 to 0.5.x; the mixin
        model_runner_kv_cache_mixin.py since): free memory after the weights less (1 - fraction) x the
        free memory before them (the minimum over ranks, after the CUDA context and NCCL), that is
        fraction x free_before - weights."""
        return int(fraction * free_before_weights) - weights

    def _cells(self, context: int, concurrency: int, block: int) -> Cells:
        """A token-granular pool (page size 1 by default): context x concurrency tokens."""
        settings = (("--context-length", str(context)), ("--max-running-requests", str(concurrency)))
        return Cells(context * concurrency, context, settings)

    def usable_fraction(self, override: float | None = None) -> float:
        """The whole card: SGLang's own reservation for activations and graphs is modelled as terms
        (`sglang_reserved_bytes`), so weights + KV stay within `--mem-fraction-static`."""
        return override if override is not None else 1.0

    def usable_bytes(
        self,
        capacity: int,
        *,
        utilization: float | None = None,
        mem_fraction_static: float | None = None,
        in_use: int = 0,
        reserved: int = 0,
    ) -> int:
        """The free memory; with --mem-fraction-static F, weights and KV cache within F x total less
        what was in use before loading (model_runner.py `profile_max_num_token`: the pool is the free
        memory after loading less (1 - F) x total), and activations and graphs beyond it."""
        free = capacity - in_use
        if mem_fraction_static is None:
            return free
        return min(int(mem_fraction_static * capacity) - in_use + reserved, free)

    def batch_shape(self, device: Device, concurrency: int) -> BatchShape:
        """chunked_prefill_size by GPU memory (`_sglang_sizes`)."""
        chunk, _ = _sglang_sizes(device.memory_bytes, 1)
        return BatchShape(chunk, concurrency)

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
        return 0 if on_host else sglang_reserved_bytes(arch, device, tp, pp)[0]

    def overhead_bytes(self, arch: Architecture, tp: int, pp: int, device: Device) -> int:
        """Its reservation less the activation share (`sglang_reserved_bytes`)."""
        return sglang_reserved_bytes(arch, device, tp, pp)[1]

    @staticmethod
    def capped_pool(pool: int, per_token: float, max_total_tokens: int | None) -> int:
        """The pool under `--max-total-tokens`: SGLang takes the smaller of the tokens the memory holds
        and that cap (python/sglang/srt/model_executor/model_runner.py `init_memory_pool`:
        `self.max_total_num_tokens = min(self.max_total_num_tokens, max_total_tokens)`; there in every
        release the corpus holds, 0.4.x to 0.5.x)."""
        if max_total_tokens is None or per_token <= 0:
            return pool
        return min(pool, int(max_total_tokens * per_token))

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
        """mem_fraction_static x total less the weights; the default fraction leaves the reservation
        (activations and overhead) out (model_runner.py `profile_max_num_token`); releases before the
        reservation rule take their own default (`DEFAULT_MEM_FRACTION`, at tp and one pipeline stage)."""
        if mem_fraction_static is not None:
            usable = int(mem_fraction_static * capacity)
        elif self.default_fraction_rule == TP_TABLE:
            usable = int(mem_fraction_by_tp(tp) * capacity)
        elif self.default_fraction_rule == BY_GPU_MEMORY:
            usable = int(mem_fraction_by_gpu_memory(capacity, tp, 1) * capacity)
        else:
            usable = capacity - activations - overhead
        return usable - weights

    def kv_pool_words(
        self, capacity: int, weights: int, activations: int, overhead: int, utilization: float | None
    ) -> str | None:
        reserved = activations + overhead
        return (
            f"sglang's default --mem-fraction-static is {(capacity - reserved) / capacity:.3f} "
            f"here ({gib_text(reserved)} kept for activations and graphs)"
        )

    def kv_pool_caveats(self) -> tuple[str, ...]:
        return (
            "SGLang's pool is mem_fraction_static x total less what is in use after loading "
            "(model_runner.py profile_max_num_token): the CUDA context and anything else already on the GPU "
            "come out of it too, which the estimate does not model",
        )

    def precision_fallback_note(self, gpu_name: str, requires: str) -> str | None:
        if requires not in ("fp8", "fp4"):
            return None
        kind = "FP8" if requires == "fp8" else "FP4"
        return (
            f"{gpu_name} has no native {kind} support: vramplan does not assume sglang runs this checkpoint "
            "there (vramplan recommend leaves such plans out and plans vLLM instead)"
        )
