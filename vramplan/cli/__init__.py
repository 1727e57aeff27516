"""The `vramplan` command line: a click group whose commands parse, call the core and print.

Errors from the core (`VramplanError`) become one line on stderr and exit code 2 (bad input) or 1
(a failure at run time); click's usage errors become their one `Error:` line (exit 2, no usage banner);
anything unexpected becomes one line and exit 1. `--debug` or `VRAMPLAN_DEBUG=1` shows the traceback
instead.
"""

from __future__ import annotations

import os
import signal
import sys


def _interrupted_at_start(signum: int, frame: object) -> None:
    """Ctrl-C while the command line is still being imported: one line, no traceback."""
    sys.stderr.write("Error: interrupted\n")
    os._exit(130)


def _run_as_program() -> bool:
    """This process is the `vramplan` program (its script or `python -m vramplan`), not a caller."""
    arg0 = sys.argv[0] if sys.argv else ""
    return os.path.basename(arg0) == "vramplan" or arg0.endswith(os.path.join("vramplan", "__main__.py"))


if _run_as_program() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    # set before click and the commands are imported; main() puts Python's handler back, and the
    # group turns a KeyboardInterrupt into the same line
    signal.signal(signal.SIGINT, _interrupted_at_start)

import gc  # noqa: E402
import importlib  # noqa: E402
from typing import Any  # noqa: E402

import click  # noqa: E402

from vramplan import __version__  # noqa: E402
from vramplan.errors import VramplanError  # noqa: E402


def _debug(ctx: click.Context) -> bool:
    obj = ctx.find_root().obj or {}
    return bool(obj.get("debug")) or os.environ.get("VRAMPLAN_DEBUG", "") not in ("", "0")


def _one_line(exc: click.UsageError) -> click.UsageError:
    """A usage error as its one `Error: ...` line: no usage banner, and the choices click lists on
    lines of their own joined into it (help asked for by giving no arguments is shown as it is)."""
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        return exc
    return click.UsageError(" ".join(exc.format_message().split()))


# Each command lives in its own module and registers itself on `cli` when that module is imported;
# the group imports a command's module only when the command is looked up, so `vramplan estimate`
# does not pay for the imports of deploy, recommend or check (`--help` looks them all up).
COMMAND_MODULES = {
    "catalog": "vramplan.cli.catalog_cmd",
    "check": "vramplan.cli.check_cmd",
    "deploy": "vramplan.cli.deploy_cmd",
    "estimate": "vramplan.cli.estimate_cmd",
    "hardware": "vramplan.cli.hardware_cmd",
    "recommend": "vramplan.cli.recommend_cmd",
}


class VramplanGroup(click.Group):
    """Loads commands lazily (COMMAND_MODULES) and translates errors in one place (conventions.md,
    rule 2)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMAND_MODULES})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            importlib.import_module(COMMAND_MODULES[cmd_name])
        return self.commands.get(cmd_name)

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise _one_line(exc) from None

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in COMMAND_MODULES:
            for name in COMMAND_MODULES:  # click's "Did you mean ...?" looks in self.commands
                self.get_command(ctx, name)
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _one_line(exc) from None
        except VramplanError as exc:
            if _debug(ctx):
                raise
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("Error: interrupted", err=True)
            sys.exit(130)
        except Exception as exc:
            if _debug(ctx) or os.environ.get("VRAMPLAN_TESTING"):
                raise
            click.echo(
                f"Error: internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
                err=True,
            )
            sys.exit(1)


@click.group(cls=VramplanGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vramplan")
@click.option(
    "--catalog",
    "catalogs",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="A YAML catalog of your own models, added to the built-in one (also VRAMPLAN_CATALOG).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, catalogs: tuple[str, ...], debug: bool) -> None:
    """Plan GPU memory for DeepSeek-R1: which variant fits, how much it takes, how to start it."""
    from vramplan.gpus import use_catalogs  # the cards of --catalog files join the GPU table

    ctx.ensure_object(dict)
    ctx.obj["catalogs"] = catalogs
    ctx.obj["debug"] = debug
    use_catalogs(catalogs)


def main() -> None:
    # One short process: the cyclic garbage collector would only walk, again and again while the
    # command's modules are imported and once more at exit, the classes and tables those imports
    # create (about a fifteenth of `vramplan estimate`'s time). What a command itself creates is
    # acyclic (frozen dataclasses, tuples) and freed by reference counting.
    gc.disable()
    if signal.getsignal(signal.SIGINT) is _interrupted_at_start:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        cli(prog_name="vramplan")
    except KeyboardInterrupt:  # while a command's module is imported or its options are parsed
        click.echo("Error: interrupted", err=True)
        sys.exit(130)
    finally:
        gc.freeze()  # keeps the collection at interpreter exit from walking them too
        gc.enable()  # back on, should a caller's process go on
