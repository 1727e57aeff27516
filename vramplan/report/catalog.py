"""Printing `vramplan catalog` results."""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console
from rich.text import Text

from vramplan.catalog import PLANNABLE_GGUF_TYPES, Catalog, Quant, Variant
from vramplan.report import GiB
from vramplan.report.layout import DOT, Cell, Column, emit, natural, print_table, say, table, width_of


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
    columns = [
        Column("model"),
        Column("params", right=True),
        Column("context", right=True),
        Column("quantizations", wrap=True),
    ]
    rows: list[list[Cell]] = [
        [
            v.id,
            f"{v.params / 1e9:.1f} B",
            str(v.architecture.max_position_embeddings),
            ", ".join(q.name for q in v.quants),
        ]
        for v in cat.variants
    ]
    print_table(console, table(columns, rows, width_of(console)) or natural(columns, rows))


def _format(q: Quant) -> str:
    f = q.format.value
    return f if not q.requires or q.requires == f else f"{f} (needs {q.requires})"


def _quant_rows(v: Variant) -> list[list[Cell]]:
    return [
        [
            q.name,
            _format(q),
            ", ".join(r.value for r in q.runtimes),
            f"{q.size.bytes / GiB:.2f}" if q.size else "-",
            ", ".join(q.ollama_tags) or q.repo or "-",
        ]
        for q in v.quants
    ]


QUANT_COLUMNS = [
    Column("quant"),
    Column("format"),
    Column("runtimes", wrap=True),
    Column("published GiB", right=True),
    Column("where", wrap=True),
]


def _quant_table(v: Variant, width: int) -> list[Text]:
    """One row per quantization; where the repo ids or tags do not fit beside the rest, they get a
    table of their own below (quant, where)."""
    rows = _quant_rows(v)
    lines = table(QUANT_COLUMNS, rows, width)
    if lines is not None:
        return lines
    left = [r[:4] for r in rows]
    right = [[r[0], r[4]] for r in rows]
    first = table(QUANT_COLUMNS[:4], left, width) or natural(QUANT_COLUMNS[:4], left)
    where = [QUANT_COLUMNS[0], QUANT_COLUMNS[4]]
    return [*first, Text(""), *(table(where, right, width) or natural(where, right))]


HF_CONFIG = re.compile(r"https://huggingface\.co/([^/\s]+/[^/\s]+)/blob/main/config\.json")


def _source(url: str) -> str:
    """A repo's config.json on Hugging Face as "config.json of REPO" (shorter than its URL)."""
    m = HF_CONFIG.fullmatch(url)
    return f"config.json of {m[1]}" if m else url


def print_variant(v: Variant, console: Console) -> None:
    a = v.architecture
    say(console, f"{v.name} ({v.id})", style="bold")
    say(
        console,
        f"Hugging Face: {v.hf_repo}{DOT}architecture {a.model_type} ({_source(v.architecture_source)})",
    )
    say(
        console,
        f"parameters {v.params:,}{DOT}layers {a.num_hidden_layers}{DOT}max context "
        f"{a.max_position_embeddings}",
    )
    if v.aliases:
        say(console, ", ".join(v.aliases), "aliases: ")
    if v.quality:
        scores = ", ".join(f"{k} {val:g}" for k, val in v.quality)
        say(console, f"{scores} ({v.quality_source})", "quality: ")
    emit(console, "")
    print_table(console, _quant_table(v, width_of(console)))
    emit(console, "")
    n = len(PLANNABLE_GGUF_TYPES)
    say(console, f"any llama-quantize type can be planned too ({n} file types, e.g. --quant Q5_K_M)")
