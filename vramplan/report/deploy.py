"""Printing `vramplan deploy` results: the files written, the plan they hold, how to start them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from vramplan.report import gib

if TYPE_CHECKING:
    from vramplan.deploy import Bundle
    from vramplan.deploy.writer import Written


def deploy_json(
    bundle: Bundle, files: list[Path], launched: bool, removed: Sequence[Path] = ()
) -> dict[str, Any]:
    """The `deploy --json` document: {"target", "out", "files", "launched"}, and "removed" (the files
    of the bundle written there before that this one no longer writes) when --force removed some."""
    doc: dict[str, Any] = {
        "target": bundle.plan.target,
        "out": str(bundle.out),
        "files": [str(p) for p in files],
        "launched": launched,
    }
    if removed:
        doc["removed"] = [str(p) for p in removed]
    return doc


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
