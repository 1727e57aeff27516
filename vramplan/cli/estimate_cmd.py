"""`vramplan estimate MODEL [...]`: the memory of one plan, per GPU."""

from __future__ import annotations

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
    json_option,
    nodes_option,
    parse_gpu_option,
    positive,
    print_json,
    split_gpu_list,
)
from vramplan.precision import KVDtype
from vramplan.runtimes import KVLayout, Runtime


@cli.command()
@click.argument("model", required=False)
@click.option(
    "--gguf",
    metavar="FILE",
    help="Plan for a GGUF file, read from its header (first shard of a split model); replaces MODEL.",
)
@click.option(
    "--quant", "-q", help="Quantization (bf16, fp8, awq-int4, q4_K_M, ...); default: the model's own."
)
@click.option(
    "--runtime", "-r", type=click.Choice(RUNTIMES), help="Serving runtime (default from the model name)."
)
@context_option("Tokens per request (default: what the runtime uses).")
@concurrency_option
@click.option(
    "--kv-cache-dtype",
    type=click.Choice(KV_DTYPES),
    default="auto",
    show_default=True,
    help="KV-cache element type.",
)
@gpu_option
@nodes_option("Nodes, each with the --gpu count.")
@click.option(
    "--tp", type=int, callback=positive("--tp"), help="Tensor-parallel size (default: the GPUs of a node)."
)
@click.option(
    "--pp",
    type=int,
    callback=positive("--pp"),
    help="Pipeline-parallel size (default: the nodes; llama.cpp: the GPUs).",
)
@click.option(
    "--kv-layout",
    type=click.Choice([k.value for k in KVLayout]),
    help="Override the 671B's llama.cpp KV layout (mha, mla-kv, mla-latent).",
)
@click.option(
    "--flash-attn/--no-flash-attn",
    default=True,
    show_default=True,
    help="llama.cpp / Ollama flash attention.",
)
@click.option("--gpu-layers", type=int, help="llama.cpp --n-gpu-layers (default: all layers and the output).")
@click.option(
    "--n-cpu-moe",
    "cpu_moe_layers",
    type=int,
    default=0,
    help="llama.cpp --n-cpu-moe: keep the MoE experts of the first N layers in host RAM.",
)
@click.option(
    "--gpu-memory-utilization",
    type=float,
    metavar="F",
    help="vLLM: the share of each GPU's total memory it may use, above 0 and at most 1 (default: vLLM's).",
)
@click.option(
    "--max-num-seqs",
    type=int,
    metavar="N",
    help="vLLM: requests scheduled at once; sizes the sampler's profile (default: vLLM's for the GPU).",
)
@click.option(
    "--max-num-batched-tokens",
    type=int,
    metavar="N",
    help="vLLM: tokens in one scheduler step; sizes the activation profile (default: vLLM's for the GPU).",
)
@click.option(
    "--mem-fraction-static",
    type=float,
    metavar="F",
    help="SGLang: the share of each GPU's total memory for weights and KV cache, above 0 and below 1 "
    "(default: SGLang's, from the GPU's memory).",
)
@click.option(
    "--host-memory",
    metavar="SIZE",
    help="Host RAM for CPU plans and llama.cpp / Ollama offload: 64GiB, 512G, 500GB, or GiB alone "
    "(default: this machine's; none with --gpu).",
)
@click.option(
    "--sweep",
    type=click.Choice(["context", "concurrency"]),
    help="Draw memory against context (or concurrency) as stacked bars, with the usable memory and "
    "where the plan stops fitting; with --json, the series. Takes a --gpu list: a,b,c.",
)
@json_option
@click.pass_context
def estimate(
    ctx: click.Context,
    model: str | None,
    gguf: str | None,
    quant: str | None,
    runtime: str | None,
    context: int | None,
    concurrency: int,
    kv_cache_dtype: str,
    gpu: str | None,
    nodes: int,
    tp: int | None,
    pp: int | None,
    kv_layout: str | None,
    flash_attn: bool,
    gpu_layers: int | None,
    cpu_moe_layers: int,
    gpu_memory_utilization: float | None,
    max_num_seqs: int | None,
    max_num_batched_tokens: int | None,
    mem_fraction_static: float | None,
    host_memory: str | None,
    sweep: str | None,
    as_json: bool,
) -> None:
    """Memory of MODEL per GPU: weights, KV cache, activations and overhead, and what fits.

    MODEL is a catalog id, an alias, an Ollama tag (deepseek-r1:7b) or a Hugging Face repo id; a repo
    the catalog does not know is read from its config.json and safetensors headers (HF_TOKEN for gated
    repos, HF_HUB_OFFLINE=1 to use only what is cached). With --gguf FILE, the model is that file.
    """
    from vramplan.estimate import estimate as run_estimate
    from vramplan.hardware import parse_size, probe
    from vramplan.report import estimate as report
    from vramplan.request import Choices, build_request

    gpus = split_gpu_list(gpu)
    if len(gpus) > 1 and sweep is None:
        raise click.UsageError(
            f"--gpu {gpu} names {len(gpus)} GPUs; compare them with --sweep context or --sweep concurrency"
        )
    choices = Choices(
        model=model,
        quant=quant,
        runtime=Runtime(runtime) if runtime else None,
        context=context,
        concurrency=concurrency,
        kv_cache_dtype=KVDtype(kv_cache_dtype),
        gpu=parse_gpu_option(gpus[0] if gpus else gpu),
        nodes=nodes,
        tp=tp,
        pp=pp,
        kv_layout=KVLayout(kv_layout) if kv_layout else None,
        flash_attn=flash_attn,
        gpu_layers=gpu_layers,
        cpu_moe_layers=cpu_moe_layers,
        gguf=gguf,
        gpu_memory_utilization=gpu_memory_utilization,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        mem_fraction_static=mem_fraction_static,
        host_memory_bytes=None if host_memory is None else parse_size(host_memory, "--host-memory"),
        given=tuple(
            flag
            for flag, value in (
                ("--gpu-memory-utilization", gpu_memory_utilization),
                ("--max-num-seqs", max_num_seqs),
                ("--max-num-batched-tokens", max_num_batched_tokens),
                ("--mem-fraction-static", mem_fraction_static),
                ("--host-memory", host_memory),
            )
            if value is not None
        ),
    )
    machine = None if choices.gpu else probe()
    if sweep is not None:
        from dataclasses import replace

        from vramplan.report import sweep as picture
        from vramplan.sweep import sweep as run_sweep

        catalog = catalog_from(ctx)
        each = [choices] + [replace(choices, gpu=parse_gpu_option(g)) for g in gpus[1:]]
        sweeps = [run_sweep(build_request(catalog, c, machine), sweep) for c in each]
        if as_json:
            print_json(picture.sweeps_json(sweeps))
        else:
            picture.print_sweeps(sweeps, console())
        return
    result = run_estimate(build_request(catalog_from(ctx), choices, machine))
    if as_json:
        print_json(report.estimate_json(result))
    else:
        report.print_estimate(result, console())
