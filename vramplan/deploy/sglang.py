"""The `sglang` deploy target: `serve.sh` and a Docker Compose file running `python -m
sglang.launch_server` with the plan's flags (one node, or several with --nnodes / --node-rank /
--dist-init-addr).

Every flag was checked against SGLang 0.5.23's own `ServerArgs` (the wheel on PyPI): its fields are
declared in sglang/srt/arg_groups/fields/*.py and turned into flags by arg_groups/arg_utils.py (a field
`tp_size` is `--tp-size`; aliases such as `--tensor-parallel-size` are listed there);
`--reasoning-parser` is added in sglang/srt/server_args.py with the parser names of
sglang/srt/parser/reasoning_parser.py (`deepseek-r1`).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vramplan.catalog import R1_FAMILIES
from vramplan.deploy import launch as tools
from vramplan.deploy.options import DeployOptions
from vramplan.deploy.plan import DeployPlan, flag_args
from vramplan.deploy.vllm import gpu_vendor
from vramplan.errors import LaunchError, PlanError
from vramplan.estimate import Estimate, Request
from vramplan.precision import KVDtype
from vramplan.runtimes import Runtime, rules_for
from vramplan.runtimes.sglang import SGLANG_KV

if TYPE_CHECKING:
    from rich.console import Console

    from vramplan.deploy import Bundle
    from vramplan.deploy.targets import LaunchOptions
    from vramplan.deploy.verify import Verified

# The SGLang release every flag was checked against, and its image on Docker Hub (lmsysorg/sglang,
# tags v<release>; SGLang's docs/get-started/install.mdx: CUDA 13 images, `latest` the newest release).
SGLANG_VERSION = "0.5.23"
SGLANG_IMAGE = f"lmsysorg/sglang:v{SGLANG_VERSION}"
SGLANG_PORT = 30000  # ServerArgs.port's default (arg_groups/fields/serving.py)
DIST_INIT_PORT = 20000  # the head's port for torch.distributed in --dist-init-addr HOST:PORT (any free one)


@dataclass(frozen=True)
class SGLangSettings:
    """`python -m sglang.launch_server`'s flags for a plan (plan.settings in the templates)."""

    served_name: str
    gpus_per_pod: int
    tensor_parallel: int
    pipeline_parallel: int
    data_parallel: int
    runtime_settings: tuple[tuple[str, str], ...]  # the estimate's own (--context-length, ...), verbatim
    mem_fraction_static: str  # the share the estimate used, e.g. "0.846"
    kv_cache_dtype: str  # SGLang's spelling
    trust_remote_code: bool
    reasoning_parser: str | None
    vendor: str = "nvidia"  # the GPUs' vendor (deploy/vllm.py gpu_vendor); the image is a CUDA one

    @property
    def gpu_layers(self) -> int | None:
        return None

    @property
    def compose(self) -> bool:
        """A Compose file is written: the pinned image is a CUDA build, so not for AMD GPUs (there the
        run script starts a local ROCm build instead)."""
        return self.vendor != "amd"

    @property
    def image(self) -> str:
        return SGLANG_IMAGE

    @property
    def port(self) -> int:
        return SGLANG_PORT

    @property
    def version(self) -> str:
        return SGLANG_VERSION

    @property
    def dist_init_port(self) -> int:
        return DIST_INIT_PORT

    @property
    def estimate_args(self) -> list[str]:
        return [
            *("--tp", str(self.tensor_parallel), "--pp", str(self.pipeline_parallel)),
            *("--mem-fraction-static", self.mem_fraction_static),
        ]

    @property
    def flags(self) -> list[tuple[str, str | None]]:
        """launch_server's options after --model-path, without host, port and node flags."""
        flags: list[tuple[str, str | None]] = [("--served-model-name", self.served_name)]
        flags.append(("--tp-size", str(self.tensor_parallel)))
        if self.pipeline_parallel > 1:
            flags.append(("--pp-size", str(self.pipeline_parallel)))
        if self.data_parallel > 1:
            flags.append(("--dp-size", str(self.data_parallel)))
        flags += [(flag, value) for flag, value in self.runtime_settings]
        flags.append(("--mem-fraction-static", self.mem_fraction_static))
        flags.append(("--kv-cache-dtype", self.kv_cache_dtype))
        if self.trust_remote_code:
            flags.append(("--trust-remote-code", None))
        if self.reasoning_parser:
            flags.append(("--reasoning-parser", self.reasoning_parser))
        return flags

    @property
    def server_args(self) -> list[str]:
        return flag_args(self.flags)

    def template_values(
        self, render: Callable[[str, dict[str, Any]], str], ctx: dict[str, Any]
    ) -> dict[str, Any]:
        return {}


def default_fraction(est: Estimate) -> float | None:
    """The --mem-fraction-static the estimate used when none was named: SGLang's default, the total less
    its reservation for activations and CUDA graphs, on the GPU that reserves the most (the figure
    `vramplan estimate` prints among its inputs, runtimes/sglang.py `sglang_reserved_bytes`)."""
    if not est.per_gpu:
        return None
    g = max(est.per_gpu, key=lambda d: d.activation_bytes + d.overhead_bytes)
    if not g.capacity_bytes:
        return None
    return round((g.capacity_bytes - g.activation_bytes - g.overhead_bytes) / g.capacity_bytes, 3)


def pin_request(req: Request, est: Estimate) -> Request | None:
    """`req` with the --mem-fraction-static the bundle writes named, so the plan is estimated with the
    very number the server gets (None when the request already names one, or no GPU is known). The
    registry (deploy/targets.py REQUEST_PINS) calls it for SGLang plans only."""
    if req.mem_fraction_static is not None:
        return None
    fraction = default_fraction(est)
    return replace(req, mem_fraction_static=fraction) if fraction is not None else None


def settings(req: Request, est: Estimate, served_name: str | None, ollama_tag: str | None) -> SGLangSettings:
    """SGLang's settings for the plan `est` of `req` (`ollama_tag` is not SGLang's)."""
    if req.gpu is None or est.cpu_plan:
        raise PlanError("SGLang needs GPUs: name them with --gpu NAME[:COUNT], e.g. --gpu h100-80gb:8")
    if req.quant.is_gguf:
        raise PlanError(f"--target sglang loads Hugging Face checkpoints, not GGUF ({req.quant.name})")
    topo = est.topology
    arch = req.variant.architecture
    used = topo.tensor_parallel * topo.pipeline_parallel
    dp = 1
    if topo.nodes == 1 and not arch.is_moe:
        # idle GPUs of one node take whole data-parallel replicas of a dense model (--dp-size: each
        # replica is its own TP group with exactly the memory estimated for one)
        dp = max(1, req.gpus_per_node // used)
    served = served_name if served_name is not None else req.variant.id
    if not served.strip():
        raise PlanError("--served-name must not be empty")
    kv = KVDtype(est.kv_cache_dtype)
    # "auto" is the model's dtype: bf16, or fp16 for an fp16 checkpoint (runtimes/sglang.py auto_kv_dtype)
    model_dtype = rules_for(Runtime.SGLANG).auto_kv_dtype(req.quant.format)
    kv_flag = "auto" if kv in (KVDtype.AUTO, model_dtype) else SGLANG_KV.get(kv)
    if kv_flag is None:
        raise PlanError(f"SGLang has no --kv-cache-dtype for {kv.value} with this checkpoint")
    fraction = req.mem_fraction_static if req.mem_fraction_static is not None else default_fraction(est)
    if fraction is None:
        raise PlanError("SGLang's --mem-fraction-static needs the GPU's memory: name it with --gpu")
    return SGLangSettings(
        served_name=served,
        gpus_per_pod=used * dp // topo.nodes,
        tensor_parallel=topo.tensor_parallel,
        pipeline_parallel=topo.pipeline_parallel,
        data_parallel=dp,
        runtime_settings=tuple(
            (f, v) for f, v in est.settings if f in ("--context-length", "--max-running-requests")
        ),
        mem_fraction_static=f"{fraction:g}",
        kv_cache_dtype=kv_flag,
        trust_remote_code=arch.model_type == "deepseek_v3",
        # sglang/srt/parser/reasoning_parser.py: "deepseek-r1" splits <think> into reasoning_content
        reasoning_parser="deepseek-r1" if req.variant.family in R1_FAMILIES else None,
        vendor=gpu_vendor(req),
    )


def files(plan: DeployPlan, options: DeployOptions) -> list[tuple[str, str, bool]]:
    compose = [("sglang/docker-compose.yaml.j2", "docker-compose.yaml", False)]
    return [
        ("sglang/serve.sh.j2", "serve.sh", True),
        *(compose if plan.settings.compose else []),  # type: ignore[attr-defined]
        ("sglang/README.md.j2", "README.md", False),
    ]


def start_hint(plan: DeployPlan, out: Path) -> str:
    if plan.multi_node:
        return f"on each node: NODE_RANK=<rank> HEAD_ADDR=<head address> {shlex.quote(str(out / 'serve.sh'))}"
    if not plan.settings.compose:  # type: ignore[attr-defined]
        return f"{shlex.quote(str(out / 'serve.sh'))}   (SGLang {SGLANG_VERSION} for ROCm installed)"
    return f"cd {shlex.quote(str(out))} && docker compose up -d   (or ./serve.sh)"


def launch(bundle: Bundle, console: Console, options: LaunchOptions) -> Verified | None:
    """Docker Compose when docker is there, else serve.sh with a local SGLang. After `docker compose up
    -d`, the server's log beside the plan (deploy/verify.py), unless options.verify is False."""
    plan, out = bundle.plan, bundle.out
    if plan.multi_node:
        raise PlanError(
            f"a {plan.nodes}-node plan starts on every node: run {out / 'serve.sh'} (or docker compose "
            f"--profile head/worker) there with NODE_RANK and HEAD_ADDR set; see {out / 'README.md'}"
        )
    docker = tools.which("docker") if plan.settings.compose else None  # type: ignore[attr-defined]
    if docker is not None:
        tools.compose_up(
            console,
            docker,
            out,
            f"http://localhost:{SGLANG_PORT}/health",
            f"install SGLang {SGLANG_VERSION} and run {out / 'serve.sh'}",
        )
        if not options.verify:
            return None
        from vramplan.deploy import verify

        return verify.verify_compose(bundle, console, docker, "sglang")
    python = tools.which("python3") or tools.which("python")
    if python is None:
        raise LaunchError(f"neither docker nor python is on PATH: install Docker, or SGLang {SGLANG_VERSION}")
    bash = tools.which("bash") or "/bin/bash"
    tools.show_command(console, [str(out / "serve.sh")], tail="(Ctrl-C stops the server)")
    rc = tools.run_command([bash, str(out / "serve.sh")])
    if rc not in (0, 130, -2):
        raise LaunchError(f"{out / 'serve.sh'} exited with status {rc}")
    return None
