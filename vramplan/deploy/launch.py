"""Start a written bundle: Ollama through its Python client, vLLM through Docker Compose or serve.sh,
Kubernetes through kubectl.

Commands run as argument lists (never through a shell string). A missing server or tool is one
`LaunchError` naming what to install or start. `ollama`, `httpx` and `rich` are imported here only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vramplan.deploy.plan import VLLM_VERSION, DeployPlan, Target
from vramplan.errors import LaunchError, PlanError

if TYPE_CHECKING:
    from rich.console import Console

    from vramplan.deploy import Bundle

GiB = 1 << 30
DEFAULT_OLLAMA_HOST = "127.0.0.1:11434"
SMOKE_PROMPT = "What is 7 x 6? Answer with the number."
SMOKE_TOKENS = 48


def run_command(argv: Sequence[str]) -> int:
    """Run one command with the terminal's stdin/stdout/stderr; its exit status. (A test seam.)"""
    try:
        return subprocess.run(list(argv), check=False).returncode
    except OSError as exc:
        raise LaunchError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None


def which(name: str) -> str | None:
    return shutil.which(name)


def compose_works(docker: str) -> bool:
    """`docker compose version` succeeds: Docker has its Compose plugin. (A test seam.)"""
    try:
        proc = subprocess.run([docker, "compose", "version"], capture_output=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def launch(bundle: Bundle, console: Console, *, dry_run_first: bool = False) -> None:
    """Start what `bundle` describes; raises LaunchError when it cannot."""
    plan = bundle.plan
    if plan.target is Target.OLLAMA:
        launch_ollama(plan, bundle.out, console)
    elif plan.target is Target.VLLM:
        launch_vllm(plan, bundle.out, console)
    else:
        launch_k8s(bundle.out, console, dry_run_first=dry_run_first)


# --------------------------------------------------------------------------- Kubernetes


def launch_k8s(out: Path, console: Console, *, dry_run_first: bool = False) -> None:
    kubectl = which("kubectl")
    if kubectl is None:
        raise LaunchError(
            "kubectl is not on PATH: install it (https://kubernetes.io/docs/tasks/tools/) and point it "
            f"at your cluster, or apply the files yourself: kubectl apply -f {out}"
        )
    if dry_run_first:
        console.print(f"$ kubectl apply --dry-run=client -f {out}")
        rc = run_command([kubectl, "apply", "--dry-run=client", "-f", str(out)])
        if rc != 0:
            raise LaunchError(
                f"kubectl apply --dry-run=client -f {out} failed (exit {rc}); nothing was applied"
            )
    console.print(f"$ kubectl apply -f {out}")
    rc = run_command([kubectl, "apply", "-f", str(out)])
    if rc != 0:
        raise LaunchError(f"kubectl apply -f {out} failed (exit {rc})")
    console.print(f"applied; watch it with: kubectl get pods -w   (details: {out / 'README.md'})")


# --------------------------------------------------------------------------- vLLM


def launch_vllm(plan: DeployPlan, out: Path, console: Console) -> None:
    if plan.multi_node:
        raise PlanError(
            f"a {plan.nodes}-node plan starts on every node: run {out / 'serve.sh'} (or docker compose "
            f"--profile head/worker) there with NODE_RANK and HEAD_ADDR set; see {out / 'README.md'}"
        )
    docker = which("docker")
    if docker is not None:
        compose = out / "docker-compose.yaml"
        console.print(f"$ docker compose -f {compose} up -d")
        rc = run_command([docker, "compose", "-f", str(compose), "up", "-d"])
        if rc != 0 and not compose_works(docker):
            raise LaunchError(
                "docker has no Compose plugin (`docker compose version` fails): install it "
                "(https://docs.docker.com/compose/install/linux/), or install vLLM "
                f"{VLLM_VERSION} and run {out / 'serve.sh'}"
            )
        if rc != 0:
            raise LaunchError(
                f"docker compose up failed (exit {rc}); GPUs in containers need the NVIDIA Container Toolkit"
            )
        console.print(
            f"started; watch it with: docker compose -f {compose} logs -f   "
            f"(ready when http://localhost:8000/health answers)"
        )
        return
    vllm = which("vllm")
    if vllm is None:
        raise LaunchError(
            "neither docker nor vllm is on PATH: install Docker with the NVIDIA Container Toolkit, "
            f"or vLLM {VLLM_VERSION} (pip install 'vllm=={VLLM_VERSION}')"
        )
    bash = which("bash") or "/bin/bash"
    console.print(f"$ {out / 'serve.sh'}   (Ctrl-C stops the server)")
    rc = run_command([bash, str(out / "serve.sh")])
    if rc not in (0, 130, -2):
        raise LaunchError(f"{out / 'serve.sh'} exited with status {rc}")


# --------------------------------------------------------------------------- Ollama


def _ollama_host() -> str:
    return os.environ.get("OLLAMA_HOST", "").strip() or DEFAULT_OLLAMA_HOST


def _gib(n: int) -> str:
    return f"{n / GiB:.2f} GiB"


def launch_ollama(plan: DeployPlan, out: Path, console: Console) -> None:
    """Check the server, pull the tag with a progress bar, create the derived model, run one short
    generation, and say how to chat with it."""
    import httpx
    import ollama

    host = _ollama_host()
    assert plan.ollama_tag is not None
    start_hint = (
        f"start it with the plan's settings: {out / 'run.sh'} (or `ollama serve` with the variables of "
        f"{out / 'ollama.env'}), or set OLLAMA_HOST to a server that runs"
    )
    try:
        ollama.Client(host=host, timeout=10).list()
    except (ConnectionError, httpx.HTTPError) as exc:
        if which("ollama") is None:
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
    pull(client, plan.ollama_tag, console)
    create(client, plan, console)
    smoke_test(client, plan, console)
    console.print(f"chat with it: ollama run {plan.ollama_model}")
    console.print(
        f"or over HTTP: curl http://{host}/api/chat -d "
        f'\'{{"model": "{plan.ollama_model}", "messages": [{{"role": "user", "content": "Hi"}}]}}\''
    )


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

    assert plan.ollama_tag is not None
    params = dict(plan.ollama_parameters)
    try:
        client.create(model=plan.ollama_model, from_=plan.ollama_tag, parameters=params)
    except ollama.ResponseError as exc:
        raise LaunchError(f"Ollama could not create {plan.ollama_model}: {exc.error}") from None
    except (ConnectionError, httpx.HTTPError) as exc:
        raise LaunchError(
            f"the Ollama server went away while creating the model ({type(exc).__name__})"
        ) from None
    shown = ", ".join(f"{k} {v}" for k, v in params.items())
    console.print(f"created {plan.ollama_model} from {plan.ollama_tag} ({shown})")


def smoke_test(client: Any, plan: DeployPlan, console: Console) -> None:
    """One short generation: the model loads with the plan's context and answers."""
    import httpx
    import ollama

    console.print(f"loading {plan.ollama_model} and asking it one short question ...")
    try:
        answer = client.generate(
            model=plan.ollama_model, prompt=SMOKE_PROMPT, options={"num_predict": SMOKE_TOKENS}
        )
    except ollama.ResponseError as exc:
        raise LaunchError(
            f"{plan.ollama_model} did not answer: {exc.error} (check the server log; large models need "
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
    try:
        loaded = [m for m in client.ps().models if plan.ollama_model in (m.model, m.name)]
    except (ollama.ResponseError, ConnectionError, httpx.HTTPError):
        loaded = []
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
                f"warning: the server runs {plan.ollama_model} with context {m.context_length}, "
                f"not the plan's {plan.context}"
            )
