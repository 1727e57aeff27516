"""Printing `vramplan deploy` results: the files written, the plan they hold, how to start them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from vramplan.report import gib
from vramplan.report.check import part_value as _value
from vramplan.report.layout import (
    Cell,
    Column,
    emit,
    natural,
    note,
    print_table,
    say,
    shell_line,
    table,
    width_of,
)
from vramplan.words import count

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


VERIFY_COLUMNS = [
    Column("part"),
    Column("where", wrap=True),
    Column("plan", right=True),
    Column("measured", right=True),
    Column("error", right=True, wrap=True),
    Column("tolerance", right=True),
]


def _verify_rows(v: Verified) -> list[list[Cell]]:
    rows: list[list[Cell]] = []
    for p in v.parts:
        err = "0 (within rounding)" if p.error == 0 else f"{p.error:+.2%}"
        tol = "-" if p.tolerance is None else f"±{p.tolerance:.0%}" + ("" if p.ok else " MISS")
        rows.append([p.part, p.scope, _value(p.unit, p.plan), _value(p.unit, p.measured), err, tol])
    return rows


def print_verified(v: Verified, console: Console) -> None:
    """The plan beside what the launched server allocated, part by part, as `vramplan check` reads its
    log, with each part's tolerance (docs/accuracy.md), and llama.cpp's own projection of its total."""
    say(console, str(v.log), "the server's startup log: ")
    rows = _verify_rows(v)
    emit(console, "")
    print_table(console, table(VERIFY_COLUMNS, rows, width_of(console)) or natural(VERIFY_COLUMNS, rows))
    emit(console, "")
    projected = (
        ""
        if v.projected_bytes is None
        else f", llama.cpp's own projection {_value('bytes', v.projected_bytes)}"
    )
    say(
        console,
        f"total: plan {_value('bytes', v.plan_total_bytes)}{projected}, "
        f"allocated {_value('bytes', v.measured_total_bytes)} ({v.measured_what})",
    )
    for n in v.notes:
        note(console, n)
    if v.ok:
        say(console, "verified: every part within its tolerance")


def print_written(bundle: Bundle, written: Written, console: Console) -> None:
    plan, files = bundle.plan, written.files
    where = (
        "host RAM" if plan.cpu_only else f"{count(plan.nodes, 'node')} x {plan.gpus_per_node} {plan.gpu_name}"
    )
    say(
        console,
        f"{plan.model_id} {plan.quant} on {plan.runtime.value}: {plan.context} tokens x "
        f"{count(plan.concurrency, 'request')} on {where}, {gib(plan.peak.total_bytes)} on the fullest "
        f"{'device' if plan.cpu_only else 'GPU'}",
    )
    say(console, f"wrote {len(files)} files to {bundle.out}/:")
    for p in files:
        say(console, p.name, "  ")
    if written.removed:
        names = ", ".join(p.name for p in written.removed)
        say(
            console,
            f"removed {names} of the bundle written there before (whatever was started from "
            f"{'it' if len(written.removed) == 1 else 'them'} keeps running until you stop it)",
        )
    from vramplan.deploy.targets import get_target

    hint = get_target(plan.target).start_hint(plan, bundle.out)
    shell_line(console, hint, "start: ")
