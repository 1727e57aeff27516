"""The deploy targets, one registry: what each target runs, the files it writes and how it starts them.

A target is one module (deploy/ollama.py, deploy/vllm.py, deploy/k8s.py, deploy/sglang.py,
deploy/llamacpp.py) and one template folder (templates/<name>/); `TARGETS` lists them. The plan
settings of each runtime a target runs come from `RUNTIME_SETTINGS` (vLLM's flags, Ollama's tag,
environment and parameters, SGLang's and llama-server's flags). The CLI's `--target`
choices and recommend's deploy commands come from here; an unknown target is an error, never a
fallthrough to another target's launch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vramplan.deploy import k8s, llamacpp, ollama, sglang, vllm
from vramplan.deploy.options import DeployOptions
from vramplan.deploy.plan import DeployPlan, RuntimeSettings, SettingsBuilder
from vramplan.errors import PlanError
from vramplan.estimate import Estimate, Request
from vramplan.runtimes import Runtime

if TYPE_CHECKING:
    from rich.console import Console

    from vramplan.deploy import Bundle
    from vramplan.deploy.verify import Verified


@dataclass(frozen=True)
class LaunchOptions:
    """What `deploy --launch` passes to a target's launch."""

    dry_run_first: bool = False  # Kubernetes: `kubectl apply --dry-run=client` before applying
    verify: bool = True  # compare the started server's startup log with the plan (--no-verify: False)


@dataclass(frozen=True)
class DeployTarget:
    name: str  # the --target value, and the template folder
    summary: str  # one line for --help
    runtimes: tuple[Runtime, ...]  # the runtimes it can run; the first is its default
    # (template, output name, executable) for a plan and the deploy options
    files: Callable[[DeployPlan, DeployOptions], list[tuple[str, str, bool]]]
    # starts the files; returns the plan beside the server's own log where the target verifies it
    launch: Callable[[Bundle, Console, LaunchOptions], Verified | None]
    start_hint: Callable[[DeployPlan, Path], str]  # how to start the written files by hand
    launch_options: frozenset[str] = frozenset()  # LaunchOptions fields this target reads
    # values its templates read besides the plan (k8s: sizes, security context, cache, image)
    template_values: Callable[[DeployPlan, DeployOptions], dict[str, Any]] = lambda plan, options: {}

    def runtime_for(self, asked: Runtime | None) -> Runtime:
        """The runtime this target runs for `--runtime asked` (None: its default)."""
        if asked is None:
            return self.runtimes[0]
        if asked in self.runtimes:
            return asked
        if len(self.runtimes) == 1:
            raise PlanError(
                f"--target {self.name} runs {self.runtimes[0].value}; drop --runtime {asked.value}"
            )
        names = " or ".join(r.value for r in self.runtimes)
        raise PlanError(f"--target {self.name} runs {names}, not {asked.value}")


TARGETS: dict[str, DeployTarget] = {
    t.name: t
    for t in (
        DeployTarget(
            "ollama",
            "an Ollama Modelfile, the server's settings and a run script",
            (Runtime.OLLAMA,),
            ollama.files,
            ollama.launch,
            ollama.start_hint,
            frozenset({"verify"}),
        ),
        DeployTarget(
            "vllm",
            "a vLLM serve script and a Docker Compose file",
            (Runtime.VLLM,),
            vllm.files,
            vllm.launch,
            vllm.start_hint,
            frozenset({"verify"}),
        ),
        DeployTarget(
            "sglang",
            "an SGLang launch script and a Docker Compose file",
            (Runtime.SGLANG,),
            sglang.files,
            sglang.launch,
            sglang.start_hint,
            frozenset({"verify"}),
        ),
        DeployTarget(
            "llama.cpp",
            "a llama-server run script and a Docker Compose file (--launch starts and verifies it)",
            (Runtime.LLAMA_CPP,),
            llamacpp.files,
            llamacpp.launch,
            llamacpp.start_hint,
            frozenset({"verify"}),
        ),
        DeployTarget(
            "k8s",
            "Kubernetes manifests running vLLM (or --runtime sglang, llama.cpp or ollama)",
            (Runtime.VLLM, Runtime.OLLAMA, Runtime.SGLANG, Runtime.LLAMA_CPP),
            k8s.files,
            k8s.launch,
            k8s.start_hint,
            frozenset({"dry_run_first", "verify"}),
            k8s.template_values,
        ),
    )
}

# The plan settings of each runtime a target can run.
RUNTIME_SETTINGS: dict[Runtime, SettingsBuilder] = {
    Runtime.VLLM: vllm.settings,
    Runtime.OLLAMA: ollama.settings,
    Runtime.SGLANG: sglang.settings,
    Runtime.LLAMA_CPP: llamacpp.settings_builder(None),
}


# The runtimes whose targets load a GGUF file named with --gguf: its settings builder for the file.
GGUF_SETTINGS: dict[Runtime, Callable[[str | None], SettingsBuilder]] = {
    Runtime.LLAMA_CPP: llamacpp.settings_builder,
}

# A runtime whose default the bundle writes out as a number: the request with that number named, so the
# estimate is of exactly what the files run (SGLang: --mem-fraction-static).
REQUEST_PINS: dict[Runtime, Callable[[Request, Estimate], Request | None]] = {
    Runtime.SGLANG: sglang.pin_request,
}


def pinned_request(req: Request, est: Estimate) -> Request | None:
    pin = REQUEST_PINS.get(req.runtime)
    return pin(req, est) if pin is not None else None


def get_target(name: str) -> DeployTarget:
    target = TARGETS.get(name)
    if target is None:
        raise PlanError(f"unknown deploy target {name!r}; known: {', '.join(TARGETS)}")
    return target


def deploy_targets() -> tuple[tuple[Runtime, str], ...]:
    """(runtime, target) for each runtime a target runs by itself: recommend's deploy commands."""
    return tuple((t.runtimes[0], t.name) for t in TARGETS.values() if len(t.runtimes) == 1)


def settings_for(runtime: Runtime, gguf: str | None = None) -> SettingsBuilder:
    """The deploy settings builder of `runtime`; for a plan of the GGUF file `gguf`, llama.cpp's for it."""
    if gguf is not None:
        for_file = GGUF_SETTINGS.get(runtime)
        if for_file is None:
            raise PlanError(
                f"--gguf FILE deploys with --target llama.cpp (a {runtime.value} target cannot load it)"
            )
        return for_file(gguf)
    builder = RUNTIME_SETTINGS.get(runtime)
    if builder is None:
        raise PlanError(f"no deploy target runs {runtime.value}")
    return builder


__all__ = [
    "RUNTIME_SETTINGS",
    "TARGETS",
    "DeployTarget",
    "LaunchOptions",
    "RuntimeSettings",
    "deploy_targets",
    "get_target",
    "settings_for",
]
