"""The `k8s` deploy target: Kubernetes manifests running vLLM (a Deployment, or a LeaderWorkerSet across
nodes) or Ollama (with --runtime ollama), applied with kubectl."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from vramplan.deploy import launch as tools
from vramplan.deploy.plan import DeployPlan
from vramplan.errors import LaunchError
from vramplan.runtimes import Runtime

if TYPE_CHECKING:
    from rich.console import Console

    from vramplan.deploy import Bundle
    from vramplan.deploy.targets import LaunchOptions


def files(plan: DeployPlan) -> list[tuple[str, str, bool]]:
    if plan.runtime is Runtime.OLLAMA:
        return [
            ("k8s/ollama-pvc.yaml.j2", "pvc.yaml", False),
            ("k8s/ollama-configmap.yaml.j2", "configmap.yaml", False),
            ("k8s/ollama-deployment.yaml.j2", "deployment.yaml", False),
            ("k8s/ollama-service.yaml.j2", "service.yaml", False),
            ("k8s/README.md.j2", "README.md", False),
        ]
    if plan.multi_node:
        return [
            ("k8s/vllm-leaderworkerset.yaml.j2", "leaderworkerset.yaml", False),
            ("k8s/vllm-service.yaml.j2", "service.yaml", False),
            ("k8s/README.md.j2", "README.md", False),
        ]
    return [
        ("k8s/vllm-pvc.yaml.j2", "pvc.yaml", False),
        ("k8s/vllm-deployment.yaml.j2", "deployment.yaml", False),
        ("k8s/vllm-service.yaml.j2", "service.yaml", False),
        ("k8s/README.md.j2", "README.md", False),
    ]


def start_hint(plan: DeployPlan, out: Path) -> str:
    return f"kubectl apply -f {shlex.quote(str(out))}"


def launch(bundle: Bundle, console: Console, options: LaunchOptions) -> None:
    """`kubectl apply -f DIR` (after a client-side dry run with --dry-run-first)."""
    out = bundle.out
    kubectl = tools.which("kubectl")
    if kubectl is None:
        raise LaunchError(
            "kubectl is not on PATH: install it (https://kubernetes.io/docs/tasks/tools/) and point it "
            f"at your cluster, or apply the files yourself: kubectl apply -f {out}"
        )
    if options.dry_run_first:
        console.print(f"$ kubectl apply --dry-run=client -f {out}")
        rc = tools.run_command([kubectl, "apply", "--dry-run=client", "-f", str(out)])
        if rc != 0:
            raise LaunchError(
                f"kubectl apply --dry-run=client -f {out} failed (exit {rc}); nothing was applied"
            )
    console.print(f"$ kubectl apply -f {out}")
    rc = tools.run_command([kubectl, "apply", "-f", str(out)])
    if rc != 0:
        raise LaunchError(f"kubectl apply -f {out} failed (exit {rc})")
    console.print(f"applied; watch it with: kubectl get pods -w   (details: {out / 'README.md'})")
