"""Turn what a user named (model, quantization, runtime, hardware) into an estimator `Request`.

The one place that picks defaults: an Ollama tag fixes the quantization and the runtime; a GGUF
quantization runs on llama.cpp unless Ollama is named; everything else on vLLM, with the variant's
default quantization or the first one the chosen runtime loads.
"""

from __future__ import annotations

from dataclasses import dataclass

from vramplan.catalog import Catalog, Quant, Resolved, Variant
from vramplan.errors import PlanError
from vramplan.estimate import Request
from vramplan.hardware import GPUChoice, Machine
from vramplan.precision import KVDtype
from vramplan.runtimes import KVLayout, Runtime


def default_runtime(resolved: Resolved, quant: Quant) -> Runtime:
    if resolved.via == "ollama" and Runtime.OLLAMA in quant.runtimes:
        return Runtime.OLLAMA
    if quant.is_gguf:
        return Runtime.LLAMA_CPP if Runtime.LLAMA_CPP in quant.runtimes else quant.runtimes[0]
    return Runtime.VLLM if Runtime.VLLM in quant.runtimes else quant.runtimes[0]


def pick_quant(variant: Variant, runtime: Runtime | None) -> Quant:
    default = variant.quant(variant.default_quant)
    if runtime is None or runtime in default.runtimes:
        return default
    for q in variant.quants:
        if runtime in q.runtimes:
            return q
    raise PlanError(f"no quantization of {variant.id} runs on {runtime.value}")


@dataclass(frozen=True)
class Choices:
    """The user's choices, as parsed by the CLI (None: not given)."""

    model: str
    quant: str | None = None
    runtime: Runtime | None = None
    context: int | None = None
    concurrency: int = 1
    kv_cache_dtype: KVDtype = KVDtype.AUTO
    gpu: GPUChoice | None = None
    nodes: int = 1
    tp: int | None = None
    pp: int | None = None
    kv_layout: KVLayout | None = None
    flash_attn: bool = True
    gpu_layers: int | None = None


def build_request(catalog: Catalog, choices: Choices, machine: Machine | None) -> Request:
    """Resolve names and defaults into a Request. `machine` is the probed machine, used when no
    `--gpu` was given (None: plan without hardware)."""
    resolved = catalog.resolve(choices.model)
    variant = resolved.variant
    if choices.quant is not None:
        quant = variant.quant(choices.quant)
        if resolved.quant is not None and quant.name != resolved.quant.name and resolved.via == "ollama":
            raise PlanError(
                f"{choices.model} is the {resolved.quant.name} build; drop --quant or name "
                f"{variant.id} instead"
            )
    else:
        quant = resolved.quant or pick_quant(variant, choices.runtime)
    runtime = choices.runtime or default_runtime(resolved, quant)
    if choices.concurrency <= 0:
        raise PlanError(f"--concurrency must be at least 1, got {choices.concurrency}")
    if choices.nodes <= 0:
        raise PlanError(f"--nodes must be at least 1, got {choices.nodes}")
    gpu = choices.gpu.spec if choices.gpu else None
    count = choices.gpu.count if choices.gpu else 1
    host = machine.host_memory_bytes if machine else None
    cpu_only = False
    if choices.gpu is None and machine is not None:
        if machine.gpu_count():
            gpu, count = machine.gpu_spec(), machine.gpu_count()
        elif runtime.is_ggml:
            cpu_only = True
    if choices.nodes > 1 and choices.gpu is None:
        raise PlanError("--nodes needs --gpu NAME:COUNT to say what each node holds")
    return Request(
        variant=variant,
        quant=quant,
        runtime=runtime,
        context=choices.context,
        concurrency=choices.concurrency,
        kv_cache_dtype=choices.kv_cache_dtype,
        gpu=gpu,
        gpus_per_node=count,
        nodes=choices.nodes,
        tp=choices.tp,
        pp=choices.pp,
        host_memory_bytes=host,
        cpu_only=cpu_only,
        flash_attn=choices.flash_attn,
        gpu_layers=choices.gpu_layers,
        kv_layout=choices.kv_layout,
    )
