"""`vramplan deploy MODEL --target NAME [...]`: write (and start) a deployment of a plan; the targets
come from the registry in vramplan.deploy.targets."""

from __future__ import annotations

from pathlib import Path

import click

from vramplan.cli import cli
from vramplan.cli.common import (
    KV_DTYPES,
    RUNTIMES,
    catalog_from,
    concurrency_option,
    console,
    context_option,
    gpu_option,
    nodes_option,
    not_blank,
    parse_gpu_option,
    positive,
    print_json,
)
from vramplan.deploy.options import CACHE_KINDS
from vramplan.deploy.targets import TARGETS
from vramplan.precision import KVDtype
from vramplan.runtimes import Runtime

_TARGET_HELP = "What to write: " + "; ".join(f"{t.name}: {t.summary}" for t in TARGETS.values()) + "."
_RUNTIME_HELP = "; ".join(
    f"{t.name}: {t.runtimes[0].value} (default), {', '.join(r.value for r in t.runtimes[1:])}"
    for t in TARGETS.values()
    if len(t.runtimes) > 1
)


@cli.command()
@click.argument("model", required=False)
@click.option("--target", "-t", type=click.Choice(list(TARGETS)), required=True, help=_TARGET_HELP)
@click.option(
    "--gguf",
    metavar="FILE",
    help="llama.cpp: deploy this GGUF file (first shard of a split model), planned from its header; "
    "replaces MODEL.",
)
@click.option(
    "--quant", "-q", help="Quantization (default: the model's own, or the first the runtime loads)."
)
@click.option(
    "--runtime",
    "-r",
    type=click.Choice(RUNTIMES),
    help=f"Targets that run several runtimes only ({_RUNTIME_HELP}).",
)
@gpu_option
@nodes_option("Nodes (vLLM, SGLang).")
@context_option("Tokens per request (default: what the runtime would use; written down either way).")
@concurrency_option
@click.option(
    "--kv-cache-dtype", type=click.Choice(KV_DTYPES), default="auto", show_default=True, help="KV-cache type."
)
@click.option("--tp", type=int, callback=positive("--tp"), help="Tensor-parallel size (vLLM).")
@click.option("--pp", type=int, callback=positive("--pp"), help="Pipeline-parallel size.")
@click.option(
    "--gpu-layers", type=int, help="Ollama, llama.cpp: layers on the GPU (partial offload; default: all)."
)
@click.option(
    "--n-cpu-moe",
    "cpu_moe_layers",
    type=int,
    default=0,
    help="llama.cpp --n-cpu-moe: keep the MoE experts of the first N layers in host RAM.",
)
@click.option(
    "--host-memory",
    metavar="SIZE",
    help="Host RAM the plan may use for llama.cpp / Ollama offload: 64GiB, 512G, 500GB, or GiB alone.",
)
@click.option("--served-name", help="The name clients use (default: the model id; Ollama: id-ctxN).")
@click.option(
    "--out",
    "-o",
    type=click.Path(file_okay=False),
    callback=not_blank("--out"),
    help="Folder for the files (default: ./deploy/<model>-<target>/).",
)
@click.option(
    "--image",
    help="vllm, k8s: the image to run, NAME:TAG or NAME@sha256:DIGEST (default: the pinned release for "
    "the GPUs' vendor, CUDA or ROCm).",
)
@click.option("--namespace", help="k8s: the namespace of every object (a DNS-1123 label).")
@click.option(
    "--cache",
    type=click.Choice(CACHE_KINDS),
    help="k8s vLLM: the model cache: one ReadWriteOnce claim (one node; the default there), one "
    "ReadWriteMany claim every pod shares (the default across nodes), or host-path (a copy on each node).",
)
@click.option(
    "--publish-address",
    default="127.0.0.1",
    show_default=True,
    help="vllm: the host address Compose publishes port 8000 on (0.0.0.0: every interface).",
)
@click.option(
    "--api-key-file",
    help="vllm: serve with the API key read from this file (a Compose secret; clients send it as a "
    "Bearer token).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace the bundle in --out: overwrite files that differ, remove those the earlier bundle wrote "
    "that this one does not (unless changed since).",
)
@click.option(
    "--launch",
    is_flag=True,
    help="Start it: Ollama client, docker compose / serve.sh, kubectl; llama.cpp: a local llama-server "
    "(VRAMPLAN_LLAMA_SERVER or on PATH) on 127.0.0.1, asked once. Then the server's memory beside the "
    "plan: its startup log (llama-server, docker compose logs, kubectl logs) or Ollama's /api/ps.",
)
@click.option(
    "--no-verify",
    is_flag=True,
    help="--launch without comparing the server's memory with the plan.",
)
@click.option(
    "--dry-run-first", is_flag=True, help="k8s --launch: kubectl apply --dry-run=client before applying."
)
@click.option("--json", "as_json", is_flag=True, help='Print {"target", "out", "files", "launched"}.')
@click.pass_context
def deploy(
    ctx: click.Context,
    model: str | None,
    target: str,
    gguf: str | None,
    quant: str | None,
    runtime: str | None,
    gpu: str | None,
    nodes: int,
    context: int | None,
    concurrency: int,
    kv_cache_dtype: str,
    tp: int | None,
    pp: int | None,
    gpu_layers: int | None,
    cpu_moe_layers: int,
    host_memory: str | None,
    served_name: str | None,
    image: str | None,
    namespace: str | None,
    cache: str | None,
    publish_address: str,
    api_key_file: str | None,
    out: str | None,
    force: bool,
    launch: bool,
    no_verify: bool,
    dry_run_first: bool,
    as_json: bool,
) -> None:
    """Write the files that run MODEL as planned (Ollama, vLLM, SGLang, llama.cpp or Kubernetes), and start
    them with --launch.

    The plan is the one `vramplan estimate` prints for the same options; every file states it.
    """
    import sys

    from rich.console import Console

    from vramplan import deploy as dep
    from vramplan.hardware import parse_size, probe
    from vramplan.report import deploy as report
    from vramplan.request import Choices

    if dry_run_first and not (launch and "dry_run_first" in TARGETS[target].launch_options):
        which = ", ".join(t.name for t in TARGETS.values() if "dry_run_first" in t.launch_options)
        raise click.UsageError(f"--dry-run-first goes with --launch and --target {which}")
    if no_verify and not (launch and "verify" in TARGETS[target].launch_options):
        which = ", ".join(t.name for t in TARGETS.values() if "verify" in t.launch_options)
        raise click.UsageError(f"--no-verify goes with --launch and --target {which}")
    choices = Choices(
        model=model,
        quant=quant,
        runtime=Runtime(runtime) if runtime else None,
        context=context,
        concurrency=concurrency,
        kv_cache_dtype=KVDtype(kv_cache_dtype),
        gpu=parse_gpu_option(gpu),
        nodes=nodes,
        tp=tp,
        pp=pp,
        gpu_layers=gpu_layers,
        cpu_moe_layers=cpu_moe_layers,
        gguf=gguf,
        host_memory_bytes=None if host_memory is None else parse_size(host_memory, "--host-memory"),
        given=("--host-memory",) if host_memory is not None else (),
    )
    machine = None if choices.gpu else probe()
    folder = Path(out) if out is not None else None
    options = dep.DeployOptions(
        image=image,
        namespace=namespace,
        cache=cache,
        publish_address=publish_address,
        api_key_file=api_key_file,
    )
    bundle = dep.prepare(
        catalog_from(ctx), choices, machine, target, out=folder, served_name=served_name, options=options
    )
    written = dep.write(bundle, force=force, command=_command_line(ctx))
    files = written.files
    out_console = Console(file=sys.stderr, highlight=False) if as_json else console()
    if not as_json:
        report.print_written(bundle, written, out_console)
    launched = False
    verified = None
    if launch:
        import gc

        from vramplan.deploy.launch import launch as run_launch

        gc.enable()  # main() starts commands without the cyclic collector; a launch streams for minutes

        verified = run_launch(bundle, out_console, dry_run_first=dry_run_first, verify=not no_verify)
        launched = True
        if verified is not None:
            report.print_verified(verified, out_console)
    if as_json:
        print_json(report.deploy_json(bundle, files, launched, written.removed, verified))
    if verified is not None and not verified.ok:
        from vramplan.errors import LaunchError

        misses = ", ".join(f"{p.part} ({p.scope}) {p.error:+.1%}" for p in verified.misses)
        raise LaunchError(
            f"the server ran, but its memory missed the plan beyond docs/accuracy.md's tolerances: {misses}"
        )


def _command_line(ctx: click.Context) -> list[str]:
    """The `vramplan deploy ...` command as the user gave it (the arguments and options named, not
    the defaults), for the bundle's record."""
    from click.core import ParameterSource

    given = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    args = ["vramplan"]
    root = ctx.find_root()
    for path in root.params.get("catalogs") or ():
        args += ["--catalog", str(path)]
    args.append(ctx.info_name or "deploy")
    for p in ctx.command.params:
        if p.name is None or ctx.get_parameter_source(p.name) not in given:
            continue
        value = ctx.params.get(p.name)
        if isinstance(p, click.Argument):
            args.append(str(value))
            continue
        flag = next((o for o in p.opts if o.startswith("--")), p.opts[0])
        if isinstance(p, click.Option) and p.is_flag:
            if value:
                args.append(flag)
        elif value is not None:
            args += [flag, str(value)]
    return args
