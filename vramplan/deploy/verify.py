"""`deploy --launch` proves what it launched: start the server, ask it once, read its real startup log and
set each memory part beside the plan through `vramplan check`'s own code (vramplan.check `check_log`,
vramplan.logs `parse_log`).

For llama.cpp (`run_llama_server`): run.sh starts the given llama-server on 127.0.0.1 at a free port with
`--log-verbosity 4` (the memory lines, `load_tensors`, `llama_kv_cache`, `sched_reserve` and llama.cpp's
own projection `common_params_fit_impl: projected to use X MiB`, are trace-level messages in the
release the bundles are checked against: common/fit.cpp `LOG_TRC`), waits for `/health`, sends one chat
completion, stops the server it started, and compares. Only loopback is ever contacted; every wait has a
bound. A part that misses by more than docs/accuracy.md's tolerances makes the result `ok` false (the CLI
exits 1 after printing the table).

For the servers `deploy --launch` leaves running (vLLM and SGLang through Docker Compose, the k8s target's
vLLM), the log comes from `docker compose logs SERVICE` (`verify_compose`) or `kubectl logs` of the
Deployment or of the LeaderWorkerSet's leader pod (`verify_kubectl`), read every POLL_S seconds until the
server says it serves (READY_LINES) or `ready_timeout_s(plan)` passes (the plan's startup allowance, the
same the manifests' startup probes and Compose healthchecks give it); then the same comparison.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vramplan.deploy import launch as tools
from vramplan.errors import LaunchError
from vramplan.words import count

if TYPE_CHECKING:
    from rich.console import Console

    from vramplan.check import CheckResult, PartCheck
    from vramplan.deploy import Bundle
    from vramplan.deploy.plan import DeployPlan
    from vramplan.estimate import DeviceUse
    from vramplan.hardware import GPUChoice

MiB = 1 << 20
LOOPBACK = "127.0.0.1"
SMOKE_PROMPT = "What is 7 x 6? Answer with the number."
SMOKE_TOKENS = 8
CHAT_TIMEOUT_S = 300
STOP_TIMEOUT_S = 20

# A launch whose part misses by more than check.TOLERANCES (docs/accuracy.md) is reported as a miss.

# The lines after which a server's startup log holds every memory line: uvicorn's "Application startup
# complete." (uvicorn/lifespan/on.py; vLLM and SGLang serve their APIs with uvicorn once the model and
# the KV cache are allocated), and SGLang's own, logged once a warm-up request has passed (SGLang
# 0.5.23 sglang/srt/entrypoints/http_server.py).
READY_LINES = ("Application startup complete", "The server is fired up and ready to roll")
POLL_S = 15  # between two reads of a log that is not ready yet
READ_TIMEOUT_S = 120  # one `docker compose logs` / `kubectl logs` / `docker compose ps`

# llama.cpp's own projection of its memory use (common/fit.cpp `common_params_fit_impl`, trace level):
# "projected to use 4 MiB of host memory vs. ..." (no GPU) or "... of device memory vs. ..." (GPUs)
_PROJECTED = re.compile(r"common_params_fit_impl: projected to use (\d+) MiB of (host|device) memory")


@dataclass(frozen=True)
class VerifiedPart:
    part: str
    scope: str
    unit: str
    plan: float  # the estimate for the settings the log states (the plan, when the server ran it)
    measured: float
    error: float
    tolerance: float | None

    @property
    def ok(self) -> bool:
        return self.tolerance is None or abs(self.error) <= self.tolerance


@dataclass(frozen=True)
class Verified:
    log: Path
    parts: tuple[VerifiedPart, ...]
    plan_total_bytes: int  # the bundle's plan, all devices
    projected_bytes: int | None  # llama.cpp's own projection, when its log has one
    measured_total_bytes: int  # the parts the log states, summed
    answer: str  # the first words of the smoke test's answer
    notes: tuple[str, ...] = ()
    measured_what: str = "model, KV and compute buffers"  # what measured_total_bytes sums

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.parts)

    @property
    def misses(self) -> tuple[VerifiedPart, ...]:
        return tuple(p for p in self.parts if not p.ok)


def free_port() -> int:
    """A TCP port free on the loopback address now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # loopback only
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return 0


def _post_json(url: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:  # loopback only
            doc = json.loads(r.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as exc:
        raise LaunchError(f"the server answered the chat completion with HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise LaunchError(f"the chat completion failed: {exc}") from None
    return doc if isinstance(doc, dict) else {}


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip())


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server this launch started (its own process group), politely first."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return
        proc.wait(timeout=STOP_TIMEOUT_S)


def run_llama_server(
    bundle: Bundle, console: Console, binary: str, *, verify_log: bool = True
) -> Verified | None:
    """Start the bundle's run.sh with `binary`, wait, ask, stop, and (unless `verify_log` is False)
    compare its startup log with the plan."""
    from vramplan.deploy.llamacpp import load_timeout_s

    plan, out = bundle.plan, bundle.out
    port = free_port()
    log_path = out / "llama-server.log"
    env = dict(os.environ, LLAMA_SERVER=binary, HOST=LOOPBACK, PORT=str(port))
    argv = ["bash", str(out / "run.sh"), "--log-verbosity", "4", "--log-colors", "off"]
    tools.show_command(
        console,
        [
            f"LLAMA_SERVER={binary}",
            f"HOST={LOOPBACK}",
            f"PORT={port}",
            str(out / "run.sh"),
            "--log-verbosity",
            "4",
        ],
    )
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            raise LaunchError(f"cannot run {out / 'run.sh'}: {exc.strerror or exc}") from None
    base = f"http://{LOOPBACK}:{port}"
    answer = ""
    try:
        deadline = time.monotonic() + load_timeout_s(plan)
        while True:
            if proc.poll() is not None:
                raise LaunchError(
                    f"llama-server exited with status {proc.returncode} before it was ready; "
                    f"its log ({log_path}): {_tail(log_path)}"
                )
            if _get(f"{base}/health", timeout=5) == 200:
                break
            if time.monotonic() > deadline:
                raise LaunchError(f"llama-server did not answer {base}/health in time; its log: {log_path}")
            time.sleep(0.25)
        tools.show(console, f"ready: {base}/health answers; one chat completion ...")
        doc = _post_json(
            f"{base}/v1/chat/completions",
            {
                "model": plan.served_name,
                "messages": [{"role": "user", "content": SMOKE_PROMPT}],
                "max_tokens": SMOKE_TOKENS,
            },
            timeout=CHAT_TIMEOUT_S,
        )
        choices = doc.get("choices") or []
        if not choices:
            raise LaunchError("the chat completion came back without choices")
        message = choices[0].get("message") or {}
        answer = str(message.get("content") or message.get("reasoning_content") or "")
        usage = doc.get("usage") or {}
        tools.show(console, f"answered: {_tokens(usage.get('completion_tokens'))}; stopping the server")
    finally:
        _stop(proc)
    if not verify_log:
        return None
    return verify_llama_log(bundle, log_path, answer)


def _projected(text: str) -> int | None:
    found = _PROJECTED.findall(text)
    return int(found[-1][0]) * MiB if found else None


def _scope_bytes(p: PartCheck) -> bool:
    return p.unit == "bytes"


def verify_llama_log(bundle: Bundle, log_path: Path, answer: str = "") -> Verified:
    """The llama-server log at `log_path` beside the bundle's plan, through `vramplan check`'s code."""
    return verify_log(bundle, log_path, answer)


def _plan_gpu(bundle: Bundle) -> GPUChoice | None:
    """The plan's GPUs, for what a log does not state (a container's log may not name its GPU)."""
    from vramplan.errors import VramplanError
    from vramplan.hardware import parse_gpu

    plan = bundle.plan
    if plan.cpu_only or not plan.gpu_name:
        return None
    try:
        return parse_gpu(f"{plan.gpu_name}:{plan.gpus_per_node}")
    except VramplanError:
        return None


def verify_log(bundle: Bundle, log_path: Path, answer: str = "", *, plan_gpu: bool = False) -> Verified:
    """The server log at `log_path` beside the bundle's plan, through `vramplan check`'s code (with
    `plan_gpu`, the plan's GPUs fill in what the log does not state)."""
    from vramplan.catalog import load_catalog
    from vramplan.check import TOLERANCES, check_log
    from vramplan.errors import VramplanError
    from vramplan.logs import parse_log

    plan = bundle.plan
    text = log_path.read_text(encoding="utf-8", errors="replace")
    try:
        parsed = parse_log(text)
        gguf = getattr(plan.settings, "gguf_path", None)
        # a catalog plan is checked as that catalog entry; a --gguf file by the shape its log prints
        model, quant = (None, None) if gguf else (plan.model_id, plan.quant)
        gpu = _plan_gpu(bundle) if plan_gpu else None
        result: CheckResult = check_log(
            load_catalog(()), parsed, str(log_path), model=model, quant=quant, gpu=gpu
        )
    except VramplanError as exc:
        raise LaunchError(f"cannot read the server's startup log {log_path}: {exc}") from None
    parts = tuple(
        VerifiedPart(p.part, p.scope, p.unit, p.estimate, p.measured, p.error, TOLERANCES.get(p.part))
        for p in result.parts
    )
    notes = list(result.notes)
    est, planned = result.estimate, plan.estimate
    if (est.context, est.concurrency, est.kv_cells) != (
        planned.context,
        planned.concurrency,
        planned.kv_cells,
    ):
        notes.append(
            f"the server ran {est.context} tokens x {est.concurrency} ({est.kv_cells} KV cells); the plan "
            f"{planned.context} x {planned.concurrency} ({planned.kv_cells} cells)"
        )
    measured_total = int(sum(p.measured for p in result.parts if _scope_bytes(p)))
    return Verified(
        log=log_path,
        parts=parts,
        plan_total_bytes=planned.total_bytes + (planned.host.total_bytes if planned.per_gpu else 0),
        projected_bytes=_projected(text),
        measured_total_bytes=measured_total,
        answer=answer.strip()[:80],
        notes=tuple(dict.fromkeys(notes)),
        measured_what=(
            "model, KV and compute buffers"
            if any(p.part == "compute buffer" for p in result.parts)
            else "the byte parts its log states"
        ),
    )


# ------------------------------------------------------------------ servers deploy --launch leaves running


def ready_timeout_s(plan: DeployPlan) -> int:
    """How long a launch waits for a server's log to say it serves: the plan's startup allowance (the
    download at the planned rate plus the load, 20 to 240 minutes: deploy/plan.py `startup_minutes`)."""
    return plan.startup_minutes * 60


def _is_ready(text: str) -> bool:
    return any(line in text for line in READY_LINES)


def wait_for_log(
    read: Callable[[], tuple[int, str]],
    timeout_s: float,
    what: str,
    console: Console,
    *,
    failed: Callable[[], str | None] | None = None,
) -> str:
    """Call `read` (exit status, the log so far) every POLL_S seconds until the log has a READY_LINES
    line; LaunchError when `failed` says the server stopped, or after `timeout_s` seconds."""
    deadline = time.monotonic() + timeout_s
    tools.show(console, f"waiting up to {timeout_s // 60:.0f} min for {what} to say the server is ready ...")
    while True:
        rc, text = read()
        if rc == 0 and _is_ready(text):
            return text
        why = failed() if failed is not None else None
        if why is not None:
            raise LaunchError(f"the server stopped before it was ready ({why}); {what}: {_last(text)}")
        if time.monotonic() >= deadline:
            raise LaunchError(
                f"the server did not say it was ready within {timeout_s // 60:.0f} min; it keeps running: "
                f"read {what} later and compare with `vramplan check LOG` ({_last(text)})"
            )
        time.sleep(POLL_S)


def _last(text: str, lines: int = 3) -> str:
    kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(kept) if kept else "nothing logged yet"


def _save_log(bundle: Bundle, name: str, text: str) -> Path:
    path = bundle.out / name
    path.write_text(text, encoding="utf-8")
    return path


def verify_compose(bundle: Bundle, console: Console, docker: str, service: str) -> Verified:
    """After `docker compose up -d`: `docker compose logs SERVICE` until the server is ready (a bounded
    wait), saved beside the bundle as SERVICE.log, compared with the plan."""

    base = [docker, "compose", "-f", str(bundle.out / "docker-compose.yaml")]
    logs = [*base, "logs", "--no-color", "--no-log-prefix", service]
    state = [*base, "ps", "--all", "--format", "{{.State}}", service]

    def read() -> tuple[int, str]:
        return tools.command_output(logs, READ_TIMEOUT_S)

    def failed() -> str | None:
        rc, out = tools.command_output(state, READ_TIMEOUT_S)
        words = out.split()
        # docker compose ps: a container's State is created, running, restarting, exited, dead, ...
        if rc == 0 and words and words[0] in ("exited", "dead", "restarting"):
            return f"its container is {words[0]}"
        return None

    text = wait_for_log(
        read, ready_timeout_s(bundle.plan), f"`docker compose logs {service}`", console, failed=failed
    )
    log_path = _save_log(bundle, f"{service}.log", text)
    tools.show(console, f"ready; its startup log is in {log_path}")
    return verify_log(bundle, log_path, plan_gpu=True)


def _manifest_server(bundle: Bundle) -> tuple[str, str] | None:
    """(what `kubectl logs` reads, the container) of the server the bundle's manifests run: the
    Deployment's first container, or the LeaderWorkerSet leader's (its first group's leader pod is
    named `<name>-0`: sigs.k8s.io/lws, the pod name of group 0's leader)."""
    import yaml

    for f in bundle.files:
        if not f.name.endswith((".yaml", ".yml")):
            continue
        try:
            docs = list(yaml.safe_load_all((bundle.out / f.name).read_text(encoding="utf-8")))
        except (OSError, yaml.YAMLError):
            continue
        for doc in docs:
            if not isinstance(doc, dict):
                continue
            kind, name = doc.get("kind"), (doc.get("metadata") or {}).get("name")
            spec = doc.get("spec") or {}
            if kind == "Deployment":
                pod, target = (spec.get("template") or {}).get("spec") or {}, f"deployment/{name}"
            elif kind == "LeaderWorkerSet":
                tmpl = (spec.get("leaderWorkerTemplate") or {}).get("leaderTemplate") or {}
                pod, target = tmpl.get("spec") or {}, f"pod/{name}-0"
            else:
                continue
            containers = pod.get("containers") or []
            if name and containers and containers[0].get("name"):
                return target, str(containers[0]["name"])
    return None


def verify_kubectl(bundle: Bundle, console: Console, kubectl: str) -> Verified | None:
    """After `kubectl apply`: `kubectl logs` of the Deployment or the LeaderWorkerSet's leader until the
    server is ready (a bounded wait), saved as server.log beside the bundle, compared with the plan.
    None when the manifests run no server whose log vramplan reads (Ollama logs its memory per request)."""
    from vramplan.runtimes import Runtime

    if bundle.plan.runtime is Runtime.OLLAMA:
        return None
    found = _manifest_server(bundle)
    if found is None:
        return None
    target, container = found
    ns = ["-n", bundle.options.namespace] if bundle.options.namespace else []
    argv = [kubectl, *ns, "logs", target, "-c", container]

    def read() -> tuple[int, str]:
        return tools.command_output(argv, READ_TIMEOUT_S)

    text = wait_for_log(
        read, ready_timeout_s(bundle.plan), f"`kubectl logs {target} -c {container}`", console
    )
    log_path = _save_log(bundle, "server.log", text)
    tools.show(console, f"ready; its startup log is in {log_path}")
    return verify_log(bundle, log_path, plan_gpu=True)


# ------------------------------------------------------------------ Ollama: its /api/ps


def _tolerance_of(devices: list[DeviceUse]) -> float | None:
    """The tolerance of a sum of parts: each part's own (weights and KV cache 3 %, the compute buffers
    25 %: check.TOLERANCES), weighted by its bytes in the plan."""
    from vramplan.check import TOLERANCES

    total = sum(d.total_bytes for d in devices)
    if total <= 0:
        return None
    fixed = sum(d.weights_bytes + d.kv_cache_bytes for d in devices) * TOLERANCES["weights"]
    compute = sum(d.activation_bytes + d.overhead_bytes for d in devices) * TOLERANCES["compute buffer"]
    return round((fixed + compute) / total, 4)


def verify_ollama_ps(bundle: Bundle, name: str, size: int, size_vram: int | None) -> Verified:
    """The loaded model's entry of Ollama's /api/ps beside the plan: `size` (all it holds, GPUs and host)
    against the plan's total, `size_vram` against the plan's GPUs, each with the tolerance of the parts it
    sums. Ollama computes both when it loads the model (its scheduler's memory layout), so this compares
    the plan with Ollama's own accounting of what it placed where."""
    est = bundle.plan.estimate
    gpus = list(est.per_gpu)
    devices = [*gpus, est.host]
    rows: list[VerifiedPart] = []

    def row(part: str, scope: str, plan_bytes: int, measured: int, tolerance: float | None) -> None:
        error = (plan_bytes - measured) / measured if measured else (0.0 if plan_bytes == 0 else 1.0)
        rows.append(VerifiedPart(part, scope, "bytes", plan_bytes, measured, error, tolerance))

    plan_total = sum(d.total_bytes for d in devices)
    row("total", "size", plan_total, size, _tolerance_of(devices))
    if gpus and size_vram is not None:
        row("on the GPUs", "size_vram", sum(d.total_bytes for d in gpus), size_vram, _tolerance_of(gpus))
    notes = []
    if gpus and size_vram is not None and size_vram < size:
        notes.append(f"Ollama placed {size - size_vram:,} bytes of {name} in host memory")
    return Verified(
        log=Path(f"/api/ps ({name})"),
        parts=tuple(rows),
        plan_total_bytes=plan_total,
        projected_bytes=None,
        measured_total_bytes=size,
        answer="",
        notes=tuple(notes),
        measured_what="Ollama's /api/ps size",
    )


def verified_json(v: Verified) -> dict[str, Any]:
    """deploy --json's "verified": the log, the parts (plan, measured, error, tolerance, ok), the totals."""
    return {
        "log": str(v.log),
        "ok": v.ok,
        "parts": [
            {
                "part": p.part,
                "scope": p.scope,
                "unit": p.unit,
                "plan": int(p.plan) if p.unit == "bytes" else p.plan,
                "measured": int(p.measured) if p.unit == "bytes" else p.measured,
                "error": round(p.error, 6),
                "tolerance": p.tolerance,
                "ok": p.ok,
            }
            for p in v.parts
        ],
        "plan_total_bytes": v.plan_total_bytes,
        "projected_bytes": v.projected_bytes,
        "measured_total_bytes": v.measured_total_bytes,
        "notes": list(v.notes),
    }


def _tokens(n: object) -> str:
    """How many tokens the server answered with, in words (`1 token`, `12 tokens`)."""
    return count(n, "token") if isinstance(n, int) else "an unknown number of tokens"
