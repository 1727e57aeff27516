"""Printing `vramplan catalog` results."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from vramplan.catalog import PLANNABLE_GGUF_TYPES, Catalog, Variant


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
    # the id keeps its line while it can (ids are what users copy); only a very narrow terminal folds it
    widest = max((len(v.id) for v in cat.variants), default=10)
    table.add_column("model", overflow="fold", min_width=min(widest, 32))
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
            q.format.value,
            ", ".join(r.value for r in q.runtimes),
            q.size.text if q.size else "-",
            where,
        )
    console.print(table)
    for q in v.quants:
        if q.requires:
            console.print(f"note: {q.name} is made for GPUs with native {q.requires} support")
    n = len(PLANNABLE_GGUF_TYPES)
    console.print(f"any llama-quantize type can be planned too ({n} file types, e.g. --quant Q5_K_M)")
