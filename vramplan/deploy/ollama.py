"""The `ollama` deploy target: a Modelfile deriving the plan's model (context, GPU layers) from the
Ollama tag, the server settings it depends on (ollama.env) and a run script; the Ollama settings every
target that runs Ollama (ollama, k8s) writes; and the launch through Ollama's Python client (check the
server, pull with progress, create, one short generation). `ollama`, `httpx` and `rich` are imported in
the functions that use them."""

from __future__ import annotations

import math
import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vramplan.catalog import R1_FAMILIES
from vramplan.deploy import launch as tools
from vramplan.deploy.options import DeployOptions
from vramplan.deploy.plan import DeployPlan
from vramplan.errors import LaunchError, PlanError, RenderError
from vramplan.estimate import Estimate, Request
from vramplan.precision import KVDtype
from vramplan.runtimes.ollama import OLLAMA_KV

if TYPE_CHECKING:
    from rich.console import Console

    from vramplan.deploy import Bundle
    from vramplan.deploy.targets import LaunchOptions
    from vramplan.deploy.verify import Verified

GiB = 1 << 30
# Ollama's server image for Kubernetes (its VRAM-based default context arrived in 0.15.5).
OLLAMA_IMAGE = "ollama/ollama:0.17.7"
# Its ROCm build (AMD GPUs): Ollama's release workflow pushes every version again with the suffix
# "-rocm" (ollama .github/workflows/release.yaml, docker-merge-push: suffix ['', '-rocm']).
OLLAMA_ROCM_IMAGE = f"{OLLAMA_IMAGE}-rocm"
OLLAMA_PORT = 11434
DEFAULT_OLLAMA_HOST = f"127.0.0.1:{OLLAMA_PORT}"
SMOKE_PROMPT = "What is 7 x 6? Answer with the number."
SMOKE_TOKENS = 48

# Ollama's llama runner gives up after OLLAMA_LOAD_TIMEOUT (default 5 minutes); large models read
# from a slow disk need longer: budget 0.25 GiB/s, doubled, rounded up to whole minutes.
OLLAMA_LOAD_DEFAULT_MIN = 5
OLLAMA_LOAD_BYTES_PER_S = GiB // 4

# DeepSeek's recommended sampling for the R1 series, distills included: "Set the temperature within
# the range of 0.5-0.7 (0.6 is recommended)" (Usage Recommendations) and "a temperature of 0.6, a top-p
# value of 0.95" (Evaluation Results), the DeepSeek-R1 model card on Hugging Face
# (huggingface.co/deepseek-ai/DeepSeek-R1); the DeepSeek-R1-0528 card evaluates with the same two.
R1_TEMPERATURE = 0.6
R1_TOP_P = 0.95


# Ollama model names: [host/][namespace/]model[:tag], letters, digits, '.', '_', '-'.
_PART = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_OLLAMA_NAME = re.compile(rf"^{_PART}(/{_PART})*(:{_PART})?$")


@dataclass(frozen=True)
class OllamaSettings:
    """What Ollama pulls, the model it derives and the server settings (plan.settings in the templates)."""

    served_name: str  # the derived model's name
    gpus_per_pod: int
    tag: str  # what Ollama pulls
    context: int
    concurrency: int
    flash_attn: bool
    kv_cache_type: str | None  # OLLAMA_KV_CACHE_TYPE
    load_timeout: str | None  # OLLAMA_LOAD_TIMEOUT
    max_loaded_models: int | None  # OLLAMA_MAX_LOADED_MODELS
    gpu_layers: int | None  # PARAMETER num_gpu (partial offload only)
    temperature: float | None = None  # PARAMETER temperature (DeepSeek's recommendation for R1 models)
    top_p: float | None = None  # PARAMETER top_p
    vendor: str = "nvidia"  # the GPUs' vendor: "nvidia" or "amd"
    image: str = OLLAMA_IMAGE  # the server image for that vendor (Kubernetes)

    @property
    def model(self) -> str:
        """The name of the model `ollama create` derives from the library tag."""
        return self.served_name

    @property
    def estimate_args(self) -> list[str]:
        return []  # context, concurrency and GPU layers are the plan's own flags

    @property
    def env(self) -> list[tuple[str, str]]:
        """The Ollama server settings this plan depends on (ollama envconfig)."""
        env = [
            ("OLLAMA_CONTEXT_LENGTH", str(self.context)),
            ("OLLAMA_NUM_PARALLEL", str(self.concurrency)),
            ("OLLAMA_FLASH_ATTENTION", "1" if self.flash_attn else "0"),
        ]
        if self.kv_cache_type:
            env.append(("OLLAMA_KV_CACHE_TYPE", self.kv_cache_type))
        if self.load_timeout:
            env.append(("OLLAMA_LOAD_TIMEOUT", self.load_timeout))
        if self.max_loaded_models:
            env.append(("OLLAMA_MAX_LOADED_MODELS", str(self.max_loaded_models)))
        return env

    @property
    def parameters(self) -> list[tuple[str, int | float]]:
        """The Modelfile's PARAMETER lines, and what `--launch` creates the model with."""
        params: list[tuple[str, int | float]] = [("num_ctx", self.context)]
        if self.gpu_layers is not None:
            params.append(("num_gpu", self.gpu_layers))
        if self.temperature is not None:
            params.append(("temperature", self.temperature))
        if self.top_p is not None:
            params.append(("top_p", self.top_p))
        return params

    def template_values(
        self, render: Callable[[str, dict[str, Any]], str], ctx: dict[str, Any]
    ) -> dict[str, Any]:
        return {"modelfile": render("ollama/Modelfile.j2", ctx)}


def ollama_settings(plan: DeployPlan) -> OllamaSettings:
    """The Ollama settings of a plan that runs Ollama."""
    if not isinstance(plan.settings, OllamaSettings):
        raise PlanError(f"a {plan.runtime.value} plan has no Ollama settings")
    return plan.settings


def name_key(name: str) -> str:
    """`name` as an Ollama server reports it in /api/tags and /api/ps, for comparing names: the
    server shows `model.ParseName(name).DisplayShortest()` (ollama types/model/name.go, used by
    server/routes.go PsHandler): the tag defaults to `latest`, and the default host and namespace
    (`registry.ollama.ai/library/`) are left out. Ollama compares names case-insensitively."""
    name = name.strip()
    tag = "latest"
    if name.rfind(":") > name.rfind("/"):  # a ':' before the last '/' belongs to a host's port
        name, tag = name.rsplit(":", 1)
    host, namespace, model = "", "", name
    if "/" in name:
        rest, model = name.rsplit("/", 1)
        host, _, namespace = rest.rpartition("/")
    if host.lower() not in ("", "registry.ollama.ai"):
        shown = f"{host}/{namespace}/{model}"
    elif namespace.lower() not in ("", "library"):
        shown = f"{namespace}/{model}"
    else:
        shown = model
    return f"{shown}:{tag or 'latest'}".lower()


def check_name(name: str, what: str) -> str:
    if not _OLLAMA_NAME.match(name):
        raise RenderError(
            f"{what} {name!r} is not a valid Ollama model name (letters, digits, '.', '_', '-', "
            "with optional namespace/ and :tag)"
        )
    return name


def _tag(req: Request, given: str | None) -> str:
    if given:
        return given
    if req.quant.ollama_tags:
        return req.quant.ollama_tags[0]
    if req.quant.repo and req.quant.is_gguf:
        # Ollama pulls single-file GGUFs straight from Hugging Face (hf.co/REPO:QUANT).
        return f"hf.co/{req.quant.repo}:{req.quant.name}"
    raise PlanError(f"{req.variant.id} {req.quant.name} has no Ollama tag or GGUF repo to pull")


def settings(req: Request, est: Estimate, served_name: str | None, ollama_tag: str | None) -> OllamaSettings:
    """Ollama's settings for the plan `est` of `req`; `ollama_tag` is the tag the user named, if any
    (it wins over the catalog's first tag)."""
    served = served_name if served_name is not None else f"{req.variant.id}-ctx{est.context}"
    if not served.strip():
        raise PlanError("--served-name must not be empty")
    tag = check_name(_tag(req, ollama_tag), "the Ollama tag")
    check_name(served, "the model name")
    load_min = math.ceil(2 * est.weights_bytes / OLLAMA_LOAD_BYTES_PER_S / 60)
    vram = sum(d.capacity_bytes or 0 for d in est.per_gpu)
    arch = req.variant.architecture
    gpu_layers: int | None = None
    if est.cpu_plan:
        gpu_layers = 0
    elif req.gpu_layers is not None and req.gpu_layers < arch.num_hidden_layers + 1:
        gpu_layers = req.gpu_layers
    amd = req.gpu is not None and bool(req.gpu.gfx_arch) and not est.cpu_plan  # gpus.yaml gfx_arch
    return OllamaSettings(
        served_name=served,
        gpus_per_pod=0 if est.cpu_plan else est.topology.pipeline_parallel,
        tag=tag,
        context=est.context,
        concurrency=est.concurrency,
        flash_attn=req.flash_attn,
        kv_cache_type=OLLAMA_KV.get(KVDtype(est.kv_cache_dtype)),
        load_timeout=f"{load_min}m" if load_min > OLLAMA_LOAD_DEFAULT_MIN else None,
        max_loaded_models=1 if vram and est.gpu_bytes > vram // 2 else None,  # no room for a second
        gpu_layers=gpu_layers,
        # a model read from another source is not assumed to be an R1 model (as vLLM's reasoning parser)
        temperature=R1_TEMPERATURE if req.variant.family in R1_FAMILIES else None,
        top_p=R1_TOP_P if req.variant.family in R1_FAMILIES else None,
        vendor="amd" if amd else "nvidia",
        image=OLLAMA_ROCM_IMAGE if amd else OLLAMA_IMAGE,
    )


def files(plan: DeployPlan, options: DeployOptions) -> list[tuple[str, str, bool]]:
    return [
        ("ollama/Modelfile.j2", "Modelfile", False),
        ("ollama/ollama.env.j2", "ollama.env", False),
        ("ollama/run.sh.j2", "run.sh", True),
        ("ollama/README.md.j2", "README.md", False),
    ]


def start_hint(plan: DeployPlan, out: Path) -> str:
    return f"{shlex.quote(str(out / 'run.sh'))}   (or vramplan deploy ... --launch)"


def _ollama_host() -> str:
    return os.environ.get("OLLAMA_HOST", "").strip() or DEFAULT_OLLAMA_HOST


def _gib(n: int) -> str:
    return f"{n / GiB:.2f} GiB"


def launch(bundle: Bundle, console: Console, options: LaunchOptions) -> Verified | None:
    """Check the server, pull the tag with a progress bar, create the derived model, run one short
    generation, and say how to chat with it; then (unless options.verify is False) the loaded model's
    memory as /api/ps reports it beside the plan (deploy/verify.py `verify_ollama_ps`)."""
    import httpx
    import ollama

    plan, out = bundle.plan, bundle.out
    o = ollama_settings(plan)
    host = _ollama_host()
    start_hint = (
        f"start it with the plan's settings: {out / 'run.sh'} (or `ollama serve` with the variables of "
        f"{out / 'ollama.env'}), or set OLLAMA_HOST to a server that runs"
    )
    try:
        ollama.Client(host=host, timeout=10).list()
    except (ConnectionError, httpx.HTTPError) as exc:
        if tools.which("ollama") is None:
            start_hint = (
                f"Ollama is not installed here: install it (https://ollama.com/download), then {start_hint}"
            )
        raise LaunchError(
            f"no Ollama server answers at {host} ({type(exc).__name__}); {start_hint}"
        ) from None
    except ollama.ResponseError as exc:
        raise LaunchError(f"the server at {host} is not an Ollama server that works: {exc.error}") from None
    console.print(f"Ollama server at {host}: answering")
    client = ollama.Client(host=host, timeout=httpx.Timeout(None, connect=10))
    pull(client, o.tag, console)
    create(client, plan, console)
    loaded = smoke_test(client, plan, console)
    console.print(f"chat with it: ollama run {o.model}")
    console.print(
        f"or over HTTP: curl http://{host}/api/chat -d "
        f'\'{{"model": "{o.model}", "messages": [{{"role": "user", "content": "Hi"}}]}}\''
    )
    if not options.verify or loaded is None or not loaded.size:
        return None
    from vramplan.deploy import verify

    vram = None if loaded.size_vram is None else int(loaded.size_vram)
    return verify.verify_ollama_ps(bundle, str(loaded.name or o.model), int(loaded.size), vram)


def pull(client: Any, tag: str, console: Console) -> None:
    """`ollama pull TAG` with one progress bar per layer (bytes, speed, time left)."""
    import httpx
    import ollama
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Speed(ProgressColumn):
        """Transfer speed in MiB/s (rich's own column counts in decimal MB)."""

        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            shown = "?" if speed is None else f"{speed / (1 << 20):.1f} MiB/s"
            return Text(shown, style="progress.data.speed")

    last = ""
    tasks: dict[str, Any] = {}
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        Speed(),
        TimeRemainingColumn(),
    )
    try:
        with Progress(*columns, console=console) as progress:
            for part in client.pull(tag, stream=True):
                status = part.status or ""
                if part.digest and part.total:
                    task = tasks.get(part.digest)
                    if task is None:
                        short = part.digest.removeprefix("sha256:")[:12]
                        task = progress.add_task(f"layer {short}", total=part.total)
                        tasks[part.digest] = task
                    progress.update(task, completed=min(part.completed or 0, part.total))
                elif status and status != last:
                    progress.console.print(status)
                last = status
    except ollama.ResponseError as exc:
        hint = ""
        if "not exist" in exc.error or "not found" in exc.error:
            hint = "; is the tag right? (https://ollama.com/library/deepseek-r1/tags)"
        raise LaunchError(f"Ollama could not pull {tag}: {exc.error}{hint}") from None
    except (ConnectionError, httpx.HTTPError) as exc:
        raise LaunchError(
            f"the pull of {tag} was interrupted ({type(exc).__name__}); run again to resume it"
        ) from None
    if last != "success":
        raise LaunchError(
            f"the pull of {tag} ended before it finished (last status: {last or 'none'}); "
            "run again to resume it"
        )


def create(client: Any, plan: DeployPlan, console: Console) -> None:
    import httpx
    import ollama

    o = ollama_settings(plan)
    params = dict(o.parameters)
    try:
        client.create(model=o.model, from_=o.tag, parameters=params)
    except ollama.ResponseError as exc:
        raise LaunchError(f"Ollama could not create {o.model}: {exc.error}") from None
    except (ConnectionError, httpx.HTTPError) as exc:
        raise LaunchError(
            f"the Ollama server went away while creating the model ({type(exc).__name__})"
        ) from None
    shown = ", ".join(f"{k} {v}" for k, v in params.items())
    console.print(f"created {o.model} from {o.tag} ({shown})")


def smoke_test(client: Any, plan: DeployPlan, console: Console) -> Any:
    """One short generation: the model loads with the plan's context and answers. The loaded model's
    /api/ps entry, or None when the server does not list it."""
    import httpx
    import ollama

    o = ollama_settings(plan)
    console.print(f"loading {o.model} and asking it one short question ...")
    try:
        answer = client.generate(model=o.model, prompt=SMOKE_PROMPT, options={"num_predict": SMOKE_TOKENS})
    except ollama.ResponseError as exc:
        raise LaunchError(
            f"{o.model} did not answer: {exc.error} (check the server log; large models need "
            "OLLAMA_LOAD_TIMEOUT from ollama.env)"
        ) from None
    except (ConnectionError, httpx.HTTPError) as exc:
        raise LaunchError(
            f"the Ollama server went away during the smoke test ({type(exc).__name__})"
        ) from None
    tokens = answer.eval_count or 0
    seconds = (answer.eval_duration or 0) / 1e9
    rate = f", {tokens / seconds:.1f} tokens/s" if seconds > 0 else ""
    console.print(f"smoke test: answered with {tokens} tokens{rate}")
    want = name_key(o.model)
    try:
        running = client.ps().models
    except (ollama.ResponseError, ConnectionError, httpx.HTTPError):
        running = None
    loaded = [m for m in running or () if want in (name_key(m.model or ""), name_key(m.name or ""))]
    if running is not None and not loaded:
        console.print(
            f"warning: the server's running models (/api/ps) do not list {o.model}; "
            "its context could not be compared with the plan's"
        )
    if loaded:
        m = loaded[0]
        parts = []
        if m.context_length:
            parts.append(f"context {m.context_length}")
        if m.size_vram is not None:
            parts.append(f"{_gib(int(m.size_vram))} in VRAM")
        plan_vram = sum(d.total_bytes for d in plan.estimate.per_gpu)
        console.print(
            f"loaded: {', '.join(parts)} (the plan: context {plan.context}, {_gib(plan_vram)} on GPUs)"
        )
        if m.context_length and m.context_length != plan.context:
            console.print(
                f"warning: the server runs {o.model} with context {m.context_length}, "
                f"not the plan's {plan.context}"
            )
        return m
    return None
