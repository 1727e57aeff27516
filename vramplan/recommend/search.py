"""The search: every variant x quantization x runtime x layout planned for the machine, what fits ranked,
and the better options that do not fit explained."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

from vramplan.arch import param_count
from vramplan.catalog import Catalog, Quant, Variant
from vramplan.errors import PlanError, UnknownModelError
from vramplan.estimate import Estimate, Request, estimate
from vramplan.precision import WeightFormat
from vramplan.recommend.commands import deploy_command
from vramplan.recommend.machine import PlannedMachine
from vramplan.recommend.misfit import explained_misfit, misfits_to_explain
from vramplan.recommend.offload import offload_words, plan_offload
from vramplan.recommend.options import MIN_CONTEXT, Candidate, Options, Recommendation, check_options
from vramplan.recommend.plan import Combo, make_candidate, plan_request, quick
from vramplan.recommend.quality import quality_groups, quality_score, quant_rank, rank_key
from vramplan.request import Choices, resolve_model
from vramplan.runtimes import rules_for
from vramplan.words import count


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
    combo: Combo, machine: PlannedMachine, opts: Options, whole: Estimate
) -> tuple[Request, Estimate] | None:
    """The plan on the fewest GPUs (one node) that fits at the same context, if fewer than `whole`."""
    used = whole.topology.gpus_used
    tried: set[int] = set()
    sizes = [k for k in range(_lowest_count(whole), machine.gpus_per_node + 1) if k < used]
    sizes += [machine.gpus_per_node * n for n in range(1, machine.nodes) if machine.gpus_per_node * n < used]
    for k in sorted(set(sizes)):
        nodes = 1
        per_node = k
        if k > machine.gpus_per_node:
            nodes, per_node = k // machine.gpus_per_node, machine.gpus_per_node
        req = plan_request(combo, machine, opts, gpus_per_node=per_node, nodes=nodes, context=whole.context)
        try:
            est = quick(req)
        except PlanError:
            continue
        if est.topology.gpus_used in tried:
            continue
        tried.add(est.topology.gpus_used)
        if est.fits and est.topology.gpus_used < used:
            return req, estimate(req, solve_concurrency=False)
    return None


# --------------------------------------------------------------------------- the search


def _combos(catalog: Catalog, machine: PlannedMachine, opts: Options) -> tuple[list[Combo], list[str]]:
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
    out: list[Combo] = []
    notes: list[str] = []
    if opts.context is not None:
        longest = max(v.architecture.max_position_embeddings for v, _ in variants)
        if opts.context > longest:
            raise PlanError(f"--context {opts.context} exceeds every planned model's maximum ({longest})")
        short = sorted({v.id for v, _ in variants if v.architecture.max_position_embeddings < opts.context})
        if short:
            notes.append(f"left out, their context is shorter than {opts.context}: {', '.join(short)}")
        variants = [(v, q) for v, q in variants if v.architecture.max_position_embeddings >= opts.context]
    if machine.nodes > 1:
        # a plan over several nodes puts one pipeline stage (at least one layer) on each
        most = max(v.architecture.num_hidden_layers for v, _ in variants)
        if machine.nodes > most:
            raise PlanError(
                f"--nodes {machine.nodes} needs a pipeline stage per node, more than any planned model's "
                f"layers ({most})"
            )
        few = sorted({v.id for v, _ in variants if v.architecture.num_hidden_layers < machine.nodes})
        if few:
            notes.append(f"left out, fewer layers than --nodes {machine.nodes}: {', '.join(few)}")
        variants = [(v, q) for v, q in variants if v.architecture.num_hidden_layers >= machine.nodes]
    # quality groups over the whole catalog (and any model named from outside it), so a filter does
    # not change how two variants compare
    groups = quality_groups(
        [quality_score(v) for v in catalog.variants] + [quality_score(v) for v, _ in variants]
    )
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
                if machine.cpu_only and not rules.runs_on_host:
                    continue
                if machine.nodes > 1 and not rules.spans_nodes:
                    continue
                gpu = machine.gpu
                if gpu is not None and gpu.unified and not rules.metal:
                    continue  # no Metal backend: vLLM and SGLang cannot use an Apple silicon GPU
                if rules.needs_native_precision and gpu is not None and q.requires is not None:
                    if not getattr(gpu, q.requires):
                        skipped.add(q.requires.upper())
                        continue
                out.append(Combo(v, q, rt, quality, quant_rank(v, q), groups[quality]))
    if skipped and machine.gpu is not None:
        notes.append(
            f"sglang plans of {' and '.join(sorted(skipped))} checkpoints left out: {machine.gpu.name} "
            "has no native support for them (vLLM's weight-only Marlin fallback is planned instead)"
        )
    if machine.gpu is not None and machine.gpu.unified:
        notes.append(
            f"{machine.gpu.name} is Apple silicon: llama.cpp and Ollama plans "
            "(vLLM and SGLang have no Metal backend)"
        )
    if machine.nodes > 1:
        notes.append(
            f"llama.cpp and Ollama plans are for one node; {machine.nodes} nodes plan vLLM and SGLang"
        )
    return out, notes


# --------------------------------------------------------------------------- one combination


def _fit_reason(est: Estimate, machine: PlannedMachine, opts: Options, default_ctx: int | None) -> str:
    t = est.topology
    total = machine.gpus_per_node * machine.nodes
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


def with_deploy_commands(c: Candidate, machine: PlannedMachine, opts: Options) -> Candidate:
    """`c` and its alternatives with the `vramplan deploy` command of each, where a target runs it."""
    alternatives = tuple(with_deploy_commands(a, machine, opts) for a in c.alternatives)
    return replace(c, deploy_command=deploy_command(c, machine, opts), alternatives=alternatives)


def _default_context(combo: Combo, machine: PlannedMachine) -> int:
    total = machine.gpu.memory_bytes * machine.gpus_per_node * machine.nodes if machine.gpu else None
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


def _too_big(combo: Combo, machine: PlannedMachine, opts: Options) -> bool:
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
    if machine.gpu is None:
        room = (machine.host_memory_bytes or 0) * (1 - opts.headroom)
    else:
        rules = rules_for(combo.runtime)
        share = rules.usable_fraction() * (1 - opts.headroom)
        room = machine.gpu.memory_bytes * share * machine.gpus_per_node * machine.nodes
        if rules.layer_split and opts.offload and machine.host_memory_bytes:
            room += machine.host_memory_bytes * (1 - opts.headroom)
    return least > room


def _whole(combo: Combo, machine: PlannedMachine, opts: Options) -> tuple[Request, Estimate]:
    """The plan on all the machine's GPUs (or its host RAM), at the context `_at_context` picks."""

    def make(ctx: int | None) -> Request:
        return plan_request(
            combo, machine, opts, gpus_per_node=machine.gpus_per_node, nodes=machine.nodes, context=ctx
        )

    est = _at_context(make, opts)
    return make(est.context), est


def _plan(combo: Combo, machine: PlannedMachine, opts: Options) -> tuple[list[Candidate], bool]:
    """The fitting candidates of one combination (the whole machine; the fewest GPUs that hold the
    same plan; or a partial offload); True when it does not fit (explained later, if at all)."""
    if _too_big(combo, machine, opts):
        return [], True
    try:
        req, whole = _whole(combo, machine, opts)
    except PlanError:
        return [], False  # a plan this runtime cannot make here (e.g. --context beyond the model's)
    default_ctx = None if opts.context is not None else _default_context(combo, machine)
    if whole.fits:
        # a GPU vramplan cannot name (not in its table) gets whole-machine plans only: no command
        # could ask for a subset of it
        nameable = machine.named_gpu or not machine.probed
        fewer = _fewer_gpus(combo, machine, opts, whole) if not machine.cpu_only and nameable else None
        out: list[Candidate] = []
        # llama.cpp's layer split reads the layers one GPU after another: more GPUs add room but no
        # speed, so only the fewest GPUs are proposed; vLLM / SGLang gain bandwidth with every GPU
        if fewer is None or not rules_for(combo.runtime).layer_split:
            out.append(
                make_candidate(
                    combo,
                    machine,
                    req,
                    whole,
                    fits=True,
                    reason=_fit_reason(whole, machine, opts, default_ctx),
                )
            )
        if fewer is not None:
            freq, fest = fewer
            out.append(
                make_candidate(
                    combo,
                    machine,
                    freq,
                    fest,
                    fits=True,
                    reason=_fit_reason(fest, machine, opts, default_ctx),
                )
            )
        return out, False
    if (
        rules_for(combo.runtime).layer_split
        and not machine.cpu_only
        and opts.offload
        and machine.host_memory_bytes
    ):
        off = plan_offload(combo, machine, opts)
        if off is not None:
            oreq, oest, kind, notes = off
            return [
                make_candidate(
                    combo,
                    machine,
                    oreq,
                    oest,
                    fits=True,
                    reason=offload_words(oreq, oest, kind),
                    kind=kind,
                    notes=notes,
                )
            ], False
    return [], True


def recommend(catalog: Catalog, machine: PlannedMachine, opts: Options) -> Recommendation:
    """Every combination planned for `machine`, what fits ranked best first (at most opts.top; below
    --min-speed in a list of its own), and the better options that do not fit, each with what would
    make it fit."""
    check_options(opts, machine)
    combos, notes = _combos(catalog, machine, opts)
    if not combos:
        raise PlanError(_nothing_to_plan(opts, machine, notes))
    percent = opts.headroom * 100
    if 0 < percent < 1:  # a share written as a fraction (0.5 for half) is half a percent here
        also = f"; for {percent * 100:g} % write --headroom {percent * 100:g}" if percent * 100 < 90 else ""
        notes.append(f"--headroom is in percent: {percent:g} keeps {percent:g} % free{also}")
    fits: list[Candidate] = []
    misses: list[Combo] = []
    # The quality group ranks first, so groups are planned best first, and once --top rows that are
    # fast enough are filled the groups of lower quality cannot change them: they are not planned
    # (`complete` False).
    levels: dict[int, list[Combo]] = {}
    for combo in combos:
        levels.setdefault(combo.group, []).append(combo)
    planned = 0
    complete = True
    for n, group in enumerate(sorted(levels)):
        for combo in levels[group]:
            ok, missed = _plan(combo, machine, opts)
            planned += 1
            fits += [replace(c, slow=_slow(c, opts)) for c in ok]
            if missed:
                misses.append(combo)
        if n < len(levels) - 1 and len(_fast_and_slow(fits, opts)[0]) >= opts.top:
            complete = False
            break
    fits.sort(key=rank_key)
    fast, slow = _fast_and_slow(fits, opts)
    shown = [with_deploy_commands(c, machine, opts) for c in fast[: opts.top]]
    shown_slow = [with_deploy_commands(c, machine, opts) for c in slow[: opts.top]]
    chosen = misfits_to_explain(misses, shown or shown_slow, fits)
    explained = tuple(explained_misfit(m, machine, opts, fits, misses) for m in chosen)
    return Recommendation(
        machine=machine,
        options=opts,
        candidates=tuple(shown),
        misfits=explained,
        fitting=len(fits),
        rows=len(fast),
        planned=planned,
        complete=complete,
        notes=tuple(notes),
        slow=tuple(shown_slow),
        slow_rows=len(slow),
    )


def _slow(c: Candidate, opts: Options) -> bool:
    """The plan's speed bound is below --min-speed (an unknown bound is not called slow)."""
    return c.tokens_per_second is not None and c.tokens_per_second < opts.min_speed


def _fast_and_slow(fits: list[Candidate], opts: Options) -> tuple[list[Candidate], list[Candidate]]:
    """The rows (see _rows) that reach --min-speed and those that do not, each best first and each with
    at most --per-model rows per variant. A row is slow when its best plan is (its alternatives are
    no faster: they share its variant and quantization, so speed orders them)."""
    rows = _rows(sorted(fits, key=rank_key))
    fast = _per_model([r for r in rows if not r.slow], opts.per_model)
    slow = _per_model([r for r in rows if r.slow], opts.per_model)
    return fast, slow


def _nothing_to_plan(opts: Options, machine: PlannedMachine, notes: list[str]) -> str:
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
    if machine.cpu_only:
        where = " on a machine without a GPU (vllm and sglang need one; plan for one with --gpu NAME[:COUNT])"
    why = f" ({'; '.join(notes)})" if notes else ""
    return (
        f"nothing to plan: no quantization runs with {' and '.join(asked) or 'these settings'}{where}{why}; "
        "drop or change a filter"
    )


def _rows(fits: list[Candidate]) -> list[Candidate]:
    """One row per variant and quantization rank (bf16 and f16 are one, AWQ and NVFP4 another), its
    best plan with the others as alternatives. `fits` is ranked."""
    rows: list[Candidate] = []
    where: dict[tuple[str, int], int] = {}
    for c in fits:
        key = (c.variant.id, c.quant_rank)
        if key in where:
            i = where[key]
            rows[i] = replace(rows[i], alternatives=(*rows[i].alternatives, c))
            continue
        where[key] = len(rows)
        rows.append(c)
    return rows


def _per_model(rows: list[Candidate], per_model: int) -> list[Candidate]:
    """At most `per_model` rows per variant, the best ones (0: no limit)."""
    if not per_model:
        return rows
    out: list[Candidate] = []
    per_variant: dict[str, int] = {}
    for r in rows:
        if per_variant.get(r.variant.id, 0) < per_model:
            per_variant[r.variant.id] = per_variant.get(r.variant.id, 0) + 1
            out.append(r)
    return out
