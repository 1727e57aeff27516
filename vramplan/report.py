"""Printing: rich tables with per-GPU memory bars, and the JSON forms of results (integer bytes).

Sizes are shown in GiB with the unit written out; JSON carries bytes only.
"""

from __future__ import annotations

import json
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from vramplan.catalog import Catalog, Variant
from vramplan.estimate import DeviceUse, Estimate

GiB = 1 << 30


def gib(n: int | None) -> str:
    return "-" if n is None else f"{n / GiB:.2f} GiB"


def bar(used: int, capacity: int | None, width: int = 20) -> Text:
    """A memory bar: filled share of what the runtime may use; red when over."""
    if not capacity:
        return Text("?", style="dim")
    share = used / capacity
    filled = min(width, round(share * width))
    style = "red" if share > 1 else ("yellow" if share > 0.9 else "green")
    return Text("█" * filled + "░" * (width - filled), style=style) + Text(f" {share:5.0%}")


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
        "total_bytes": e.total_bytes,
        "fits": e.fits,
        "max_context": e.max_context,
        "max_concurrency": e.max_concurrency,
        "runtime_settings": dict(e.settings),
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
    t = e.topology
    console.print(Text.assemble((e.model, "bold"), f"  {e.quant} on {e.runtime}"))
    console.print(
        f"context {e.context} tokens x {e.concurrency} request(s)  ·  KV cache {e.kv_cache_dtype}, "
        f"{e.kv_layout} layout, {e.kv_bytes_per_token} bytes per token"
    )
    if e.cpu_plan:
        console.print("hardware: host RAM (CPU inference)")
    else:
        gpu = t.gpu or "GPU of unknown size"
        console.print(
            f"hardware: {t.nodes} node(s) x {t.gpus_per_node} {gpu}  ·  "
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
    console.print(f"total {gib(e.total_bytes)}  ·  {verdict}")
    if e.max_context is not None:
        console.print(
            f"largest context at {e.concurrency} request(s): {e.max_context}  ·  "
            f"largest concurrency at {e.context} tokens: {e.max_concurrency}"
        )
    settings = "  ".join(f"{k} {v}" for k, v in e.settings)
    console.print(f"{e.runtime} settings: {settings}")
    for n in e.notes:
        console.print(f"note: {n}")


# --------------------------------------------------------------------------- catalog


def catalog_json(cat: Catalog) -> dict[str, Any]:
    return {"variants": [variant_json(v) for v in cat.variants]}


def variant_json(v: Variant) -> dict[str, Any]:
    a = v.architecture
    return {
        "id": v.id,
        "name": v.name,
        "hf_repo": v.hf_repo,
        "family": v.family,
        "architecture": v.architecture_id,
        "model_type": a.model_type,
        "params": v.params,
        "max_context": a.max_position_embeddings,
        "aliases": list(v.aliases),
        "default_quant": v.default_quant,
        "quality": dict(v.quality),
        "quants": [
            {
                "name": q.name,
                "format": q.format.value,
                "runtimes": [r.value for r in q.runtimes],
                "repo": q.repo,
                "ollama_tags": list(q.ollama_tags),
                "requires": q.requires,
                "published_bytes": q.size.bytes if q.size else None,
            }
            for q in v.quants
        ],
    }


def print_catalog(cat: Catalog, console: Console) -> None:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("model", overflow="fold")
    table.add_column("params", justify="right", no_wrap=True)
    table.add_column("context", justify="right", no_wrap=True)
    table.add_column("quantizations", overflow="fold")
    for v in cat.variants:
        table.add_row(
            v.id,
            f"{v.params / 1e9:.1f} B",
            str(v.architecture.max_position_embeddings),
            ", ".join(q.name for q in v.quants),
        )
    console.print(table)


def print_variant(v: Variant, console: Console) -> None:
    a = v.architecture
    console.print(Text(v.name, style="bold"), f" ({v.id})")
    console.print(f"Hugging Face: {v.hf_repo}  ·  architecture {a.model_type} ({v.architecture_source})")
    console.print(
        f"parameters {v.params:,}  ·  layers {a.num_hidden_layers}  ·  "
        f"max context {a.max_position_embeddings}"
    )
    if v.aliases:
        console.print(f"aliases: {', '.join(v.aliases)}")
    if v.quality:
        scores = ", ".join(f"{k} {val:g}" for k, val in v.quality)
        console.print(f"quality: {scores} ({v.quality_source})")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("quant", "format", "runtimes", "published size", "where"):
        table.add_column(col, overflow="fold")
    for q in v.quants:
        where = ", ".join(q.ollama_tags) or q.repo or "-"
        table.add_row(
            q.name,
            q.format.value + (f" ({q.requires})" if q.requires else ""),
            ", ".join(r.value for r in q.runtimes),
            q.size.text if q.size else "-",
            where,
        )
    console.print(table)


def dumps(doc: Any) -> str:
    return json.dumps(doc, indent=2)
