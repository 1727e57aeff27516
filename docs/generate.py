"""Regenerate the docs that are derived from the code: docs/cli.md (from --help), docs/models.md
(from the catalog) and docs/gpus.md (from the GPU spec table). `python docs/generate.py` writes
them; `--check` fails when they are stale (tests/test_docs.py runs that)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

DOCS = Path(__file__).resolve().parent


def _commands(group: click.Group, prefix: list[str]) -> list[tuple[list[str], click.Command]]:
    # list_commands / get_command, not `group.commands`: the top-level group loads commands lazily
    ctx = click.Context(group)
    out: list[tuple[list[str], click.Command]] = []
    for name in sorted(group.list_commands(ctx)):
        cmd = group.get_command(ctx, name)
        assert cmd is not None, name
        out.append(([*prefix, name], cmd))
        if isinstance(cmd, click.Group):
            out += _commands(cmd, [*prefix, name])
    return out


def cli_reference() -> str:
    from vramplan.cli import cli

    parts = [
        "# Command-line reference\n",
        "Generated from `--help` by `python docs/generate.py`; do not edit by hand.\n",
    ]
    root = click.Context(cli, info_name="vramplan", terminal_width=100, max_content_width=100)
    parts.append(f"## vramplan\n\n```\n{cli.get_help(root)}\n```\n")
    for path, cmd in _commands(cli, []):
        parent = root
        for name in path[:-1]:
            parent = click.Context(parent.command.get_command(parent, name), info_name=name, parent=parent)  # type: ignore[attr-defined,arg-type]
        ctx = click.Context(cmd, info_name=path[-1], parent=parent, terminal_width=100, max_content_width=100)
        parts.append(f"## vramplan {' '.join(path)}\n\n```\n{cmd.get_help(ctx)}\n```\n")
    return "\n".join(parts)


def _size(q: object) -> str:
    size = getattr(q, "size", None)
    return "-" if size is None else f"{size.text} ([source]({size.source.split(' ')[0]}))"


def models_reference() -> str:
    from vramplan.catalog import PLANNABLE_GGUF_TYPES, load_catalog

    cat = load_catalog()
    lines = [
        "# Models in the catalog\n",
        "Generated from `model_catalog.yaml` by `python docs/generate.py`; do not edit by hand. "
        "Parameter counts are computed from each architecture (vramplan/arch.py).\n",
        "The tables list the published quantizations. Any other file type llama-quantize makes ("
        + ", ".join(f"`{t}`" for t in PLANNABLE_GGUF_TYPES)
        + ") can be planned for every model with `--quant`: it is sized by llama-quantize's per-tensor "
        "rules (vramplan/quantmix.py), runs on llama.cpp and Ollama, and the plan notes that no such file "
        "is published.\n",
    ]
    for v in cat.variants:
        a = v.architecture
        lines.append(f"## {v.name} (`{v.id}`)\n")
        lines.append(
            f"- Hugging Face: [{v.hf_repo}](https://huggingface.co/{v.hf_repo}); architecture "
            f"`{a.model_type}` ([config.json]({v.architecture_source})); {v.params:,} parameters; "
            f"{a.num_hidden_layers} layers; max context {a.max_position_embeddings}"
        )
        if v.aliases:
            lines.append(f"- aliases: {', '.join(f'`{x}`' for x in v.aliases)}")
        if v.quality:
            scores = ", ".join(f"{k} {val:g}" for k, val in v.quality)
            lines.append(f"- quality: {scores} ([source]({v.quality_source}))")
        lines.append("")
        lines.append("| quant | format | runtimes | needs | published size | where |")
        lines.append("|---|---|---|---|---|---|")
        for q in v.quants:
            where = ", ".join(f"`{t}`" for t in q.ollama_tags) or (f"`{q.repo}`" if q.repo else "-")
            runtimes = ", ".join(r.value for r in q.runtimes)
            lines.append(
                f"| `{q.name}` | {q.format.value} | {runtimes} | {q.requires or '-'} | {_size(q)} | {where} |"
            )
        lines.append("")
    return "\n".join(lines)


def gpus_reference() -> str:
    from vramplan.hardware import GPU_SPECS, MiB

    lines = [
        "# GPUs in the spec table\n",
        "Generated from `vramplan/hardware.py` by `python docs/generate.py`; do not edit by hand. "
        "Memory is the total NVML / nvidia-smi reports (MiB); bandwidth is the vendor's peak (GB/s). "
        "How the probe maps the names NVML reports to these entries: [hardware.md](hardware.md).\n",
        "| `--gpu` | card | memory (MiB) | bandwidth (GB/s) | compute capability | FP8 | FP4 | interconnect "
        "| aliases | NVML names | source |",
        "|---|---|---:|---:|---|---|---|---|---|---|---|",
    ]
    for g in GPU_SPECS:
        cc = "-" if g.compute_capability is None else f"{g.compute_capability[0]}.{g.compute_capability[1]}"
        aliases = ", ".join(f"`{a}`" for a in g.aliases) or "-"
        names = ", ".join(f"`{n}`" for n in g.nvml_names)
        lines.append(
            f"| `{g.name}` | {g.label} | {g.memory_bytes // MiB} | {g.bandwidth_gbps:g} | {cc} "
            f"| {'yes' if g.fp8 else 'no'} | {'yes' if g.fp4 else 'no'} | {g.interconnect} | {aliases} "
            f"| {names} | {g.source} |"
        )
    lines.append("")
    return "\n".join(lines)


TARGETS = {"cli.md": cli_reference, "models.md": models_reference, "gpus.md": gpus_reference}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, make in TARGETS.items():
        text = make()
        path = DOCS / name
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"stale docs: {', '.join(stale)}; run `python docs/generate.py`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
