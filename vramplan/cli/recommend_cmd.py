"""`vramplan recommend [...]`: the DeepSeek-R1 variants a machine runs best, and how to start them."""

from __future__ import annotations

import click

from vramplan.cli import cli
from vramplan.cli.common import (
    RUNTIMES,
    catalog_from,
    concurrency_option,
    console,
    context_option,
    gpu_option,
    json_option,
    nodes_option,
    parse_gpu_option,
    positive,
    print_json,
)
from vramplan.runtimes import Runtime


@cli.command()
@gpu_option
@nodes_option("Nodes, each with the --gpu count (vLLM / SGLang plans span them).")
@context_option("Tokens per request (default: each runtime's default, lowered to fit, not below 4096).")
@concurrency_option
@click.option(
    "--runtime", "-r", "runtimes", multiple=True, type=click.Choice(RUNTIMES), help="Only these runtimes."
)
@click.option(
    "--quant", "-q", "quants", multiple=True, help="Only these quantizations (fp8, awq-int4, q4_K_M, ...)."
)
@click.option(
    "--model",
    "-m",
    "models",
    multiple=True,
    help="Only these models (ids, aliases, Ollama tags, Hugging Face repo ids).",
)
@click.option(
    "--headroom",
    type=float,
    default=10.0,
    show_default=True,
    metavar="PERCENT",
    help="Share of what each runtime may use (and of host RAM) to keep free.",
)
@click.option(
    "--host-memory",
    metavar="SIZE",
    help="Host RAM for CPU plans and partial offload: 64GiB, 512G, 500GB, or GiB alone "
    "(default: this machine's; none with --gpu).",
)
@click.option(
    "--host-bandwidth",
    type=float,
    metavar="GB/S",
    help="Host memory bandwidth for the speed bound (default 76.8: dual-channel DDR5-4800).",
)
@click.option(
    "--offload/--no-offload",
    default=True,
    show_default=True,
    help="Plan llama.cpp / Ollama partial offload to host RAM when a model does not fit the GPUs.",
)
@click.option(
    "--top",
    "-k",
    type=int,
    default=10,
    show_default=True,
    callback=positive("--top"),
    help="Show the best K.",
)
@click.option(
    "--per-model",
    type=int,
    default=2,
    show_default=True,
    help="Rows per model at most (its best quantizations); 0 for no limit.",
)
@click.option(
    "--min-speed",
    type=float,
    default=10.0,  # recommend.options.DEFAULT_MIN_SPEED (a test holds them equal)
    show_default=True,
    metavar="TOK_S",
    help="Plans whose decode-speed bound is below this many tokens/s are listed apart, as fits but "
    "slow; 10 is reading speed (5.3 tokens/s) for a bound that real decoding reaches about half of; "
    "0 lists all together.",
)
@json_option
@click.pass_context
def recommend(
    ctx: click.Context,
    gpu: str | None,
    nodes: int,
    context: int | None,
    concurrency: int,
    runtimes: tuple[str, ...],
    quants: tuple[str, ...],
    models: tuple[str, ...],
    headroom: float,
    host_memory: str | None,
    host_bandwidth: float | None,
    offload: bool,
    top: int,
    per_model: int,
    min_speed: float,
    as_json: bool,
) -> None:
    """The best DeepSeek-R1 variants that fit this machine (or --gpu NAME[:COUNT]), best first.

    Every variant x quantization x runtime x layout is estimated; what fits (with --headroom to
    spare) is ranked by published quality and the quantization's loss where they differ by more than
    the evaluations' noise, else by a decode-speed upper bound; what decodes slower than --min-speed
    is listed apart as fits but slow. Each comes with its memory per GPU, largest context and the
    command that starts it; better options that do not fit say what would make them fit.
    """
    from vramplan import recommend as rec
    from vramplan.deploy.targets import deploy_targets
    from vramplan.hardware import parse_size, probe
    from vramplan.report import recommend as report

    choice = parse_gpu_option(gpu)
    machine = rec.machine_for(
        None if choice else probe(),
        choice,
        nodes=nodes,
        host_memory_bytes=None if host_memory is None else parse_size(host_memory, "--host-memory"),
        host_bandwidth_gbps=host_bandwidth,
    )
    options = rec.Options(
        context=context,
        concurrency=concurrency,
        headroom=rec.headroom_from_percent(headroom),
        runtimes=tuple(Runtime(r) for r in runtimes),
        quants=quants,
        models=models,
        offload=offload,
        top=top,
        per_model=per_model,
        min_speed=min_speed,
        deploy_targets=deploy_targets(),
    )
    result = rec.recommend(catalog_from(ctx), machine, options)
    if as_json:
        print_json(report.recommend_json(result))
    else:
        report.print_recommendation(result, console())
