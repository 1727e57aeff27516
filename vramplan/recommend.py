"""`vramplan recommend`: what a machine can run, best first, and what it would take to run the rest.

For every variant x quantization x runtime that loads it, the estimator plans the machine's layouts:
all the GPUs of a node (tensor parallel over them, pipeline parallel over `--nodes`), the fewest GPUs
that hold the same plan, and for llama.cpp / Ollama a partial offload to host RAM (layers, or the
671B's routed experts). A plan fits when every GPU's estimated total stays within what the runtime may
use less a headroom. What fits is ranked by published quality, then by the quantization's loss, then
by an upper bound of the decode speed (vramplan/speed.py); what does not fit among the better options
is explained: a shorter context, more GPUs or nodes, a smaller quantization. docs/recommend.md states
every rule and its basis.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from vramplan.arch import param_count
from vramplan.catalog import Catalog, Quant, Variant
from vramplan.errors import PlanError, UnknownModelError
from vramplan.estimate import Estimate, Request, estimate, largest_true
from vramplan.hardware import GPU_SPECS, GPUChoice, GPUSpec, Machine, size_text
from vramplan.precision import WeightFormat
from vramplan.quantmix import GGUF_FTYPES
from vramplan.request import Choices, resolve_model
from vramplan.runtimes import Runtime, rules_for
from vramplan.speed import HOST_BANDWIDTH_GBPS, host_share, tokens_per_second
from vramplan.words import count

GiB = 1 << 30

# A candidate planned without --context takes the runtime's default context; when that does not fit
# it is planned at the largest context that does, down to MIN_CONTEXT: Ollama's smallest default
# num_ctx (ollama server/routes.go), room for a question and a short reasoning trace. (DeepSeek
# evaluates R1 with up to 32768 generated tokens: deepseek-ai/DeepSeek-R1 README, "Evaluation".)
MIN_CONTEXT = 4096
DEFAULT_HEADROOM = 0.10
DEFAULT_TOP = 10
DEFAULT_PER_MODEL = 2
MAX_NODES = 16  # the most nodes a misfit explanation searches

# The published scores that rank variants: every variant in the catalog has both (the R1 README's
# evaluation tables and the R1-0528 model card); their mean is the variant's quality score.
QUALITY_METRICS = ("aime_2024", "gpqa_diamond")

# Equal quality and speed: runtimes that `vramplan deploy` can start come first.
RUNTIME_ORDER = (Runtime.VLLM, Runtime.OLLAMA, Runtime.SGLANG, Runtime.LLAMA_CPP)

# The quality loss of a quantization, as a rank (0: none). Basis (docs/recommend.md): the published
# checkpoint's own precision (bf16, or DeepSeek's native FP8 for the 671B) loses nothing; 8-bit
# formats (FP8 of a bf16 model, GGUF Q8_0) next; then 5-6-bit k-quants; then 4-bit formats calibrated
# on data (AWQ, GPTQ) or with fine-grained FP8 scales (NVFP4, 16-element blocks); then 4-bit
# k-quants; then 3-, 2- and 1-bit types, fewer bits ranking lower. The GGUF order follows the
# perplexity each type adds on Llama-3-8B in llama.cpp's tools/quantize/quantize.cpp QUANT_OPTIONS
# (Q8_0 +0.0026, Q6_K +0.0217, Q5_K_M +0.0569, Q4_K_M +0.1754, Q4_0 +0.4685, Q2_K +3.5199; the IQ
# types listed by bits per weight: IQ2_XXS 2.06, IQ1_M 1.75, IQ1_S 1.56).
_GGUF_RANK = {
    "F32": 0,
    "F16": 0,
    "BF16": 0,
    "Q8_0": 1,
    "Q6_K": 2,
    "Q5_K": 2,
    "Q5_0": 2,
    "Q5_1": 2,
    "Q4_K": 4,
    "Q4_0": 4,
    "Q4_1": 4,
    "IQ4_XS": 4,
    "IQ4_NL": 4,
    "Q3_K": 5,
    "IQ3_XXS": 5,
    "IQ3_S": 5,
    "Q2_K": 6,
    "IQ2_S": 7,
    "IQ2_XS": 7,
    "IQ2_XXS": 7,
    "IQ1_M": 8,
    "IQ1_S": 9,
}
RANK_LABELS = {
    0: "full-precision",
    1: "8-bit",
    2: "5- or 6-bit",
    3: "4-bit",
    4: "4-bit",
    5: "3-bit",
    6: "2-bit",
    7: "2-bit",
    8: "1.75-bit",
    9: "1.58-bit",
}


def quality_score(variant: Variant) -> float | None:
    """The mean of the variant's published QUALITY_METRICS (those it has); None when it has none."""
    scores = variant.scores
    have = [scores[m] for m in QUALITY_METRICS if m in scores]
    return sum(have) / len(have) if have else None


def quant_rank(variant: Variant, quant: Quant) -> int:
    """The quantization's quality-loss rank within its variant (0: none); see _GGUF_RANK."""
    fmt = quant.format
    if fmt in (WeightFormat.BF16, WeightFormat.FP16):
        return 0
    if fmt is WeightFormat.FP8:
        native = variant.quant(variant.default_quant).format is WeightFormat.FP8
        return 0 if native else 1
    if fmt in (WeightFormat.NVFP4, WeightFormat.AWQ_INT4, WeightFormat.GPTQ_INT4):
        return 3
    base = GGUF_FTYPES.get((quant.scheme.gguf_ftype or "").upper(), "")
    return _GGUF_RANK.get(base, 4)


# --------------------------------------------------------------------------- the machine


@dataclass(frozen=True)
class Target:
    """The machine recommended for: named GPUs (--gpu), this machine's GPUs, or its host RAM."""

    gpu: GPUSpec | None  # None: no GPU, plan for host RAM (CPU inference)
    gpus_per_node: int  # 0 without a GPU
    nodes: int
    host_memory_bytes: int | None  # None: unknown (no partial offload planned)
    host_bandwidth_gbps: float
    probed: bool  # this machine's probe (else named with --gpu)
    notes: tuple[str, ...] = ()

    @property
    def cpu_only(self) -> bool:
        return self.gpu is None

    @property
    def named_gpu(self) -> bool:
        """The GPU is in vramplan's table, so `--gpu NAME:COUNT` reproduces it."""
        return self.gpu is not None and any(g.name == self.gpu.name for g in GPU_SPECS)

    def describe(self) -> str:
        if self.gpu is None:
            ram = f"{self.host_memory_bytes / GiB:.1f} GiB" if self.host_memory_bytes else "unknown"
            return f"host RAM ({ram}), no GPU"
        nodes = f"{self.nodes} nodes x " if self.nodes > 1 else ""
        return f"{nodes}{self.gpus_per_node} x {self.gpu.label} ({self.gpu.name})"


def target_for(
    machine: Machine | None,
    gpu: GPUChoice | None,
    *,
    nodes: int = 1,
    host_memory_bytes: int | None = None,
    host_bandwidth_gbps: float | None = None,
) -> Target:
    """The machine to plan for: `gpu` (--gpu) when given, else the probed `machine`'s GPUs, else its
    host RAM. `host_memory_bytes` (--host-memory) replaces the probed RAM."""
    if nodes <= 0:
        raise PlanError(f"--nodes must be at least 1, got {nodes}")
    if host_memory_bytes is not None and host_memory_bytes <= 0:
        raise PlanError("--host-memory must be a positive size in GiB")
    bw = HOST_BANDWIDTH_GBPS if host_bandwidth_gbps is None else host_bandwidth_gbps
    if not math.isfinite(bw) or bw <= 0:
        raise PlanError(f"--host-bandwidth must be a positive number of GB/s, got {bw:g}")
    notes: list[str] = []
    if gpu is not None:
        notes += [gpu.alias_note] if gpu.alias_note else []  # which card `--gpu h100` picked
        host = host_memory_bytes
        if gpu.spec.unified:  # Apple silicon: the host is the GPU's unified memory (estimate plans it)
            if host_memory_bytes is not None:
                raise PlanError(
                    f"--host-memory: the host of {gpu.spec.name} is the same unified memory as its GPU "
                    f"({(gpu.spec.unified_memory_bytes or 0) / GiB:.1f} GiB), planned from the card; "
                    "drop --host-memory"
                )
            host = gpu.spec.unified_memory_bytes
        elif host is None:
            notes.append(
                "host RAM not given: no partial offload to host RAM planned (give --host-memory GIB)"
            )
        return Target(gpu.spec, gpu.count, nodes, host, bw, False, tuple(notes))
    if nodes > 1:
        raise PlanError("--nodes needs --gpu NAME:COUNT to say what each node holds")
    if machine is None:
        raise PlanError("no machine to plan for: give --gpu NAME[:COUNT]")
    host = host_memory_bytes if host_memory_bytes is not None else machine.host_memory_bytes
    if machine.gpus:
        spec = machine.gpu_spec()
        if len({g.name for g in machine.gpus}) > 1:
            notes.append(f"GPUs of different kinds found; planning as if all were {spec.name}")
        if not spec.bandwidth_gbps:
            notes.append(f"{spec.label}'s memory bandwidth is not in vramplan's table: no speed bound")
        return Target(spec, len(machine.gpus), 1, host, bw, True, tuple(notes))
    notes.extend(machine.notes)
    if host is None:
        raise PlanError("no GPU found and the host RAM is unknown: give --host-memory GIB or --gpu NAME")
    notes.append(
        "no GPU found: planning for host RAM (CPU inference) with llama.cpp and Ollama; "
        "vLLM and SGLang need a GPU (plan for one with --gpu NAME[:COUNT])"
    )
    return Target(None, 0, 1, host, bw, True, tuple(notes))


# --------------------------------------------------------------------------- options and results


@dataclass(frozen=True)
class Options:
    context: int | None = None  # None: each runtime's default (lowered to fit, not below MIN_CONTEXT)
    concurrency: int = 1
    headroom: float = DEFAULT_HEADROOM  # share of each GPU's usable memory (and host RAM) kept free
    runtimes: tuple[Runtime, ...] = ()  # empty: all
    quants: tuple[str, ...] = ()  # quantization names (any case); empty: all
    models: tuple[str, ...] = ()  # catalog names (ids, aliases, Ollama tags); empty: all
    offload: bool = True  # plan llama.cpp / Ollama partial offload to host RAM
    top: int = DEFAULT_TOP  # rows shown (one per variant and quantization class)
    per_model: int = DEFAULT_PER_MODEL  # rows per variant at most (0: no limit)
    # runtime -> the `vramplan deploy --target` that runs it by itself (the deploy registry's
    # `deploy_targets()`, which the CLI passes: the core does not import deploy); a runtime without
    # one gets its `vramplan estimate` command instead
    deploy_targets: tuple[tuple[Runtime, str], ...] = ()


@dataclass(frozen=True)
class Candidate:
    request: Request
    estimate: Estimate
    fits: bool
    reason: str  # how it fits, or what would make it fit
    quality: float | None
    quant_rank: int
    tokens_per_second: float | None
    offload: str | None = None  # None, "layers" (--n-gpu-layers) or "experts" (--n-cpu-moe)
    notes: tuple[str, ...] = ()
    deploy_command: tuple[str, ...] | None = None
    estimate_command: tuple[str, ...] = ()
    # the other runtimes and layouts that fit the same variant and quantization, best first
    alternatives: tuple[Candidate, ...] = ()

    @property
    def variant(self) -> Variant:
        return self.request.variant

    @property
    def quant(self) -> Quant:
        return self.request.quant

    @property
    def runtime(self) -> Runtime:
        return self.request.runtime

    @property
    def cpu_plan(self) -> bool:
        return self.estimate.cpu_plan

    @property
    def gpus_used(self) -> int:
        return 0 if self.cpu_plan else self.estimate.topology.gpus_used

    @property
    def per_gpu_peak_bytes(self) -> int:
        """The fullest GPU's total (the host total for a CPU plan)."""
        if self.cpu_plan:
            return self.estimate.host.total_bytes
        return max(d.total_bytes for d in self.estimate.per_gpu)

    @property
    def host_bytes(self) -> int:
        return self.estimate.host.total_bytes


@dataclass(frozen=True)
class Recommendation:
    target: Target
    options: Options
    candidates: tuple[Candidate, ...]  # what fits, best first: one per variant and quantization class
    misfits: tuple[Candidate, ...]  # better options that do not fit, each with what would make it fit
    fitting: int  # plans that fit among those planned (every runtime and layout)
    rows: int  # rows before --top (one per variant and quantization class, --per-model per variant)
    planned: int  # variant x quantization x runtime combinations planned
    complete: bool = True  # False: variants ranked below the rows shown were not planned
    notes: tuple[str, ...] = field(default_factory=tuple)


# --------------------------------------------------------------------------- planning one candidate


@dataclass(frozen=True)
class _Combo:
    variant: Variant
    quant: Quant
    runtime: Runtime
    quality: float | None
    rank: int


def _request(
    combo: _Combo,
    target: Target,
    opts: Options,
    *,
    gpus_per_node: int,
    nodes: int = 1,
    context: int | None,
    gpu_layers: int | None = None,
    cpu_moe_layers: int = 0,
) -> Request:
    return Request(
        variant=combo.variant,
        quant=combo.quant,
        runtime=combo.runtime,
        context=context,
        concurrency=opts.concurrency,
        gpu=target.gpu,
        gpus_per_node=max(1, gpus_per_node),
        nodes=nodes,
        host_memory_bytes=target.host_memory_bytes,
        cpu_only=target.cpu_only,
        gpu_layers=gpu_layers,
        cpu_moe_layers=cpu_moe_layers,
        headroom=opts.headroom,
    )


def _quick(req: Request) -> Estimate:
    """An estimate without the inverse solvers (for yes / no questions)."""
    return estimate(req, solve_context=False, solve_concurrency=False)


def _gpus_fit(est: Estimate) -> bool:
    return all(d.fits for d in est.per_gpu)


def _at_context(make: Callable[[int | None], Request], opts: Options) -> Estimate:
    """The plan at --context; without it at the runtime's default, or, when that does not fit, at the
    largest context that does (not below MIN_CONTEXT)."""
    est = estimate(make(opts.context), solve_concurrency=False)
    if est.fits or opts.context is not None:
        return est
    if est.max_context is not None and est.max_context >= MIN_CONTEXT:
        return estimate(make(est.max_context), solve_concurrency=False)
    return est


def _lowest_count(est: Estimate) -> int:
    """No plan of this model fits on fewer GPUs than its GPU-resident weights over one GPU's budget."""
    budget = est.per_gpu[0].usable_bytes if est.per_gpu else None
    if not budget:
        return 1
    return max(1, math.ceil((est.weights_bytes - est.host.weights_bytes) / budget))


def _fewer_gpus(
    combo: _Combo, target: Target, opts: Options, whole: Estimate
) -> tuple[Request, Estimate] | None:
    """The plan on the fewest GPUs (one node) that fits at the same context, if fewer than `whole`."""
    used = whole.topology.gpus_used
    tried: set[int] = set()
    sizes = [k for k in range(_lowest_count(whole), target.gpus_per_node + 1) if k < used]
    sizes += [target.gpus_per_node * n for n in range(1, target.nodes) if target.gpus_per_node * n < used]
    for k in sorted(set(sizes)):
        nodes = 1
        per_node = k
        if k > target.gpus_per_node:
            nodes, per_node = k // target.gpus_per_node, target.gpus_per_node
        req = _request(combo, target, opts, gpus_per_node=per_node, nodes=nodes, context=whole.context)
        try:
            est = _quick(req)
        except PlanError:
            continue
        if est.topology.gpus_used in tried:
            continue
        tried.add(est.topology.gpus_used)
        if est.fits and est.topology.gpus_used < used:
            return req, estimate(req, solve_concurrency=False)
    return None


def _largest_ok(ok: Callable[[int], bool], lo: int, hi: int) -> int | None:
    """The largest n in [lo, hi] with ok(n), ok monotone (true then false); None if none."""
    if lo > hi:
        return None
    n = largest_true(ok, lo, hi)
    return n if n >= lo else None


def _smallest_ok(ok: Callable[[int], bool], lo: int, hi: int) -> int | None:
    """The smallest n in [lo, hi] with ok(n), ok monotone (false then true); None if none."""
    if lo > hi or not ok(hi):
        return None
    return largest_true(lambda k: not ok(k), lo, hi) + 1  # one past the last n that is not ok


def _offload(combo: _Combo, target: Target, opts: Options) -> tuple[Request, Estimate, str, list[str]] | None:
    """llama.cpp / Ollama with part of the model in host RAM: the most layers on the GPUs
    (--n-gpu-layers), or, for an MoE on llama.cpp, every layer on the GPUs and the routed experts of
    the first N blocks in host RAM (--n-cpu-moe N, the fewest N that fits). The faster of the two."""
    arch = combo.variant.architecture
    n = arch.num_hidden_layers
    ctx = opts.context or MIN_CONTEXT
    g = target.gpus_per_node

    def make(gpu_layers: int | None = None, cpu_moe: int = 0) -> Request:
        return _request(
            combo, target, opts, gpus_per_node=g, context=ctx, gpu_layers=gpu_layers, cpu_moe_layers=cpu_moe
        )

    probe = _quick(make())
    budget = (probe.per_gpu[0].usable_bytes or 0) * len(probe.per_gpu) + (probe.host.usable_bytes or 0)
    if probe.weights_bytes > budget:
        return None  # not even the GPUs and host RAM together hold the weights
    found: list[tuple[Request, Estimate, str]] = []
    # --n-gpu-layers k puts the last k - 1 repeating layers and the output layer on the GPUs
    layers = _largest_ok(lambda k: _gpus_fit(_quick(make(gpu_layers=k))), 1, n)
    if layers is not None:
        req = make(gpu_layers=layers)
        est = estimate(req, solve_concurrency=False)
        if est.fits:
            found.append((req, est, "layers"))
    if rules_for(combo.runtime).cpu_moe_option and arch.is_moe:
        # GPU use falls as N grows: the fewest N that fits
        cpu_moe = _smallest_ok(lambda k: _gpus_fit(_quick(make(cpu_moe=k))), 1, n)
        if cpu_moe is not None:
            req = make(cpu_moe=cpu_moe)
            est = estimate(req, solve_concurrency=False)
            if est.fits:
                found.append((req, est, "experts"))
    if not found:
        return None
    ranked = sorted(
        (
            (tokens_per_second(e, _bw(target), target.host_bandwidth_gbps) or 0.0, r, e, k)
            for r, e, k in found
        ),
        key=lambda x: -x[0],
    )
    _, req, est, kind = ranked[0]
    notes = [
        f"the other offload ({offload_words(r, e, k)}) reaches at most {tps:.1f} tokens/s"
        for tps, r, e, k in ranked[1:]
    ]
    return req, est, kind, notes


def _bw(target: Target) -> float | None:
    return target.gpu.bandwidth_gbps if target.gpu else None


def offload_words(req: Request, est: Estimate, kind: str) -> str:
    """A partial offload in words."""
    n = req.variant.architecture.num_hidden_layers
    if kind == "layers":
        k = req.gpu_layers or 0
        return f"{k} of {n + 1} layers on the GPU (--gpu-layers {k}), the rest in host RAM"
    n_cpu = req.cpu_moe_layers
    return f"routed experts of the first {n_cpu} layers in host RAM (--n-cpu-moe {n_cpu})"


# --------------------------------------------------------------------------- the search


def _combos(catalog: Catalog, target: Target, opts: Options) -> tuple[list[_Combo], list[str]]:
    """The variant x quantization x runtime combinations to plan, and notes on what was left out."""
    variants: list[tuple[Variant, Quant | None]] = []
    if opts.models:
        seen: set[tuple[str, str | None]] = set()
        for name in opts.models:
            r = resolve_model(catalog, Choices(model=name))  # the catalog, else a Hugging Face repo
            key = (r.variant.id, r.quant.name if r.quant else None)
            if key not in seen:
                seen.add(key)
                variants.append((r.variant, r.quant))
    else:
        variants = [(v, None) for v in catalog.variants]
    wanted = {q.lower() for q in opts.quants}
    if wanted:
        known = {q.name.lower() for v, _ in variants for q in v.quants}
        unknown = sorted(wanted - known)
        if unknown:
            names = sorted({q.name for v, _ in variants for q in v.quants}, key=str.lower)
            raise UnknownModelError(
                f"no quantization named {', '.join(unknown)} among the models planned; "
                f"known: {', '.join(names)}"
            )
    out: list[_Combo] = []
    notes: list[str] = []
    if opts.context is not None:
        longest = max(v.architecture.max_position_embeddings for v, _ in variants)
        if opts.context > longest:
            raise PlanError(f"--context {opts.context} exceeds every planned model's maximum ({longest})")
        short = sorted({v.id for v, _ in variants if v.architecture.max_position_embeddings < opts.context})
        if short:
            notes.append(f"left out, their context is shorter than {opts.context}: {', '.join(short)}")
        variants = [(v, q) for v, q in variants if v.architecture.max_position_embeddings >= opts.context]
    if target.nodes > 1:
        # a plan over several nodes puts one pipeline stage (at least one layer) on each
        most = max(v.architecture.num_hidden_layers for v, _ in variants)
        if target.nodes > most:
            raise PlanError(
                f"--nodes {target.nodes} needs a pipeline stage per node, more than any planned model's "
                f"layers ({most})"
            )
        few = sorted({v.id for v, _ in variants if v.architecture.num_hidden_layers < target.nodes})
        if few:
            notes.append(f"left out, fewer layers than --nodes {target.nodes}: {', '.join(few)}")
        variants = [(v, q) for v, q in variants if v.architecture.num_hidden_layers >= target.nodes]
    skipped: set[str] = set()
    for v, only in variants:
        quality = quality_score(v)
        for q in v.quants:
            if only is not None and q.name != only.name:
                continue
            if wanted and q.name.lower() not in wanted:
                continue
            for rt in q.runtimes:
                if opts.runtimes and rt not in opts.runtimes:
                    continue
                rules = rules_for(rt)
                if target.cpu_only and not rules.runs_on_host:
                    continue
                if target.nodes > 1 and not rules.spans_nodes:
                    continue
                gpu = target.gpu
                if gpu is not None and gpu.unified and not rules.metal:
                    continue  # no Metal backend: vLLM and SGLang cannot use an Apple silicon GPU
                if rules.needs_native_precision and gpu is not None and q.requires is not None:
                    if not getattr(gpu, q.requires):
                        skipped.add(q.requires.upper())
                        continue
                out.append(_Combo(v, q, rt, quality, quant_rank(v, q)))
    if skipped and target.gpu is not None:
        notes.append(
            f"sglang plans of {' and '.join(sorted(skipped))} checkpoints left out: {target.gpu.name} has no "
            "native support for them (vLLM's weight-only Marlin fallback is planned instead)"
        )
    if target.gpu is not None and target.gpu.unified:
        notes.append(
            f"{target.gpu.name} is Apple silicon: llama.cpp and Ollama plans "
            "(vLLM and SGLang have no Metal backend)"
        )
    if target.nodes > 1:
        notes.append(
            f"llama.cpp and Ollama plans are for one node; {target.nodes} nodes plan vLLM and SGLang"
        )
    return out, notes


# --------------------------------------------------------------------------- one combination


def _fit_reason(est: Estimate, target: Target, opts: Options, default_ctx: int | None) -> str:
    t = est.topology
    total = target.gpus_per_node * target.nodes
    if est.cpu_plan:
        where = "fits in host RAM (CPU inference)"
    elif t.nodes > 1:
        where = f"fits on {t.nodes} nodes x {count(t.gpus_per_node, 'GPU')}"
    elif t.gpus_used == total:
        where = {1: "fits on the GPU", 2: "fits on both GPUs"}.get(total, f"fits on all {total} GPUs")
    else:
        where = f"fits on {t.gpus_used} of the {total} GPUs"
    if opts.context is None and default_ctx is not None and est.context < default_ctx:
        where += f", at context {est.context} (the runtime's default {default_ctx} does not fit)"
    return where


def _candidate(
    combo: _Combo,
    target: Target,
    req: Request,
    est: Estimate,
    *,
    fits: bool,
    reason: str,
    kind: str | None = None,
    notes: Iterable[str] = (),
) -> Candidate:
    extra = list(notes)
    extra += [n for n in est.notes if "Marlin" in n]  # FP8 / FP4 run without native support
    if fits and kind is not None:
        share = host_share(est)
        extra.append(
            f"{share:.0%} of the bytes a token reads come from host RAM "
            f"(assumed {target.host_bandwidth_gbps:g} GB/s; --host-bandwidth)"
        )
    c = Candidate(
        request=req,
        estimate=est,
        fits=fits,
        reason=reason,
        quality=combo.quality,
        quant_rank=combo.rank,
        tokens_per_second=tokens_per_second(est, _bw(target), target.host_bandwidth_gbps),
        offload=kind,
        notes=tuple(extra),
    )
    return replace(c, estimate_command=estimate_command(c, target))


def _with_deploy_commands(c: Candidate, target: Target, opts: Options) -> Candidate:
    """`c` and its alternatives with the `vramplan deploy` command of each, where a target runs it."""
    alternatives = tuple(_with_deploy_commands(a, target, opts) for a in c.alternatives)
    return replace(c, deploy_command=deploy_command(c, target, opts), alternatives=alternatives)


def _default_context(combo: _Combo, target: Target) -> int:
    total = target.gpu.memory_bytes * target.gpus_per_node * target.nodes if target.gpu else None
    return rules_for(combo.runtime).default_context(combo.variant.architecture, total)


# The fewest bytes a parameter of each checkpoint format can take (its quantized storage alone; scales,
# and tensors kept in higher precision, only add): a lower bound of a checkpoint's size.
_MIN_BYTES_PER_PARAM = {
    WeightFormat.BF16: 2.0,
    WeightFormat.FP16: 2.0,
    WeightFormat.FP8: 1.0,
    WeightFormat.AWQ_INT4: 0.5,
    WeightFormat.GPTQ_INT4: 0.5,
    WeightFormat.NVFP4: 0.5,
}


def _too_big(combo: _Combo, target: Target, opts: Options) -> bool:
    """The weights alone certainly exceed all the memory the plan may use (by the published size, or
    by the parameters at the format's fewest bytes): a misfit without planning."""
    q = combo.quant
    if q.tensor_table is not None:
        return False
    least = 0
    if q.size is not None:
        least = q.size.bytes - q.size.rounding
    if q.format in _MIN_BYTES_PER_PARAM:
        least = max(least, int(param_count(combo.variant.architecture) * _MIN_BYTES_PER_PARAM[q.format]))
    if not least:
        return False
    if target.gpu is None:
        room = (target.host_memory_bytes or 0) * (1 - opts.headroom)
    else:
        rules = rules_for(combo.runtime)
        share = rules.usable_fraction() * (1 - opts.headroom)
        room = target.gpu.memory_bytes * share * target.gpus_per_node * target.nodes
        if rules.layer_split and opts.offload and target.host_memory_bytes:
            room += target.host_memory_bytes * (1 - opts.headroom)
    return least > room


def _whole(combo: _Combo, target: Target, opts: Options) -> tuple[Request, Estimate]:
    """The plan on all the machine's GPUs (or its host RAM), at the context `_at_context` picks."""

    def make(ctx: int | None) -> Request:
        return _request(
            combo, target, opts, gpus_per_node=target.gpus_per_node, nodes=target.nodes, context=ctx
        )

    est = _at_context(make, opts)
    return make(est.context), est


def _plan(combo: _Combo, target: Target, opts: Options) -> tuple[list[Candidate], bool]:
    """The fitting candidates of one combination (the whole machine; the fewest GPUs that hold the
    same plan; or a partial offload); True when it does not fit (explained later, if at all)."""
    if _too_big(combo, target, opts):
        return [], True
    try:
        req, whole = _whole(combo, target, opts)
    except PlanError:
        return [], False  # a plan this runtime cannot make here (e.g. --context beyond the model's)
    default_ctx = None if opts.context is not None else _default_context(combo, target)
    if whole.fits:
        # a GPU vramplan cannot name (not in its table) gets whole-machine plans only: no command
        # could ask for a subset of it
        nameable = target.named_gpu or not target.probed
        fewer = _fewer_gpus(combo, target, opts, whole) if not target.cpu_only and nameable else None
        out: list[Candidate] = []
        # llama.cpp's layer split reads the layers one GPU after another: more GPUs add room but no
        # speed, so only the fewest GPUs are proposed; vLLM / SGLang gain bandwidth with every GPU
        if fewer is None or not rules_for(combo.runtime).layer_split:
            out.append(
                _candidate(
                    combo, target, req, whole, fits=True, reason=_fit_reason(whole, target, opts, default_ctx)
                )
            )
        if fewer is not None:
            freq, fest = fewer
            out.append(
                _candidate(
                    combo, target, freq, fest, fits=True, reason=_fit_reason(fest, target, opts, default_ctx)
                )
            )
        return out, False
    if (
        rules_for(combo.runtime).layer_split
        and not target.cpu_only
        and opts.offload
        and target.host_memory_bytes
    ):
        off = _offload(combo, target, opts)
        if off is not None:
            oreq, oest, kind, notes = off
            return [
                _candidate(
                    combo,
                    target,
                    oreq,
                    oest,
                    fits=True,
                    reason=offload_words(oreq, oest, kind),
                    kind=kind,
                    notes=notes,
                )
            ], False
    return [], True


# --------------------------------------------------------------------------- explaining a misfit


def _fits_with(combo: _Combo, target: Target, opts: Options, gpus_per_node: int, nodes: int) -> bool:
    ctx = opts.context or MIN_CONTEXT
    try:
        return bool(
            _quick(_request(combo, target, opts, gpus_per_node=gpus_per_node, nodes=nodes, context=ctx)).fits
        )
    except PlanError:
        return False


def _more_hardware(est: Estimate, combo: _Combo, target: Target, opts: Options) -> tuple[int, str] | None:
    """The least hardware of the same GPU that fits (more GPUs in the node, then more nodes), as
    (GPUs in all, words); None when more of this GPU cannot hold it."""
    gpu = target.gpu
    if gpu is None:
        return None
    g, nodes = target.gpus_per_node, target.nodes
    per_gpu = est.per_gpu[0].usable_bytes or 1
    need = max(1, math.ceil((est.weights_bytes - est.host.weights_bytes) / per_gpu))
    if nodes == 1:
        for k in range(max(g + 1, min(need, gpu.max_per_node)), gpu.max_per_node + 1):
            if _fits_with(combo, target, opts, k, 1):
                return k, f"fits on {k} x {gpu.name} (--gpu {gpu.name}:{k})"
    if not rules_for(combo.runtime).spans_nodes:
        return None
    full = gpu.max_per_node
    first = max(nodes + 1 if g == full else 2, math.ceil(need / full))
    for n in range(first, MAX_NODES + 1):
        if _fits_with(combo, target, opts, full, n):
            flags = f"--nodes {n}" if g == full else f"--gpu {gpu.name}:{full} --nodes {n}"
            return n * full, f"needs {n} nodes of {gpu.name}:{full} ({flags})"
    return None


def _smaller_quant(
    c: Candidate, combo: _Combo, target: Target, opts: Options, fits: list[Candidate], misses: list[_Combo]
) -> str | None:
    """The least lossy smaller quantization of the same variant: one that fits here, else the first
    (by quality loss) that needs fewer GPUs than `c` would."""
    here = [f for f in fits if f.variant.id == c.variant.id and f.quant_rank > c.quant_rank]
    if here:
        best = here[0]  # `fits` is ranked
        label = RANK_LABELS.get(best.quant_rank, "smaller")
        how = ", partly in host RAM" if best.offload else ""
        name = f"{best.quant.name} on {best.runtime.value}"
        return f"{_article(label)} {label} quantization: {name} fits here{how}"
    if target.gpu is None:
        return None
    own = _more_hardware(c.estimate, combo, target, opts)
    limit = own[0] if own else math.inf
    ctx = opts.context or MIN_CONTEXT
    tried: set[str] = set()
    others = [m for m in misses if m.variant.id == combo.variant.id and m.rank > combo.rank]
    for m in sorted(
        others, key=lambda m: (m.rank, rules_for(m.runtime).layer_split, RUNTIME_ORDER.index(m.runtime))
    ):
        if m.quant.name in tried:
            continue
        tried.add(m.quant.name)
        req = _request(m, target, opts, gpus_per_node=target.gpus_per_node, nodes=target.nodes, context=ctx)
        try:
            need = _more_hardware(_quick(req), m, target, opts)
        except PlanError:
            continue
        if need is not None and need[0] < limit:
            label = RANK_LABELS.get(m.rank, "smaller")
            return f"{_article(label)} {label} quantization: {m.quant.name} on {m.runtime.value} {need[1]}"
    return None


def _explain(
    c: Candidate, combo: _Combo, target: Target, opts: Options, fits: list[Candidate], misses: list[_Combo]
) -> str:
    """What would make `c` fit: a shorter context, more GPUs or nodes, a smaller quantization."""
    parts: list[str] = []
    est = c.estimate
    peak = max(est.per_gpu or (est.host,), key=lambda d: d.total_bytes - (d.usable_bytes or 0))
    where = "of host RAM" if est.cpu_plan else "per GPU"
    budget = (peak.usable_bytes or 0) / GiB
    need = (
        f"needs {peak.total_bytes / GiB:.1f} GiB {where} at context {est.context}, "
        f"the budget is {budget:.1f} GiB"
    )
    if est.max_context:
        if opts.context is not None:
            parts.append(f"fits at context {est.max_context} (--context {est.max_context})")
        else:
            parts.append(f"fits only at context {est.max_context}, below the {MIN_CONTEXT} planned for")
    more = _more_hardware(est, combo, target, opts)
    if more:
        parts.append(more[1])
    elif target.gpu is not None and rules_for(combo.runtime).spans_nodes:
        parts.append(f"does not fit even on {MAX_NODES} nodes of {target.gpu.name}:{target.gpu.max_per_node}")
    smaller = _smaller_quant(c, combo, target, opts, fits, misses)
    if smaller:
        parts.append(smaller)
    elif est.cpu_plan:
        parts.append("a GPU, or more host RAM")
    if not parts:
        return need
    return f"{need}; " + ", or ".join(parts)


# --------------------------------------------------------------------------- ranking


def rank_key(c: Candidate) -> tuple[float, int, float, int, int, str, str]:
    """Best first: published quality, then the quantization's quality loss, then the decode-speed
    bound, then runtimes `vramplan deploy` starts, then fewer GPUs; names break the last ties."""
    quality = c.quality if c.quality is not None else -1.0
    return (
        -quality,
        c.quant_rank,
        -(c.tokens_per_second or 0.0),
        RUNTIME_ORDER.index(c.runtime),
        c.gpus_used,
        c.variant.id,
        c.quant.name,
    )


def _misfits_to_explain(misses: list[_Combo], shown: list[Candidate], fits: list[Candidate]) -> list[_Combo]:
    """One misfit per variant worth knowing about: a variant ranked above the last candidate shown
    (or any variant when nothing fits), its best quantization that does not fit, when that
    quantization ranks above the variant's best fitting one."""
    floor = shown[-1].quality if shown else None
    best_fit: dict[str, int] = {}
    for f in fits:
        best_fit.setdefault(f.variant.id, f.quant_rank)
    out: list[_Combo] = []
    seen: set[str] = set()
    for m in sorted(misses, key=_misfit_key):
        vid = m.variant.id
        if vid in seen:
            continue
        if floor is not None and (m.quality if m.quality is not None else -1.0) < floor:
            continue
        if vid in best_fit and m.rank >= best_fit[vid]:
            continue
        seen.add(vid)
        out.append(m)
    return out


def _misfit_key(c: _Combo) -> tuple[float, int, int, int, str]:
    """Misfits of a variant: the least lossy quantization, the variant's own release format first,
    then runtimes that span nodes (vLLM, SGLang), then deploy targets."""
    quality = c.quality if c.quality is not None else -1.0
    own = 0 if c.quant.name == c.variant.default_quant else 1
    return (-quality, c.rank, own, RUNTIME_ORDER.index(c.runtime), c.quant.name)


def _misfit(
    combo: _Combo, target: Target, opts: Options, fits: list[Candidate], misses: list[_Combo]
) -> Candidate:
    """A combination that does not fit, planned on the whole machine at --context (or MIN_CONTEXT,
    the least it would be planned at), with what would make it fit."""
    ctx = opts.context or MIN_CONTEXT
    req = _request(combo, target, opts, gpus_per_node=target.gpus_per_node, nodes=target.nodes, context=ctx)
    c = _candidate(combo, target, req, estimate(req, solve_concurrency=False), fits=False, reason="")
    return replace(c, reason=_explain(c, combo, target, opts, fits, misses))


# --------------------------------------------------------------------------- commands


def _gpu_flags(c: Candidate, target: Target) -> list[str]:
    if c.cpu_plan or target.gpu is None:
        return []
    t = c.estimate.topology
    per_node = c.request.gpus_per_node
    whole = per_node == target.gpus_per_node and t.nodes == target.nodes
    if target.probed and not target.named_gpu:
        return []  # the probe of this machine gives the same GPUs (only whole-machine plans then)
    if target.probed and whole:
        return []
    flags = ["--gpu", f"{target.gpu.name}:{per_node}"]
    if t.nodes > 1:
        flags += ["--nodes", str(t.nodes)]
    return flags


def deploy_command(c: Candidate, target: Target, opts: Options) -> tuple[str, ...] | None:
    """The `vramplan deploy` command that starts `c` (None for a runtime no deploy target runs by
    itself, whose `vramplan estimate` command is given instead)."""
    to = dict(opts.deploy_targets).get(c.runtime)
    if to is None:
        return None
    args = ["vramplan", "deploy", c.variant.id, "--target", to, "--quant", c.quant.name]
    args += _gpu_flags(c, target)
    if c.estimate.host.total_bytes and c.request.host_memory_bytes is not None and c.request.cpu_moe_layers:
        # experts in host RAM: the deploy checks the RAM planned for, as the estimate command does
        args += ["--host-memory", size_text(c.request.host_memory_bytes)]
    args += ["--context", str(c.estimate.context)]
    if c.estimate.concurrency > 1:
        args += ["--concurrency", str(c.estimate.concurrency)]
    if c.request.gpu_layers is not None:
        args += ["--gpu-layers", str(c.request.gpu_layers)]
    if c.request.cpu_moe_layers:
        args += ["--n-cpu-moe", str(c.request.cpu_moe_layers)]
    return tuple(args)


def estimate_command(c: Candidate, target: Target) -> tuple[str, ...]:
    """The `vramplan estimate` command that prints `c`'s plan (without the headroom)."""
    args = ["vramplan", "estimate", c.variant.id, "--quant", c.quant.name, "--runtime", c.runtime.value]
    args += _gpu_flags(c, target)
    if c.estimate.host.total_bytes and c.request.host_memory_bytes is not None:
        # a plan that uses host RAM (a CPU plan or an offload) is checked against the RAM planned for
        args += ["--host-memory", size_text(c.request.host_memory_bytes)]
    args += ["--context", str(c.estimate.context)]
    if c.estimate.concurrency > 1:
        args += ["--concurrency", str(c.estimate.concurrency)]
    if c.request.gpu_layers is not None:
        args += ["--gpu-layers", str(c.request.gpu_layers)]
    if c.request.cpu_moe_layers:
        args += ["--n-cpu-moe", str(c.request.cpu_moe_layers)]
    return tuple(args)


# --------------------------------------------------------------------------- the entry point


def check_options(opts: Options, target: Target) -> None:
    if opts.context is not None and opts.context <= 0:
        raise PlanError(f"--context must be at least 1, got {opts.context}")
    if opts.concurrency <= 0:
        raise PlanError(f"--concurrency must be at least 1, got {opts.concurrency}")
    if opts.top <= 0:
        raise PlanError(f"--top must be at least 1, got {opts.top}")
    if opts.per_model < 0:
        raise PlanError(f"--per-model must be 0 (no limit) or more, got {opts.per_model}")
    if not 0 <= opts.headroom < 0.9:
        raise PlanError(f"--headroom must be at least 0 and below 90 %, got {opts.headroom * 100:g} %")
    if opts.runtimes and target.cpu_only and not any(rules_for(r).runs_on_host for r in opts.runtimes):
        names = " and ".join(r.value for r in opts.runtimes)
        need = "needs" if len(opts.runtimes) == 1 else "need"
        raise PlanError(f"{names} {need} a GPU and none was found; plan for one with --gpu NAME[:COUNT]")
    if opts.runtimes and target.gpu is not None and target.gpu.unified:
        if not any(rules_for(r).metal for r in opts.runtimes):
            names = " and ".join(r.value for r in opts.runtimes)
            raise PlanError(
                f"{names} {'has' if len(opts.runtimes) == 1 else 'have'} no Metal backend and cannot "
                f"use the GPU of {target.gpu.name} (Apple silicon); "
                "plan with --runtime llama.cpp or --runtime ollama"
            )
    if opts.runtimes and target.nodes > 1 and not any(rules_for(r).spans_nodes for r in opts.runtimes):
        names = " and ".join(r.value for r in opts.runtimes)
        raise PlanError(f"{names} run on one node; --nodes needs vllm or sglang")


def recommend(catalog: Catalog, target: Target, opts: Options) -> Recommendation:
    """Every combination planned for `target`, what fits ranked best first (at most opts.top), and the
    better options that do not fit, each with what would make it fit."""
    check_options(opts, target)
    combos, notes = _combos(catalog, target, opts)
    if not combos:
        raise PlanError(_nothing_to_plan(opts, target, notes))
    percent = opts.headroom * 100
    if 0 < percent < 1:  # a share written as a fraction (0.5 for half) is half a percent here
        also = f"; for {percent * 100:g} % write --headroom {percent * 100:g}" if percent * 100 < 90 else ""
        notes.append(f"--headroom is in percent: {percent:g} keeps {percent:g} % free{also}")
    fits: list[Candidate] = []
    misses: list[_Combo] = []
    # Quality ranks first, so variants are planned best first, and once --top rows are filled the
    # variants of lower quality cannot change what is shown: they are not planned (`complete` False).
    levels: dict[float, list[_Combo]] = {}
    for combo in combos:
        levels.setdefault(combo.quality if combo.quality is not None else -1.0, []).append(combo)
    planned = 0
    complete = True
    for n, quality in enumerate(sorted(levels, reverse=True)):
        for combo in levels[quality]:
            ok, missed = _plan(combo, target, opts)
            planned += 1
            fits += ok
            if missed:
                misses.append(combo)
        if n < len(levels) - 1 and len(_rows(sorted(fits, key=rank_key), opts.per_model)) >= opts.top:
            complete = False
            break
    fits.sort(key=rank_key)
    rows = _rows(fits, opts.per_model)
    shown = [_with_deploy_commands(c, target, opts) for c in rows[: opts.top]]
    chosen = _misfits_to_explain(misses, shown, fits)
    explained = tuple(_misfit(m, target, opts, fits, misses) for m in chosen)
    return Recommendation(
        target=target,
        options=opts,
        candidates=tuple(shown),
        misfits=explained,
        fitting=len(fits),
        rows=len(rows),
        planned=planned,
        complete=complete,
        notes=tuple(notes),
    )


def _nothing_to_plan(opts: Options, target: Target, notes: list[str]) -> str:
    """Why the filters left no variant x quantization x runtime to plan, as one line."""
    asked = [
        f"{flag} {', '.join(values)}"
        for flag, values in (
            ("--model", opts.models),
            ("--quant", opts.quants),
            ("--runtime", tuple(r.value for r in opts.runtimes)),
        )
        if values
    ]
    where = ""
    if target.cpu_only:
        where = " on a machine without a GPU (vllm and sglang need one; plan for one with --gpu NAME[:COUNT])"
    why = f" ({'; '.join(notes)})" if notes else ""
    return (
        f"nothing to plan: no quantization runs with {' and '.join(asked) or 'these settings'}{where}{why}; "
        "drop or change a filter"
    )


def _rows(fits: list[Candidate], per_model: int) -> list[Candidate]:
    """One row per variant and quantization class (quant_rank: bf16 and f16 are one class, AWQ and
    NVFP4 another), its best plan with the others as alternatives, and at most `per_model` rows per
    variant (0: no limit). `fits` is ranked."""
    rows: list[Candidate] = []
    where: dict[tuple[str, int], int] = {}
    per_variant: dict[str, int] = {}
    for c in fits:
        key = (c.variant.id, c.quant_rank)
        if key in where:
            i = where[key]
            rows[i] = replace(rows[i], alternatives=(*rows[i].alternatives, c))
            continue
        if per_model and per_variant.get(c.variant.id, 0) >= per_model:
            continue
        per_variant[c.variant.id] = per_variant.get(c.variant.id, 0) + 1
        where[key] = len(rows)
        rows.append(c)
    return rows


def _article(word: str) -> str:
    return "an" if word[:1] in "8aeiou" else "a"


def headroom_from_percent(percent: float) -> float:
    """`--headroom 10` -> 0.10 (at least 0, below 90 %)."""
    if not 0 <= percent < 90:
        raise PlanError(f"--headroom must be at least 0 and below 90 (percent), got {percent:g}")
    return percent / 100


def bytes_from_gib(gib: float | None, flag: str) -> int | None:
    """A size given in GiB on the command line, in bytes."""
    if gib is None:
        return None
    if not math.isfinite(gib) or gib <= 0:
        raise PlanError(f"{flag} must be a positive size in GiB, got {gib:g}")
    return int(gib * GiB)
