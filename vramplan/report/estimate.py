"""Printing `vramplan estimate` results: the per-GPU table and the JSON document."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vramplan.estimate import DeviceUse, Estimate
from vramplan.report import GiB, bar, gib
from vramplan.report.layout import (
    DOT,
    NBSP,
    Cell,
    Column,
    emit,
    natural,
    note,
    print_table,
    say,
    table,
    width_of,
)
from vramplan.words import count

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

# --------------------------------------------------------------------------- estimate


def estimate_json(e: Estimate) -> dict[str, Any]:
    """The `estimate --json` document (keys per docs/design contract; more may be added)."""
    t = e.topology
    return {
        "model": e.model,
        "quant": e.quant,
        "runtime": e.runtime,
        "context": e.context,
        "concurrency": e.concurrency,
        "kv_cache_dtype": e.kv_cache_dtype,
        "kv_layout": e.kv_layout,
        "topology": {
            "gpu": t.gpu,
            "gpus_per_node": t.gpus_per_node,
            "nodes": t.nodes,
            "tensor_parallel": t.tensor_parallel,
            "pipeline_parallel": t.pipeline_parallel,
        },
        "params": e.params,
        "weights_bytes": e.weights_bytes,
        "kv_bytes_per_token": e.kv_bytes_per_token,
        "kv_cache_bytes": e.kv_cache_bytes,
        "kv_cells": e.kv_cells,
        "per_gpu": [_device_json(d) for d in e.per_gpu],
        "host": _device_json(e.host),
        "total_bytes": e.total_bytes,  # GPUs and host RAM
        "gpu_bytes": e.gpu_bytes,
        "fits": e.fits,
        "max_context": e.max_context,
        "max_concurrency": e.max_concurrency,
        "runtime_settings": dict(e.settings),
        "batch_tokens": e.batch_tokens,
        "batch_sequences": e.batch_sequences,
        "inputs": [{"flag": f, "value": v, "source": src} for f, v, src in e.inputs],
        "gpu_in_use_bytes": e.gpu_in_use_bytes,
        "notes": list(e.notes),
    }


def _device_json(d: DeviceUse) -> dict[str, Any]:
    out: dict[str, Any] = {
        "index": d.index,
        "weights_bytes": d.weights_bytes,
        "kv_cache_bytes": d.kv_cache_bytes,
        "activation_bytes": d.activation_bytes,
        "overhead_bytes": d.overhead_bytes,
        "total_bytes": d.total_bytes,
        "capacity_bytes": d.capacity_bytes,
        "usable_bytes": d.usable_bytes,
        "layers": len(d.layers),
    }
    return out


def _grouped(devices: tuple[DeviceUse, ...]) -> list[tuple[str, DeviceUse]]:
    """Consecutive GPUs with identical numbers share one row ("0-7")."""
    rows: list[tuple[int, int, DeviceUse]] = []
    for d in devices:
        key = (d.weights_bytes, d.kv_cache_bytes, d.activation_bytes, d.overhead_bytes)
        if rows:
            first, _, prev = rows[-1]
            if (prev.weights_bytes, prev.kv_cache_bytes, prev.activation_bytes, prev.overhead_bytes) == key:
                rows[-1] = (first, d.index, prev)
                continue
        rows.append((d.index, d.index, d))
    return [(str(a) if a == b else f"{a}-{b}", d) for a, b, d in rows]


def _n(n: int | None) -> str:
    return "-" if n is None else f"{n / GiB:.2f}"


ESTIMATE_COLUMNS = [
    Column("device"),
    Column("weights", right=True),
    Column("KV cache", right=True),
    Column("activ.", right=True),
    Column("overhead", right=True),
    Column("total", right=True),
    Column("memory"),
]


def _device_rows(e: Estimate, bars: bool) -> list[list[Cell]]:
    rows = [(f"GPU {label}", d) for label, d in _grouped(e.per_gpu)]
    if e.host.total_bytes or e.cpu_plan:
        rows.append(("host", e.host))
    return [
        [
            label,
            _n(d.weights_bytes),
            _n(d.kv_cache_bytes),
            _n(d.activation_bytes),
            _n(d.overhead_bytes),
            _n(d.total_bytes),
            bar(d.total_bytes, d.usable_bytes, width=10 if bars else 0),
        ]
        for label, d in rows
    ]


def _device_table(e: Estimate, width: int) -> list[Text]:
    """The table of the devices, with memory bars where they fit, else the share in figures."""
    for bars in (True, False):
        lines = table(ESTIMATE_COLUMNS, _device_rows(e, bars), width)
        if lines is not None:
            return lines
    return natural(ESTIMATE_COLUMNS, _device_rows(e, False))


def print_estimate(e: Estimate, console: Console) -> None:
    t = e.topology
    say(console, f"{e.model}  {e.quant} on {e.runtime}", style="bold")
    say(
        console,
        f"context {e.context} tokens x {count(e.concurrency, 'request')}{DOT}KV cache {e.kv_cache_dtype}, "
        f"{e.kv_layout} layout, {e.kv_bytes_per_token} bytes per token",
    )
    if e.cpu_plan:
        say(console, "hardware: host RAM (CPU inference)")
    else:
        gpu = t.gpu or "GPU of unknown size"
        say(
            console,
            f"hardware: {count(t.nodes, 'node')} x {t.gpus_per_node} {gpu}{DOT}"
            f"tensor parallel {t.tensor_parallel}, pipeline parallel {t.pipeline_parallel}",
        )
    say(console, f"parameters {e.params / 1e9:.2f} B{DOT}weights {gib(e.weights_bytes)} in all")
    usable = e.host.usable_bytes if e.cpu_plan else (e.per_gpu[0].usable_bytes if e.per_gpu else None)
    if usable is not None:
        where = "host RAM" if e.cpu_plan else f"each {t.gpu}"
        say(console, f"usable: {gib(usable)} of {where}")
    emit(console, "")
    print_table(console, _device_table(e, width_of(console)))
    emit(console, "")
    say(console, "sizes in GiB")
    verdict = {True: "fits", False: "does not fit", None: "fit unknown (no hardware given)"}[e.fits]
    host = f" ({gib(e.host.total_bytes)} of it in host RAM)" if e.per_gpu and e.host.total_bytes else ""
    say(console, f"total {gib(e.total_bytes)}{host}{DOT}{verdict}")
    if e.max_context is not None:
        say(
            console,
            f"largest context at {count(e.concurrency, 'request')}: {e.max_context or 'none fits'}{DOT}"
            f"largest concurrency at {e.context} tokens: {e.max_concurrency or 'none fits'}",
        )
    settings = "  ".join(f"{k}{NBSP}{v}" for k, v in e.settings)
    say(console, settings, f"{e.runtime} settings: ")
    if e.inputs:
        inputs = ", ".join(f"{f} {v} ({src})" for f, v, src in e.inputs)
        say(console, inputs, "inputs: ")
    for n in e.notes:
        note(console, n)
