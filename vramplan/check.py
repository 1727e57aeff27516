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
from vramplan.estimate import Estimate, Request, estimate
from vramplan.hardware import GPUChoice, GPUSpec, Machine, ProbedGPU, spec_for_nvml_name
from vramplan.logs.identify import Identified, identify
from vramplan.logs.types import Buffer, Figure, ParsedLog
from vramplan.precision import KVDtype
from vramplan.request import Choices, build_request
from vramplan.runtimes import KVLayout, RunSettings, Runtime, rules_for
from vramplan.runtimes.llamacpp import LLAMA_CPP_UBATCH, mla_layout_from_k


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

_GGML_KV = {"f16": KVDtype.FP16, "bf16": KVDtype.BF16, "q8_0": KVDtype.Q8_0, "q4_0": KVDtype.Q4_0}
_TORCH_KV = {
    "auto": KVDtype.AUTO,
    "fp8": KVDtype.FP8,
    "fp8_e4m3": KVDtype.FP8,
    "fp8_e5m2": KVDtype.FP8,
    "bf16": KVDtype.BF16,
    "bfloat16": KVDtype.BF16,
    "fp16": KVDtype.FP16,
    "float16": KVDtype.FP16,
    "half": KVDtype.FP16,
}


def _kv_dtype(log: ParsedLog, notes: list[str]) -> KVDtype:
    s = log.settings
    if log.runtime.is_ggml:
        t = (s.type_k or "f16").lower()
        if t not in _GGML_KV:
            raise PlanError(
                f"the log's KV cache type {t!r} is not one vramplan models (f16, bf16, q8_0, q4_0)"
            )
        if s.type_v and s.type_v.lower() != t and not s.v_cache_empty:
            notes.append(f"K cache {t} and V cache {s.type_v}: the estimate uses {t} for both")
        return _GGML_KV[t]
    t = (s.kv_cache_dtype or "auto").lower().replace("torch.", "")
    if t not in _TORCH_KV:
        raise PlanError(f"the log's kv_cache_dtype {t!r} is not one vramplan models (auto, fp8, bf16, fp16)")
    return _TORCH_KV[t]


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
    rules = rules_for(rt, log.version)

    def note(name: str, value: object, source: str) -> None:
        used.append((name, str(value), source))

    context = s.context
    if context is not None:
        note("context", context, "the log")
        if context > arch.max_position_embeddings:
            notes.append(
                f"the log's context {context} exceeds the model's {arch.max_position_embeddings}; capped"
            )
            context = arch.max_position_embeddings
    concurrency = 1
    if rt.is_ggml and s.parallel:
        concurrency = s.parallel
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
        if arch.is_mla and ident.quant.gguf_mla and s.v_cache_empty is False:
            layout = KVLayout.MLA_KV  # an MLA GGUF on llama.cpp before PR 19067 cached V as well
        if s.flash_attn is not None:
            note("flash attention", "on" if s.flash_attn else "off", "the log")
        else:
            note("flash attention", "on", "assumed: the current default")
        if rt is Runtime.LLAMA_CPP:
            run, layout_read, context, cpu_moe = _llamacpp_run(log, arch, kv, context, note, notes)
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
            note("gpu_memory_utilization", util, f"{rules.label} {log.version}'s default")
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
        runtime_version=log.version,
        run=run,
    )
    return choices, machine, used, notes


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
    if abs(est - measured) <= resolution / 2:
        return 0.0
    return (est - measured) / measured if measured else float("inf")


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
    rules = rules_for(log.runtime, log.version)
    pool = rules.kv_pool_bytes(
        arch,
        e.topology.tensor_parallel,
        g.capacity_bytes,
        g.weights_bytes,
        g.activation_bytes,
        g.overhead_bytes,
        utilization=req.gpu_memory_utilization,
        mem_fraction_static=log.settings.mem_fraction_static,
    )
    if pool is None:
        return out
    pool_est = pool
    notes.extend(rules.kv_pool_caveats())
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
        tok_est = pool_est // per_token_est
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
        conc_est = pool_est / per_req
        out.append(
            PartCheck(
                "max concurrency", "engine", "requests", log.max_concurrency, round(conc_est, 2),
                _error(log.max_concurrency, round(conc_est, 2), 0.01),
                f"{log.max_concurrency:.2f}x for {log.concurrency_len:,} tokens", None,
            )
        )  # fmt: skip
    return out


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
    if log.runtime.is_ggml:
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
