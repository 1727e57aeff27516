"""Printing `vramplan deploy` results: the files written, the plan they hold, how to start them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from vramplan.report import gib

if TYPE_CHECKING:
    from vramplan.deploy import Bundle
    from vramplan.deploy.verify import Verified
    from vramplan.deploy.writer import Written


def deploy_json(
    bundle: Bundle,
    files: list[Path],
    launched: bool,
    removed: Sequence[Path] = (),
    verified: Verified | None = None,
) -> dict[str, Any]:
    """The `deploy --json` document: {"target", "out", "files", "launched"}, "removed" (the files of the
    bundle written there before that this one no longer writes) when --force removed some, and
    "verified" (the plan beside the launched server's own log) when the launch compared them."""
    doc: dict[str, Any] = {
        "target": bundle.plan.target,
        "out": str(bundle.out),
        "files": [str(p) for p in files],
        "launched": launched,
    }
    if removed:
        doc["removed"] = [str(p) for p in removed]
    if verified is not None:
        from vramplan.deploy.verify import verified_json

        doc["verified"] = verified_json(verified)
    return doc


def _value(unit: str, v: float) -> str:
    if unit == "bytes":
        return gib(int(v)) if abs(v) >= (1 << 30) // 8 else f"{v / (1 << 20):.2f} MiB"
    if unit == "bytes/token":
        return f"{v:,.0f} B/token"
    if unit == "tokens":
        return f"{v:,.0f}"
    return f"{v:.2f}x"


def print_verified(v: Verified, console: Console) -> None:
    """The plan beside what the launched server allocated, part by part, as `vramplan check` reads its
    log, with each part's tolerance (docs/accuracy.md), and llama.cpp's own projection of its total."""
    from rich import box
    from rich.table import Table

    console.print(f"the server's startup log: {v.log}", markup=False, soft_wrap=True)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("part", "where", "plan", "measured", "error", "tolerance"):
        table.add_column(col, justify="left" if col in ("part", "where") else "right", no_wrap=col != "where")
    for p in v.parts:
        err = "0 (within rounding)" if p.error == 0 else f"{p.error:+.2%}"
        tol = "-" if p.tolerance is None else f"±{p.tolerance:.0%}" + ("" if p.ok else " MISS")
        table.add_row(p.part, p.scope, _value(p.unit, p.plan), _value(p.unit, p.measured), err, tol)
    console.print(table)
    projected = (
        ""
        if v.projected_bytes is None
        else f", llama.cpp's own projection {_value('bytes', v.projected_bytes)}"
    )
    console.print(
        f"total: plan {_value('bytes', v.plan_total_bytes)}{projected}, "
        f"allocated {_value('bytes', v.measured_total_bytes)} ({v.measured_what})",
        markup=False,
        soft_wrap=True,
    )
    for n in v.notes:
        console.print(f"note: {n}", markup=False, soft_wrap=True)
    if v.ok:
        console.print("verified: every part within its tolerance", markup=False)


def print_written(bundle: Bundle, written: Written, console: Console) -> None:
    plan, files = bundle.plan, written.files
    where = "host RAM" if plan.cpu_only else f"{plan.nodes} node(s) x {plan.gpus_per_node} {plan.gpu_name}"
    console.print(
        f"{plan.model_id} {plan.quant} on {plan.runtime.value}: {plan.context} tokens x "
        f"{plan.concurrency} request(s) on {where}, {gib(plan.peak.total_bytes)} on the fullest "
        f"{'device' if plan.cpu_only else 'GPU'}",
        markup=False,
        soft_wrap=True,
    )
    console.print(f"wrote {len(files)} files to {bundle.out}/:", markup=False, soft_wrap=True)
    for p in files:
        console.print(f"  {p.name}", markup=False, soft_wrap=True)
    if written.removed:
        names = ", ".join(p.name for p in written.removed)
        console.print(
            f"removed {names} of the bundle written there before (whatever was started from "
            f"{'it' if len(written.removed) == 1 else 'them'} keeps running until you stop it)",
            markup=False,
            soft_wrap=True,
        )
    from vramplan.deploy.targets import get_target

    hint = get_target(plan.target).start_hint(plan, bundle.out)
    console.print(f"start: {hint}", markup=False, soft_wrap=True)
