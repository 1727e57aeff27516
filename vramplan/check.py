"""`vramplan check`: a runtime's startup log beside the estimate for the settings it states.

`check_log(catalog, parsed, ...)` identifies the model (vramplan.logs.identify), turns the settings the
log states into the same `Choices` the CLI makes (and the machine the log ran on), builds the `Request`
through `vramplan.request.build_request` with the rules of the log's runtime version, runs `estimate`,
and pairs each measured part with the
estimate's part. Error = (estimate - measured) / measured; a difference within the log's own rounding
(half a unit of the last digit printed) counts as 0.

Which parts each runtime's log gives, and what they are compared with (docs/check.md):
- llama.cpp / Ollama: model, KV and compute buffers, summed over the GPUs and over the host buffers,
  against the estimate's weights, KV cache and compute buffer on the GPUs and on the host.
- vLLM: "Model loading took" (weights per GPU); "Available KV cache memory" (the KV pool per GPU)
  against usable - weights - activations - overhead; "GPU KV cache size" (tokens) and the pool give
  the KV bytes per token per GPU; "Maximum concurrency".
- SGLang: "Load weight end ... mem usage" (weights per GPU); "KV Cache is allocated" (the pool per
  GPU and its tokens: KV bytes per token per GPU; the pool against mem_fraction_static x total - weights).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from vramplan.arch import Architecture
from vramplan.catalog import Catalog, Resolved
from vramplan.errors import PlanError
from vramplan.estimate import Estimate, Request, estimate, token_embedding_bytes
from vramplan.hardware import GPUChoice, GPUSpec, Machine, ProbedGPU, spec_for_nvml_name
from vramplan.logs.identify import Identified, identify
from vramplan.logs.types import (
    GGML_KV_TYPES,
    TORCH_KV_TYPES,
    Buffer,
    Figure,
    ParsedLog,
    Settings,
    ggml_kv_dtype,
)
from vramplan.precision import KVDtype
from vramplan.request import Choices, build_request
from vramplan.runtimes import BatchShape, Device, KVLayout, RunSettings, Runtime, rules_for
from vramplan.runtimes.llamacpp import DEFAULT_FLASH_ATTN, LLAMA_CPP_UBATCH, mla_layout_from_k
from vramplan.runtimes.ollama import (
    AUTO_PARALLEL,
    PLANNER_BATCH,
    OllamaRules,
    assumed_version,
    planner_graph_bytes,
    planner_kv_bytes,
)
from vramplan.runtimes.sglang import SGLangRules
from vramplan.runtimes.vllm import (
    V0_CHUNKED_PREFILL_ABOVE,
    V0_REMOVED,
    VLLMRules,
    activation_bytes_v0,
    v0_profile_batch,
    vllm_non_torch_bytes,
)

# How far a part may miss its measurement and still count as met, per kind of part: issue 9's
# tolerances, stated in docs/accuracy.md; the corpus benchmark (benchmarks/corpus.py) and
# `deploy --launch`'s verification (deploy/verify.py) both judge by them.
TOLERANCES = {
    "weights": 0.03,
    "KV cache": 0.03,
    "KV per token": 0.03,
    "KV pool": 0.10,
    "KV tokens": 0.10,
    "max concurrency": 0.10,
    "compute buffer": 0.25,
}


@dataclass(frozen=True)
class PartCheck:
    """One measured figure beside the estimate's value of the same thing."""

    part: str  # "weights", "KV cache", "compute buffer", "KV pool", "KV per token", ...
    scope: str  # "GPUs", "host", "GPU 0", "each GPU", "engine"
    unit: str  # "bytes", "bytes/token", "tokens", "requests"
    measured: float
    estimate: float
    error: float  # (estimate - measured) / measured; 0 within the log's rounding
    measured_text: str  # as the log prints it
    line: int | None  # where in the log


@dataclass(frozen=True)
class CheckResult:
    path: str
    log: ParsedLog
    identified: Identified
    request: Request
    estimate: Estimate
    settings: tuple[tuple[str, str, str], ...]  # (setting, value, where it came from)
    parts: tuple[PartCheck, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)


# ------------------------------------------------------------------------------------------ request


def _kv_dtype(log: ParsedLog, notes: list[str]) -> KVDtype:
    """The log's KV cache type, as its reader mapped it (`Settings.kv_dtype`); the runtime's default
    when the log states none; an error for a type vramplan does not model."""
    s = log.settings
    ggml = log.runtime.is_ggml
    stated = s.type_k if ggml else s.kv_cache_dtype
    if stated is not None and s.kv_dtype is None:
        known = ", ".join(GGML_KV_TYPES if ggml else TORCH_KV_TYPES)
        what = "KV cache type" if ggml else "kv_cache_dtype"
        raise PlanError(f"the log's {what} {stated.lower()!r} is not one vramplan models ({known})")
    dtype = s.kv_dtype or (KVDtype.FP16 if ggml else KVDtype.AUTO)
    if ggml and s.type_v and ggml_kv_dtype(s.type_v) is not dtype and not s.v_cache_empty:
        notes.append(
            f"K cache {stated or 'f16'} and V cache {s.type_v}: the estimate uses {stated or 'f16'} for both"
        )
    return dtype


def _gpu_devices(log: ParsedLog) -> list[str]:
    names = [
        b.device for b in (*log.weights, *log.kv, *log.compute) if not b.host and b.device != "all devices"
    ]
    return list(dict.fromkeys(names))


def _gpu_from_log(log: ParsedLog) -> GPUSpec | None:
    name = log.settings.gpu_name
    return spec_for_nvml_name(name) if name else None


def _machine_from_log(name: str | None, total: int, count: int) -> Machine:
    """The machine a log describes when it states each GPU's memory but not a card vramplan knows (vLLM
    V0's total_gpu_memory, Ollama's total=): the probe's own spec for an unknown card is made from it."""
    gpus = tuple(
        ProbedGPU(
            index=i,
            name=name or "the log's GPU",
            memory_total_bytes=total,
            memory_free_bytes=total,
            spec=None,
        )
        for i in range(count)
    )
    return Machine(gpus=gpus, host_memory_bytes=None, cpu_cores=None)


def choices_from_log(
    log: ParsedLog, ident: Identified, gpu: GPUChoice | None
) -> tuple[Choices, Machine | None, list[tuple[str, str, str]], list[str]]:
    """The `Choices` the CLI would make for what the log states, and the machine it ran on (None: not
    known); the settings used and where each came from; notes."""
    s, arch = log.settings, ident.variant.architecture
    used: list[tuple[str, str, str]] = []
    notes: list[str] = []
    rt = log.runtime

    def note(name: str, value: object, source: str) -> None:
        used.append((name, str(value), source))

    version = _ollama_version(log, note) if rt is Runtime.OLLAMA else log.version
    if version is None and not rt.is_ggml:
        version, why = _torch_version_bound(log)
        note(f"{rt.value} version", rules_for(rt, version).version_words, why)
    rules = rules_for(rt, version)
    derived = isinstance(rules, OllamaRules) and s.context is None  # _ollama_context lists its own
    if isinstance(rules, OllamaRules) and derived:
        s = _ollama_context(log, ident, rules, note, notes)
    context = s.context
    if context is not None:
        if not derived:
            note("context", context, "the log")
        if context > arch.max_position_embeddings:
            notes.append(
                f"the log's context {context} exceeds the model's {arch.max_position_embeddings}; capped"
            )
            context = arch.max_position_embeddings
    concurrency = 1
    if rt.is_ggml and s.parallel:
        concurrency = s.parallel
        if not derived:
            note("parallel sequences", concurrency, "the log")
    kv = _kv_dtype(log, notes)
    note("KV cache type", kv.value, "the log" if (s.type_k or s.kv_cache_dtype) else "the runtime's default")
    spec: GPUSpec | None = gpu.spec if gpu else _gpu_from_log(log)
    count = gpu.count if gpu else None
    by_total = False
    if gpu is not None:
        note("GPU", f"{gpu.spec.name} x {gpu.count}", "--gpu")
    elif spec is not None:
        note("GPU", spec.name, f"the log: {s.gpu_name}")
    elif s.gpu_total is not None:
        by_total = True
        note("GPU", f"{s.gpu_total.text} each", "the log")
    elif s.gpu_name:
        notes.append(
            f"the log's GPU {s.gpu_name!r} is not in vramplan's GPU table; give --gpu for capacities"
        )
    tp = pp = None
    util: float | None = None
    gpu_layers = None
    layout = None
    run: RunSettings | None = None
    cpu_moe = 0
    if rt.is_ggml:
        devices = _gpu_devices(log)
        if count is None:
            count = len(devices) or (s.gpus or 0)
        if count == 0:
            note("devices", "host only (no GPU buffers in the log)", "the log")
        else:
            note("GPUs", count, "--gpu" if gpu else "the log")
        if s.gpu_layers is not None and s.layers_total is not None and s.gpu_layers < s.layers_total:
            gpu_layers = s.gpu_layers
            note("GPU layers", f"{s.gpu_layers}/{s.layers_total}", "the log")
        elif s.gpu_layers is None and rt is Runtime.LLAMA_CPP and (k := _blocks_by_kv_split(log, arch)):
            # no offload lines: the KV buffers per device say how many blocks sit on the GPUs (each
            # block's KV lives with the block); `k` blocks there, the output layer on the CPU
            s = replace(s, gpu_layers=k, gpu_repeating_layers=k, output_on_gpu=False)
            gpu_layers = k
            note("GPU layers", f"{k} of {arch.num_hidden_layers} blocks", "the log's KV buffers per device")
        if arch.is_mla and ident.quant.gguf_mla and s.v_cache_empty is False:
            layout = KVLayout.MLA_KV  # an MLA GGUF on llama.cpp before PR 19067 cached V as well
        if s.flash_attn is not None:
            note("flash attention", "on" if s.flash_attn else "off", "the log")
        elif isinstance(rules, OllamaRules):
            s = replace(s, flash_attn=rules.default_flash_attn(arch))
            note(
                "flash attention",
                "on" if s.flash_attn else "off",
                f"assumed: Ollama {version or 'current'}'s default without OLLAMA_FLASH_ATTENTION",
            )
        else:
            fa, why = _llamacpp_default_flash_attn(log)
            s = replace(s, flash_attn=fa)
            note("flash attention", "on" if fa else "off", why)
        if rt is Runtime.LLAMA_CPP:
            run, layout_read, context, cpu_moe = _llamacpp_run(
                replace(log, settings=s), arch, kv, context, note, notes
            )
            layout = layout_read or layout
    else:
        tp, pp = s.tp or 1, s.pp or 1
        note("tensor parallel", tp, "the log" if s.tp else "default")
        note("pipeline parallel", pp, "the log" if s.pp else "default")
        if gpu is not None and gpu.count > 1 and gpu.count < tp * pp:
            notes.append(
                f"--gpu {gpu.spec.name}:{gpu.count} names fewer GPUs than the log's tensor x pipeline "
                f"parallel {tp * pp}; the estimate is for {tp * pp}"
            )
        count = max(count or 1, tp * pp)  # `--gpu h200` names the card; the log says how many
        util = s.gpu_memory_utilization
        if util is not None:
            note("gpu_memory_utilization", util, "the log")
        elif rules.gpu_memory_utilization != rules_for(rt).gpu_memory_utilization:
            util = rules.gpu_memory_utilization  # this version's default, not today's
            note(
                "gpu_memory_utilization", util, f"assumed: the default of {rules.label} {rules.version_words}"
            )
        elif rules.gpu_memory_utilization is not None:
            note(
                "gpu_memory_utilization",
                rules.gpu_memory_utilization,
                f"assumed: the default of {rules.label} {rules.version_words}",
            )
        if s.mem_fraction_static is not None:
            note("mem_fraction_static", s.mem_fraction_static, "the log")
    machine: Machine | None = None
    choice: GPUChoice | None = None
    if count == 0:
        machine = Machine(gpus=(), host_memory_bytes=None, cpu_cores=None)  # no GPU: host RAM only
    elif by_total:
        assert s.gpu_total is not None and count is not None
        machine = _machine_from_log(s.gpu_name, s.gpu_total.bytes, count)
    elif spec is not None:
        choice = GPUChoice(spec, max(count or 1, 1))
    choices = Choices(
        model=ident.variant.id,
        runtime=rt,
        context=context,
        concurrency=concurrency,
        kv_cache_dtype=kv,
        gpu=choice,
        tp=tp,
        pp=pp,
        kv_layout=layout,
        flash_attn=s.flash_attn if s.flash_attn is not None else True,
        gpu_layers=gpu_layers,
        cpu_moe_layers=cpu_moe,
        gpu_count=max(count or 1, 1) if choice is None and machine is None else None,
        # a runtime without the setting (its rules have no default for it) ignores a stated value
        gpu_memory_utilization=util if rules.gpu_memory_utilization is not None else None,
        runtime_version=version,
        run=run,
    )
    return choices, machine, used, notes


# ------------------------------------------------------------------------------------------ Ollama


def _ollama_version(log: ParsedLog, note: Callable[[str, object, str], None]) -> str | None:
    """The log's Ollama version; when it prints none, the newest release its planner line's wording and
    its date allow (runtimes.ollama.assumed_version), listed as assumed."""
    if log.version is not None:
        return log.version
    version = assumed_version(log.format_versions, log.date)
    if version is not None:
        lo, hi = log.format_versions
        why = [f"its line formats ({lo or 'any'} to {hi or 'current'})"] if lo or hi else []
        if log.date:
            why.append(f"its date {log.date}")
        note("Ollama version", f"{version} rules", f"assumed: the newest allowed by {' and '.join(why)}")
    else:
        note("Ollama version", "current releases", "assumed: the log prints no version")
    return version


def _planner_cells(log: ParsedLog, per_token: int) -> int | None:
    """num_ctx x parallel from the planner's KV figure: of the cell counts whose KV rounds to the printed
    figure, the one with the largest power-of-two factor (users and defaults pick round contexts)."""
    if not log.kv or per_token <= 0:
        return None
    fig = log.kv[0].figure
    lo = max(1, -(-(2 * fig.bytes - fig.resolution) // (2 * per_token)))
    hi = (2 * fig.bytes + fig.resolution) // (2 * per_token)
    if lo > hi:
        return max(1, round(fig.bytes / per_token))
    return max(range(lo, hi + 1), key=lambda n: ((n & -n), -abs(n * per_token - fig.bytes)))


def _ollama_context(
    log: ParsedLog,
    ident: Identified,
    rules: OllamaRules,
    note: Callable[[str, object, str], None],
    notes: list[str],
) -> Settings:
    """The context and parallel sequences of an Ollama log that prints no runner command: num_ctx x
    parallel from the planner's KV (memory.required.kv = cells x the KV bytes per token,
    fs/ggml/ggml.go GraphSize), else this version's defaults, each listed with where it came from."""
    s, arch = log.settings, ident.variant.architecture
    layout = rules.kv_layout(arch, ident.quant.gguf_mla)
    kv_type = (s.type_k or "f16").lower()
    per_token = planner_kv_bytes(arch, layout, 1, kv_type)
    cells = _planner_cells(log, per_token) if log.planner else None
    num_ctx = rules.default_context(arch, s.gpu_total.bytes if s.gpu_total else None)
    ver = f"Ollama {rules.version_text or 'current'}"
    partial = s.gpu_layers is not None and s.layers_total is not None and s.gpu_layers < s.layers_total
    # OLLAMA_NUM_PARALLEL's default: auto (4 for a model that fits whole with 4, else 1; server/sched.go
    # pickBestFullFitByLibrary / pickBestPartialFitByLibrary) up to v0.9.6, 1 from v0.10.0
    if s.parallel is not None:
        defaults, par_src = [s.parallel], "the log"
    elif rules.default_parallel == 0:
        defaults = [1] if partial else [AUTO_PARALLEL, 1]
        par_src = f"assumed: {ver}'s automatic parallel" + (" (1 for a partial offload)" if partial else "")
    else:
        defaults, par_src = [rules.default_parallel], f"assumed: {ver}'s OLLAMA_NUM_PARALLEL default"
    if cells is not None:
        fig = log.kv[0].figure
        note(
            "num_ctx x parallel",
            cells,
            f"the planner's KV {fig.text} / {per_token:,} bytes per token",
        )
        parallel = next((p for p in defaults if cells == num_ctx * p), None)
        if parallel is not None:
            agree = f"as {ver}'s default num_ctx {num_ctx} x parallel {parallel} gives"
        else:
            parallel = s.parallel or 1
            par_src = "the log" if s.parallel else "assumed: the planner's figures depend on the product only"
            agree = (
                f"not {ver}'s default num_ctx {num_ctx} x parallel {' or '.join(map(str, defaults))}: "
                "num_ctx or OLLAMA_NUM_PARALLEL was set"
            )
        note("parallel sequences", parallel, par_src)
        note("context", max(1, cells // parallel), "num_ctx x parallel / parallel")
        notes.append(
            f"num_ctx x parallel = {cells} follows from the planner's KV cache (llm/memory.go), {agree}; "
            "the KV cache is therefore not compared"
        )
        return replace(s, context=max(1, cells // parallel), parallel=parallel)
    parallel = defaults[-1]
    note("context", num_ctx, f"assumed: {ver}'s default num_ctx")
    note("parallel sequences", parallel, par_src + ("" if len(defaults) == 1 else ", read as 1"))
    return replace(s, context=num_ctx, parallel=parallel)


def _ollama_planner_parts(log: ParsedLog, req: Request, e: Estimate, notes: list[str]) -> list[PartCheck]:
    """Ollama's planner line (llm/memory.go) beside what that planner computes for the same settings
    (runtimes.ollama): its weights without the token embedding of an untied model, its unpadded KV
    cache, and its GraphSize graph on each GPU holding layers. vramplan's own estimate of what the
    runner allocates is given in a note."""
    arch = req.variant.architecture
    rules = rules_for(Runtime.OLLAMA, req.runtime_version)
    assert isinstance(rules, OllamaRules)
    layout = KVLayout(e.kv_layout)
    kv_type = {KVDtype.Q8_0: "q8_0", KVDtype.Q4_0: "q4_0"}.get(KVDtype(e.kv_cache_dtype), "f16")
    cells = e.context * e.concurrency
    kv = planner_kv_bytes(arch, layout, cells, kv_type)
    embd = 0 if arch.tie_word_embeddings else token_embedding_bytes(req.variant, req.quant)
    partial, full = planner_graph_bytes(arch, layout, cells, min(cells, PLANNER_BATCH), kv)
    s = log.settings
    gpus = [b for b in log.compute if not b.host and b.device != "all devices" and b.figure.bytes > 0]
    if s.gpu_layers is not None and s.layers_total is not None:
        full_offload = s.gpu_layers >= s.layers_total
    else:  # device lines (v0.12.11+): a layer or the output left on the CPU is a partial offload
        full_offload = not any(b.host and b.figure.bytes > 0 for b in log.weights)
    metal = any(b.device.startswith("Metal") for b in gpus)
    which = rules.planner_graph_reserved(full_offload, len(gpus), metal)
    graph = full if which == "full" else partial
    out: list[PartCheck] = []
    # without a context in the log, num_ctx x parallel came from the KV figure (_ollama_context): not a test
    kv_bufs = log.kv if log.settings.context is not None else ()
    for part, bufs, est in (
        ("weights", log.weights, e.weights_bytes - embd),
        ("KV cache", kv_bufs, kv),
        ("compute buffer", tuple(gpus) or log.compute, graph * max(len(gpus), 1)),
    ):
        if not bufs:
            continue
        total, res, text, line = _sum(list(bufs))
        names = ", ".join(dict.fromkeys(b.device for b in bufs))
        scope = f"planner, {names}"
        out.append(PartCheck(part, scope, "bytes", total, est, _error(total, est, res), text, line))
    notes.append(
        "the planner rows are beside Ollama's planner as vramplan computes it (llm/memory.go, fs/ggml "
        f"GraphSize: the {which}-offload graph per GPU"
        + (", weights without the token embedding" if embd else "")
        + f"); vramplan's estimate of what the runner allocates: weights {_gib(e.weights_bytes)}, "
        f"KV cache {_gib(e.kv_cache_bytes)}, compute buffer "
        f"{_gib(max((d.activation_bytes for d in e.per_gpu), default=e.host.activation_bytes))} per GPU"
    )
    return out


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.2f} GiB"


# ------------------------------------------------------------------------------------------ vLLM / SGLang


def _torch_version_bound(log: ParsedLog) -> tuple[str | None, str]:
    """For a vLLM / SGLang log that prints no version: a release just before the first one that no
    longer printed its lines (PEP 440 `X.dev0` sorts before X and after every release before it), so its
    rules are those of the last releases the log can come from; and why. None: no bound known."""
    if log.engine == "V0":  # vLLM's V0 engine (Ollama's runner names are "ollama" / "llama")
        return f"{V0_REMOVED}.dev0", "assumed: the log prints no version; its lines are the V0 engine's"
    if log.printed_before is not None:
        return f"{log.printed_before}.dev0", "assumed: the log prints no version; its line formats"
    return None, "assumed: the log prints no version and its lines bound none"


# ------------------------------------------------------------------------------------------ llama.cpp


def _blocks_by_kv_split(log: ParsedLog, arch: Architecture) -> int | None:
    """The blocks on the GPUs when a log without offload lines splits its KV buffers between the host
    and GPUs: n_layer x GPU KV / all KV, when that is a whole number (within the log's rounding)."""
    gpu = sum(b.figure.bytes for b in log.kv if not b.host and b.device != "all devices")
    host = sum(b.figure.bytes for b in log.kv if b.host)
    if not gpu or not host:
        return None
    blocks = arch.num_hidden_layers * gpu / (gpu + host)
    k = round(blocks)
    resolution = max((b.figure.resolution for b in log.kv), default=0)
    per_block = (gpu + host) / arch.num_hidden_layers
    if 0 < k < arch.num_hidden_layers and abs(blocks - k) * per_block <= resolution:
        return k
    return None


def _llamacpp_default_flash_attn(log: ParsedLog) -> tuple[bool, str]:
    """Flash attention for a llama.cpp log that does not print it: the default of its build
    (runtimes.llamacpp.DEFAULT_FLASH_ATTN), from the build line, else from line prefixes that only builds
    before a bound printed; else the current default. Listed as assumed, with why."""
    v_type = (log.settings.type_v or "f16").lower()
    if v_type not in ("f16", "f32", "bf16") and not log.settings.v_cache_empty:
        # llama-context.cpp refuses a quantized V cache without flash attention ("V cache quantization
        # requires flash_attn"), so a log that allocated one ran with it
        return True, f"the log's {v_type} V cache, which llama.cpp allocates only with flash attention"
    if log.version is not None:
        return DEFAULT_FLASH_ATTN.at(log.version), f"assumed: the default of build {log.version}"
    if log.printed_before is not None:
        before = f"b{int(log.printed_before) - 1}"
        return (
            DEFAULT_FLASH_ATTN.at(before),
            f"assumed: the default before build b{log.printed_before} (the log's line prefixes are older)",
        )
    return DEFAULT_FLASH_ATTN.at(None), "assumed: the current default"


def _llamacpp_run(
    log: ParsedLog,
    arch: Architecture,
    kv: KVDtype,
    context: int | None,
    note: Callable[[str, object, str], None],
    notes: list[str],
) -> tuple[RunSettings, KVLayout | None, int | None, int]:
    """What a llama.cpp log states beyond the CLI's choices, read with the rules of its build (see
    vramplan/runtimes/llamacpp.py): the micro-batch, the KV streams, the logits rows, the MLA layout its
    K size shows and the routed experts a tensor override kept in host memory. A setting the log does
    not state is listed as assumed, with the value used."""
    s = log.settings
    if s.n_ubatch is not None:
        note("micro-batch (n_ubatch)", s.n_ubatch, "the log")
    else:
        note("micro-batch (n_ubatch)", LLAMA_CPP_UBATCH, "assumed: llama.cpp's default")
    unified = s.kv_unified
    if unified is not None:
        note("unified KV cache", "on" if unified else "off", "the log")
    else:
        unified = True  # one sequence: the same cells either way, so it is listed only for several
        if (s.parallel or 1) > 1:
            note("unified KV cache", "on", "assumed: one cache for all sequences before llama.cpp PR 14363")
    if unified and s.n_ctx is not None:
        context = s.n_ctx  # -c: the cells that every sequence shares
    elif unified and context is not None and s.parallel:
        context *= s.parallel
    if s.n_outputs_max is not None:
        note("logits rows reserved (n_outputs_max)", s.n_outputs_max, "the log")
    else:
        note("logits rows reserved", "every micro-batch token", "assumed: no n_outputs_max line")
    # -ngl N below n_layer + 1: "offloading N repeating layers" without the output layer is the placement
    # of early-2025 builds (the last N blocks); current builds offload the output layer and N - 1 blocks
    blocks_first = (
        s.gpu_layers is not None
        and s.gpu_repeating_layers == s.gpu_layers
        and s.output_on_gpu is False
        and s.gpu_layers <= arch.num_hidden_layers
    )
    if blocks_first:
        note(
            "-ngl placement",
            f"the last {s.gpu_layers} blocks, output layer on the CPU",
            "the log's offload lines",
        )
    run = RunSettings(
        n_ubatch=s.n_ubatch,
        kv_unified=unified,
        n_outputs_max=s.n_outputs_max,
        all_outputs=s.n_outputs_max is None,
        ngl_blocks_first=blocks_first,
    )
    layout = None
    if arch.is_mla and s.k_cache is not None and s.cells and s.kv_layers:
        layout = mla_layout_from_k(arch, s.k_cache.bytes, s.cells * (s.streams or 1), s.kv_layers, kv)
        if layout is KVLayout.MLA_LATENT and s.v_cache_empty is False:
            layout = KVLayout.MLA_KV
        if layout is not None:
            note("KV layout", layout.value, "the log's K size per cell and layer")
    cpu_moe = 0
    blocks = s.cpu_moe_blocks
    if blocks and arch.is_moe:
        n = max(blocks) + 1
        if set(blocks) == {i for i in range(n) if arch.is_moe_layer(i)}:
            cpu_moe = n
            note("routed experts in host memory", f"blocks below {n}", "the log's tensor overrides")
        else:
            notes.append("the log keeps the routed experts of some blocks in host memory; not modelled")
    return run, layout, context, cpu_moe


# ------------------------------------------------------------------------------------------ compare


def _experts_overridden(log: ParsedLog, req: Request, e: Estimate) -> bool:
    """A tensor override (-ot exps=CPU, llama.cpp PR 11397) that the log does not print per tensor (its
    builds before the `buffer type overridden` lines): every layer is offloaded, yet the GPU model
    buffers are nearer the estimate without the routed experts than the one with them. Only then can
    the experts have stayed in host memory; the weights compared are still the log's own buffers."""
    arch, s = req.variant.architecture, log.settings
    if not arch.is_moe or req.cpu_moe_layers or s.cpu_moe_blocks or req.gpu_layers is not None:
        return False
    gpu = sum(b.figure.bytes for b in log.weights if not b.host and b.device != "all devices")
    if not gpu or not e.per_gpu:
        return False
    without = estimate(replace(req, cpu_moe_layers=arch.num_hidden_layers), solve_context=False)
    lo = sum(g.weights_bytes for g in without.per_gpu)
    return gpu < (lo + sum(g.weights_bytes for g in e.per_gpu)) / 2  # nearer the experts-less plan


def _error(measured: float, est: float, resolution: float) -> float:
    """(est - measured) / |measured|: positive where the estimate is higher, also for a negative measured
    figure (vLLM's pool when the model does not fit); a measured 0 is taken as half its last printed
    digit, so the error stays finite (and JSON can carry it)."""
    if abs(est - measured) <= resolution / 2:
        return 0.0
    return (est - measured) / max(abs(measured), resolution / 2, 1e-9)


def _sum(bufs: list[Buffer]) -> tuple[int, int, str, int | None]:
    total = sum(b.figure.bytes for b in bufs)
    res = sum(b.figure.resolution for b in bufs)
    text = " + ".join(b.figure.text for b in bufs)
    return total, res, text, bufs[0].figure.line if bufs else None


def _ggml_parts(log: ParsedLog, e: Estimate) -> list[PartCheck]:
    out: list[PartCheck] = []
    gpus = e.per_gpu
    fields = (
        ("weights", "weights_bytes", log.weights),
        ("KV cache", "kv_cache_bytes", log.kv),
        ("compute buffer", "activation_bytes", log.compute),
    )
    for part, attr, bufs in fields:
        groups = {
            "GPUs": [b for b in bufs if not b.host and b.device != "all devices"],
            "host": [b for b in bufs if b.host],
            "all devices": [b for b in bufs if b.device == "all devices"],
        }
        for scope, group in groups.items():
            if not group:
                continue
            if scope == "GPUs":
                est = sum(getattr(d, attr) for d in gpus)
            elif scope == "host":
                if part == "compute buffer" and gpus:
                    continue  # the pinned host compute buffer beside GPUs is not modelled
                est = getattr(e.host, attr)
            else:
                est = sum(getattr(d, attr) for d in gpus) + getattr(e.host, attr)
            total, res, text, line = _sum(group)
            label = (
                f"{scope} ({', '.join(dict.fromkeys(b.device for b in group))})"
                if scope != "all devices"
                else scope
            )
            out.append(PartCheck(part, label, "bytes", total, est, _error(total, est, res), text, line))
    return out


def _per_rank(part: str, bufs: tuple[Buffer, ...], e: Estimate, attr: str) -> list[PartCheck]:
    """One row per GPU the log reports, consecutive GPUs with the same figures sharing a row ("GPU 0-7")."""
    rows: list[tuple[int, int, PartCheck]] = []
    for i, b in enumerate(bufs):
        tail = b.device.split()[-1].removeprefix("TP")
        idx = int(tail) if tail.isdigit() else i
        if idx >= len(e.per_gpu):
            continue
        est = getattr(e.per_gpu[idx], attr)
        f = b.figure
        row = PartCheck(
            part, f"GPU {idx}", "bytes", f.bytes, est, _error(f.bytes, est, f.resolution), f.text, f.line
        )
        if rows and rows[-1][1] == idx - 1 and (rows[-1][2].measured, rows[-1][2].estimate) == (f.bytes, est):
            first, _, prev = rows[-1]
            rows[-1] = (first, idx, replace(prev, scope=f"GPU {first}-{idx}"))
        else:
            rows.append((idx, idx, row))
    return [r for _, _, r in rows]


def _kv_per_token_gpu(e: Estimate) -> float:
    g = e.per_gpu[0] if e.per_gpu else e.host
    return g.kv_cache_bytes / e.kv_cells if e.kv_cells else 0.0


def _torch_parts(
    log: ParsedLog, req: Request, e: Estimate, arch: Architecture, notes: list[str]
) -> list[PartCheck]:
    out = _per_rank("weights", log.weights, e, "weights_bytes")
    per_token_est = _kv_per_token_gpu(e)
    g = e.per_gpu[0] if e.per_gpu else None
    pool_fig: Figure | None = (
        log.kv_available if log.runtime is Runtime.VLLM else (log.kv[0].figure if log.kv else None)
    )
    tokens = log.kv_tokens
    if pool_fig is not None and tokens:
        measured = pool_fig.bytes / tokens
        out.append(
            PartCheck(
                "KV per token", "GPU 0", "bytes/token", measured, per_token_est,
                _error(measured, per_token_est, pool_fig.resolution / tokens),
                f"{pool_fig.text} / {tokens:,} tokens", pool_fig.line,
            )
        )  # fmt: skip
    if g is None or g.usable_bytes is None or g.capacity_bytes is None:
        if pool_fig is not None:
            notes.append("no GPU capacity known: give --gpu NAME[:COUNT] to compare the KV pool")
        return out
    rules = rules_for(log.runtime, req.runtime_version)
    tp, pp = e.topology.tensor_parallel, e.topology.pipeline_parallel
    if isinstance(rules, VLLMRules):
        pool_est, engine_pool = _vllm_pools(log, req, e, arch, rules, out, notes)
    elif isinstance(rules, SGLangRules) and log.avail_before_weights:
        free = min(b.figure.bytes for b in log.avail_before_weights)
        frac = log.settings.mem_fraction_static
        if frac is None:
            frac = rules.default_mem_fraction_static(arch, Device(g.capacity_bytes), tp, pp)
            notes.append(
                f"mem_fraction_static not printed: {frac} assumed, SGLang's default at this release "
                f"({rules.default_fraction_rule}; {rules.default_fraction_source})"
            )
        pool_est = engine_pool = rules.kv_pool_from_free(free, g.weights_bytes, frac)
        notes.append(
            f"KV pool: mem_fraction_static {frac} x the log's smallest free memory before the weights "
            f"({free / (1 << 30):.2f} GiB) less the estimated weights (model_runner.py profile_max_num_token)"
        )
    else:
        pool = rules.kv_pool_bytes(
            arch, tp, g.capacity_bytes, g.weights_bytes, g.activation_bytes, g.overhead_bytes,
            utilization=req.gpu_memory_utilization,
            mem_fraction_static=log.settings.mem_fraction_static,
        )  # fmt: skip
        if pool is None:
            return out
        pool_est = engine_pool = pool
        notes.extend(rules.kv_pool_caveats())
    cap = log.settings.max_total_tokens
    if isinstance(rules, SGLangRules) and cap is not None and per_token_est:
        capped = rules.capped_pool(engine_pool, per_token_est, cap)
        if capped < engine_pool:
            notes.append(
                f"--max-total-tokens {cap:,} caps the KV pool below what the memory holds "
                f"({engine_pool / (1 << 30):.2f} GiB; model_runner.py init_memory_pool)"
            )
            pool_est = engine_pool = capped
    if pool_fig is not None:
        out.append(
            PartCheck(
                "KV pool",
                "GPU 0",
                "bytes",
                pool_fig.bytes,
                pool_est,
                _error(pool_fig.bytes, pool_est, pool_fig.resolution),
                pool_fig.text,
                pool_fig.line,
            )
        )
    if tokens and per_token_est:
        tok_est = int(max(engine_pool, 0) // per_token_est)
        if isinstance(rules, VLLMRules) and log.kv_tokens_from == "refusal" and log.engine == "V0" and pp > 1:
            block = rules.default_block
            tok_est = rules.v0_tokens_per_scheduler(tok_est // block, block, pp)
            notes.append(
                f"V0 refusal: each of the {pp} pipeline virtual engines schedules 1/{pp} of the blocks "
                f"(worker.py raise_if_cache_size_invalid), so the tokens it names are 1/{pp} of the pool's"
            )
        out.append(
            PartCheck(
                "KV tokens",
                "engine",
                "tokens",
                tokens,
                tok_est,
                _error(tokens, tok_est, 1),
                f"{tokens:,} tokens",
                None,
            )
        )
    if log.max_concurrency is not None and log.concurrency_len and per_token_est:
        # one full request: the cells the estimate gives a sequence of the log's length (block-padded)
        per_req = per_token_est * (e.kv_cells / e.concurrency) * log.concurrency_len / e.context
        conc_est = max(engine_pool, 0) / per_req
        out.append(
            PartCheck(
                "max concurrency", "engine", "requests", log.max_concurrency, round(conc_est, 2),
                _error(log.max_concurrency, round(conc_est, 2), 0.01),
                f"{log.max_concurrency:.2f}x for {log.concurrency_len:,} tokens", None,
            )
        )  # fmt: skip
    return out


def _vllm_pools(
    log: ParsedLog,
    req: Request,
    e: Estimate,
    arch: Architecture,
    rules: VLLMRules,
    out: list[PartCheck],
    notes: list[str],
) -> tuple[int, int]:
    """vLLM's KV pool on GPU 0 and the engine's (the smallest over the GPUs: V0 and V1 take the fewest
    blocks any worker can hold) with the rules of the log's release and engine, and the figures the
    log states in place of modelled ones: each GPU's total (cudaMemGetInfo's, below the spec sheet's) and
    the non-torch memory (which holds whatever else was on the GPU, by release: `non_torch_accounting`)."""
    s = log.settings
    tp, pp = e.topology.tensor_parallel, e.topology.pipeline_parallel
    accounting, source = rules.non_torch_accounting(log.engine)
    link = req.gpu.interconnect if req.gpu is not None else None
    planned_link = link
    if s.p2p is False and tp * pp > 1 and link != "pcie":
        link = "pcie"  # the log says the GPUs have no P2P: NCCL over PCIe, custom all-reduce off
        notes.append(
            "the log prints that custom all-reduce is off for lack of GPU P2P: non-torch memory of GPUs "
            "without NVLink taken (vllm_non_torch_bytes)"
        )
    pools: list[int] = []
    for i, g in enumerate(e.per_gpu):
        assert g.capacity_bytes is not None
        capacity = s.gpu_total.bytes if s.gpu_total is not None else g.capacity_bytes
        activations = g.activation_bytes
        if log.engine == "V0":
            batch = v0_profile_batch(e.context, s.max_num_batched_tokens, s.max_running_requests, arch.is_mla)
            samples = (i // tp) == pp - 1 and i % tp == 0  # the driver of the last pipeline stage
            activations = activation_bytes_v0(arch, tp, batch if samples else BatchShape(batch.tokens, 0))
        overhead = g.overhead_bytes
        if log.non_torch is not None:
            overhead += log.non_torch.bytes - vllm_non_torch_bytes(tp, pp, planned_link)
        elif link != planned_link:
            overhead += vllm_non_torch_bytes(tp, pp, link) - vllm_non_torch_bytes(tp, pp, planned_link)
        pool = rules.kv_pool_bytes(
            arch, tp, capacity, g.weights_bytes, activations, overhead, utilization=req.gpu_memory_utilization
        )
        assert pool is not None
        pools.append(pool)
        if i == 0 and log.activation_peak is not None:
            f = log.activation_peak
            out.append(
                PartCheck(
                    "activation peak", "GPU 0", "bytes", f.bytes, activations,
                    _error(f.bytes, activations, f.resolution), f.text, f.line,
                )
            )  # fmt: skip
    if s.gpu_total is not None:
        notes.append(f"usable memory: the log's total_gpu_memory {s.gpu_total.text} x gpu_memory_utilization")
    counted = (
        f"{rules.label} {rules.version_words} counts it {accounting} ({source})"
        if log.version is not None
        else "what it holds depends on the release, which the log does not print (other processes on the "
        "GPU count from 0.6.4 (PR 9352) and in V1 to 0.9.1; not in V0 from 0.6.5 (PR 10511) nor in V1 "
        "from 0.9.2 (PR 19312))"
    )
    if log.non_torch is not None:
        notes.append(f"non-torch memory: the log's {log.non_torch.text}, not modelled; {counted}")
    else:
        notes.append(
            f"non-torch memory modelled ({vllm_non_torch_bytes(tp, pp, link) / (1 << 30):.2f} GiB); {counted}"
        )
    if log.engine == "V0":
        b = v0_profile_batch(e.context, s.max_num_batched_tokens, s.max_running_requests, arch.is_mla)
        if s.max_num_batched_tokens is not None:
            why = "the log's max_num_batched_tokens"
        elif arch.is_mla:
            why = "max_model_len: V0 has no chunked prefill for MLA models"
        elif e.context > V0_CHUNKED_PREFILL_ABOVE:
            why = "V0's chunk: chunked prefill is on by default above 32K tokens"
        else:
            why = "max(max_model_len, 2048): chunked prefill is off by default up to 32K tokens"
        seqs = (
            "the log's max_num_seqs"
            if s.max_running_requests is not None
            else "assumed: V0's default max_num_seqs"
        )
        notes.append(
            f"activations: V0's profile run over {b.tokens:,} tokens ({why}) in {b.sequences} sequences "
            f"({seqs}); the sampling GPU then sorts {b.sequences} rows of logits for top-k / top-p "
            "(vLLM's pip wheels have no FlashInfer sampler; with it the sort and its peak do not happen)"
        )
    notes.extend(rules.kv_pool_caveats())
    return pools[0], min(pools)


def check_log(
    catalog: Catalog,
    log: ParsedLog,
    path: str,
    *,
    model: str | None = None,
    quant: str | None = None,
    gpu: GPUChoice | None = None,
) -> CheckResult:
    ident = identify(catalog, log, model, quant)
    choices, machine, used, notes = choices_from_log(log, ident, gpu)
    req = build_request(catalog, choices, machine, resolved=Resolved(ident.variant, ident.quant, "log"))
    est = estimate(req)
    if log.runtime is Runtime.LLAMA_CPP and _experts_overridden(log, req, est):
        req = replace(req, cpu_moe_layers=req.variant.architecture.num_hidden_layers)
        est = estimate(req)
        used.append(
            (
                "routed experts in host memory",
                "all blocks",
                "inferred: the GPU model buffers hold less than the model without its routed experts",
            )
        )
    notes = list(log.notes) + notes
    if log.runtime is Runtime.OLLAMA and log.planner:
        parts = _ollama_planner_parts(log, req, est, notes)
    elif log.runtime.is_ggml:
        parts = _ggml_parts(log, est)
        if log.settings.cells is not None:
            streams = log.settings.streams or 1
            cells = log.settings.cells * streams
            if cells != est.kv_cells:
                notes.append(f"llama.cpp allocated {cells} KV cells; the estimate {est.kv_cells}")
    else:
        parts = _torch_parts(log, req, est, ident.variant.architecture, notes)
    if not parts:
        raise PlanError("the log's memory lines have nothing the estimate can be compared with")
    if log.planner:
        notes.append("compare with care: Ollama's prediction is itself an estimate")
    return CheckResult(path, log, ident, req, est, tuple(used), tuple(parts), tuple(dict.fromkeys(notes)))
