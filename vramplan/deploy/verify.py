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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vramplan.errors import LaunchError
from vramplan.words import count

if TYPE_CHECKING:
    from rich.console import Console

    from vramplan.check import CheckResult, PartCheck
    from vramplan.deploy import Bundle

MiB = 1 << 20
LOOPBACK = "127.0.0.1"
SMOKE_PROMPT = "What is 7 x 6? Answer with the number."
SMOKE_TOKENS = 8
CHAT_TIMEOUT_S = 300
STOP_TIMEOUT_S = 20

# The tolerances docs/accuracy.md states (issue 9), per kind of part: a launch whose part misses by
# more is reported as a miss (benchmarks/corpus.py `TOLERANCES` holds the same figures for the corpus).
TOLERANCES = {
    "weights": 0.03,
    "KV cache": 0.03,
    "KV per token": 0.03,
    "KV pool": 0.10,
    "KV tokens": 0.10,
    "max concurrency": 0.10,
    "compute buffer": 0.25,
}

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
    console.print(
        f"$ LLAMA_SERVER={binary} HOST={LOOPBACK} PORT={port} {out / 'run.sh'} --log-verbosity 4",
        markup=False,
        soft_wrap=True,
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
        console.print(f"ready: {base}/health answers; one chat completion ...", markup=False, soft_wrap=True)
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
        console.print(f"answered: {_tokens(usage.get('completion_tokens'))}; stopping the server")
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
    from vramplan.catalog import load_catalog
    from vramplan.check import check_log
    from vramplan.errors import VramplanError
    from vramplan.logs import parse_log

    plan = bundle.plan
    text = log_path.read_text(encoding="utf-8", errors="replace")
    try:
        parsed = parse_log(text)
        gguf = getattr(plan.settings, "gguf_path", None)
        # a catalog plan is checked as that catalog entry; a --gguf file by the shape its log prints
        model, quant = (None, None) if gguf else (plan.model_id, plan.quant)
        result: CheckResult = check_log(load_catalog(()), parsed, str(log_path), model=model, quant=quant)
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
        plan_total_bytes=planned.total_bytes,
        projected_bytes=_projected(text),
        measured_total_bytes=measured_total,
        answer=answer.strip()[:80],
        notes=tuple(dict.fromkeys(notes)),
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
