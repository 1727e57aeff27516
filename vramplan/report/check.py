"""Printing `vramplan check` results: measured beside estimated, part by part, and the JSON document."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.text import Text

from vramplan.check import CheckResult, PartCheck
from vramplan.report import GiB
from vramplan.report.layout import DOT, Cell, Column, emit, natural, note, print_table, say, table, width_of
from vramplan.words import count


def part_value(unit: str, v: float) -> str:
    """A part's figure in its unit, as the check and verify tables show it."""
    if unit == "bytes":
        return f"{v / GiB:.3f} GiB"
    if unit == "bytes/token":
        return f"{v:,.0f} B/token"
    if unit == "tokens":
        return f"{v:,.0f}"
    return f"{v:.2f}x"


def _json_value(unit: str, v: float) -> int | float:
    return round(v, 2) if unit in ("requests", "bytes/token") else int(v)


def _part_json(p: PartCheck) -> dict[str, Any]:
    return {
        "part": p.part,
        "scope": p.scope,
        "unit": p.unit,
        "measured": _json_value(p.unit, p.measured),
        "estimate": _json_value(p.unit, p.estimate),
        "error": round(p.error, 6),
        "measured_text": p.measured_text,
        "line": p.line,
    }


def check_json(r: CheckResult) -> dict[str, Any]:
    e, log = r.estimate, r.log
    return {
        "log": r.path,
        "runtime": log.runtime.value,
        "runtime_version": log.version,
        "model": e.model,
        "model_in_log": log.model,
        "identified_by": r.identified.how,
        "quant": e.quant,
        "settings": [{"setting": k, "value": v, "source": s} for k, v, s in r.settings],
        "parts": [_part_json(p) for p in r.parts],
        "estimate": {
            "context": e.context,
            "concurrency": e.concurrency,
            "kv_cache_dtype": e.kv_cache_dtype,
            "kv_layout": e.kv_layout,
            "kv_cells": e.kv_cells,
            "weights_bytes": e.weights_bytes,
            "kv_cache_bytes": e.kv_cache_bytes,
            "total_bytes": e.total_bytes,
        },
        "notes": list(r.notes),
    }


def _error_text(err: float) -> Text | str:
    if err == 0:
        return "0 (within rounding)"  # plain text, so a narrow table may wrap it
    style = "green" if abs(err) < 0.05 else ("yellow" if abs(err) < 0.2 else "red")
    return Text(f"{err:+.2%}", style=style)


CHECK_COLUMNS = [
    Column("part"),
    Column("where", wrap=True),
    Column("measured", right=True),
    Column("estimate", right=True),
    Column("error", right=True, wrap=True),
]


def _part_rows(r: CheckResult) -> list[list[Cell]]:
    return [
        [
            p.part,
            p.scope,
            part_value(p.unit, p.measured),
            part_value(p.unit, p.estimate),
            _error_text(p.error),
        ]
        for p in r.parts
    ]


def print_check(r: CheckResult, console: Console) -> None:
    e, log = r.estimate, r.log
    # llama.cpp numbers its builds (b4714): a version of digits alone is a build number
    version = f" {'build ' if (log.version or '').isdigit() else ''}{log.version}" if log.version else ""
    say(console, f"{r.path}  {log.runtime.value}{version} log", style="bold")
    say(console, f"model: {e.model} {e.quant}{DOT}identified by {r.identified.how}")
    say(
        console,
        f"estimate: context {e.context} tokens x {count(e.concurrency, 'request')}{DOT}"
        f"KV cache {e.kv_cache_dtype}, {e.kv_layout} layout, {e.kv_cells} cells",
    )
    by_source: dict[str, list[str]] = {}
    for k, v, s in r.settings:
        by_source.setdefault(s, []).append(f"{k} {v}")
    say(console, "; ".join(f"{', '.join(items)} ({s})" for s, items in by_source.items()), "settings: ")
    rows = _part_rows(r)
    emit(console, "")
    print_table(console, table(CHECK_COLUMNS, rows, width_of(console)) or natural(CHECK_COLUMNS, rows))
    emit(console, "")
    for n in r.notes:
        note(console, n)
