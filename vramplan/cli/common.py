"""Options and helpers the commands share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from vramplan.catalog import Catalog, load_catalog
from vramplan.errors import HardwareError
from vramplan.hardware import GPUChoice, parse_gpu
from vramplan.precision import KVDtype
from vramplan.runtimes import Runtime

F = TypeVar("F", bound=Callable[..., Any])

RUNTIMES = [r.value for r in Runtime]
KV_DTYPES = [d.value for d in KVDtype]


def catalog_from(ctx: click.Context) -> Catalog:
    return load_catalog(ctx.find_root().obj.get("catalogs", ()))


def console() -> Any:
    from rich.console import Console

    # Printed values are data, never rich markup or :emoji: codes (a path or note may hold "[...]");
    # emoji=False also spares the import of rich's emoji table.
    return Console(highlight=False, soft_wrap=False, markup=False, emoji=False)


def gpu_option(f: F) -> F:
    return click.option(
        "--gpu",
        "gpu",
        metavar="NAME[:COUNT]",
        help="Plan for named GPUs, e.g. h100-80gb:8 (default: the GPUs this machine has).",
    )(f)


# The options several commands share; each command words the help of --context and --nodes for itself.
def context_option(help: str) -> Callable[[F], F]:
    return click.option("--context", "-c", type=int, callback=positive("--context"), help=help)


def nodes_option(help: str) -> Callable[[F], F]:
    return click.option(
        "--nodes", type=int, default=1, show_default=True, callback=positive("--nodes"), help=help
    )


def concurrency_option(f: F) -> F:
    return click.option(
        "--concurrency",
        "-n",
        type=int,
        default=1,
        show_default=True,
        callback=positive("--concurrency"),
        help="Requests served at once, each at the full context.",
    )(f)


def json_option(f: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON (integer bytes) instead of a table."
    )(f)


def split_gpu_list(value: str | None) -> list[str]:
    """`--gpu rtx-4090,l40s,h100-80gb` -> its names (one name: a list of one; None: none)."""
    if value is None or "," not in value:
        return [] if value is None else [value]
    names = [v.strip() for v in value.split(",")]
    if not all(names):
        raise HardwareError(f"--gpu {value!r} has an empty name; write NAME[:COUNT],NAME[:COUNT]")
    return names


def parse_gpu_option(value: str | None) -> GPUChoice | None:
    if value is None:
        return None
    if not value.strip():
        raise HardwareError("--gpu needs a GPU name, e.g. h100-80gb:8")
    return parse_gpu(value)


def positive(name: str) -> Callable[[click.Context, click.Parameter, int | None], int | None]:
    """A click callback that rejects values below 1 with a one-line usage error."""

    def check(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
        if value is not None and value <= 0:
            raise click.BadParameter(f"must be at least 1, got {value}", param_hint=name)
        return value

    return check


def not_blank(name: str) -> Callable[[click.Context, click.Parameter, str | None], str | None]:
    """A click callback that rejects an empty value (to the OS an empty path is the current folder,
    which is never what was meant) with a one-line usage error."""

    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise click.BadParameter("must not be empty", param_hint=name)
        return value

    return check


def print_json(doc: Any) -> None:
    from vramplan.report import dumps

    click.echo(dumps(doc))
