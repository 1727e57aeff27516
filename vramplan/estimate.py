"""The estimator: memory of one variant and quantization on one runtime and topology, per GPU.

`estimate(Request) -> Estimate` places every weight tensor on a device (tensor-parallel shards,
pipeline stages, llama.cpp layer split and host-kept tensors), adds the KV cache of the layers each
device holds, the runtime's activation / compute buffer and its overhead, and checks each GPU against
what the runtime lets itself use. The inverse solvers find the largest context and concurrency that fit.
Everything is integer bytes; docs/estimation.md writes each formula down with its source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import NamedTuple

from vramplan.arch import Architecture, Split, Tensor, tensors
from vramplan.catalog import Quant, Variant
from vramplan.errors import PlanError
from vramplan.hardware import GPUSpec, crowded_node_note, size_text, unified_memory_note
from vramplan.precision import KVDtype, WeightFormat
from vramplan.quantmix import Scheme, tensor_bytes
from vramplan.runtimes import (
    BatchShape,
    Cells,
    Device,
    GiB,
    KVLayout,
    KVShape,
    MiB,
    PlanFlags,
    Rules,
    RunSettings,
    Runtime,
    kv_layer_bytes,
    kv_shape,
    rules_for,
)
from vramplan.words import count

HOST = -1

# The results (Request, Topology, DeviceUse, Estimate) are frozen dataclasses; the private records
# further down (and the small value records of runtimes.py, catalog.py and precision.py) are
# NamedTuples, as immutable and typed but about ten times cheaper to define: a dataclass compiles its
# methods from source when its module is imported, ~1 ms each on a slow core, and `vramplan estimate`
# imports these modules on every start.


@dataclass(frozen=True)
class Request:
    """Everything a plan depends on. `context=None` takes the runtime's own default."""

    variant: Variant
    quant: Quant
    runtime: Runtime
    context: int | None = None
    concurrency: int = 1
    kv_cache_dtype: KVDtype = KVDtype.AUTO
    gpu: GPUSpec | None = None
    gpus_per_node: int = 1
    nodes: int = 1
    tp: int | None = None
    pp: int | None = None
    host_memory_bytes: int | None = None  # known host RAM (CPU plans and llama.cpp offload)
    cpu_only: bool = False  # plan for host RAM: no GPU was found
    flash_attn: bool = True  # llama.cpp / Ollama flash attention (needed for a quantized V cache)
    gpu_layers: int | None = None  # llama.cpp --n-gpu-layers (None: all, output layer included)
    kv_layout: KVLayout | None = None  # override the layout the runtime would use
    gpu_memory_utilization: float | None = None  # vLLM's --gpu-memory-utilization (None: its default)
    runtime_version: str | None = None  # the runtime release whose rules apply (None: current releases)
    run: RunSettings | None = None  # a log's stated settings beyond these (llama.cpp n_ubatch, unified KV)
    # llama.cpp --n-cpu-moe N: the routed experts of blocks 0..N-1 stay in host RAM (common/arg.cpp
    # pushes one `blk\.i\.ffn_(up|down|gate|gate_up)_(ch|)exps` -> CPU buffer override per block i < N;
    # the shared experts, attention and norms of those blocks stay on their GPU)
    cpu_moe_layers: int = 0
    headroom: float = 0.0  # share of what the runtime may use that the plan keeps free (recommend)
    max_num_seqs: int | None = None  # vLLM --max-num-seqs (None: its default for the GPU)
    max_num_batched_tokens: int | None = None  # vLLM --max-num-batched-tokens (None: its default)
    mem_fraction_static: float | None = None  # SGLang --mem-fraction-static (None: its default)
    # memory already in use on the fullest planned GPU before the runtime starts (NVML's used memory:
    # other processes, a desktop, the driver's reservation), and that GPU's index
    gpu_in_use_bytes: int = 0
    gpu_in_use_index: int = 0
    # where each input came from: (flag, source) pairs the CLI fills ("flag", "probe"); a flag not
    # named is the runtime's default
    sources: tuple[tuple[str, str], ...] = ()
    # notes on how the names given were read, shown first (which card `--gpu h100` picked)
    given_notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Topology:
    """How a plan spreads over the hardware: nodes, GPUs per node, tensor and pipeline parallel."""

    gpu: str | None
    gpus_per_node: int
    nodes: int
    tensor_parallel: int
    pipeline_parallel: int

    @property
    def gpus_used(self) -> int:
        return self.tensor_parallel * self.pipeline_parallel


@dataclass(frozen=True)
class DeviceUse:
    """The memory one GPU (or the host, index HOST) holds in a plan, by part, in bytes."""

    index: int  # GPU index in the plan (node-major), or HOST (-1)
    weights_bytes: int
    kv_cache_bytes: int
    activation_bytes: int
    overhead_bytes: int
    capacity_bytes: int | None
    usable_bytes: int | None  # what the runtime lets itself use of the capacity (less any headroom)
    layers: tuple[int, ...]
    # weight bytes one decoded token reads here: the routed experts a token uses (top-k of n), one row
    # of the input embedding, everything else whole (the decode-speed bound of vramplan.speed)
    weights_read_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_cache_bytes + self.activation_bytes + self.overhead_bytes

    @property
    def fits(self) -> bool | None:
        return None if self.usable_bytes is None else self.total_bytes <= self.usable_bytes


@dataclass(frozen=True)
class Estimate:
    """The result of `estimate()`: one plan's memory per device, what fits, and the notes on it."""

    model: str
    quant: str
    runtime: str
    context: int
    concurrency: int
    kv_cache_dtype: str
    kv_layout: str
    topology: Topology
    params: int
    weights_bytes: int
    kv_bytes_per_token: int
    kv_cache_bytes: int
    kv_cells: int
    per_gpu: tuple[DeviceUse, ...]
    host: DeviceUse
    fits: bool | None
    max_context: int | None
    max_concurrency: int | None
    settings: tuple[tuple[str, str], ...]
    batch_tokens: int  # the worst-case batch the activation / compute-buffer term is sized for
    batch_sequences: int
    notes: tuple[str, ...] = field(default_factory=tuple)
    # the runtime inputs the plan used: (flag, value, source), source "flag", "probe" or "default"
    inputs: tuple[tuple[str, str, str], ...] = ()
    gpu_in_use_bytes: int = 0  # memory in use on a GPU before the start, taken off what is usable

    @property
    def gpu_bytes(self) -> int:
        """What the plan puts on its GPUs, all of them together."""
        return sum(d.total_bytes for d in self.per_gpu)

    @property
    def total_bytes(self) -> int:
        """All of the plan's memory: its GPUs' and its host RAM part (offloaded layers or experts; all of
        a CPU plan)."""
        return self.gpu_bytes + self.host.total_bytes

    @property
    def cpu_plan(self) -> bool:
        return not self.per_gpu


# --------------------------------------------------------------------------- topology


def pp_layer_ranges(n_layers: int, pp: int) -> list[range]:
    """vLLM's `get_pp_indices` (vllm/distributed/utils.py): equal shares, and the layers left over go
    one each to the stages before the last, counting back from the second-to-last."""
    parts = [n_layers // pp] * pp
    for i in range(2, n_layers % pp + 2):
        parts[-i] += 1
    out, start = [], 0
    for p in parts:
        out.append(range(start, start + p))
        start += p
    return out


def ggml_layer_devices(n_layers: int, n_gpus: int, gpu_layers: int, blocks_first: bool = False) -> list[int]:
    """llama.cpp's layer placement (llama-model.cpp `load_tensors`): with equal GPUs the split points
    are k / n_gpus; layers before i_gpu_start stay on the host; index n_layers is the output layer.
    Current builds: i_gpu_start = max(n_layer + 1 - ngl, 0), so -ngl N < n_layer + 1 offloads the output
    layer and the last N - 1 blocks. `blocks_first` (builds of early 2025, e.g. b4568, and LM Studio's
    ~b59xx engine; their logs print "offloading N repeating layers" without "offloading output layer"):
    i_gpu_start = max(n_layer - ngl, 0), the last N blocks, the output layer only when N > n_layer.
    Returns the device of each index 0..n_layers (HOST for host layers)."""
    act = min(gpu_layers, n_layers + 1)
    start = max(n_layers - gpu_layers if blocks_first else n_layers + 1 - gpu_layers, 0)
    splits = [(k + 1) / n_gpus for k in range(n_gpus)]
    out = []
    for il in range(n_layers + 1):
        if n_gpus == 0 or il < start or il - start >= act:
            out.append(HOST)
            continue
        x = (il - start) / act
        out.append(next(k for k, s in enumerate(splits) if s > x))
    return out


# vLLM pads the vocabulary to a multiple of 64 before splitting the embedding and the LM head over the
# TP ranks (vllm/model_executor/layers/vocab_parallel_embedding.py `DEFAULT_VOCAB_PADDING_SIZE`,
# `pad_vocab_size`, then `divide(num_embeddings_padded, tp_size)`).
_VOCAB_PADDING = 64
# DeepSeek's block FP8 (128 x 128 scales): each rank's share of a split MLP dimension must be whole
# blocks (vllm/model_executor/layers/quantization/utils/fp8_utils.py `validate_fp8_block_shape`,
# `validate_fp8_block_shape_moe`).
_FP8_BLOCK = 128
# 4-bit GPTQ / AWQ checkpoints, groups of 128 along the input: Marlin and the Triton W4A16 kernel need
# whole groups in each rank's share of a row-parallel input (vllm/model_executor/kernels/linear/
# mixed_precision/marlin.py and triton_w4a16.py `can_implement`: "not divisible by group_size"). Only
# Machete (Hopper) is laxer; a plan is written for any GPU of its kind, so the stricter rule holds.
_INT4_GROUP = 128


def _tp_splits(arch: Architecture, block: int) -> list[tuple[str, int, int]]:
    """(what, size, granule) of each dimension tensor parallelism divides among the ranks; a rank's
    share of `size` must be a whole multiple of `granule`. From vLLM's layers: QKVParallelLinear
    (attention heads), Merged/Column and RowParallelLinear (`divide(output_size, tp)`,
    `divide(input_size, tp)`: the MLP, the shared experts and, without expert parallelism, each routed
    expert: vllm/model_executor/layers/linear.py) and VocabParallelEmbedding / ParallelLMHead. The
    projections in and out of attention split by heads, so heads cover them; the hidden size itself
    is never split."""
    out = [("attention heads", arch.num_attention_heads, 1)]
    if block > 1:  # the attention output projection's input, row-parallel by heads
        per_head = arch.v_head_dim if arch.is_mla and arch.v_head_dim else arch.attn_head_dim
        out.append(("attention output size", arch.num_attention_heads * per_head, block))
    if not arch.is_moe or arch.first_k_dense_replace > 0:
        out.append(("intermediate size", arch.intermediate_size, block))
    if arch.moe_intermediate_size:
        out.append(("expert intermediate size", arch.moe_intermediate_size, block))
    padded = -(-arch.vocab_size // _VOCAB_PADDING) * _VOCAB_PADDING
    out.append((f"padded vocabulary ({arch.vocab_size} to a multiple of {_VOCAB_PADDING})", padded, 1))
    return out


def _tp_problem(arch: Architecture, shape: KVShape, tp: int, block: int = 1) -> str | None:
    """Why vLLM cannot split the model over `tp` ranks (None: it can). K/V heads are divided when
    there are at least `tp` of them and replicated otherwise, which needs `tp` to be a multiple of
    them (linear.py `QKVParallelLinear`: `divide(tp_size, total_num_kv_heads)`)."""
    for what, size, granule in _tp_splits(arch, block if tp > 1 else 1):  # tp 1 splits nothing
        if size % (tp * granule):
            whole = f" into whole {granule}-element quantization blocks" if granule > 1 else ""
            return f"tensor parallel size {tp} does not divide the model's {size} {what}{whole}"
    if shape.heads > 1 and shape.heads % tp and tp % shape.heads:
        return f"tensor parallel size {tp} neither divides nor is a multiple of the {shape.heads} KV heads"
    return None


def _tp_ok(arch: Architecture, shape: KVShape, tp: int, block: int = 1) -> bool:
    return _tp_problem(arch, shape, tp, block) is None


def _check_tp(arch: Architecture, shape: KVShape, tp: int, block: int = 1) -> None:
    problem = _tp_problem(arch, shape, tp, block)
    if problem is not None:
        valid = ", ".join(str(d) for d in _valid_tp(arch, shape, block))
        raise PlanError(f"{problem}; use one of {valid}")


def _valid_tp(arch: Architecture, shape: KVShape, block: int = 1) -> list[int]:
    return [d for d in range(1, min(arch.num_attention_heads, 64) + 1) if _tp_ok(arch, shape, d, block)]


def _tp_block(req: Request) -> int:
    """The quantization block a rank's share of the MLP must hold whole: DeepSeek's block FP8, the
    groups of 4-bit GPTQ / AWQ."""
    q = req.quant
    if q.format is WeightFormat.FP8 and q.scheme.storage is None:
        return _FP8_BLOCK
    if q.format in (WeightFormat.GPTQ_INT4, WeightFormat.AWQ_INT4):
        return _INT4_GROUP
    return 1


def resolve_topology(req: Request, shape: KVShape, rules: Rules | None = None) -> Topology:
    """TP / PP defaults and checks (`rules`: the runtime's; None: its current release's).

    vLLM / SGLang: TP over the GPUs of one node (the largest count that divides the heads), PP over
    nodes. llama.cpp / Ollama: no TP; layers split over every GPU of the node (`--split-mode layer`).
    """
    arch = req.variant.architecture
    for flag, value in (("--tp", req.tp), ("--pp", req.pp)):
        if value is not None and value <= 0:
            raise PlanError(f"{flag} must be at least 1, got {value}")
    if req.nodes <= 0:
        raise PlanError(f"--nodes must be at least 1, got {req.nodes}")
    if req.gpus_per_node <= 0:
        raise PlanError(f"the GPU count must be at least 1, got {req.gpus_per_node}")
    total = req.gpus_per_node * req.nodes
    gpu = req.gpu.name if req.gpu else None
    if req.cpu_only:
        return Topology(None, 0, 1, 1, 1)
    rules = rules or rules_for(req.runtime, req.runtime_version)
    if rules.layer_split:
        if req.tp not in (None, 1):
            raise PlanError(
                f"{req.runtime.value} splits a model across GPUs by layers, not by tensor parallelism; "
                "use --pp (the number of GPUs to split over) instead of --tp"
            )
        if req.nodes > 1:
            raise PlanError(f"{req.runtime.value} plans are for one node; use vllm or sglang for several")
        pp = req.pp or req.gpus_per_node
        if pp > total:
            raise PlanError(f"--pp {pp} needs {pp} GPUs but the plan has {total}")
        return Topology(gpu, req.gpus_per_node, 1, 1, pp)
    if req.tp is None:
        pp = req.pp or req.nodes  # TP within a node, PP across nodes
        tp = max(1, total // pp)
        while tp > 1 and not _tp_ok(arch, shape, tp, _tp_block(req)):
            tp -= 1
    else:
        tp = req.tp
        # TP up to a node's GPUs leaves PP across nodes; TP spanning nodes (SGLang style) needs no PP
        pp = req.pp or (req.nodes if tp <= req.gpus_per_node else max(1, total // tp))
    _check_tp(arch, shape, tp, _tp_block(req))
    if tp * pp > total:
        raise PlanError(
            f"tensor parallel {tp} x pipeline parallel {pp} needs {tp * pp} GPUs but the plan has {total} "
            f"({count(req.nodes, 'node')} x {req.gpus_per_node})"
        )
    if pp > arch.num_hidden_layers:
        why = f"pipeline parallel {pp}" if req.pp else f"--nodes {req.nodes} (a pipeline stage per node)"
        raise PlanError(f"{why} exceeds the model's {arch.num_hidden_layers} layers")
    return Topology(gpu, req.gpus_per_node, req.nodes, tp, pp)


# --------------------------------------------------------------------------- placement


def mla_absorbed_bytes(arch: Architecture, tp: int) -> int:
    """Per layer and GPU: the bf16 copies of kv_b_proj that vLLM makes after loading for absorbed MLA
    (`W_UK_T` and `W_UV`, kv_lora_rank x local heads x (qk_nope + v_head) x 2 B;
    vllm/model_executor/layers/attention/mla_attention.py `process_weights_after_loading`); they count
    in vLLM's "Model loading took". SGLang keeps the same absorbed `w_kc` / `w_vc`."""
    if not arch.is_mla:
        return 0
    assert arch.kv_lora_rank and arch.qk_nope_head_dim and arch.v_head_dim
    heads = arch.num_attention_heads // tp
    return arch.kv_lora_rank * heads * (arch.qk_nope_head_dim + arch.v_head_dim) * 2


class _Placement(NamedTuple):
    """The context-independent part of a plan: which bytes and layers sit on which device."""

    weights: dict[int, int]
    layers: dict[int, tuple[int, ...]]
    output_device: int
    total_weights: int
    read: dict[int, int]  # weight bytes one decoded token reads, per device
    host_largest: int = 0  # llama.cpp: the largest weight tensor in host memory that a GPU op may use


def read_bytes(arch: Architecture, t: Tensor, b: int) -> int:
    """Of `b` bytes of tensor `t`, those one decoded token reads: a routed-expert tensor holds
    n_routed_experts experts of which num_experts_per_tok are used (config.json); the input
    embedding is looked up one row of vocab_size; every other weight is read whole."""
    if t.is_expert and arch.n_routed_experts and arch.num_experts_per_tok:
        return b * arch.num_experts_per_tok // arch.n_routed_experts
    if t.name == "token_embd.weight":
        return b // arch.vocab_size
    return b


@lru_cache(maxsize=256)
def _modelled_sizes(
    arch: Architecture, scheme: Scheme, mla_gguf: bool, total: int | None
) -> tuple[tuple[Tensor, int], ...]:
    """Per-tensor bytes modelled from the architecture and the scheme (scaled to a published
    `total` when given); keyed by what they depend on, so variants of one architecture share them."""
    tl = tensors(arch, mla_gguf=mla_gguf)
    sizes = tensor_bytes(arch, scheme, tl)
    if total is not None:
        sizes = _scaled(sizes, total)
    return tuple(zip(tl, sizes, strict=True))


def _scaled(sizes: list[int], total: int) -> list[int]:
    """Scale integer sizes to sum exactly to `total`, keeping their proportions."""
    modelled = sum(sizes)
    out = [b * total // modelled for b in sizes]
    out[out.index(max(out))] += total - sum(out)
    return out


class _WeightsKey(NamedTuple):
    """What a model's tensors and their bytes depend on: its own tensor table when read from a file,
    else the architecture, the scheme and the published total (so variants of one architecture share
    their placements)."""

    arch: Architecture
    scheme: Scheme
    mla_gguf: bool
    total: int | None
    table: tuple[tuple[Tensor, int], ...] | None = None


def _weights_key(variant: Variant, quant: Quant) -> _WeightsKey:
    total = quant.size.bytes if quant.weights_from_size and quant.size is not None else None
    return _WeightsKey(variant.architecture, quant.scheme, bool(quant.gguf_mla), total, quant.tensor_table)


def _place(req: Request, topo: Topology, shape: KVShape, rules: Rules) -> _Placement:
    return _place_cached(
        _weights_key(req.variant, req.quant),
        rules.layer_split,
        req.cpu_only,
        topo.tensor_parallel,
        topo.pipeline_parallel,
        req.gpu_layers,
        req.cpu_moe_layers,
        shape.heads,
        rules.run.ngl_blocks_first,
    )


@lru_cache(maxsize=256)
def _rows(key: _WeightsKey) -> tuple[Architecture, tuple[tuple[Tensor, int, int], ...]]:
    """The architecture, and each tensor with its bytes and the bytes one decoded token reads of it."""
    arch = key.arch
    if key.table is not None:
        sizes = key.table
    else:
        sizes = _modelled_sizes(arch, key.scheme, key.mla_gguf, key.total)
    return arch, tuple((t, b, read_bytes(arch, t, b)) for t, b in sizes)


class _LayerBytes(NamedTuple):
    """One tensor-parallel rank's bytes (and bytes read per token), summed per block."""

    total: int  # all the model's weights, unsplit
    embd: tuple[int, int]  # (weights, read) of the input embedding
    rest: tuple[int, int]  # the other tensors outside the blocks (output norm and head)
    dense: tuple[tuple[int, int], ...]  # per block: everything but the routed experts
    experts: tuple[tuple[int, int], ...]  # per block: the routed experts
    largest: tuple[tuple[int, int], ...] = ()  # per block: its largest dense and routed-expert tensor
    rest_largest: int = 0  # the largest tensor outside the blocks but the input embedding


@lru_cache(maxsize=512)
def token_embedding_bytes(variant: Variant, quant: Quant) -> int:
    """The input embedding's bytes in the estimate's own weight table (the per-block sums below)."""
    return _layer_bytes(_weights_key(variant, quant), 1, 1).embd[0]


def _layer_bytes(key: _WeightsKey, tp: int, kv_split: int) -> _LayerBytes:
    """Per-block sums of each rank's share, ceil(bytes x fraction) per tensor as `Split.fraction`
    gives it; memoised, so a placement costs one pass over the blocks, not over every tensor."""
    arch, rows = _rows(key)
    n = max([arch.num_hidden_layers - 1] + [t.layer for t, _, _ in rows if t.layer is not None]) + 1
    shares = {}
    for split in Split:
        f = split.fraction(tp, kv_split)
        shares[split] = (f.numerator, f.denominator)
    dense = [[0, 0] for _ in range(n)]
    experts = [[0, 0] for _ in range(n)]
    largest = [[0, 0] for _ in range(n)]
    embd = [0, 0]
    rest = [0, 0]
    rest_largest = 0
    for t, b, rb in rows:
        num, den = shares[t.split]
        share = -(-b * num // den)
        if t.name == "token_embd.weight":
            acc = embd
        elif t.layer is None:
            acc = rest
            rest_largest = max(rest_largest, share)
        elif t.is_expert:
            acc = experts[t.layer]
            largest[t.layer][1] = max(largest[t.layer][1], share)
        else:
            acc = dense[t.layer]
            largest[t.layer][0] = max(largest[t.layer][0], share)
        acc[0] += share
        acc[1] += -(-rb * num // den)
    return _LayerBytes(
        sum(b for _, b, _ in rows),
        (embd[0], embd[1]),
        (rest[0], rest[1]),
        tuple((w, r) for w, r in dense),
        tuple((w, r) for w, r in experts),
        tuple((d, e) for d, e in largest),
        rest_largest,
    )


@lru_cache(maxsize=1024)
def _place_cached(
    key: _WeightsKey,
    layer_split: bool,
    cpu_only: bool,
    tp: int,
    pp: int,
    gpu_layers: int | None,
    cpu_moe_layers: int,
    kv_heads: int,
    ngl_blocks_first: bool = False,
) -> _Placement:
    """Which bytes and layers sit on which device; it does not depend on the context, so plans that
    differ only in context, concurrency or GPU model share it (memoised)."""
    arch = _rows(key)[0]
    n_layers = arch.num_hidden_layers
    weights: dict[int, int] = {}
    read: dict[int, int] = {}
    layers: dict[int, list[int]] = {}

    def add(dev: int, wr: tuple[int, int]) -> None:
        weights[dev] = weights.get(dev, 0) + wr[0]
        read[dev] = read.get(dev, 0) + wr[1]

    if layer_split:
        lb = _layer_bytes(key, 1, 1)
        n_gpus = 0 if cpu_only else pp
        ngl = n_layers + 1 if gpu_layers is None else gpu_layers
        if ngl < 0 or ngl > n_layers + 1:
            raise PlanError(f"--gpu-layers must be between 0 and {n_layers + 1}, got {ngl}")
        devs = ggml_layer_devices(n_layers, n_gpus, ngl, ngl_blocks_first)
        add(HOST, lb.embd)  # llama.cpp keeps the input layer on the CPU (llama-model.cpp dev_input)
        host_largest = 0  # the input embedding is only looked up (GET_ROWS), never copied to a GPU
        for il, (dense, experts) in enumerate(zip(lb.dense, lb.experts, strict=True)):
            add(devs[il], dense)
            # --n-cpu-moe: the routed experts of blocks below N in host RAM
            exp_dev = HOST if il < cpu_moe_layers else devs[il]
            add(exp_dev, experts)
            if devs[il] == HOST:
                host_largest = max(host_largest, lb.largest[il][0])
            if exp_dev == HOST:
                host_largest = max(host_largest, lb.largest[il][1])
        add(devs[n_layers], lb.rest)  # output_norm and output go with the output layer
        if devs[n_layers] == HOST:
            host_largest = max(host_largest, lb.rest_largest)
        for il in range(n_layers):
            layers.setdefault(devs[il], []).append(il)
        for k in range(n_gpus):
            weights.setdefault(k, 0)
            read.setdefault(k, 0)
        return _Placement(
            weights,
            {k: tuple(v) for k, v in layers.items()},
            devs[n_layers],
            lb.total,
            read,
            host_largest if n_gpus else 0,
        )
    lb = _layer_bytes(key, tp, kv_heads if kv_heads > 1 else arch.num_key_value_heads)
    ranges = pp_layer_ranges(n_layers, pp)
    absorbed = mla_absorbed_bytes(arch, tp)
    for stage, rng in enumerate(ranges):
        w = r = 0
        blocks = range(rng.start, len(lb.dense)) if stage == pp - 1 else rng  # stored MTP blocks: last
        for il in blocks:
            w += lb.dense[il][0] + lb.experts[il][0]
            r += lb.dense[il][1] + lb.experts[il][1]
        if stage == 0:
            w, r = w + lb.embd[0], r + lb.embd[1]
        if stage == pp - 1:
            w, r = w + lb.rest[0], r + lb.rest[1]
        for k in range(tp):
            dev = stage * tp + k
            layers[dev] = list(rng)
            weights[dev] = w + absorbed * len(rng)
            read[dev] = r + absorbed * len(rng)
    return _Placement(weights, {k: tuple(v) for k, v in layers.items()}, pp * tp - 1, lb.total, read)


# --------------------------------------------------------------------------- the dynamic part


class _Static(NamedTuple):
    req: Request
    topo: Topology
    shape: KVShape
    dtype: KVDtype
    placement: _Placement
    devices: tuple[int, ...]
    capacity: int | None
    usable: int | None  # what the plan may fill of each GPU: the runtime's share, less the headroom
    host_capacity: int | None
    host_usable: int | None  # host RAM less the headroom
    device: Device
    block: int  # the runtime's KV block size for this plan (vLLM pages; 1 elsewhere)
    rules: Rules


def batch_shape(rules: Rules, req: Request, device: Device, concurrency: int) -> BatchShape:
    """The runtime's batch for `concurrency` requests, with vLLM's --max-num-seqs and
    --max-num-batched-tokens in place of its defaults where they were given."""
    b = rules.batch_shape(device, concurrency)
    tokens = req.max_num_batched_tokens or b.tokens
    seqs = req.max_num_seqs or b.sequences
    return BatchShape(tokens, seqs)


def _usable(st: _Static, reserved: int) -> int | None:
    """What the plan may fill of one GPU whose activations and overhead are `reserved` bytes."""
    if st.capacity is None:
        return None
    req = st.req
    use = st.rules.usable_bytes(
        st.capacity,
        utilization=req.gpu_memory_utilization,
        mem_fraction_static=req.mem_fraction_static,
        in_use=req.gpu_in_use_bytes,
        reserved=reserved,
    )
    if use == int(st.capacity * st.rules.usable_fraction(req.gpu_memory_utilization)):
        return st.usable  # the runtime's share alone: the same rounding as the plan's other figures
    return int(use * (1 - req.headroom))


def _devices_use(st: _Static, cells: Cells, concurrency: int) -> tuple[list[DeviceUse], DeviceUse]:
    req, arch = st.req, st.req.variant.architecture
    tp = st.topo.tensor_parallel
    per_layer = kv_layer_bytes(st.shape, st.dtype, tp)
    rules = st.rules
    batch = batch_shape(rules, req, st.device, concurrency)
    pp = st.topo.pipeline_parallel
    gpus: list[DeviceUse] = []
    host_kv = host_act = 0
    # the activation and overhead terms are the same on every GPU of a kind: compute each once
    acts: dict[tuple[bool, bool, bool], int] = {}
    over_gpu = rules.overhead_bytes(arch, tp, pp, st.device)
    for dev in (*st.devices, HOST):
        layers = st.placement.layers.get(dev, ())
        kv = cells.total * per_layer * len(layers)
        has_output = dev == st.placement.output_device
        kind = (dev == HOST, has_output, bool(layers))
        act = acts.get(kind, -1)
        if act < 0:
            act = acts[kind] = rules.activation_bytes(
                arch,
                st.shape,
                tp=tp,
                pp=pp,
                device=st.device,
                batch=batch,
                cells=cells,
                concurrency=concurrency,
                flash_attn=req.flash_attn,
                on_host=dev == HOST,
                has_output=has_output,
                has_layers=bool(layers),
            )
        if dev == 0:
            act += rules.offload_copy_bytes(st.placement.host_largest, batch)
        over = over_gpu if dev != HOST else 0
        if dev == HOST:
            host_kv, host_act = kv, act
            continue
        gpus.append(
            DeviceUse(
                dev,
                st.placement.weights.get(dev, 0),
                kv,
                act,
                over,
                st.capacity,
                _usable(st, act + over),
                layers,
                st.placement.read.get(dev, 0),
            )
        )
    host_cap, host_usable = st.host_capacity, st.host_usable
    if req.gpu is not None and req.gpu.unified and host_cap is not None and host_usable is not None:
        # Apple silicon: one memory; the host part gets what the GPU part leaves of it
        on_gpu = sum(g.total_bytes for g in gpus)
        host_cap, host_usable = max(host_cap - on_gpu, 0), max(host_usable - on_gpu, 0)
    host = DeviceUse(
        HOST,
        st.placement.weights.get(HOST, 0),
        host_kv,
        host_act,
        0,
        host_cap,
        host_usable,
        st.placement.layers.get(HOST, ()),
        st.placement.read.get(HOST, 0),
    )
    return gpus, host


def _fits(gpus: list[DeviceUse], host: DeviceUse, cpu_only: bool) -> bool | None:
    if cpu_only:
        return host.fits
    verdicts = [g.fits for g in gpus]
    if any(v is None for v in verdicts):
        return None
    host_ok = host.fits if host.total_bytes else True
    return all(verdicts) and host_ok is not False


def largest_true(ok: Callable[[int], bool], lo: int, hi: int) -> int:
    """The largest n in [lo, hi] with ok(n), for ok monotone (true then false); lo - 1 if none."""
    if ok(hi):
        return hi  # the common case of a small model on a large GPU: one step
    if not ok(lo):
        return lo - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _prepare(req: Request) -> _Static:
    v, q, rt = req.variant, req.quant, req.runtime
    if rt not in q.runtimes:
        loads = ", ".join(r.value for r in q.runtimes)
        raise PlanError(
            f"{rt.value} cannot load {v.id} {q.name} ({q.format.value}); that quantization runs on: {loads}"
        )
    arch = v.architecture
    rules = rules_for(rt, req.runtime_version)
    if req.run is not None:
        rules = rules.with_run(req.run)
    layout = req.kv_layout or rules.kv_layout(arch, q.gguf_mla)
    if layout is not KVLayout.GQA and not arch.is_mla:
        raise PlanError(f"the {layout.value} KV layout needs an MLA model; {v.id} uses GQA")
    if arch.is_mla and layout is KVLayout.GQA:
        raise PlanError(f"{v.id} uses MLA; its KV layout is mla-latent, mla-kv or mha")
    if arch.is_mla and layout not in rules.mla_layouts:
        raise PlanError(
            f"the {layout.value} KV layout is llama.cpp's (a deepseek2 GGUF's); {rt.value} caches MLA "
            "as its latent (mla-latent)"
        )
    shape = kv_shape(arch, layout)
    dtype = rules.resolve_kv_dtype(req.kv_cache_dtype, q.format)
    # only llama.cpp / Ollama take a quantized cache (their `kv_dtypes`)
    if dtype in (KVDtype.Q8_0, KVDtype.Q4_0) and not req.flash_attn:
        raise PlanError("llama.cpp needs flash attention for a quantized V cache (q8_0 / q4_0)")
    if not rules.layer_split and req.gpu_layers is not None:
        raise PlanError(
            f"--gpu-layers is a llama.cpp / Ollama option; {rt.value} keeps every layer on the GPUs"
        )
    if not rules.flash_attn_option and not req.flash_attn:
        raise PlanError(
            f"--no-flash-attn is a llama.cpp / Ollama option; {rt.value} picks its attention backend itself"
        )
    if req.cpu_moe_layers:
        if not rules.cpu_moe_option:
            raise PlanError(f"--n-cpu-moe is a llama.cpp option; {rt.value} has no such setting")
        if not arch.is_moe:
            raise PlanError(f"--n-cpu-moe keeps MoE experts in host RAM; {v.id} has no experts")
        if not 0 <= req.cpu_moe_layers <= arch.num_hidden_layers:
            raise PlanError(
                f"--n-cpu-moe must be between 0 and {arch.num_hidden_layers}, got {req.cpu_moe_layers}"
            )
    if not 0 <= req.headroom < 1:
        raise PlanError(f"the headroom must be at least 0 and below 100 %, got {req.headroom:.0%}")
    topo = resolve_topology(req, shape, rules)
    placement = _place(req, topo, shape, rules)
    n_dev = 0 if req.cpu_only else topo.gpus_used
    cap = req.gpu.memory_bytes if req.gpu else None
    _check_inputs(req, rules)
    fraction = rules.usable_fraction(req.gpu_memory_utilization) * (1 - req.headroom)
    usable = int(cap * fraction) if cap is not None else None
    host_cap = req.host_memory_bytes
    if req.gpu is not None and req.gpu.unified and not req.cpu_only:
        if not rules.metal:
            raise PlanError(
                f"{rt.value} has no Metal backend and cannot use the GPU of {req.gpu.name} (Apple silicon); "
                "plan with --runtime llama.cpp or --runtime ollama"
                + ("" if q.is_gguf else " and a GGUF quantization (--quant q4_K_M, q8_0, f16, ...)")
            )
        host_cap = req.gpu.unified_memory_bytes  # the Mac's one memory, which the GPU part shares
    host_usable = int(host_cap * (1 - req.headroom)) if host_cap is not None else None
    g = req.gpu
    device = (
        Device(g.memory_bytes, g.compute_capability, g.name.startswith("a100"), g.interconnect)
        if g
        else Device()
    )
    block = rules.kv_block(arch, device, dtype)
    devices = tuple(range(n_dev))
    return _Static(
        req, topo, shape, dtype, placement, devices, cap, usable, host_cap, host_usable, device, block, rules
    )


def estimate(req: Request, *, solve_context: bool = True, solve_concurrency: bool = True) -> Estimate:
    """Memory of `req` per GPU and on the host, whether it fits, and the largest context /
    concurrency that would (each a binary search; `solve_...=False` skips it and leaves None)."""
    st = _prepare(req)
    arch = req.variant.architecture
    gpu_total = st.capacity * len(st.devices) if st.capacity is not None else None
    rules = st.rules
    context = req.context if req.context is not None else rules.default_context(arch, gpu_total)
    if context <= 0:
        raise PlanError(f"--context must be a positive number of tokens, got {context}")
    if context > arch.max_position_embeddings:
        raise PlanError(
            f"--context {context} exceeds {req.variant.id}'s maximum of {arch.max_position_embeddings} tokens"
        )
    cells = rules.kv_cells(context, req.concurrency, st.block)
    batch = batch_shape(rules, req, st.device, req.concurrency)
    gpus, host = _devices_use(st, cells, req.concurrency)
    fits = _fits(gpus, host, req.cpu_only)

    def fits_at(ctx: int, conc: int) -> bool:
        g, h = _devices_use(st, rules.kv_cells(ctx, conc, st.block), conc)
        return bool(_fits(g, h, req.cpu_only))

    max_context = max_conc = None
    if fits is not None and solve_context:
        max_context = largest_true(lambda c: fits_at(c, req.concurrency), 1, arch.max_position_embeddings)
    if fits is not None and solve_concurrency:
        # vLLM serves at most --max-num-seqs requests at once
        max_conc = largest_true(lambda n: fits_at(context, n), 1, req.max_num_seqs or 1 << 16)
    per_token = kv_layer_bytes(st.shape, st.dtype, 1) * arch.num_hidden_layers
    kv_total = sum(g.kv_cache_bytes for g in gpus) + host.kv_cache_bytes
    est = Estimate(
        model=req.variant.id,
        quant=req.quant.name,
        runtime=req.runtime.value,
        context=context,
        concurrency=req.concurrency,
        kv_cache_dtype=st.dtype.value,
        kv_layout=st.shape.layout.value,
        topology=st.topo,
        params=req.variant.params,
        weights_bytes=st.placement.total_weights,
        kv_bytes_per_token=per_token,
        kv_cache_bytes=kv_total,
        kv_cells=cells.total,
        per_gpu=tuple(gpus),
        host=host,
        fits=fits,
        max_context=max_context,
        max_concurrency=max_conc,
        settings=cells.settings
        + rules.plan_flags(
            PlanFlags(
                tensor_parallel=st.topo.tensor_parallel,
                pipeline_parallel=st.topo.pipeline_parallel,
                kv_asked=req.kv_cache_dtype,
                kv_dtype=st.dtype,
                gpu_layers=None if req.cpu_only else req.gpu_layers,
                cpu_moe_layers=0 if req.cpu_only else req.cpu_moe_layers,
                flash_attn=req.flash_attn,
            )
        ),
        batch_tokens=batch.tokens,
        batch_sequences=batch.sequences,
        inputs=_inputs(req, st, batch, gpus),
        gpu_in_use_bytes=req.gpu_in_use_bytes if st.capacity is not None and not req.cpu_only else 0,
    )
    return replace(est, notes=tuple(_notes(req, st, est, context)))


def _check_inputs(req: Request, rules: Rules) -> None:
    """The runtime flags of `req`: in range, and ones the runtime has (else one line naming its own)."""
    rt = req.runtime.value
    util, mfs = req.gpu_memory_utilization, req.mem_fraction_static
    if util is not None:
        if rules.gpu_memory_utilization is None:
            hint = "; its share of the GPU is --mem-fraction-static" if rules.mem_fraction_option else ""
            raise PlanError(f"--gpu-memory-utilization is a vLLM option; {rt} has no such setting{hint}")
        if not 0 < util <= 1:
            raise PlanError(f"--gpu-memory-utilization must be above 0 and at most 1, got {util:g}")
    if mfs is not None:
        if not rules.mem_fraction_option:
            hint = "; its share of the GPU is --gpu-memory-utilization" if rules.batch_options else ""
            raise PlanError(f"--mem-fraction-static is an SGLang option; {rt} has no such setting{hint}")
        if not 0 < mfs < 1:
            raise PlanError(f"--mem-fraction-static must be above 0 and below 1, got {mfs:g}")
    for flag, value in (
        ("--max-num-seqs", req.max_num_seqs),
        ("--max-num-batched-tokens", req.max_num_batched_tokens),
    ):
        if value is None:
            continue
        if not rules.batch_options:
            raise PlanError(f"{flag} is a vLLM option; {rt} has no such setting")
        if value <= 0:
            raise PlanError(f"{flag} must be at least 1, got {value}")
    if req.max_num_seqs is not None and req.concurrency > req.max_num_seqs:
        raise PlanError(
            f"--concurrency {req.concurrency} exceeds --max-num-seqs {req.max_num_seqs}: vLLM runs at most "
            "that many requests at once"
        )
    if req.gpu_in_use_bytes < 0:
        raise PlanError(f"memory in use on a GPU cannot be negative, got {req.gpu_in_use_bytes}")


def _inputs(
    req: Request, st: _Static, batch: BatchShape, gpus: list[DeviceUse]
) -> tuple[tuple[str, str, str], ...]:
    """The runtime inputs the plan used, each with where it came from."""
    given = dict(req.sources)
    rules = st.rules
    out: list[tuple[str, str, str]] = []

    def add(flag: str, value: str, default: str = "default") -> None:
        out.append((flag, value, given.get(flag, default)))

    if rules.gpu_memory_utilization is not None:
        add("--gpu-memory-utilization", f"{rules.usable_fraction(req.gpu_memory_utilization):g}")
    if rules.batch_options:
        add("--max-num-seqs", str(batch.sequences))
        add("--max-num-batched-tokens", str(batch.tokens))
    if rules.mem_fraction_option and req.mem_fraction_static is not None:
        add("--mem-fraction-static", f"{req.mem_fraction_static:g}")
    elif rules.mem_fraction_option and st.capacity and gpus:
        # SGLang's default: the total less its reservation for activations and graphs, as a share
        g = max(gpus, key=lambda d: d.activation_bytes + d.overhead_bytes)
        add(
            "--mem-fraction-static",
            f"{(st.capacity - g.activation_bytes - g.overhead_bytes) / st.capacity:.3f}",
        )
    if req.host_memory_bytes is not None:
        n = req.host_memory_bytes
        if "--host-memory" in given or n % MiB == 0:
            add("--host-memory", size_text(n), "probe")
        else:  # the probe's count of bytes, readable: a MiB less at most (a plan for no more memory)
            add("--host-memory", f"{n // MiB}MiB", "probe, rounded down to a MiB")
    return tuple(out)


def _gib(n: int) -> str:
    return f"{n / GiB:.1f} GiB"


def _notes(req: Request, st: _Static, est: Estimate, context: int) -> list[str]:
    notes: list[str] = list(req.given_notes)
    arch, rt, q = req.variant.architecture, req.runtime, req.quant
    if q.plan_note:
        notes.append(q.plan_note)
    if req.context is None:
        notes.append(f"context {context} is what {rt.value} uses when started without a context setting")
    if est.per_gpu and est.host.total_bytes and est.host.capacity_bytes is None:
        notes.append(
            f"host RAM not given: the host part ({_gib(est.host.total_bytes)}) is not checked against it "
            "(give --host-memory SIZE)"
        )
    if req.cpu_only:
        notes.append("no GPU found: this plan is for host RAM (CPU inference); vLLM and SGLang need a GPU")
    elif req.gpu is None:
        notes.append("no GPU given: per-GPU memory is shown without a capacity (use --gpu NAME[:COUNT])")
    elif (crowded := crowded_node_note(req.gpu, req.gpus_per_node)) is not None:
        notes.append(crowded)  # more cards in one node than its usual server: planned as given
    if req.gpu is not None and req.gpu.unified and not req.cpu_only:
        notes.append(unified_memory_note(req.gpu, est.host.capacity_bytes or 0))
    if st.shape.layout is KVLayout.MLA_LATENT and st.topo.tensor_parallel > 1:
        notes.append(
            "the MLA latent KV cache is replicated on every tensor-parallel GPU; more TP does not shrink it"
        )
    if st.shape.layout is KVLayout.MHA:
        latent = kv_layer_bytes(kv_shape(arch, KVLayout.MLA_LATENT), st.dtype) * arch.num_hidden_layers
        notes.append(
            f"this GGUF predates llama.cpp's MLA support: it caches all {st.shape.heads} heads' K and V "
            f"({est.kv_bytes_per_token / (1 << 20):.2f} MiB per token), "
            f"{est.kv_bytes_per_token // latent}x the MLA latent"
        )
    if st.shape.heads > 1 and st.topo.tensor_parallel > st.shape.heads:
        notes.append(
            f"tensor parallel {st.topo.tensor_parallel} exceeds the {st.shape.heads} KV heads: "
            "each GPU keeps a replica of one KV head"
        )
    idle = req.gpus_per_node * req.nodes - st.topo.gpus_used
    if not req.cpu_only and not st.rules.layer_split and idle > 0 and req.gpu is not None:
        notes.append(f"{count(idle, 'GPU')} left idle by TP x PP; run data-parallel replicas on them")
    if req.gpu is not None and q.requires is not None and not getattr(req.gpu, q.requires):
        fallback = st.rules.precision_fallback_note(req.gpu.name, q.requires)
        if fallback:
            notes.append(fallback)
    if st.capacity is not None and st.usable is not None and est.per_gpu:
        g = max(est.per_gpu, key=lambda d: d.total_bytes)
        per_cell = g.kv_cache_bytes // est.kv_cells if est.kv_cells else 0
        parts = (st.capacity, g.weights_bytes, g.activation_bytes, g.overhead_bytes)
        util = req.gpu_memory_utilization
        pool = st.rules.kv_pool_bytes(
            arch,
            st.topo.tensor_parallel,
            *parts,
            utilization=util,
            mem_fraction_static=req.mem_fraction_static,
        )
        line = st.rules.kv_pool_words(*parts, util)
        mfs = req.mem_fraction_static
        if mfs is not None:
            line = (
                f"{rt.value} keeps --mem-fraction-static {mfs:g} x {_gib(st.capacity)} = "
                f"{_gib(int(mfs * st.capacity))} per GPU for weights and KV cache"
            )
        if pool is not None and line is not None:
            if pool > 0 and per_cell:
                line += f"; its KV pool gets {_gib(pool)}, room for {pool // per_cell} tokens"
            notes.append(line)
    if est.gpu_in_use_bytes and st.capacity is not None:
        notes.extend(_in_use_notes(req, st))
    caveat = st.rules.kv_dtype_caveat(arch, q.gguf_mla)
    if caveat:
        notes.append(caveat)
    if est.max_context == 0 and est.per_gpu:
        # nothing fits even at one token: what the plan needs besides the KV cache is already too much
        g = max(est.per_gpu, key=lambda d: d.total_bytes - d.kv_cache_bytes - (d.usable_bytes or 0))
        fixed = g.total_bytes - g.kv_cache_bytes
        notes.append(
            f"no context fits: on GPU {g.index} the weights, activations and overhead alone take "
            f"{_gib(fixed)} of {_gib(g.usable_bytes or 0)} usable, before any KV cache"
        )
    if est.fits is False:
        # the device that overflows most: a GPU, or the host RAM of an offload plan when it is known
        devices = [
            *est.per_gpu,
            *([est.host] if est.host.usable_bytes is not None or not est.per_gpu else []),
        ]
        worst = max(devices, key=lambda d: d.total_bytes - (d.usable_bytes or 0))
        where = "host RAM" if worst.index == HOST else f"GPU {worst.index}"
        notes.append(
            f"does not fit: {where} needs {_gib(worst.total_bytes)} of {_gib(worst.usable_bytes or 0)} usable"
        )
    return notes


def _in_use_notes(req: Request, st: _Static) -> list[str]:
    """What memory already in use on a GPU does to the plan."""
    assert st.capacity is not None
    cap, used, rules = st.capacity, req.gpu_in_use_bytes, st.rules
    free = cap - used
    util, mfs = req.gpu_memory_utilization, req.mem_fraction_static
    seen = (
        f"{_gib(used)} of GPU {req.gpu_in_use_index}'s {_gib(cap)} was in use before the start (other "
        "processes, a desktop, the driver's reservation; NVML)"
    )

    def usable(in_use: int) -> int:
        return rules.usable_bytes(cap, utilization=util, mem_fraction_static=mfs, in_use=in_use)

    if usable(used) >= usable(0):
        share = rules.usable_fraction(util)
        return [f"{seen}: {rules.label}'s {share:g} x total is still free, so the plan is unchanged"]
    out = [f"{seen}: the plan takes it off every GPU, leaving {_gib(free)} free"]
    if rules.gpu_memory_utilization is not None:
        share = int(free / cap * 100) / 100
        out.append(
            f"{rules.label} refuses to start when the free memory is below --gpu-memory-utilization "
            f"{rules.usable_fraction(util):g} x total; the plan assumes --gpu-memory-utilization {share:.2f} "
            "(or free the memory)"
        )
    return out
