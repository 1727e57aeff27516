"""`vramplan check LOGFILE [...]`: a runtime's startup log beside the estimate for the settings it states."""

from __future__ import annotations

import click

from vramplan.cli import cli
from vramplan.cli.common import RUNTIMES, catalog_from, console, json_option, parse_gpu_option, print_json
from vramplan.runtimes import Runtime


@cli.command()
@click.argument("logfile", metavar="LOGFILE")
@click.option("--model", "-m", help="The model, when the log does not name it (catalog id, alias, HF repo).")
@click.option("--quant", "-q", help="The quantization, when the log does not state it (fp8, q4_K_M, ...).")
@click.option(
    "--gpu",
    "gpu",
    metavar="NAME[:COUNT]",
    help="The GPUs the log ran on, when it does not name them, e.g. h200:8 (needed for KV pool figures).",
)
@click.option(
    "--runtime",
    "-r",
    type=click.Choice(RUNTIMES),
    help="Read the log as this runtime's (default: recognised from its lines).",
)
@json_option
@click.pass_context
def check(
    ctx: click.Context,
    logfile: str,
    model: str | None,
    quant: str | None,
    gpu: str | None,
    runtime: str | None,
    as_json: bool,
) -> None:
    """Compare the memory a runtime's startup log reports with vramplan's estimate.

    LOGFILE is the startup log of llama.cpp / llama-server, Ollama (server log), vLLM or SGLang. The
    model, context, parallelism, KV cache type and GPUs are read from the log; --model, --quant and
    --gpu fill in what it does not state.
    """
    from vramplan.check import check_log
    from vramplan.logs import read_log
    from vramplan.report import check as report

    parsed = read_log(logfile, Runtime(runtime) if runtime else None)
    result = check_log(
        catalog_from(ctx), parsed, logfile, model=model, quant=quant, gpu=parse_gpu_option(gpu)
    )
    if as_json:
        print_json(report.check_json(result))
    else:
        report.print_check(result, console())
