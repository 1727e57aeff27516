"""Printing `vramplan check` results: measured beside estimated, part by part, and the JSON document."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from vramplan.check import CheckResult, PartCheck
from vramplan.report import GiB
from vramplan.words import count


def _value(unit: str, v: float) -> str:
    if unit == "bytes":
        return f"{v / GiB:.3f} GiB" if abs(v) >= GiB // 8 else f"{v / (1 << 20):.2f} MiB"
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


def _error_text(err: float) -> Text:
    if err == 0:
        return Text("0 (within rounding)")
    style = "green" if abs(err) < 0.05 else ("yellow" if abs(err) < 0.2 else "red")
    return Text(f"{err:+.2%}", style=style)


def print_check(r: CheckResult, console: Console) -> None:
    e, log = r.estimate, r.log
    # llama.cpp numbers its builds (b4714): a version of digits alone is a build number
    version = f" {'build ' if (log.version or '').isdigit() else ''}{log.version}" if log.version else ""
    console.print(Text.assemble((f"{r.path}", "bold"), f"  {log.runtime.value}{version} log"))
    console.print(f"model: {e.model} {e.quant}  ·  identified by {r.identified.how}")
    console.print(
        f"estimate: context {e.context} tokens x {count(e.concurrency, 'request')}  ·  "
        f"KV cache {e.kv_cache_dtype}, {e.kv_layout} layout, {e.kv_cells} cells"
    )
    by_source: dict[str, list[str]] = {}
    for k, v, s in r.settings:
        by_source.setdefault(s, []).append(f"{k} {v}")
    console.print("settings: " + "; ".join(f"{', '.join(items)} ({s})" for s, items in by_source.items()))
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("part", "where", "measured", "estimate", "error"):
        table.add_column(col, justify="left" if col in ("part", "where") else "right", no_wrap=col != "where")
    for p in r.parts:
        table.add_row(
            p.part, p.scope, _value(p.unit, p.measured), _value(p.unit, p.estimate), _error_text(p.error)
        )
    console.print(table)
    for n in r.notes:
        console.print(f"note: {n}")
