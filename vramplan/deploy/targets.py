"""The deploy targets, one registry: what each target runs, the files it writes and how it starts them.

A target is one module (deploy/ollama.py, deploy/vllm.py, deploy/k8s.py) and one template folder
(templates/<name>/); `TARGETS` lists them. The plan settings of each runtime a target runs come from
`RUNTIME_SETTINGS` (vLLM's flags, Ollama's tag, environment and parameters). The CLI's `--target`
choices and recommend's deploy commands come from here; an unknown target is an error, never a
fallthrough to another target's launch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vramplan.deploy import k8s, ollama, vllm
from vramplan.deploy.options import DeployOptions
from vramplan.deploy.plan import DeployPlan, RuntimeSettings, SettingsBuilder
from vramplan.errors import PlanError
from vramplan.runtimes import Runtime

if TYPE_CHECKING:
    from rich.console import Console

    from vramplan.deploy import Bundle


@dataclass(frozen=True)
class LaunchOptions:
    """What `deploy --launch` passes to a target's launch."""

    dry_run_first: bool = False  # Kubernetes: `kubectl apply --dry-run=client` before applying


@dataclass(frozen=True)
class DeployTarget:
    name: str  # the --target value, and the template folder
    summary: str  # one line for --help
    runtimes: tuple[Runtime, ...]  # the runtimes it can run; the first is its default
    # (template, output name, executable) for a plan and the deploy options
    files: Callable[[DeployPlan, DeployOptions], list[tuple[str, str, bool]]]
    launch: Callable[[Bundle, Console, LaunchOptions], None]
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
        ),
        DeployTarget(
            "vllm",
            "a vLLM serve script and a Docker Compose file",
            (Runtime.VLLM,),
            vllm.files,
            vllm.launch,
            vllm.start_hint,
        ),
        DeployTarget(
            "k8s",
            "Kubernetes manifests running vLLM (or Ollama with --runtime ollama)",
            (Runtime.VLLM, Runtime.OLLAMA),
            k8s.files,
            k8s.launch,
            k8s.start_hint,
            frozenset({"dry_run_first"}),
            k8s.template_values,
        ),
    )
}

# The plan settings of each runtime a target can run.
RUNTIME_SETTINGS: dict[Runtime, SettingsBuilder] = {
    Runtime.VLLM: vllm.settings,
    Runtime.OLLAMA: ollama.settings,
}


def get_target(name: str) -> DeployTarget:
    target = TARGETS.get(name)
    if target is None:
        raise PlanError(f"unknown deploy target {name!r}; known: {', '.join(TARGETS)}")
    return target


def deploy_targets() -> tuple[tuple[Runtime, str], ...]:
    """(runtime, target) for each runtime a target runs by itself: recommend's deploy commands."""
    return tuple((t.runtimes[0], t.name) for t in TARGETS.values() if len(t.runtimes) == 1)


def settings_for(runtime: Runtime) -> SettingsBuilder:
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
