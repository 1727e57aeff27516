"""The rules object every runtime provides: what it allocates and how, for one of its versions.

A `Rules` instance is bound to one runtime version (None: current releases) and answers every memory
question the estimator, `check`, `deploy` and `recommend` ask; the per-runtime modules subclass it.
Each version-dependent value is a `Versioned` table in its runtime's module, read once here at binding.
"""

from __future__ import annotations

import copy
from typing import ClassVar, NamedTuple

from vramplan.arch import Architecture
from vramplan.errors import PlanError
from vramplan.precision import KVDtype, WeightFormat
from vramplan.runtimes.types import BatchShape, Cells, Device, KVLayout, KVShape, Runtime
from vramplan.runtimes.version import Version


class RunSettings(NamedTuple):
    """Settings of one run beyond the CLI's choices, as a runtime's startup log states them (None: not
    stated, so the rules of the runtime's version decide). Only llama.cpp's rules read them today."""

    n_ubatch: int | None = None  # llama.cpp -ub: the micro-batch of its worst-case reserve graph
    kv_unified: bool | None = None  # llama.cpp: one KV stream shared by all sequences
    n_outputs_max: int | None = None  # llama.cpp: logits rows its reserve graph holds (when printed)
    all_outputs: bool = False  # llama.cpp builds that reserve logits for every micro-batch token
    ngl_blocks_first: bool = False  # llama.cpp builds whose -ngl N offloads the last N blocks before
    # the output layer (early 2025); current builds offload the output layer first, then N - 1 blocks


class PlanFlags(NamedTuple):
    """What a plan chose that a runtime's flags state (`Rules.plan_flags`)."""

    tensor_parallel: int
    pipeline_parallel: int
    kv_asked: KVDtype  # --kv-cache-dtype as given (auto: the runtime's default)
    kv_dtype: KVDtype  # the KV dtype the plan uses
    gpu_layers: int | None  # llama.cpp --n-gpu-layers as given (None: all)
    cpu_moe_layers: int  # llama.cpp --n-cpu-moe
    flash_attn: bool


class Rules:
    """The memory rules of one runtime at one version. Subclasses fill in the class attributes and
    override the methods whose rule differs; the defaults here are the common case."""

    runtime: ClassVar[Runtime]
    label: ClassVar[str]  # the runtime's name as its project writes it
    # the KV-cache types the runtime accepts (its own flag's choices), `auto` first
    kv_dtypes: ClassVar[tuple[KVDtype, ...]]
    # the KV layouts its cache can take for an MLA model
    mla_layouts: ClassVar[tuple[KVLayout, ...]] = (KVLayout.MLA_LATENT,)
    # plans for host RAM when no GPU is found (CPU inference: llama.cpp, Ollama)
    runs_on_host: ClassVar[bool] = False
    # runs on an Apple silicon GPU: llama.cpp's Metal backend (ggml/src/ggml-metal), which Ollama builds
    # in; vLLM and SGLang have none (vLLM's macOS build runs on the CPU alone: its installation guide,
    # "Apple silicon" under CPU), so a plan for an Apple GPU refuses them
    metal: ClassVar[bool] = False
    # spreads one model over several nodes (TP within a node, PP across nodes)
    spans_nodes: ClassVar[bool] = True
    # loads an FP8 / FP4 checkpoint only on GPUs with native support for it (vramplan does not plan a
    # fallback for it; see `precision_fallback_note`)
    needs_native_precision: ClassVar[bool] = False
    # splits a model over GPUs by layers (llama.cpp `--split-mode layer`): no TP, one node, host offload
    layer_split: ClassVar[bool] = False
    # --no-flash-attn: the user may turn flash attention off (llama.cpp, Ollama); the others pick their
    # attention backend themselves
    flash_attn_option: ClassVar[bool] = False
    # llama.cpp's --n-cpu-moe (Ollama has no such setting)
    cpu_moe_option: ClassVar[bool] = False
    # the KV cache's default allocation unit in tokens (1: token-granular)
    default_block: ClassVar[int] = 1
    # the runtime's default --gpu-memory-utilization, None where it has no such setting
    gpu_memory_utilization: float | None = None
    # vLLM's --max-num-seqs / --max-num-batched-tokens size the batch (`batch_shape`)
    batch_options: ClassVar[bool] = False
    # SGLang's --mem-fraction-static sizes the static pool (weights and KV cache)
    mem_fraction_option: ClassVar[bool] = False

    def __init__(self, version: Version | None = None) -> None:
        self.version = version
        self.run = RunSettings()

    def with_run(self, run: RunSettings) -> Rules:
        """These rules for one run's stated settings (a copy; the bound rules stay as they are)."""
        if run == self.run:
            return self
        bound = copy.copy(self)
        bound.run = run
        return bound

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.version_text!r})"

    @property
    def version_text(self) -> str | None:
        return self.version.text if self.version is not None else None

    @property
    def version_words(self) -> str:
        """The version for a note: "0.7.3"; "before 0.11" for the `X.dev0` bound `check` takes for a log
        that prints no version; "current releases" for None."""
        if self.version is None:
            return "current releases"
        text = self.version.text
        return f"before {text.removesuffix('.dev0')}" if text.endswith(".dev0") else text

    # ------------------------------------------------------------------ KV layout and dtype

    def kv_layout(self, arch: Architecture, gguf_mla: bool | None) -> KVLayout:
        """The layout this runtime uses for `arch`: GQA for standard attention, else the MLA latent."""
        return KVLayout.GQA if not arch.is_mla else KVLayout.MLA_LATENT

    def auto_kv_dtype(self, weight_format: WeightFormat) -> KVDtype:
        raise NotImplementedError

    def plan_flags(self, plan: PlanFlags) -> tuple[tuple[str, str], ...]:
        """The runtime's own settings, besides the context ones (`Cells.settings`), that the plan
        depends on and that differ from the runtime's defaults: parallelism, the KV cache type,
        offload. With them the settings line reproduces the plan. None by default."""
        return ()

    def resolve_kv_dtype(self, requested: KVDtype, weight_format: WeightFormat) -> KVDtype:
        """The KV dtype the runtime really uses for `requested` (`auto`: `auto_kv_dtype`)."""
        if requested not in self.kv_dtypes:
            ok = ", ".join(d.value for d in self.kv_dtypes)
            raise PlanError(
                f"{self.runtime.value} cannot store the KV cache as {requested.value} (it takes: {ok})"
            )
        if requested is not KVDtype.AUTO:
            return requested
        return self.auto_kv_dtype(weight_format)

    # ------------------------------------------------------------------ context semantics

    def kv_block(self, arch: Architecture, device: Device, kv_dtype: KVDtype) -> int:
        """The KV cache's allocation unit in tokens (1: token-granular)."""
        return 1

    def kv_cells(self, context: int, concurrency: int, block: int | None = None) -> Cells:
        """The KV cells the runtime allocates for `concurrency` requests of `context` tokens, in blocks
        of `block` tokens where the runtime pages its cache (None: its default block)."""
        if context <= 0:
            raise PlanError(f"context must be a positive number of tokens, got {context}")
        if concurrency <= 0:
            raise PlanError(f"concurrency must be at least 1, got {concurrency}")
        return self._cells(context, concurrency, self.default_block if block is None else block)

    def _cells(self, context: int, concurrency: int, block: int) -> Cells:
        raise NotImplementedError

    def default_context(self, arch: Architecture, gpu_total_bytes: int | None) -> int:
        """The context the runtime uses when started without a context flag: the model's maximum."""
        return arch.max_position_embeddings

    # ------------------------------------------------------------------ what may be filled

    def usable_fraction(self, override: float | None = None) -> float:
        """The share of each GPU's total memory the plan may fill (`override`: a
        --gpu-memory-utilization the user or a log gives); the whole card unless the runtime reserves."""
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
        """What the plan may fill of one GPU of `capacity` bytes when `in_use` bytes are already taken
        before the runtime starts (other processes, a desktop; NVML's used memory): the runtime's share
        of the total (`usable_fraction`), but never more than is free. That is vLLM V1's rule (it
        refuses to start unless free memory covers --gpu-memory-utilization x total:
        vllm/v1/worker/gpu_worker.py `init_device`) and llama.cpp's and Ollama's, which allocate from
        free memory. `reserved` (the plan's activations and overhead on the GPU) is for runtimes whose
        fraction covers only the static part (SGLang's --mem-fraction-static)."""
        return min(int(capacity * self.usable_fraction(utilization)), capacity - in_use)

    # ------------------------------------------------------------------ batch, activations, overhead

    def batch_shape(self, device: Device, concurrency: int) -> BatchShape:
        raise NotImplementedError

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
        """The activation / compute buffer on one device of the plan (the host is HOST in the estimate)."""
        raise NotImplementedError

    def offload_copy_bytes(self, host_largest: int, batch: BatchShape) -> int:
        """What the first GPU's compute buffer holds beyond `activation_bytes` to run ops on weights
        kept in host memory (`host_largest`: the largest such tensor); 0 where weights never stay there."""
        return 0

    def overhead_bytes(self, arch: Architecture, tp: int, pp: int, device: Device) -> int:
        """Memory beyond weights, KV cache and activations on each GPU."""
        raise NotImplementedError

    # ------------------------------------------------------------------ the KV pool

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
        """The KV pool a runtime that sizes one from free memory gets on one GPU; None for runtimes
        that allocate exactly the cells asked for (llama.cpp, Ollama)."""
        return None

    def kv_pool_words(
        self, capacity: int, weights: int, activations: int, overhead: int, utilization: float | None
    ) -> str | None:
        """How the runtime arrives at its KV pool, in words for the estimate's notes."""
        return None

    def kv_pool_caveats(self) -> tuple[str, ...]:
        """What `check` should say beside a KV-pool comparison at this version."""
        return ()

    # ------------------------------------------------------------------ notes

    def kv_dtype_caveat(self, arch: Architecture, gguf_mla: bool | None) -> str | None:
        """A known problem with the runtime's KV-cache type setting for this model, if any."""
        return None

    def precision_fallback_note(self, gpu_name: str, requires: str) -> str | None:
        """What the runtime does with a checkpoint that needs `requires` ("fp8", "fp4") tensor cores on
        a GPU without them; None where vramplan knows of nothing to say."""
        return None
