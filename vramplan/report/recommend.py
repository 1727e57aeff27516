"""Printing `vramplan recommend` results: the ranked table with per-GPU memory bars, and its JSON."""

from __future__ import annotations

import shlex
from typing import Any

from rich.console import Console
from rich.text import Text

from vramplan.recommend import MIN_CONTEXT, Candidate, PlannedMachine, Recommendation
from vramplan.report import GiB, bar
from vramplan.report.layout import (
    DOT,
    Cell,
    Column,
    command,
    common_prefixes,
    emit,
    natural,
    note,
    print_table,
    say,
    short_id,
    table,
    width_of,
)
from vramplan.runtimes import rules_for

SPEED_NOTE = (
    "tok/s: an upper bound on one request's decode speed at its full context, from the bytes a token "
    "reads (active parameters for the MoE, plus the KV cache) over memory bandwidth; real engines reach "
    "a fraction of it"
)


def planned_machine_json(t: PlannedMachine) -> dict[str, Any]:
    """The machine a recommendation plans for (the "machine" key of `recommend --json`)."""
    g = t.gpu
    return {
        "source": "probe" if t.probed else "--gpu",
        "cpu_only": t.cpu_only,
        "gpu": g.name if g else None,
        "gpu_label": g.label if g else None,
        "gpus_per_node": t.gpus_per_node,
        "nodes": t.nodes,
        "gpu_memory_bytes": g.memory_bytes if g else None,
        "gpu_bandwidth_gbps": g.bandwidth_gbps if g else None,
        "host_memory_bytes": t.host_memory_bytes,
        "host_bandwidth_gbps": t.host_bandwidth_gbps,
        "notes": list(t.notes),
    }


def candidate_json(c: Candidate, rank: int | None) -> dict[str, Any]:
    e = c.estimate
    t = e.topology
    budget = e.host.usable_bytes if c.cpu_plan else (e.per_gpu[0].usable_bytes if e.per_gpu else None)
    return {
        "rank": rank,
        "model": c.variant.id,
        "quant": c.quant.name,
        "runtime": c.runtime.value,
        "fits": c.fits,
        "total_bytes": e.total_bytes,
        "per_gpu_peak_bytes": c.per_gpu_peak_bytes,
        "budget_bytes": budget,
        "host_bytes": c.host_bytes,
        "weights_bytes": e.weights_bytes,
        "context": e.context,
        "concurrency": e.concurrency,
        "max_context": e.max_context,
        "tokens_per_second": None if c.tokens_per_second is None else round(c.tokens_per_second, 1),
        "reason": c.reason,
        "quality": None if c.quality is None else round(c.quality, 2),
        "quant_rank": c.quant_rank,
        "gpus_used": c.gpus_used,
        "gpus_per_node": c.request.gpus_per_node if not c.cpu_plan else 0,
        "nodes": t.nodes,
        "tensor_parallel": t.tensor_parallel,
        "pipeline_parallel": t.pipeline_parallel,
        "offload": c.offload,
        "gpu_layers": c.request.gpu_layers,
        "cpu_moe_layers": c.request.cpu_moe_layers,
        "deploy_command": shlex.join(c.deploy_command) if c.deploy_command else None,
        "estimate_command": shlex.join(c.estimate_command),
        "notes": list(c.notes),
        "slow": c.slow,
        "alternatives": [_alternative_json(a) for a in c.alternatives],
    }


def _alternative_json(a: Candidate) -> dict[str, Any]:
    t = a.estimate.topology
    return {
        "runtime": a.runtime.value,
        "gpus_used": a.gpus_used,
        "tensor_parallel": t.tensor_parallel,
        "pipeline_parallel": t.pipeline_parallel,
        "nodes": t.nodes,
        "offload": a.offload,
        "context": a.estimate.context,
        "per_gpu_peak_bytes": a.per_gpu_peak_bytes,
        "max_context": a.estimate.max_context,
        "tokens_per_second": None if a.tokens_per_second is None else round(a.tokens_per_second, 1),
        "reason": a.reason,
        "deploy_command": shlex.join(a.deploy_command) if a.deploy_command else None,
        "estimate_command": shlex.join(a.estimate_command),
    }


def recommend_json(r: Recommendation) -> dict[str, Any]:
    """`recommend --json`: what fits, best first, then the better options that do not fit."""
    o = r.options
    return {
        "machine": planned_machine_json(r.machine),
        "options": {
            "context": o.context,
            "concurrency": o.concurrency,
            "headroom": o.headroom,
            "runtimes": [x.value for x in o.runtimes],
            "quants": list(o.quants),
            "models": list(o.models),
            "offload": o.offload,
            "top": o.top,
            "per_model": o.per_model,
            "min_speed": o.min_speed,
        },
        "candidates": [candidate_json(c, i) for i, c in enumerate(r.candidates, 1)]
        + [candidate_json(c, i) for i, c in enumerate(r.slow, len(r.candidates) + 1)]
        + [candidate_json(c, None) for c in r.misfits],
        "slow_rows": r.slow_rows,
        "fitting": r.fitting,
        "rows": r.rows,
        "planned": r.planned,
        "complete": r.complete,
        "notes": list(r.notes),
    }


def _gpus(c: Candidate) -> str:
    t = c.estimate.topology
    if c.cpu_plan:
        return "host"
    if c.offload:
        return f"{c.gpus_used}+host"
    if rules_for(c.runtime).layer_split:  # no TP: the layers split over the GPUs
        return str(c.gpus_used)
    if t.pipeline_parallel > 1:
        return f"{c.gpus_used} TP{t.tensor_parallel}xPP{t.pipeline_parallel}"
    return f"{c.gpus_used} TP{t.tensor_parallel}"


def _speed(c: Candidate) -> str:
    s = c.tokens_per_second
    if s is None:
        return "?"
    return f"{s:.0f}" if s >= 10 else f"{s:.1f}"


def _context_words(r: Recommendation) -> str:
    o = r.options
    ctx = (
        f"context {o.context}"
        if o.context is not None
        else f"context: the runtime's default, lowered to fit (>= {MIN_CONTEXT})"
    )
    requests = "1 request at a time" if o.concurrency == 1 else f"{o.concurrency} requests at once"
    return f"{ctx}{DOT}{requests}{DOT}headroom {o.headroom * 100:g}%"


def _where(c: Candidate) -> str:
    """The GPUs a plan uses in words: "8 GPUs (TP8)", "1 GPU", "2 GPUs + host RAM", "host RAM"."""
    if c.cpu_plan:
        return "host RAM"
    n = f"{c.gpus_used} GPU{'s' if c.gpus_used > 1 else ''}"
    if c.offload:
        return f"{n} + host RAM"
    if rules_for(c.runtime).layer_split:  # no TP: the layers split over the GPUs
        return n
    return f"{n} ({_gpus(c).split(' ', 1)[1]})"


def _alternative_words(a: Candidate) -> str:
    peak = a.per_gpu_peak_bytes / GiB
    return f"{a.quant.name} on {a.runtime.value}: {_where(a)}, {peak:.2f} GiB, ≤{_speed(a)} tok/s"


SHOWN_ALTERNATIVES = 3
BAR = 8  # cells of the memory bar, where the width allows it


def _budget(c: Candidate) -> int | None:
    return c.estimate.host.usable_bytes if c.cpu_plan else c.estimate.per_gpu[0].usable_bytes


def _share(c: Candidate) -> str:
    budget = _budget(c)
    return f"{c.per_gpu_peak_bytes / budget:.0%}" if budget else "?"


def _table_columns(bars: bool) -> list[Column]:
    return [
        Column("#", right=True),
        Column("model"),
        Column("quant"),
        Column("runtime"),
        Column("GPUs"),
        Column("GiB", right=True),
        Column("memory" if bars else "use", right=True),
        Column("max ctx", right=True),
        Column("tok/s≤", right=True),
    ]


def _table_rows(cands: list[Candidate], prefix: str, bars: bool) -> list[list[Cell]]:
    rows: list[list[Cell]] = []
    for i, c in enumerate(cands, 1):
        peak = c.per_gpu_peak_bytes
        rows.append(
            [
                str(i),
                short_id(c.variant.id, prefix),
                c.quant.name,
                c.runtime.value,
                _gpus(c),
                f"{peak / GiB:.2f}",
                bar(peak, _budget(c), width=BAR) if bars else _share(c),
                str(c.estimate.max_context or "-"),
                _speed(c),
            ]
        )
    return rows


def _ranked_table(cands: list[Candidate], width: int) -> tuple[list[Text], str, bool]:
    """The ranked table at `width`, the prefix its model column leaves out ("" for whole ids), and whether
    it draws memory bars: whole ids where they fit, else ids less the shortest prefix they share that
    makes them fit ("deepseek-", then "deepseek-r1-"); at each, bars where they fit, else the share in
    figures; two spaces between the columns, else one."""
    prefixes = ["", *common_prefixes([c.variant.id for c in cands])]
    for gap in (2, 1):
        for p in prefixes:
            for bars in (True, False):
                lines = table(_table_columns(bars), _table_rows(cands, p, bars), width, gap=gap)
                if lines is not None:
                    return lines, p, bars
    return natural(_table_columns(False), _table_rows(cands, prefixes[-1], False), gap=1), prefixes[-1], False


def _legend(r: Recommendation, prefix: str, bars: bool) -> str:
    where = "host RAM" if r.machine.cpu_only else "the fullest GPU"
    model = f'model: the id less its "{prefix}" prefix; ' if prefix else ""
    return (
        f"{model}GiB: {where}; {'memory' if bars else 'use'}: its share of the budget (usable memory "
        "less the headroom); max ctx: the largest context that fits"
    )


def _command(console: Console, c: Candidate) -> None:
    if c.deploy_command:
        command(console, c.deploy_command, first="    $ ")
    else:
        tail = f"(no vramplan deploy target for {c.runtime.value} yet)"
        command(console, c.estimate_command, first="    $ ", tail=tail)


def _print_details(console: Console, c: Candidate, rank: int) -> None:
    say(console, c.reason, f"{rank:>2}. ")
    _command(console, c)
    if c.alternatives:
        alts = "; ".join(_alternative_words(a) for a in c.alternatives[:SHOWN_ALTERNATIVES])
        rest = len(c.alternatives) - SHOWN_ALTERNATIVES
        tail = f"; {rest} more in --json" if rest > 0 else ""
        say(console, f"{alts}{tail}", "    also fits: ")
    for n in c.notes:
        note(console, n, indent="    ")


def _print_ranked(r: Recommendation, console: Console) -> None:
    lines, prefix, bars = _ranked_table(list(r.candidates), width_of(console))
    emit(console, "")
    print_table(console, lines)
    emit(console, "")
    say(console, _legend(r, prefix, bars))
    for i, c in enumerate(r.candidates, 1):
        _print_details(console, c, i)
    more = r.rows - len(r.candidates)
    if not r.complete:
        say(
            console,
            "more fit lower in the ranking (a larger --top lists them; --per-model 0 lifts the limit "
            "per model)",
        )
    elif more > 0:
        say(console, f"{more} more fit (--top {r.rows} lists them; --per-model 0 lifts the limit per model)")


def _print_misfits(r: Recommendation, console: Console) -> None:
    emit(console, "")
    emit(console, "Better options that do not fit:", "bold")
    for c in r.misfits:
        say(console, c.reason, f"  {c.variant.id} {c.quant.name} ({c.runtime.value}): ", "    ")


def _gpu_names(t: PlannedMachine) -> list[str]:
    return [t.gpu.label] if t.gpu else []


def print_recommendation(r: Recommendation, console: Console) -> None:
    t = r.machine
    say(console, f"Recommendations for {t.describe()}", style="bold", keep=_gpu_names(t))
    say(console, _context_words(r))
    if not r.candidates:
        emit(console, "Nothing fits." if not r.slow else "Nothing fits that reaches --min-speed.")
    else:
        _print_ranked(r, console)
    print_slow(r, console)
    if r.misfits:
        _print_misfits(r, console)
    say(console, SPEED_NOTE)
    for n in (*t.notes, *r.notes):
        note(console, n, keep=_gpu_names(t))


def print_slow(r: Recommendation, console: Console) -> None:
    """The "fits, but slow" section: plans whose speed bound is below --min-speed, best first."""
    if not r.slow:
        return
    speed = f"{r.options.min_speed:g}"
    emit(console, "")
    say(console, f"Fits, but slow (below {speed} tok/s, --min-speed {speed}):", style="bold")
    for c in r.slow:
        peak = c.per_gpu_peak_bytes / GiB
        say(
            console,
            f"{c.variant.id} {c.quant.name} ({c.runtime.value}): {_where(c)}, {peak:.2f} GiB, "
            f"≤{_speed(c)} tok/s",
            "  ",
            "    ",
        )
        _command(console, c)
    more = r.slow_rows - len(r.slow)
    if more > 0:
        say(console, f"{more} more (--top {r.slow_rows} lists them)", "  ")
