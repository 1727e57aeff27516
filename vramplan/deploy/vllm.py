"""The `vllm` deploy target: `serve.sh` and a Docker Compose file running `vllm serve` with the plan's
flags, and the vLLM settings every target that runs vLLM (vllm, k8s) writes."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vramplan.catalog import R1_FAMILIES
from vramplan.deploy import launch as tools
from vramplan.deploy.options import DeployOptions
from vramplan.deploy.plan import DeployPlan, flag_args
from vramplan.errors import LaunchError, PlanError
from vramplan.estimate import Estimate, Request
from vramplan.precision import WeightFormat
from vramplan.runtimes.vllm import GPU_MEMORY_UTILIZATION, VLLM_KV

if TYPE_CHECKING:
    from rich.console import Console

    from vramplan.deploy import Bundle
    from vramplan.deploy.targets import LaunchOptions
    from vramplan.deploy.verify import Verified

# The vLLM release every emitted flag was checked against (vllm/engine/arg_utils.py,
# vllm/entrypoints/common/cli_args.py, vllm/config/*.py of the vllm 0.33.0 wheel), and its image.
VLLM_VERSION = "0.33.0"
VLLM_IMAGE = f"vllm/vllm-openai:v{VLLM_VERSION}"
# The same release built for ROCm (AMD GPUs), published by the vLLM project beside the CUDA image
# (vllm docs/deployment/docker.md, "Short image names": `vllm/vllm:v0.33.0-rocm` is
# `vllm/vllm-openai-rocm:v0.33.0`).
VLLM_ROCM_IMAGE = f"vllm/vllm-openai-rocm:v{VLLM_VERSION}"
VLLM_PORT = 8000

# The utilization a plan names when no GPU capacity is known, so the estimate has no usable share to
# give: vLLM's default before 0.33 (the oldest row of the rules' table), as the bundles always wrote.
# No rendered file reaches it today (a vLLM plan needs --gpu; Ollama's files name no utilization); whether
# it should be the pinned release's default (0.92 in VLLM_VERSION) is open.
UNKNOWN_CAPACITY_UTILIZATION = GPU_MEMORY_UTILIZATION.rows[0][1]

# The lowest compute capability with bfloat16: below it vLLM runs a bfloat16 checkpoint in float16
# (vllm/platforms/cuda.py `supported_dtypes`: bfloat16 from capability 8.0; vllm/config/model.py
# `_resolve_auto_dtype` falls back to the platform's first supported dtype).
_BF16_CAPABILITY = (8, 0)


@dataclass(frozen=True)
class VLLMSettings:
    """`vllm serve`'s flags for a plan (plan.settings in the templates)."""

    served_name: str
    gpus_per_pod: int
    tensor_parallel: int
    pipeline_parallel: int
    data_parallel: int
    expert_parallel: bool
    runtime_settings: tuple[tuple[str, str], ...]  # the estimate's own context flags, verbatim
    max_num_seqs: int  # the sequences the estimate sizes the sampler for
    max_num_batched_tokens: int
    gpu_memory_utilization: str  # the estimate's usable share of each GPU, e.g. "0.90"
    kv_cache_dtype: str  # vLLM's spelling
    quantization: str | None
    trust_remote_code: bool
    reasoning_parser: str | None  # vLLM's parser for R1's <think> output; None for models that are not R1
    vendor: str = "nvidia"  # the GPUs' vendor: "nvidia" or "amd" (gpu_vendor)
    image: str = VLLM_IMAGE  # the image for that vendor: CUDA or ROCm

    @property
    def gpu_layers(self) -> int | None:
        return None  # vLLM keeps every layer on the GPUs

    @property
    def estimate_args(self) -> list[str]:
        """The layout and the values the bundle's `vllm serve` sets, so the estimate is of that server."""
        return [
            *("--tp", str(self.tensor_parallel), "--pp", str(self.pipeline_parallel)),
            *("--gpu-memory-utilization", self.gpu_memory_utilization),
            *("--max-num-seqs", str(self.max_num_seqs)),
            *("--max-num-batched-tokens", str(self.max_num_batched_tokens)),
        ]

    @property
    def flags(self) -> list[tuple[str, str | None]]:
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
        flags.append(("--kv-cache-dtype", self.kv_cache_dtype))
        if self.quantization:
            flags.append(("--quantization", self.quantization))
        if self.trust_remote_code:
            flags.append(("--trust-remote-code", None))
        if self.reasoning_parser:
            flags.append(("--reasoning-parser", self.reasoning_parser))
        return flags

    @property
    def engine_args(self) -> list[str]:
        """`flags` as one argument list."""
        return flag_args(self.flags)

    def template_values(
        self, render: Callable[[str, dict[str, Any]], str], ctx: dict[str, Any]
    ) -> dict[str, Any]:
        return {}


def quantization(req: Request) -> str | None:
    """The `--quantization` to name, or None to let vLLM read the checkpoint's own
    `quantization_config` (vllm/config/model.py `_verify_quantization` raises when a named method
    differs from the checkpoint's). Named only where the catalog pins the method: DeepSeek's native
    block-scaled FP8 checkpoints, whose config.json says `quant_method: fp8`."""
    q = req.quant
    if q.format is WeightFormat.FP8 and q.scheme.storage is None:
        return "fp8"
    return None


def gpu_vendor(req: Request) -> str:
    """The GPUs' vendor: amd for cards the GPU table gives an AMD gfx target (gpus.yaml `gfx_arch`:
    mi250x, mi300x, mi325x, mi355x), else nvidia."""
    return "amd" if req.gpu is not None and req.gpu.gfx_arch else "nvidia"


def model_dtype(req: Request) -> str:
    """The dtype vLLM runs the model in with its default `--dtype auto`: the checkpoint's own
    (`torch_dtype`; every R1 checkpoint, quantized ones included, is bfloat16 outside its quantized
    layers) unless the GPU lacks bfloat16, where vLLM falls back to float16."""
    q = req.quant
    own = "float16" if q.format is WeightFormat.FP16 or q.scheme.base_dtype == "fp16" else "bfloat16"
    cc = req.gpu.compute_capability if req.gpu is not None else None
    if own == "bfloat16" and cc is not None and cc < _BF16_CAPABILITY:
        return "float16"
    return own


def kv_cache_dtype(req: Request) -> str:
    """vLLM's `--kv-cache-dtype` for the plan's KV dtype. vLLM keeps a 16-bit cache only in the
    model's own dtype: an explicit float16 / bfloat16 that differs stops it at startup
    (vllm/config/vllm.py `_reject_mismatched_float_kv_cache`: 'kv_cache_dtype="float16" is
    incompatible with dtype="bfloat16"'), so a 16-bit dtype other than the model's is refused here."""
    vllm_kv = VLLM_KV.get(req.kv_cache_dtype, "auto")
    if vllm_kv in ("float16", "bfloat16"):
        runs = model_dtype(req)
        if vllm_kv != runs:
            other = "bf16" if runs == "bfloat16" else "fp16"
            raise PlanError(
                f"vLLM keeps a 16-bit KV cache only in the model's dtype, and it runs {req.variant.id} "
                f"{req.quant.name} in {runs} here; use --kv-cache-dtype auto or {other} (the same 2 bytes "
                "per value)"
            )
    return vllm_kv


def published_checkpoint(req: Request) -> str:
    """The Hugging Face repo vLLM loads for the plan. A quantization with no repo of its own is served
    from the variant's repo only when no other quantization of the variant is published there;
    otherwise that repo holds another checkpoint (R1-0528's repo is FP8, its bf16 is only an upcast
    anyone may make), so the plan is refused with the reason and what runs instead."""
    q, v = req.quant, req.variant
    if q.repo:
        return q.repo
    there = next((o for o in v.quants if o.repo == v.hf_repo and o.name != q.name), None)
    if there is None:
        return v.hf_repo
    how = f" ({q.notes[:1].lower()}{q.notes[1:].rstrip('.')})" if q.notes else ""
    gpu = f" --gpu {req.gpu.name}:{req.gpus_per_node}" if req.gpu is not None else ""
    nodes = f" --nodes {req.nodes}" if req.nodes > 1 else ""
    raise PlanError(
        f"{v.id} {q.name} has no published checkpoint{how}: vLLM would load {v.hf_repo}, which is "
        f"{there.name}. Convert it yourself and serve that directory, or deploy the published one with "
        f"--quant {there.name} (vramplan estimate {v.id} --quant {there.name} --runtime vllm{gpu}{nodes} "
        "shows its plan)"
    )


def settings(req: Request, est: Estimate, served_name: str | None, ollama_tag: str | None) -> VLLMSettings:
    """vLLM's settings for the plan `est` of `req` (`ollama_tag` is not vLLM's and is ignored)."""
    if req.gpu is None or est.cpu_plan:
        raise PlanError("vLLM needs GPUs: name them with --gpu NAME[:COUNT], e.g. --gpu h100-80gb:8")
    topo = est.topology
    arch = req.variant.architecture
    used = topo.tensor_parallel * topo.pipeline_parallel
    dp = 1
    if topo.nodes == 1 and not arch.is_moe:
        # idle GPUs of one node take whole data-parallel replicas of a dense model (each replica
        # uses exactly the memory estimated for one)
        dp = max(1, req.gpus_per_node // used)
    served = served_name if served_name is not None else req.variant.id
    if not served.strip():
        raise PlanError("--served-name must not be empty")
    if served.startswith("-"):
        raise PlanError(f"--served-name {served!r} starts with '-', which vLLM would read as an option")
    published_checkpoint(req)
    peak = max(est.per_gpu, key=lambda d: d.total_bytes) if est.per_gpu else est.host
    util = f"{UNKNOWN_CAPACITY_UTILIZATION:.2f}"
    if peak.capacity_bytes and peak.usable_bytes is not None:
        util = f"{peak.usable_bytes / peak.capacity_bytes:.2f}"
    return VLLMSettings(
        served_name=served,
        gpus_per_pod=used * dp // topo.nodes,
        tensor_parallel=topo.tensor_parallel,
        pipeline_parallel=topo.pipeline_parallel,
        data_parallel=dp,
        expert_parallel=arch.is_moe and topo.tensor_parallel > 1,
        runtime_settings=tuple((f, v) for f, v in est.settings if f == "--max-model-len"),
        max_num_seqs=est.batch_sequences,
        max_num_batched_tokens=est.batch_tokens,
        gpu_memory_utilization=util,
        kv_cache_dtype=kv_cache_dtype(req),
        quantization=quantization(req),
        trust_remote_code=arch.model_type == "deepseek_v3",
        # R1 and its distills think in <think> ... </think>: vLLM's `deepseek_r1` parser (vllm/reasoning/)
        # splits that into `reasoning_content`; a model read from another HF repo is not assumed to
        reasoning_parser="deepseek_r1" if req.variant.family in R1_FAMILIES else None,
        vendor=gpu_vendor(req),
        image=VLLM_ROCM_IMAGE if gpu_vendor(req) == "amd" else VLLM_IMAGE,
    )


def files(plan: DeployPlan, options: DeployOptions) -> list[tuple[str, str, bool]]:
    return [
        ("vllm/serve.sh.j2", "serve.sh", True),
        ("vllm/docker-compose.yaml.j2", "docker-compose.yaml", False),
        ("vllm/README.md.j2", "README.md", False),
    ]


def start_hint(plan: DeployPlan, out: Path) -> str:
    if plan.multi_node:
        return f"on each node: NODE_RANK=<rank> HEAD_ADDR=<head address> {shlex.quote(str(out / 'serve.sh'))}"
    return f"cd {shlex.quote(str(out))} && docker compose up -d   (or ./serve.sh)"


def launch(bundle: Bundle, console: Console, options: LaunchOptions) -> Verified | None:
    """Docker Compose when docker is there, else serve.sh with a local vLLM. After `docker compose up
    -d`, the server's log beside the plan (deploy/verify.py), unless options.verify is False."""
    plan, out = bundle.plan, bundle.out
    if plan.multi_node:
        raise PlanError(
            f"a {plan.nodes}-node plan starts on every node: run {out / 'serve.sh'} (or docker compose "
            f"--profile head/worker) there with NODE_RANK and HEAD_ADDR set; see {out / 'README.md'}"
        )
    docker = tools.which("docker")
    if docker is not None:
        tools.compose_up(
            console,
            docker,
            out,
            f"http://localhost:{VLLM_PORT}/health",
            f"install vLLM {VLLM_VERSION} and run {out / 'serve.sh'}",
        )
        if not options.verify:
            return None
        from vramplan.deploy import verify

        return verify.verify_compose(bundle, console, docker, "vllm")
    vllm = tools.which("vllm")
    if vllm is None:
        raise LaunchError(
            "neither docker nor vllm is on PATH: install Docker with the NVIDIA Container Toolkit, "
            f"or vLLM {VLLM_VERSION} (pip install 'vllm=={VLLM_VERSION}')"
        )
    bash = tools.which("bash") or "/bin/bash"
    tools.show_command(console, [str(out / "serve.sh")], tail="(Ctrl-C stops the server)")
    rc = tools.run_command([bash, str(out / "serve.sh")])
    if rc not in (0, 130, -2):
        raise LaunchError(f"{out / 'serve.sh'} exited with status {rc}")
    return None
