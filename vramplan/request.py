"""Turn what a user named (model, quantization, runtime, hardware) into an estimator `Request`.

The one place that picks defaults: an Ollama tag fixes the quantization and the runtime; a GGUF
quantization runs on llama.cpp unless Ollama is named; everything else on vLLM, with the variant's
default quantization or the first one the chosen runtime loads.

Names resolve in the catalog first; a Hugging Face repo id the catalog does not know is read from the
Hub (`vramplan.sources.hf`), and `--gguf FILE` from the file's header (`vramplan.sources.gguf_model`).
Both sources are imported only when used.
"""

from __future__ import annotations

from dataclasses import dataclass

from vramplan.catalog import Catalog, Quant, Resolved, Variant
from vramplan.errors import PlanError, SourceError, UnknownModelError
from vramplan.estimate import Request
from vramplan.hardware import GPUChoice, Machine
from vramplan.precision import KVDtype
from vramplan.runtimes import KVLayout, RunSettings, Runtime, rules_for


def default_runtime(resolved: Resolved, quant: Quant) -> Runtime:
    if resolved.via == "ollama" and Runtime.OLLAMA in quant.runtimes:
        return Runtime.OLLAMA
    if quant.is_gguf:
        return Runtime.LLAMA_CPP if Runtime.LLAMA_CPP in quant.runtimes else quant.runtimes[0]
    return Runtime.VLLM if Runtime.VLLM in quant.runtimes else quant.runtimes[0]


def _local_default(local: bool, resolved: Resolved, quant: Quant | None = None) -> Runtime | None:
    """With no runtime named, on an Apple silicon GPU or on a machine with no GPU (`local`): llama.cpp
    (a Metal backend and a CPU backend; vLLM and SGLang have neither), when it loads `quant` (None: any
    GGUF); an Ollama tag keeps Ollama. So an alias, a catalog id and an Ollama tag of one model all plan
    for the hardware the machine has."""
    if not local:
        return None
    if resolved.via == "ollama":
        return Runtime.OLLAMA
    if quant is None or Runtime.LLAMA_CPP in quant.runtimes:
        return Runtime.LLAMA_CPP
    return None


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

    model: str | None  # None: the model is the --gguf file
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
    cpu_moe_layers: int = 0  # llama.cpp --n-cpu-moe
    gguf: str | None = None  # a GGUF file to plan for instead of a named model
    # how many GPUs a node has when no GPU model is named (a log that shows N devices but not which)
    gpu_count: int | None = None
    gpu_memory_utilization: float | None = None  # vLLM's --gpu-memory-utilization (None: its default)
    runtime_version: str | None = None  # the runtime release to plan for (None: current releases)
    max_num_seqs: int | None = None  # vLLM's --max-num-seqs (None: its default)
    max_num_batched_tokens: int | None = None  # vLLM's --max-num-batched-tokens (None: its default)
    mem_fraction_static: float | None = None  # SGLang's --mem-fraction-static (None: its default)
    host_memory_bytes: int | None = None  # --host-memory (None: the probed machine's RAM)
    # the runtime flags the user named (the rest are the runtime's defaults), for the estimate's
    # "where each value came from"
    given: tuple[str, ...] = ()
    run: RunSettings | None = None  # settings a runtime's log states beyond these (vramplan check)


def in_use(machine: Machine) -> tuple[int, int]:
    """The most memory the probe saw in use on one of the GPUs a plan uses, and that GPU's index."""
    gpus = machine.plan_gpus()
    worst = max(gpus, key=lambda g: g.memory_used_bytes or 0, default=None)
    if worst is None or not worst.memory_used_bytes:
        return 0, 0
    return worst.memory_used_bytes, worst.index


def resolve_model(catalog: Catalog, choices: Choices) -> Resolved:
    """The variant (and quantization, when fixed) that MODEL or --gguf names: the catalog first, then
    a GGUF file's header or a Hugging Face repo's config and safetensors headers."""
    if choices.gguf is not None:
        if not choices.gguf.strip():
            raise SourceError("--gguf names no file (an empty path)")
        if choices.model is not None:
            raise PlanError(f"give MODEL or --gguf FILE, not both ({choices.model!r} and {choices.gguf!r})")
        if choices.quant is not None:
            raise PlanError("a GGUF file fixes its own quantization; drop --quant")
        from vramplan.sources.gguf_model import load_gguf

        variant, quant = load_gguf(choices.gguf)
        return Resolved(variant, quant, "gguf")
    if choices.model is None:
        raise PlanError("name a MODEL (catalog id, Ollama tag or Hugging Face repo id) or give --gguf FILE")
    try:
        return catalog.resolve(choices.model)
    except UnknownModelError as unknown:
        from vramplan.sources.hf import looks_like_repo_id

        if not looks_like_repo_id(choices.model):
            raise
        from vramplan.sources.hf import load_hf

        try:
            variant, quant = load_hf(choices.model)
        except SourceError as exc:
            hint = str(unknown).partition("; ")[2]
            raise SourceError(f"{exc}; it is not in vramplan's catalog either ({hint})") from None
        return Resolved(variant, quant, "hf")


def build_request(
    catalog: Catalog, choices: Choices, machine: Machine | None, *, resolved: Resolved | None = None
) -> Request:
    """Resolve names and defaults into a Request. `machine` is the probed machine (or the one a log
    describes), used when no `--gpu` was given (None: plan without hardware). `resolved` is the model
    when the caller has already identified it (`vramplan check` reads it from the log)."""
    if resolved is None:
        resolved = resolve_model(catalog, choices)
    variant = resolved.variant
    # an Apple silicon GPU: named (--gpu m3-max-128gb), or the Mac the probe found
    apple = choices.gpu.spec if choices.gpu else (machine.metal_gpu() if machine is not None else None)
    if apple is not None and not apple.unified:
        apple = None
    # no GPU at all: neither named nor found (the probe saw no CUDA/ROCm GPU and no Apple silicon)
    gpuless = choices.gpu is None and machine is not None and not machine.gpu_count() and apple is None
    local = apple is not None or gpuless
    if choices.quant is not None:
        quant = variant.plan_quant(choices.quant, choices.runtime)
        if resolved.quant is not None and quant.name != resolved.quant.name and resolved.via == "ollama":
            raise PlanError(
                f"{choices.model} is the {resolved.quant.name} build; drop --quant or name "
                f"{variant.id} instead"
            )
    else:
        quant = resolved.quant or pick_quant(variant, choices.runtime or _local_default(local, resolved))
    runtime = choices.runtime or default_runtime(resolved, quant)
    if choices.runtime is None and not (rules_for(runtime).metal and rules_for(runtime).runs_on_host):
        runtime = _local_default(local, resolved, quant) or runtime
    if choices.gpu is not None and choices.gpu.spec.unified and choices.host_memory_bytes is not None:
        raise PlanError(
            f"--host-memory: the host of {choices.gpu.spec.name} is the same unified memory as its GPU "
            f"({(choices.gpu.spec.unified_memory_bytes or 0) / (1 << 30):.1f} GiB), planned from the card; "
            "drop --host-memory"
        )
    if choices.concurrency <= 0:
        raise PlanError(f"--concurrency must be at least 1, got {choices.concurrency}")
    if choices.nodes <= 0:
        raise PlanError(f"--nodes must be at least 1, got {choices.nodes}")
    if choices.gpu_count is not None and choices.gpu_count <= 0:
        raise PlanError(f"the GPU count must be at least 1, got {choices.gpu_count}")
    rules = rules_for(runtime, choices.runtime_version)
    gpu = choices.gpu.spec if choices.gpu else None
    count = choices.gpu.count if choices.gpu else (choices.gpu_count or 1)
    if choices.host_memory_bytes is not None and choices.host_memory_bytes <= 0:
        raise PlanError("--host-memory must be a positive size")
    host = choices.host_memory_bytes
    if host is None and machine is not None:
        host = machine.host_memory_bytes
    cpu_only = False
    used, used_index = 0, 0
    if choices.gpu is None and machine is not None:
        if machine.gpu_count():
            gpu, count = machine.gpu_spec(), machine.gpu_count()
            used, used_index = in_use(machine)
        elif apple is not None and rules.metal:
            gpu, count = apple, 1  # this Mac's GPU: Metal's share of the unified memory
            if choices.host_memory_bytes is not None:
                raise PlanError(
                    "--host-memory: on this Mac the host is the same unified memory as the GPU "
                    f"({(apple.unified_memory_bytes or 0) / (1 << 30):.1f} GiB); drop --host-memory"
                )
        elif rules.runs_on_host:
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
        cpu_moe_layers=choices.cpu_moe_layers,
        kv_layout=choices.kv_layout,
        gpu_memory_utilization=choices.gpu_memory_utilization,
        runtime_version=choices.runtime_version,
        max_num_seqs=choices.max_num_seqs,
        max_num_batched_tokens=choices.max_num_batched_tokens,
        mem_fraction_static=choices.mem_fraction_static,
        gpu_in_use_bytes=used,
        gpu_in_use_index=used_index,
        sources=tuple((flag, "flag") for flag in choices.given),
        given_notes=(choices.gpu.alias_note,) if choices.gpu and choices.gpu.alias_note else (),
        run=choices.run,
    )
