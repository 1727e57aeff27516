"""The `llama.cpp` deploy target: `run.sh` and a Docker Compose file running `llama-server` with the plan's
flags, and the launch that starts a local llama-server, waits for it, asks it one question, reads its
startup log and sets it beside the plan (deploy/verify.py).

Every flag was checked against llama.cpp's `common/arg.cpp` of the source llama-cpp-python 0.3.36 vendors
(llama.cpp commit 0c1e570, release b11312) and against `llama-server --help` of a build of it.
"""

from __future__ import annotations

import math
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vramplan.catalog import R1_FAMILIES
from vramplan.deploy import launch as tools
from vramplan.deploy.options import DeployOptions
from vramplan.deploy.plan import DeployPlan, flag_args
from vramplan.deploy.vllm import gpu_vendor
from vramplan.errors import LaunchError, PlanError
from vramplan.estimate import Estimate, Request
from vramplan.hardware import size_text
from vramplan.precision import KVDtype
from vramplan.runtimes.llamacpp import GGML_KV

if TYPE_CHECKING:
    from rich.console import Console

    from vramplan.deploy import Bundle
    from vramplan.deploy.targets import LaunchOptions
    from vramplan.deploy.verify import Verified

# The llama.cpp source every flag was checked against: the copy llama-cpp-python 0.3.36's sdist vendors
# (vendor/llama.cpp, commit 0c1e57098bba, which its `llama-server --version` prints as "0c1e570"),
# release tag b11312 of ggml-org/llama.cpp. Its CUDA server image, from the project's container registry
# (ghcr.io/ggml-org/llama.cpp, tags `server-cuda-b<release>`, docs/docker.md).
LLAMA_CPP_RELEASE = "b11312"
LLAMA_CPP_COMMIT = "0c1e570"
LLAMA_CPP_IMAGE = f"ghcr.io/ggml-org/llama.cpp:server-cuda-{LLAMA_CPP_RELEASE}"
LLAMA_CPP_CPU_IMAGE = f"ghcr.io/ggml-org/llama.cpp:server-{LLAMA_CPP_RELEASE}"  # for plans in host RAM
LLAMA_CPP_PORT = 8080  # llama-server's default --port (common/common.h `port = 8080`)
# Where the image keeps what `-hf` downloads (LLAMA_CACHE; common/common.cpp `fs_get_cache_directory`)
CONTAINER_CACHE = "/root/.cache/llama.cpp"
CONTAINER_MODELS = "/models"  # where a --gguf file's folder is mounted in the container


@dataclass(frozen=True)
class LlamaCppSettings:
    """`llama-server`'s flags for a plan (plan.settings in the templates)."""

    served_name: str
    gpus_per_pod: int
    model_flag: str  # -m (a file) or -hf (a Hugging Face repo and quantization tag)
    model_value: str  # the file's absolute path, or REPO:QUANT
    gguf_path: str | None  # the --gguf file, when the plan is of one
    context_flags: tuple[tuple[str, str], ...]  # the estimate's own (--ctx-size, --parallel), verbatim
    n_gpu_layers: int
    offloaded_layers: int | None  # the plan's --gpu-layers, when it keeps some layers in host RAM
    cpu_moe_layers: int
    flash_attn: bool
    cache_type: str  # ggml's spelling
    ubatch: int
    reasoning_format: str | None  # deepseek for R1 models: <think> goes to reasoning_content
    host_memory_bytes: int | None  # the host RAM the plan was checked against, when it uses some
    vendor: str = "nvidia"  # the GPUs' vendor (deploy/vllm.py gpu_vendor); the image is a CUDA one

    @property
    def gpu_layers(self) -> int | None:
        return self.offloaded_layers

    @property
    def compose(self) -> bool:
        """A Compose file is written: the pinned image is a CUDA build, so not for AMD GPUs (there the
        run script starts a local HIP build of llama-server instead)."""
        return self.vendor != "amd"

    @property
    def image(self) -> str:
        return LLAMA_CPP_IMAGE if self.gpus_per_pod else LLAMA_CPP_CPU_IMAGE

    @property
    def port(self) -> int:
        return LLAMA_CPP_PORT

    @property
    def release(self) -> str:
        return LLAMA_CPP_RELEASE

    @property
    def estimate_args(self) -> list[str]:
        """The flags of `vramplan estimate` the bundle's llama-server settings fix."""
        args: list[str] = []
        if self.host_memory_bytes is not None:
            args += ["--host-memory", size_text(self.host_memory_bytes)]
        if self.cpu_moe_layers:
            args += ["--n-cpu-moe", str(self.cpu_moe_layers)]
        return args

    @property
    def estimate_model(self) -> list[str] | None:
        """What names the model to `vramplan estimate` when the catalog id does not: --gguf FILE."""
        return ["--gguf", self.gguf_path] if self.gguf_path else None

    @property
    def flags(self) -> list[tuple[str, str | None]]:
        """llama-server's options without --host and --port, as (flag, value); value None for a switch."""
        flags: list[tuple[str, str | None]] = [(self.model_flag, self.model_value)]
        flags.append(("--alias", self.served_name))
        flags += [(flag, value) for flag, value in self.context_flags]
        flags.append(("-ngl", str(self.n_gpu_layers)))
        if self.cpu_moe_layers:
            flags.append(("--n-cpu-moe", str(self.cpu_moe_layers)))
        flags.append(("-fa", "on" if self.flash_attn else "off"))
        flags.append(("--cache-type-k", self.cache_type))
        flags.append(("--cache-type-v", self.cache_type))
        flags.append(("-ub", str(self.ubatch)))
        flags.append(("--jinja", None))
        if self.reasoning_format:
            flags.append(("--reasoning-format", self.reasoning_format))
        return flags

    @property
    def server_args(self) -> list[str]:
        """`flags` as one argument list."""
        return flag_args(self.flags)

    @property
    def container_args(self) -> list[str]:
        """`server_args` inside the image: a --gguf file is read from its folder mounted at /models."""
        args = self.server_args
        if self.gguf_path:
            args[1] = f"{CONTAINER_MODELS}/{Path(self.gguf_path).name}"
        return args

    @property
    def gguf_dir(self) -> str | None:
        return str(Path(self.gguf_path).parent) if self.gguf_path else None

    def template_values(
        self, render: Callable[[str, dict[str, Any]], str], ctx: dict[str, Any]
    ) -> dict[str, Any]:
        return {}


def settings_builder(
    gguf: str | None,
) -> Callable[[Request, Estimate, str | None, str | None], LlamaCppSettings]:
    """The settings builder for a plan of the catalog (gguf None) or of the GGUF file `gguf`."""

    def build(
        req: Request, est: Estimate, served_name: str | None, ollama_tag: str | None
    ) -> LlamaCppSettings:
        return settings(req, est, served_name, ollama_tag, gguf=gguf)

    return build


def _model(req: Request, gguf: str | None) -> tuple[str, str, str | None]:
    if gguf is not None:
        path = str(Path(gguf).expanduser().resolve())
        return "-m", path, path
    q = req.quant
    if not q.is_gguf:
        raise PlanError(
            f"llama.cpp loads GGUF files; {req.variant.id} {q.name} is not one: "
            "pick a GGUF quantization (--quant q4_K_M, ...) or give --gguf FILE"
        )
    if not q.repo:
        others = [o.name for o in req.variant.quants if o.is_gguf and o.repo]
        hint = f" or --quant {' / '.join(others)}" if others else ""
        raise PlanError(
            f"the catalog names no Hugging Face repo for {req.variant.id} {q.name} (llama-server downloads "
            f"with -hf): give --gguf FILE{hint}"
        )
    # llama.cpp's -hf REPO:TAG picks the file whose name holds "-TAG" (upper case compared;
    # common/download.cpp `find_best_model`)
    return "-hf", f"{q.repo}:{q.name.upper()}", None


def settings(
    req: Request,
    est: Estimate,
    served_name: str | None,
    ollama_tag: str | None,
    *,
    gguf: str | None = None,
) -> LlamaCppSettings:
    """llama-server's settings for the plan `est` of `req` (`ollama_tag` is not llama.cpp's)."""
    flag, value, path = _model(req, gguf)
    served = served_name if served_name is not None else req.variant.id
    if not served.strip():
        raise PlanError("--served-name must not be empty")
    if "," in served:
        # --alias takes a comma-separated list (common/arg.cpp)
        raise PlanError(f"--served-name {served!r}: llama-server reads a comma as a list of names")
    arch = req.variant.architecture
    if est.cpu_plan:
        ngl = 0
    elif req.gpu_layers is not None:
        ngl = req.gpu_layers
    else:
        ngl = arch.num_hidden_layers + 1  # every repeating layer and the output layer
    kv = KVDtype(est.kv_cache_dtype)
    cache = GGML_KV.get(kv)
    if cache is None:
        raise PlanError(f"llama.cpp has no KV cache type for {kv.value}")
    context_flags = tuple((f, v) for f, v in est.settings if f in ("--ctx-size", "--parallel"))
    uses_host = est.host.total_bytes > 0 and not est.cpu_plan
    return LlamaCppSettings(
        served_name=served,
        gpus_per_pod=0 if est.cpu_plan else est.topology.gpus_per_node,
        model_flag=flag,
        model_value=value,
        gguf_path=path,
        context_flags=context_flags,
        n_gpu_layers=ngl,
        offloaded_layers=req.gpu_layers if not est.cpu_plan else None,
        cpu_moe_layers=req.cpu_moe_layers,
        flash_attn=req.flash_attn,
        cache_type=cache,
        ubatch=est.batch_tokens,
        reasoning_format="deepseek" if req.variant.family in R1_FAMILIES else None,
        host_memory_bytes=req.host_memory_bytes if uses_host else None,
        vendor=gpu_vendor(req),
    )


def files(plan: DeployPlan, options: DeployOptions) -> list[tuple[str, str, bool]]:
    compose = [("llama.cpp/docker-compose.yaml.j2", "docker-compose.yaml", False)]
    return [
        ("llama.cpp/run.sh.j2", "run.sh", True),
        *(compose if plan.settings.compose else []),  # type: ignore[attr-defined]
        ("llama.cpp/README.md.j2", "README.md", False),
    ]


def start_hint(plan: DeployPlan, out: Path) -> str:
    if not plan.settings.compose:  # type: ignore[attr-defined]
        return f"{shlex.quote(str(out / 'run.sh'))}   (LLAMA_SERVER: a llama-server built for ROCm/HIP)"
    return f"{shlex.quote(str(out / 'run.sh'))}   (or cd {shlex.quote(str(out))} && docker compose up -d)"


def server_binary() -> str | None:
    """The llama-server to start: VRAMPLAN_LLAMA_SERVER when set, else `llama-server` on PATH."""
    named = os.environ.get("VRAMPLAN_LLAMA_SERVER")
    if named:
        return named
    return tools.which("llama-server")


def launch(bundle: Bundle, console: Console, options: LaunchOptions) -> Verified | None:
    """Start run.sh with a local llama-server on 127.0.0.1, wait for it, ask it once, compare its startup
    log with the plan (deploy/verify.py) and stop it; without a local llama-server, Docker Compose."""
    from vramplan.deploy import verify

    binary = server_binary()
    if binary is None:
        if not bundle.plan.settings.compose:  # type: ignore[attr-defined]
            raise LaunchError(
                "no llama-server is on PATH: build llama.cpp for ROCm/HIP "
                f"({LLAMA_CPP_RELEASE} or later) and set VRAMPLAN_LLAMA_SERVER to its llama-server"
            )
        docker = tools.which("docker")
        if docker is None:
            raise LaunchError(
                "neither llama-server nor docker is on PATH: build llama.cpp "
                f"({LLAMA_CPP_RELEASE} or later) and set VRAMPLAN_LLAMA_SERVER to its llama-server, "
                "or install Docker with the NVIDIA Container Toolkit and run "
                f"{bundle.out / 'docker-compose.yaml'}"
            )
        tools.compose_up(
            console,
            docker,
            bundle.out,
            f"http://127.0.0.1:{LLAMA_CPP_PORT}/health",
            f"build llama.cpp ({LLAMA_CPP_RELEASE} or later) and run {bundle.out / 'run.sh'}",
        )
        return None
    return verify.run_llama_server(bundle, console, binary, verify_log=options.verify)


def load_timeout_s(plan: DeployPlan) -> int:
    """How long the launch waits for /health: reading the weights at 0.25 GiB/s, doubled, and a minute."""
    return 60 + 2 * math.ceil(plan.estimate.weights_bytes / (1 << 28))
