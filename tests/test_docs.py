"""Docs that cannot drift: the CLI reference and the model list are generated and must be current;
every command has help; every catalog entry is in docs/models.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click

from vramplan.catalog import Catalog
from vramplan.cli import cli

ROOT = Path(__file__).resolve().parent.parent


def test_generated_docs_are_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "generate.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def walk(group: click.Group) -> list[click.Command]:
    ctx = click.Context(group)  # the top-level group loads its commands on lookup
    out: list[click.Command] = []
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None, name
        out.append(cmd)
        if isinstance(cmd, click.Group):
            out += walk(cmd)
    return out


def test_every_command_and_option_has_help() -> None:
    for cmd in walk(cli):
        assert cmd.help, f"command {cmd.name} has no help"
        for p in cmd.params:
            if isinstance(p, click.Option):
                assert p.help, f"{cmd.name} {p.opts} has no help"


def test_every_catalog_entry_is_documented(catalog: Catalog) -> None:
    text = (ROOT / "docs" / "models.md").read_text()
    for v in catalog.variants:
        assert f"(`{v.id}`)" in text
        for q in v.quants:
            assert f"| `{q.name}` |" in text


def test_readme_opens_with_the_two_commands() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    head = "\n".join(lines[:25])
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install . && vramplan estimate deepseek-r1:7b" in head
    test_cmd = next(ln.strip() for ln in ci.splitlines() if "pytest" in ln)
    assert test_cmd in head, test_cmd


def test_readme_examples_show_real_output() -> None:
    """Every `$ vramplan ...` example in README.md and docs/*.md is that command's current output."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "readme_examples.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_the_cli_reference_ends_with_a_glossary() -> None:
    """Every term the tables and notes use has one meaning, written down in docs/cli.md."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text(encoding="utf-8")
    glossary = text.split("## Glossary\n", 1)[1]
    for term in ("weights", "KV cache", "activations", "compute buffer", "overhead", "usable", "headroom"):
        assert f"**{term}**" in glossary, term
    for term in ("fits", "total", "TP / PP / DP", "offload", "host RAM", "settings"):
        assert f"**{term}**" in glossary, term
