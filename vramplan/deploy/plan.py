"""From an estimate to the values a deployment bundle is written from: pure, no I/O.

`make_plan` takes the estimator's `Request` and `Estimate` (the memory plan) and the target, and returns
a frozen `DeployPlan`: every flag, environment variable and manifest number the templates print. Each
number comes from the estimate (context, concurrency, KV dtype, TP / PP, the share of each GPU the
runtime may take) or from a rule written down next to it here, so the files and `estimate --json`
cannot disagree.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass

from vramplan.catalog import R1_FAMILIES
from vramplan.errors import PlanError, RenderError
from vramplan.estimate import DeviceUse, Estimate, Request
from vramplan.precision import KVDtype, WeightFormat
from vramplan.runtimes import Runtime
from vramplan.runtimes.vllm import GPU_MEMORY_UTILIZATION

GiB = 1 << 30

# The utilization a plan names when no GPU capacity is known, so the estimate has no usable share to
# give: vLLM's default before 0.33 (the oldest row of the rules' table), as the bundles always wrote.
# No rendered file reaches it today (a vLLM plan needs --gpu; Ollama's files name no utilization); whether
# it should be the pinned release's default (0.92 in VLLM_VERSION) is open.
UNKNOWN_CAPACITY_UTILIZATION = GPU_MEMORY_UTILIZATION.rows[0][1]

# The vLLM release every emitted flag was checked against (vllm/engine/arg_utils.py,
# vllm/entrypoints/common/cli_args.py, vllm/config/*.py of the vllm 0.33.0 wheel), and its image.
VLLM_VERSION = "0.33.0"
VLLM_IMAGE = f"vllm/vllm-openai:v{VLLM_VERSION}"
# Ollama's server image for Kubernetes (its VRAM-based default context arrived in 0.15.5).
OLLAMA_IMAGE = "ollama/ollama:0.17.7"
VLLM_PORT = 8000
OLLAMA_PORT = 11434

# Startup budget: the download at a modest 100 MB/s plus ten minutes to load and warm up; a startup
# probe period of 10 s. The 671B's 689 GB then gets about two hours (deployment-facts: 60-120 min).
DOWNLOAD_BYTES_PER_S = 100 * 10**6
LOAD_MINUTES = 10
PROBE_PERIOD_S = 10
# Ollama's llama runner gives up after OLLAMA_LOAD_TIMEOUT (default 5 minutes); large models read
# from a slow disk need longer: budget 0.25 GiB/s, doubled, rounded up to whole minutes.
OLLAMA_LOAD_DEFAULT_MIN = 5
OLLAMA_LOAD_BYTES_PER_S = GiB // 4


class Target(str, enum.Enum):
    OLLAMA = "ollama"
    VLLM = "vllm"
    K8S = "k8s"


# vramplan's KV dtype -> vLLM `--kv-cache-dtype` (vllm/config/cache.py `CacheDType`).
_VLLM_KV = {
    KVDtype.AUTO: "auto",
    KVDtype.BF16: "bfloat16",
    KVDtype.FP16: "float16",
    KVDtype.FP8: "fp8",
}
# vramplan's KV dtype -> OLLAMA_KV_CACHE_TYPE (ollama docs/faq: f16, q8_0, q4_0).
_OLLAMA_KV = {KVDtype.FP16: "f16", KVDtype.Q8_0: "q8_0", KVDtype.Q4_0: "q4_0"}

# Ollama model names: [host/][namespace/]model[:tag], letters, digits, '.', '_', '-'.
_PART = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_OLLAMA_NAME = re.compile(rf"^{_PART}(/{_PART})*(:{_PART})?$")


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
    target: Target
    runtime: Runtime
    estimate: Estimate
    model_id: str  # the catalog id
    model_name: str  # the variant's display name
    repo: str  # what the runtime loads: the quantization's Hugging Face repo (vLLM)
    quant: str
    served_name: str  # vLLM --served-model-name / the derived Ollama model's name
    k8s_name: str  # a DNS-1035 label for Kubernetes objects
    ollama_tag: str | None  # what Ollama pulls
    context: int
    concurrency: int
    kv_cache_dtype: str  # vramplan's resolved KV dtype (estimate --json `kv_cache_dtype`)
    vllm_kv_cache_dtype: str
    ollama_kv_cache_type: str | None
    flash_attn: bool
    gpu_name: str | None
    gpu_label: str | None
    gpus_per_node: int
    nodes: int
    tensor_parallel: int
    pipeline_parallel: int
    data_parallel: int
    gpus_per_pod: int  # GPUs one node / pod / container takes
    expert_parallel: bool
    gpu_memory_utilization: str  # the estimate's usable share of each GPU, e.g. "0.90"
    max_num_batched_tokens: int
    max_num_seqs: int  # the sequences the estimate sizes the sampler for
    quantization: str | None
    trust_remote_code: bool
    reasoning_parser: str | None  # vLLM's parser for R1's <think> output; None for models that are not R1
    runtime_settings: tuple[tuple[str, str], ...]  # the estimate's own context flags, verbatim
    num_gpu: int | None  # Ollama PARAMETER num_gpu (partial offload only)
    ollama_load_timeout: str | None
    ollama_max_loaded_models: int | None
    gpu_products: tuple[str, ...]  # nvidia.com/gpu.product label values
    cache_gib: int  # model-cache volume size
    download_bytes: int
    startup_minutes: int
    groups: tuple[GPUGroup, ...]
    peak: DeviceUse  # the fullest GPU (or the host for CPU plans)

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
        args = ["vramplan", "estimate", self.model_id, "--quant", self.quant, "--runtime", self.runtime.value]
        if self.gpu_name and not self.cpu_only:
            args += ["--gpu", f"{self.gpu_name}:{self.gpus_per_node}"]
            if self.nodes > 1:
                args += ["--nodes", str(self.nodes)]
        args += ["--context", str(self.context), "--concurrency", str(self.concurrency)]
        args += ["--kv-cache-dtype", self.kv_cache_dtype]
        if self.runtime is Runtime.VLLM:
            args += ["--tp", str(self.tensor_parallel), "--pp", str(self.pipeline_parallel)]
            # the values the bundle's `vllm serve` line sets, so the estimate is of that server
            args += ["--gpu-memory-utilization", self.gpu_memory_utilization]
            args += ["--max-num-seqs", str(self.max_num_seqs)]
            args += ["--max-num-batched-tokens", str(self.max_num_batched_tokens)]
        if self.num_gpu is not None and not self.cpu_only:
            args += ["--gpu-layers", str(self.num_gpu)]
        if not self.flash_attn:
            args.append("--no-flash-attn")
        return args

    @property
    def ollama_model(self) -> str:
        """The name of the model `ollama create` derives from the library tag."""
        return self.served_name

    @property
    def vllm_flags(self) -> list[tuple[str, str | None]]:
        """`vllm serve` options after the model, without host, port and node flags, as
        (flag, value) pairs; value None for a switch."""
        flags: list[tuple[str, str | None]] = [("--served-model-name", self.served_name)]
        flags.append(("--tensor-parallel-size", str(self.tensor_parallel)))
        if self.pipeline_parallel > 1:
            flags.append(("--pipeline-parallel-size", str(self.pipeline_parallel)))
        if self.data_parallel > 1:
            flags.append(("--data-parallel-size", str(self.data_parallel)))
        if self.expert_parallel:
            flags.append(("--enable-expert-parallel", None))
        flags += [(flag, value) for flag, value in self.runtime_settings]  # --max-model-len
        flags.append(("--max-num-seqs", str(self.max_num_seqs)))
        flags.append(("--max-num-batched-tokens", str(self.max_num_batched_tokens)))
        flags.append(("--gpu-memory-utilization", self.gpu_memory_utilization))
        flags.append(("--kv-cache-dtype", self.vllm_kv_cache_dtype))
        if self.quantization:
            flags.append(("--quantization", self.quantization))
        if self.trust_remote_code:
            flags.append(("--trust-remote-code", None))
        if self.reasoning_parser:
            flags.append(("--reasoning-parser", self.reasoning_parser))
        return flags

    @property
    def vllm_engine_args(self) -> list[str]:
        """`vllm_flags` as one argument list."""
        out: list[str] = []
        for flag, value in self.vllm_flags:
            out.append(flag)
            if value is not None:
                out.append(value)
        return out

    @property
    def ollama_env(self) -> list[tuple[str, str]]:
        """The Ollama server settings this plan depends on (ollama envconfig)."""
        env = [
            ("OLLAMA_CONTEXT_LENGTH", str(self.context)),
            ("OLLAMA_NUM_PARALLEL", str(self.concurrency)),
            ("OLLAMA_FLASH_ATTENTION", "1" if self.flash_attn else "0"),
        ]
        if self.ollama_kv_cache_type:
            env.append(("OLLAMA_KV_CACHE_TYPE", self.ollama_kv_cache_type))
        if self.ollama_load_timeout:
            env.append(("OLLAMA_LOAD_TIMEOUT", self.ollama_load_timeout))
        if self.ollama_max_loaded_models:
            env.append(("OLLAMA_MAX_LOADED_MODELS", str(self.ollama_max_loaded_models)))
        return env

    @property
    def ollama_parameters(self) -> list[tuple[str, int]]:
        params = [("num_ctx", self.context)]
        if self.num_gpu is not None:
            params.append(("num_gpu", self.num_gpu))
        return params


def runtime_for(target: Target, asked: Runtime | None) -> Runtime:
    """The runtime a target runs: Ollama and vLLM their own; Kubernetes vLLM unless Ollama is asked."""
    if target is Target.OLLAMA:
        want = Runtime.OLLAMA
    elif target is Target.VLLM:
        want = Runtime.VLLM
    else:
        want = asked or Runtime.VLLM
        if want not in (Runtime.VLLM, Runtime.OLLAMA):
            raise PlanError(f"--target k8s runs vllm or ollama, not {want.value}")
    if asked is not None and asked is not want:
        raise PlanError(f"--target {target.value} runs {want.value}; drop --runtime {asked.value}")
    return want


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


def check_ollama_name(name: str, what: str) -> str:
    if not _OLLAMA_NAME.match(name):
        raise RenderError(
            f"{what} {name!r} is not a valid Ollama model name (letters, digits, '.', '_', '-', "
            "with optional namespace/ and :tag)"
        )
    return name


def vllm_quantization(req: Request) -> str | None:
    """The `--quantization` to name, or None to let vLLM read the checkpoint's own
    `quantization_config` (vllm/config/model.py `_verify_quantization` raises when a named method
    differs from the checkpoint's). Named only where the catalog pins the method: DeepSeek's native
    block-scaled FP8 checkpoints, whose config.json says `quant_method: fp8`."""
    q = req.quant
    if q.format is WeightFormat.FP8 and q.scheme.storage is None:
        return "fp8"
    return None


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


def _ollama_tag(req: Request, given: str | None) -> str:
    if given:
        return given
    if req.quant.ollama_tags:
        return req.quant.ollama_tags[0]
    if req.quant.repo and req.quant.is_gguf:
        # Ollama pulls single-file GGUFs straight from Hugging Face (hf.co/REPO:QUANT).
        return f"hf.co/{req.quant.repo}:{req.quant.name}"
    raise PlanError(f"{req.variant.id} {req.quant.name} has no Ollama tag or GGUF repo to pull")


def make_plan(
    req: Request,
    est: Estimate,
    target: Target,
    *,
    served_name: str | None = None,
    ollama_tag: str | None = None,
) -> DeployPlan:
    """The deployment values for `req` as estimated by `est`. `ollama_tag` is the tag the user
    named, if any (it wins over the catalog's first tag)."""
    rt = req.runtime
    if est.fits is False:
        why = next((n for n in est.notes if n.startswith("does not fit: ")), "does not fit")
        hint = f"; the largest context that fits is {est.max_context}" if est.max_context else ""
        raise PlanError(
            f"this plan {why}{hint}; change --context, --concurrency, --quant or --gpu "
            "(vramplan estimate shows the plan)"
        )
    topo = est.topology
    if rt is Runtime.VLLM and (req.gpu is None or est.cpu_plan):
        raise PlanError("vLLM needs GPUs: name them with --gpu NAME[:COUNT], e.g. --gpu h100-80gb:8")
    arch = req.variant.architecture
    used = topo.tensor_parallel * topo.pipeline_parallel
    dp = 1
    if rt is Runtime.VLLM and topo.nodes == 1 and not arch.is_moe:
        # idle GPUs of one node take whole data-parallel replicas of a dense model (each replica
        # uses exactly the memory estimated for one)
        dp = max(1, req.gpus_per_node // used)
    if rt is Runtime.VLLM:
        gpus_per_pod = used * dp // topo.nodes
    elif est.cpu_plan:
        gpus_per_pod = 0
    else:
        gpus_per_pod = topo.pipeline_parallel
    served = served_name if served_name is not None else req.variant.id
    if not served.strip():
        raise PlanError("--served-name must not be empty")
    tag: str | None = None
    if rt is Runtime.OLLAMA:
        tag = check_ollama_name(_ollama_tag(req, ollama_tag), "the Ollama tag")
        if served_name is None:
            served = f"{req.variant.id}-ctx{est.context}"
        check_ollama_name(served, "the model name")
    peak = max(est.per_gpu, key=lambda d: d.total_bytes) if est.per_gpu else est.host
    util = f"{UNKNOWN_CAPACITY_UTILIZATION:.2f}"
    if peak.capacity_bytes and peak.usable_bytes is not None:
        util = f"{peak.usable_bytes / peak.capacity_bytes:.2f}"
    published = req.quant.size.bytes if req.quant.size else 0
    download = max(published, est.weights_bytes)
    cache_gib = math.ceil(download * 1.15 / GiB) + 5
    startup = math.ceil(download / DOWNLOAD_BYTES_PER_S / 60) + LOAD_MINUTES
    startup = max(20, min(startup, 240))
    load_timeout = None
    max_loaded = None
    if rt is Runtime.OLLAMA:
        load_min = math.ceil(2 * est.weights_bytes / OLLAMA_LOAD_BYTES_PER_S / 60)
        if load_min > OLLAMA_LOAD_DEFAULT_MIN:
            load_timeout = f"{load_min}m"
        vram = sum(d.capacity_bytes or 0 for d in est.per_gpu)
        if vram and est.total_bytes > vram // 2:
            max_loaded = 1  # no room for a second model beside this one
    num_gpu: int | None = None
    if rt is Runtime.OLLAMA:
        if est.cpu_plan:
            num_gpu = 0
        elif req.gpu_layers is not None and req.gpu_layers < arch.num_hidden_layers + 1:
            num_gpu = req.gpu_layers
    kv = KVDtype(est.kv_cache_dtype)
    products: tuple[str, ...] = ()
    if req.gpu is not None:
        products = tuple(gpu_product_label(n) for n in req.gpu.nvml_names)
    return DeployPlan(
        target=target,
        runtime=rt,
        estimate=est,
        model_id=req.variant.id,
        model_name=req.variant.name,
        repo=req.quant.repo or req.variant.hf_repo,
        quant=req.quant.name,
        served_name=served,
        k8s_name=k8s_name(req.variant.id),
        ollama_tag=tag,
        context=est.context,
        concurrency=est.concurrency,
        kv_cache_dtype=est.kv_cache_dtype,
        vllm_kv_cache_dtype=_VLLM_KV.get(req.kv_cache_dtype, "auto"),
        ollama_kv_cache_type=_OLLAMA_KV.get(kv) if rt is Runtime.OLLAMA else None,
        flash_attn=req.flash_attn,
        gpu_name=topo.gpu,
        gpu_label=req.gpu.label if req.gpu else None,
        gpus_per_node=topo.gpus_per_node,
        nodes=topo.nodes,
        tensor_parallel=topo.tensor_parallel,
        pipeline_parallel=topo.pipeline_parallel,
        data_parallel=dp,
        gpus_per_pod=gpus_per_pod,
        expert_parallel=rt is Runtime.VLLM and arch.is_moe and topo.tensor_parallel > 1,
        gpu_memory_utilization=util,
        max_num_batched_tokens=est.batch_tokens,
        max_num_seqs=est.batch_sequences,
        quantization=vllm_quantization(req) if rt is Runtime.VLLM else None,
        trust_remote_code=rt is Runtime.VLLM and arch.model_type == "deepseek_v3",
        # R1 and its distills think in <think> ... </think>: vLLM's `deepseek_r1` parser (vllm/reasoning/)
        # splits that into `reasoning_content`; a model read from another HF repo is not assumed to
        reasoning_parser="deepseek_r1" if req.variant.family in R1_FAMILIES else None,
        runtime_settings=est.settings,
        num_gpu=num_gpu,
        ollama_load_timeout=load_timeout,
        ollama_max_loaded_models=max_loaded,
        gpu_products=products,
        cache_gib=cache_gib,
        download_bytes=download,
        startup_minutes=startup,
        groups=_groups(est.per_gpu),
        peak=peak,
    )
