"""Printing `vramplan estimate` results: the per-GPU table and the JSON document."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vramplan.estimate import DeviceUse, Estimate
from vramplan.report import GiB, bar, gib
from vramplan.words import count

if TYPE_CHECKING:
    from rich.console import Console

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


def print_estimate(e: Estimate, console: Console) -> None:
    # rich only here: `estimate --json` does not pay for importing it
    from rich import box
    from rich.table import Table
    from rich.text import Text

    t = e.topology
    console.print(Text.assemble((e.model, "bold"), f"  {e.quant} on {e.runtime}"))
    console.print(
        f"context {e.context} tokens x {count(e.concurrency, 'request')}  ·  KV cache {e.kv_cache_dtype}, "
        f"{e.kv_layout} layout, {e.kv_bytes_per_token} bytes per token"
    )
    if e.cpu_plan:
        console.print("hardware: host RAM (CPU inference)")
    else:
        gpu = t.gpu or "GPU of unknown size"
        console.print(
            f"hardware: {count(t.nodes, 'node')} x {t.gpus_per_node} {gpu}  ·  "
            f"tensor parallel {t.tensor_parallel}, pipeline parallel {t.pipeline_parallel}"
        )
    console.print(f"parameters {e.params / 1e9:.2f} B  ·  weights {gib(e.weights_bytes)} in all")
    usable = e.host.usable_bytes if e.cpu_plan else (e.per_gpu[0].usable_bytes if e.per_gpu else None)
    if usable is not None:
        where = "host RAM" if e.cpu_plan else f"each {t.gpu}"
        console.print(f"usable: {gib(usable)} of {where}")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, caption="sizes in GiB", caption_justify="left")
    for col in ("device", "weights", "KV cache", "activ.", "overhead", "total"):
        table.add_column(col, justify="left" if col == "device" else "right", no_wrap=True)
    table.add_column("memory", no_wrap=True)
    rows = [(f"GPU {label}", d) for label, d in _grouped(e.per_gpu)]
    if e.host.total_bytes or e.cpu_plan:
        rows.append(("host", e.host))
    for label, d in rows:
        table.add_row(
            label,
            _n(d.weights_bytes),
            _n(d.kv_cache_bytes),
            _n(d.activation_bytes),
            _n(d.overhead_bytes),
            _n(d.total_bytes),
            bar(d.total_bytes, d.usable_bytes, width=10),
        )
    console.print(table)
    verdict = {True: "fits", False: "does not fit", None: "fit unknown (no hardware given)"}[e.fits]
    host = f" ({gib(e.host.total_bytes)} of it in host RAM)" if e.per_gpu and e.host.total_bytes else ""
    console.print(f"total {gib(e.total_bytes)}{host}  ·  {verdict}")
    if e.max_context is not None:
        console.print(
            f"largest context at {count(e.concurrency, 'request')}: {e.max_context or 'none fits'}  ·  "
            f"largest concurrency at {e.context} tokens: {e.max_concurrency or 'none fits'}"
        )
    settings = "  ".join(f"{k} {v}" for k, v in e.settings)
    console.print(f"{e.runtime} settings: {settings}")
    if e.inputs:
        inputs = ", ".join(f"{f} {v} ({src})" for f, v, src in e.inputs)
        console.print(f"inputs: {inputs}")
    for n in e.notes:
        console.print(f"note: {n}")
