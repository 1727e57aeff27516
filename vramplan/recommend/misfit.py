"""Explaining a better option that does not fit: a shorter context, more GPUs or nodes, a smaller
quantization, each from concrete estimates."""

from __future__ import annotations

import math
from dataclasses import replace

from vramplan.errors import PlanError
from vramplan.estimate import Estimate, estimate
from vramplan.recommend.machine import GiB, PlannedMachine
from vramplan.recommend.options import MAX_NODES, MIN_CONTEXT, Candidate, Options
from vramplan.recommend.plan import Combo, make_candidate, plan_request, quick
from vramplan.recommend.quality import RANK_LABELS, RUNTIME_ORDER
from vramplan.runtimes import rules_for


def _fits_with(combo: Combo, machine: PlannedMachine, opts: Options, gpus_per_node: int, nodes: int) -> bool:
    ctx = opts.context or MIN_CONTEXT
    try:
        return bool(
            quick(
                plan_request(combo, machine, opts, gpus_per_node=gpus_per_node, nodes=nodes, context=ctx)
            ).fits
        )
    except PlanError:
        return False


def _more_hardware(
    est: Estimate, combo: Combo, machine: PlannedMachine, opts: Options
) -> tuple[int, str] | None:
    """The least hardware of the same GPU that fits (more GPUs in the node, then more nodes), as
    (GPUs in all, words); None when more of this GPU cannot hold it."""
    gpu = machine.gpu
    if gpu is None:
        return None
    g, nodes = machine.gpus_per_node, machine.nodes
    per_gpu = est.per_gpu[0].usable_bytes or 1
    need = max(1, math.ceil((est.weights_bytes - est.host.weights_bytes) / per_gpu))
    if nodes == 1:
        for k in range(max(g + 1, min(need, gpu.max_per_node)), gpu.max_per_node + 1):
            if _fits_with(combo, machine, opts, k, 1):
                return k, f"fits on {k} x {gpu.name} (--gpu {gpu.name}:{k})"
    if not rules_for(combo.runtime).spans_nodes:
        return None
    full = gpu.max_per_node
    first = max(nodes + 1 if g == full else 2, math.ceil(need / full))
    for n in range(first, MAX_NODES + 1):
        if _fits_with(combo, machine, opts, full, n):
            flags = f"--nodes {n}" if g == full else f"--gpu {gpu.name}:{full} --nodes {n}"
            return n * full, f"needs {n} nodes of {gpu.name}:{full} ({flags})"
    return None


def _smaller_quant(
    c: Candidate,
    combo: Combo,
    machine: PlannedMachine,
    opts: Options,
    fits: list[Candidate],
    misses: list[Combo],
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
    if machine.gpu is None:
        return None
    own = _more_hardware(c.estimate, combo, machine, opts)
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
        req = plan_request(
            m, machine, opts, gpus_per_node=machine.gpus_per_node, nodes=machine.nodes, context=ctx
        )
        try:
            need = _more_hardware(quick(req), m, machine, opts)
        except PlanError:
            continue
        if need is not None and need[0] < limit:
            label = RANK_LABELS.get(m.rank, "smaller")
            return f"{_article(label)} {label} quantization: {m.quant.name} on {m.runtime.value} {need[1]}"
    return None


def _explain(
    c: Candidate,
    combo: Combo,
    machine: PlannedMachine,
    opts: Options,
    fits: list[Candidate],
    misses: list[Combo],
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
    more = _more_hardware(est, combo, machine, opts)
    if more:
        parts.append(more[1])
    elif machine.gpu is not None and rules_for(combo.runtime).spans_nodes:
        parts.append(
            f"does not fit even on {MAX_NODES} nodes of {machine.gpu.name}:{machine.gpu.max_per_node}"
        )
    smaller = _smaller_quant(c, combo, machine, opts, fits, misses)
    if smaller:
        parts.append(smaller)
    elif est.cpu_plan:
        parts.append("a GPU, or more host RAM")
    if not parts:
        return need
    return f"{need}; " + ", or ".join(parts)


def misfits_to_explain(misses: list[Combo], shown: list[Candidate], fits: list[Candidate]) -> list[Combo]:
    """One misfit per variant worth knowing about: a variant scored at least as high as the lowest
    candidate shown (or any variant when nothing fits), its best quantization that does not fit, when that
    quantization ranks above the variant's best fitting one."""
    floor = min((c.quality if c.quality is not None else -1.0) for c in shown) if shown else None
    best_fit: dict[str, int] = {}  # each variant's least lossy quantization that fits
    for f in fits:
        best_fit[f.variant.id] = min(f.quant_rank, best_fit.get(f.variant.id, f.quant_rank))
    out: list[Combo] = []
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


def _misfit_key(c: Combo) -> tuple[float, int, int, int, str]:
    """Misfits of a variant: the least lossy quantization, the variant's own release format first,
    then runtimes that span nodes (vLLM, SGLang), then deploy targets."""
    quality = c.quality if c.quality is not None else -1.0
    own = 0 if c.quant.name == c.variant.default_quant else 1
    return (-quality, c.rank, own, RUNTIME_ORDER.index(c.runtime), c.quant.name)


def explained_misfit(
    combo: Combo, machine: PlannedMachine, opts: Options, fits: list[Candidate], misses: list[Combo]
) -> Candidate:
    """A combination that does not fit, planned on the whole machine at --context (or MIN_CONTEXT,
    the least it would be planned at), with what would make it fit."""
    ctx = opts.context or MIN_CONTEXT
    req = plan_request(
        combo, machine, opts, gpus_per_node=machine.gpus_per_node, nodes=machine.nodes, context=ctx
    )
    c = make_candidate(combo, machine, req, estimate(req, solve_concurrency=False), fits=False, reason="")
    return replace(c, reason=_explain(c, combo, machine, opts, fits, misses))


def _article(word: str) -> str:
    return "an" if word[:1] in "8aeiou" else "a"
