"""From an estimate to the values a deployment bundle is written from: pure, no I/O.

`make_plan` takes the estimator's `Request` and `Estimate` (the memory plan), the target's name and the
settings of the runtime it runs (deploy/vllm.py, deploy/ollama.py build them), and returns a frozen
`DeployPlan`: every flag, environment variable and manifest number the templates print. Each number
comes from the estimate (context, concurrency, KV dtype, TP / PP, the share of each GPU the runtime may
take) or from a rule written down next to it, so the files and `estimate --json` cannot disagree.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from vramplan.errors import PlanError
from vramplan.estimate import DeviceUse, Estimate, Request
from vramplan.runtimes import Runtime

GiB = 1 << 30

# Startup budget: the download at a modest 100 MB/s plus ten minutes to load and warm up; a startup
# probe period of 10 s. The 671B's 689 GB then gets about two hours (deployment-facts: 60-120 min).
DOWNLOAD_BYTES_PER_S = 100 * 10**6
LOAD_MINUTES = 10
PROBE_PERIOD_S = 10


class RuntimeSettings(Protocol):
    """What a runtime's deploy settings give the plan (deploy/vllm.py `VLLMSettings`, deploy/ollama.py
    `OllamaSettings`): the name the model is served under, the GPUs one pod / container takes, and the
    values its templates read (as `plan.settings`)."""

    @property
    def served_name(self) -> str: ...

    @property
    def gpus_per_pod(self) -> int: ...

    @property
    def gpu_layers(self) -> int | None:
        """Layers on the GPUs when the plan offloads some to the host (Ollama's num_gpu); None: all."""
        ...

    @property
    def estimate_args(self) -> list[str]:
        """The `vramplan estimate` flags of this runtime that the bundle's settings fix."""
        ...

    def template_values(
        self, render: Callable[[str, dict[str, Any]], str], ctx: dict[str, Any]
    ) -> dict[str, Any]:
        """Values the templates read besides the plan (Ollama: the Modelfile text, rendered once)."""
        ...


def flag_args(flags: list[tuple[str, str | None]]) -> list[str]:
    """A server's (flag, value) pairs as one argument list; a flag without a value stands alone."""
    out: list[str] = []
    for flag, value in flags:
        out.append(flag)
        if value is not None:
            out.append(value)
    return out


# (request, estimate, served name asked for, Ollama tag asked for) -> a runtime's deploy settings
SettingsBuilder = Callable[[Request, Estimate, "str | None", "str | None"], RuntimeSettings]


@dataclass(frozen=True)
class GPUGroup:
    """Consecutive GPUs with the same memory use, for the README's table."""

    first: int
    last: int
    use: DeviceUse

    @property
    def label(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


@dataclass(frozen=True)
class DeployPlan:
    target: str  # the deploy target's name (deploy/targets.py)
    runtime: Runtime
    estimate: Estimate
    model_id: str  # the catalog id
    model_name: str  # the variant's display name
    repo: str  # what the runtime loads: the quantization's Hugging Face repo (vLLM)
    quant: str
    served_name: str  # vLLM --served-model-name / the derived Ollama model's name
    k8s_name: str  # a DNS-1035 label for Kubernetes objects
    context: int
    concurrency: int
    kv_cache_dtype: str  # vramplan's resolved KV dtype (estimate --json `kv_cache_dtype`)
    flash_attn: bool
    gpu_name: str | None
    gpu_label: str | None
    gpus_per_node: int
    nodes: int
    tensor_parallel: int
    pipeline_parallel: int
    gpus_per_pod: int  # GPUs one node / pod / container takes
    num_gpu: int | None  # layers on the GPUs of a partial offload (Ollama PARAMETER num_gpu)
    gpu_products: tuple[str, ...]  # nvidia.com/gpu.product label values
    cache_gib: int  # model-cache volume size
    download_bytes: int
    startup_minutes: int
    groups: tuple[GPUGroup, ...]
    peak: DeviceUse  # the fullest GPU (or the host for CPU plans)
    settings: RuntimeSettings  # the runtime's own (deploy/vllm.py, deploy/ollama.py): plan.settings

    @property
    def multi_node(self) -> bool:
        return self.nodes > 1

    @property
    def cpu_only(self) -> bool:
        return self.estimate.cpu_plan

    @property
    def startup_failure_threshold(self) -> int:
        return self.startup_minutes * 60 // PROBE_PERIOD_S

    @property
    def estimate_command(self) -> list[str]:
        """The `vramplan estimate` arguments that give this plan's memory figures."""
        # a model the catalog does not name (llama.cpp's --gguf FILE) says itself how to name it
        named: list[str] | None = getattr(self.settings, "estimate_model", None)
        args = ["vramplan", "estimate", *(named or [self.model_id, "--quant", self.quant])]
        args += ["--runtime", self.runtime.value]
        if self.gpu_name and not self.cpu_only:
            args += ["--gpu", f"{self.gpu_name}:{self.gpus_per_node}"]
            if self.nodes > 1:
                args += ["--nodes", str(self.nodes)]
        args += ["--context", str(self.context), "--concurrency", str(self.concurrency)]
        args += ["--kv-cache-dtype", self.kv_cache_dtype]
        args += self.settings.estimate_args  # the runtime's own flags the bundle sets
        if self.num_gpu is not None and not self.cpu_only:
            args += ["--gpu-layers", str(self.num_gpu)]
        if not self.flash_attn:
            args.append("--no-flash-attn")
        return args


def k8s_name(text: str) -> str:
    """A DNS-1035 label (lower case letters, digits, '-', starting with a letter, at most 63)."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    name = re.sub(r"-{2,}", "-", name)
    if not name or not name[0].isalpha():
        name = f"r1-{name}".rstrip("-")
    return name[:52].rstrip("-")  # room for suffixes such as "-cache" and LWS pod ordinals


def gpu_product_label(nvml_name: str) -> str:
    """GPU Feature Discovery's nvidia.com/gpu.product: the NVML name with spaces as hyphens."""
    return nvml_name.strip().replace(" ", "-")


def _groups(devices: tuple[DeviceUse, ...]) -> tuple[GPUGroup, ...]:
    out: list[GPUGroup] = []
    for d in devices:
        key = (d.weights_bytes, d.kv_cache_bytes, d.activation_bytes, d.overhead_bytes)
        if out:
            prev = out[-1].use
            if (prev.weights_bytes, prev.kv_cache_bytes, prev.activation_bytes, prev.overhead_bytes) == key:
                out[-1] = GPUGroup(out[-1].first, d.index, prev)
                continue
        out.append(GPUGroup(d.index, d.index, d))
    return tuple(out)


def make_plan(
    req: Request,
    est: Estimate,
    target: str,
    build: SettingsBuilder,
    *,
    served_name: str | None = None,
    ollama_tag: str | None = None,
) -> DeployPlan:
    """The deployment values for `req` as estimated by `est`, for `target`, with the runtime's own
    settings made by `build` (deploy/targets.py `settings_for(runtime)`); `served_name` and
    `ollama_tag` are what the user named, if anything."""
    if est.fits is False:
        why = next((n for n in est.notes if n.startswith("does not fit: ")), "does not fit")
        hint = f"; the largest context that fits is {est.max_context}" if est.max_context else ""
        raise PlanError(
            f"this plan {why}{hint}; change --context, --concurrency, --quant or --gpu "
            "(vramplan estimate shows the plan)"
        )
    settings = build(req, est, served_name, ollama_tag)
    topo = est.topology
    peak = max(est.per_gpu, key=lambda d: d.total_bytes) if est.per_gpu else est.host
    published = req.quant.size.bytes if req.quant.size else 0
    download = max(published, est.weights_bytes)
    cache_gib = math.ceil(download * 1.15 / GiB) + 5
    startup = math.ceil(download / DOWNLOAD_BYTES_PER_S / 60) + LOAD_MINUTES
    startup = max(20, min(startup, 240))
    products: tuple[str, ...] = ()
    if req.gpu is not None:
        products = tuple(gpu_product_label(n) for n in req.gpu.nvml_names)
    return DeployPlan(
        target=target,
        runtime=req.runtime,
        estimate=est,
        model_id=req.variant.id,
        model_name=req.variant.name,
        repo=req.quant.repo or req.variant.hf_repo,
        quant=req.quant.name,
        served_name=settings.served_name,
        k8s_name=k8s_name(req.variant.id),
        context=est.context,
        concurrency=est.concurrency,
        kv_cache_dtype=est.kv_cache_dtype,
        flash_attn=req.flash_attn,
        gpu_name=topo.gpu,
        gpu_label=req.gpu.label if req.gpu else None,
        gpus_per_node=topo.gpus_per_node,
        nodes=topo.nodes,
        tensor_parallel=topo.tensor_parallel,
        pipeline_parallel=topo.pipeline_parallel,
        gpus_per_pod=settings.gpus_per_pod,
        num_gpu=settings.gpu_layers,
        gpu_products=products,
        cache_gib=cache_gib,
        download_bytes=download,
        startup_minutes=startup,
        groups=_groups(est.per_gpu),
        peak=peak,
        settings=settings,
    )
