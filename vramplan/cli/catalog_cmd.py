"""`vramplan catalog [list|show MODEL] [--json]`."""

from __future__ import annotations

import click

from vramplan.cli import cli
from vramplan.cli.common import catalog_from, console, print_json


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def catalog(ctx: click.Context, as_json: bool) -> None:
    """The variants, quantizations and aliases vramplan knows."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_cmd, as_json=as_json)


@catalog.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def list_cmd(ctx: click.Context, as_json: bool) -> None:
    """List every variant with its size, context and quantizations."""
    from vramplan.report import catalog as report

    cat = catalog_from(ctx)
    if as_json:
        print_json(report.catalog_json(cat))
    else:
        report.print_catalog(cat, console())


@catalog.command("show")
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def show_cmd(ctx: click.Context, model: str, as_json: bool) -> None:
    """Show one variant: architecture, quality, quantizations and where to get them."""
    from vramplan.report import catalog as report

    variant = catalog_from(ctx).resolve(model).variant
    if as_json:
        print_json(report.variant_json(variant))
    else:
        report.print_variant(variant, console())
