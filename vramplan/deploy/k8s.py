"""The `k8s` deploy target: Kubernetes manifests running vLLM or SGLang (a Deployment, or a
LeaderWorkerSet across nodes), llama.cpp's llama-server (a Deployment) or Ollama, picked with --runtime,
applied with kubectl; and what the manifests size and set beyond the plan's flags (`template_values`):
CPU and memory, /dev/shm, the user a pod runs as, the model cache, the image and its pull policy.
docs/deploy.md ("Hardened manifests") says why each."""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vramplan.deploy import launch as tools
from vramplan.deploy.ollama import OLLAMA_PORT
from vramplan.deploy.options import HOST_CACHE_PATH, DeployOptions, image_has_digest
from vramplan.deploy.plan import DeployPlan
from vramplan.deploy.vllm import VLLM_PORT
from vramplan.errors import LaunchError, PlanError
from vramplan.runtimes import Runtime

if TYPE_CHECKING:
    from rich.console import Console

    from vramplan.deploy import Bundle
    from vramplan.deploy.targets import LaunchOptions
    from vramplan.deploy.verify import Verified


GiB = 1 << 30

# The LeaderWorkerSet controller release each field or variable the manifest uses first shipped in
# (kubernetes-sigs/lws, the first tag that contains the commit):
LWS_FEATURES = {
    "startupPolicy": ("v0.3.0", "PR #150"),
    "LWS_LEADER_ADDRESS": ("v0.3.0", "PR #144"),
    "LWS_WORKER_INDEX": ("v0.6.0", "PR #416"),
    "volumeClaimTemplates": ("v0.8.0", "PR #633"),
}
# what vllm-leaderworkerset.yaml.j2 uses (tests/test_deploy_k8s_hardening.py checks it against the file)
LWS_USED = ("startupPolicy", "LWS_LEADER_ADDRESS", "LWS_WORKER_INDEX")

# /dev/shm: NCCL and vLLM's worker queues use it once a pod has several GPUs. 2 GiB per GPU: vLLM's
# Kubernetes guide gives one GPU 2Gi (docs/deployment/k8s.md) and its LeaderWorkerSet example gives eight
# GPUs 15Gi (docs/deployment/frameworks/lws.md). It is memory-backed and counts against the memory limit.
SHM_GIB_PER_GPU = 2
# vCPUs: vLLM runs one API server and one engine core per data-parallel rank, one worker per GPU and a
# coordinator when DP > 1 (docs/design/arch_overview.md, "Process Count Summary"), and needs one physical
# core each, i.e. two vCPUs with SMT (docs/configuration/optimization.md, "CPU Resources for GPU
# Deployments"). Ollama: the server and its runner.
VCPUS_PER_PROCESS = 2
# Host memory of each of those processes besides the weights: a TP worker's anonymous memory while it
# loads is about 3 GB (vllm-project/vllm issue 57469, `anon-rss: 3131928 kB`); rounded up to 4 GiB.
PROCESS_GIB = 4
# CPU-only Ollama plans: llama.cpp computes on the host; 16 vCPUs is vramplan's allowance (raise it on a
# larger node), not a measured figure.
OLLAMA_CPU_ONLY_VCPUS = 16
# llama-server computes on the host what the plan keeps there (all of a CPU-only plan, the MoE experts of
# --n-cpu-moe, the layers past --gpu-layers): the same allowance, and --threads set to it so llama.cpp's
# default (every core it sees, common/common.cpp cpu_get_num_math) does not outrun the pod's CPU limit.
# On GPUs only: one process, its HTTP threads and its decode loop (two processes' worth of vCPUs).
LLAMA_CPP_HOST_VCPUS = OLLAMA_CPU_ONLY_VCPUS

# The user each image runs as. The CUDA vLLM image ships a `vllm` user, UID 2000 in group 0, with a
# group-0-writable home (vllm docs/deployment/docker.md "Run as a non-root user", PR #40275, before
# 0.33.0). The ROCm images run as root: /dev/kfd and /dev/dri/renderD* are root:render 0660 on the host,
# and the render group's GID differs from host to host. Ollama's binary runs as an unprivileged user in
# its own Linux install (the `ollama` system user); in the image it needs only a writable HOME.
VLLM_UID, VLLM_GID = 2000, 0
OLLAMA_UID = 10001
# SGLang's image (lmsysorg/sglang) and llama.cpp's server images run as root; neither process needs it
# (they read the image and write only their caches), so their pods run as an unprivileged UID that has
# no passwd entry in the image, with HOME on a scratch volume. Python's getpass.getuser() reads USER
# before the passwd file, so USER is set for libraries that ask for a user name (torch's compile cache).
SGLANG_UID = 10001
LLAMA_CPP_UID = 10001
# Where llama.cpp's pod keeps its models: LLAMA_CACHE for `-hf` downloads, and a --gguf file's folder.
LLAMA_CPP_MODELS = "/models"
# Scratch space where the root file system is read-only: HOME takes the compile caches (torch.compile,
# Triton, FlashInfer JIT under ~/.cache), /tmp the rest. vramplan's allowances, not measured figures;
# an emptyDir over its sizeLimit gets the pod evicted, not a write error.
HOME_GIB = 16
TMP_GIB = 8


@dataclass(frozen=True)
class PodSize:
    """What one pod requests (and is limited to: requests equal limits, the Guaranteed QoS class)."""

    gpus: int
    cpu: int  # vCPUs
    memory_gib: int
    shm_gib: int
    weights_gib: int  # the checkpoint bytes the pod reads (held in the page cache while loading)


@dataclass(frozen=True)
class RunAs:
    """The pod's security context values."""

    non_root: bool
    user: int
    group: int
    fs_group: int
    read_only_root: bool
    home: str  # HOME, an emptyDir when the root file system is read-only


def _processes(plan: DeployPlan, leader: bool) -> int:
    """The processes of one vLLM or SGLang pod (the leader or the one node: leader True).

    vLLM: an API server and an engine core per data-parallel rank, a worker per GPU, a coordinator when
    DP > 1; a headless node runs an engine core and its workers. SGLang (sglang/srt/entrypoints/engine.py
    `_launch_subprocesses`): the server with its tokenizer, a detokenizer, a scheduler per GPU and a
    data-parallel controller when DP > 1; a node of rank >= 1 runs only its schedulers (and a health
    server in the main process)."""
    dp = getattr(plan.settings, "data_parallel", 1)
    gpus = plan.gpus_per_pod
    if plan.runtime is Runtime.SGLANG:
        return (2 + gpus + (1 if dp > 1 else 0)) if leader else 1 + gpus
    if plan.multi_node:
        return 2 + gpus
    return 2 * dp + gpus + (1 if dp > 1 else 0)


def _gpu_server_pod(plan: DeployPlan, node: int | None) -> PodSize:
    """A vLLM or SGLang pod: the whole plan on one node (node None), or node `node` of a multi-node plan."""
    s = plan.settings
    dp = getattr(s, "data_parallel", 1)
    devices = plan.estimate.per_gpu
    if node is None:
        weights = sum(d.weights_bytes for d in devices) * dp
    else:
        per_node = len(devices) // plan.nodes
        weights = sum(d.weights_bytes for d in devices[node * per_node : (node + 1) * per_node])
    processes = _processes(plan, leader=node in (None, 0))
    shm = SHM_GIB_PER_GPU * max(1, plan.gpus_per_pod)
    weights_gib = math.ceil(weights / GiB)
    return PodSize(
        gpus=plan.gpus_per_pod,
        cpu=VCPUS_PER_PROCESS * processes,
        memory_gib=shm + PROCESS_GIB * processes + weights_gib,
        shm_gib=shm,
        weights_gib=weights_gib,
    )


def _llamacpp_pod(plan: DeployPlan) -> PodSize:
    """llama-server: the GGUF's bytes (memory-mapped: the GPU part read through the page cache while it
    loads, the host part kept there), one process, and the host's compute when it does some."""
    est = plan.estimate
    on_gpus = sum(d.weights_bytes for d in est.per_gpu)
    weights_gib = math.ceil((on_gpus + est.host.total_bytes) / GiB)
    # the host computes a CPU-only plan, the experts of --n-cpu-moe and the layers past --gpu-layers (not
    # the token embeddings llama.cpp always keeps in host RAM: a lookup, not a computation)
    s = plan.settings
    host_compute = plan.cpu_only or bool(getattr(s, "cpu_moe_layers", 0)) or s.gpu_layers is not None
    return PodSize(
        gpus=plan.gpus_per_pod,
        cpu=LLAMA_CPP_HOST_VCPUS if host_compute else VCPUS_PER_PROCESS * 2,
        memory_gib=PROCESS_GIB + weights_gib,
        shm_gib=0,
        weights_gib=weights_gib,
    )


def _ollama_pod(plan: DeployPlan) -> PodSize:
    est = plan.estimate
    on_gpus = sum(d.weights_bytes for d in est.per_gpu)
    weights_gib = math.ceil((on_gpus + est.host.total_bytes) / GiB)
    cpu = OLLAMA_CPU_ONLY_VCPUS if plan.cpu_only else VCPUS_PER_PROCESS * 2
    return PodSize(
        gpus=plan.gpus_per_pod,
        cpu=cpu,
        memory_gib=PROCESS_GIB * 2 + weights_gib,
        shm_gib=0,
        weights_gib=weights_gib,
    )


def pod_sizes(plan: DeployPlan) -> dict[str, PodSize]:
    """The size of each kind of pod: "server" (a Deployment's pod, or a LeaderWorkerSet's leader) and,
    across nodes, "worker" (the largest worker)."""
    if plan.runtime is Runtime.OLLAMA:
        return {"server": _ollama_pod(plan)}
    if plan.runtime is Runtime.LLAMA_CPP:
        return {"server": _llamacpp_pod(plan)}
    if not plan.multi_node:
        return {"server": _gpu_server_pod(plan, None)}
    workers = [_gpu_server_pod(plan, n) for n in range(1, plan.nodes)]
    return {"server": _gpu_server_pod(plan, 0), "worker": max(workers, key=lambda p: p.memory_gib)}


def run_as(plan: DeployPlan) -> RunAs:
    vendor = getattr(plan.settings, "vendor", "nvidia")
    if vendor == "amd":
        return RunAs(False, 0, 0, 0, False, "/root")
    if plan.runtime is Runtime.OLLAMA:
        return RunAs(True, OLLAMA_UID, OLLAMA_UID, OLLAMA_UID, True, "/var/lib/ollama")
    if plan.runtime is Runtime.SGLANG:
        return RunAs(True, SGLANG_UID, SGLANG_UID, SGLANG_UID, True, "/home/sglang")
    if plan.runtime is Runtime.LLAMA_CPP:
        return RunAs(True, LLAMA_CPP_UID, LLAMA_CPP_UID, LLAMA_CPP_UID, True, "/home/llama")
    return RunAs(True, VLLM_UID, VLLM_GID, VLLM_GID, True, "/home/vllm")


def lws_minimum(used: tuple[str, ...]) -> tuple[str, list[str]]:
    """The oldest LeaderWorkerSet release that has every feature in `used`, and the reasons."""

    def key(version: str) -> tuple[int, ...]:
        return tuple(int(p) for p in version.lstrip("v").split("."))

    version = max((LWS_FEATURES[f][0] for f in used), key=key)
    return version, [f"{f} ({LWS_FEATURES[f][0]}, {LWS_FEATURES[f][1]})" for f in used]


def _api_port(plan: DeployPlan) -> int:
    port: int = getattr(plan.settings, "port", VLLM_PORT)
    return OLLAMA_PORT if plan.runtime is Runtime.OLLAMA else port


def server_command(plan: DeployPlan, pods: dict[str, PodSize]) -> tuple[list[str], list[str]]:
    """The container's command and arguments for an SGLang or llama.cpp plan (the node's own flags of a
    multi-node SGLang plan come from the template). vLLM's and Ollama's are in their templates."""
    args: list[str] = list(plan.settings.server_args)  # type: ignore[attr-defined]
    listen = ["--host", "0.0.0.0", "--port", str(_api_port(plan))]
    if plan.runtime is Runtime.SGLANG:
        # the image's own launch (lmsysorg/sglang: `python3 -m sglang.launch_server`)
        return ["python3", "-m", "sglang.launch_server"], ["--model-path", plan.repo, *listen, *args]
    gguf: str | None = getattr(plan.settings, "gguf_path", None)
    if gguf:  # a --gguf file is read from the models volume (README: how it gets there)
        args[1] = f"{LLAMA_CPP_MODELS}/{Path(gguf).name}"
    # the image's entrypoint is llama-server itself (llama.cpp .devops/cuda.Dockerfile `server` stage)
    return [], [*args, *listen, "--threads", str(pods["server"].cpu)]


def template_values(plan: DeployPlan, options: DeployOptions) -> dict[str, Any]:
    """What the Kubernetes templates read besides the plan."""
    image = options.image or plan.settings.image  # type: ignore[attr-defined]
    vendor = getattr(plan.settings, "vendor", "nvidia")
    if vendor == "amd" and plan.runtime in (Runtime.SGLANG, Runtime.LLAMA_CPP):
        raise PlanError(
            f"--runtime {plan.runtime.value} on Kubernetes runs {plan.settings.image}, a CUDA image "  # type: ignore[attr-defined]
            "with NVIDIA GPUs: for AMD GPUs deploy --runtime vllm or --runtime ollama"
        )
    cache = options.cache_for(plan.nodes)
    version, reasons = lws_minimum(LWS_USED)
    pods = pod_sizes(plan)
    values = {
        "namespace": options.namespace,
        "image": image,
        # a digest cannot change under the same reference; a tag can, so it is pulled again each start
        "pull_policy": "IfNotPresent" if image_has_digest(image) else "Always",
        "cache": cache,
        "host_cache_path": HOST_CACHE_PATH,
        "pods": pods,
        "run_as": run_as(plan),
        "home_gib": HOME_GIB,
        "tmp_gib": TMP_GIB,
        "vendor": vendor,
        "lws_min_version": version,
        "lws_reasons": reasons,
        "api_port": _api_port(plan),
        "llama_models": LLAMA_CPP_MODELS,
        "gguf_name": None,
    }
    gguf: str | None = getattr(plan.settings, "gguf_path", None)
    if gguf:
        values["gguf_name"] = Path(gguf).name
    if plan.runtime in (Runtime.SGLANG, Runtime.LLAMA_CPP):
        values["server_cmd"], values["server_args"] = server_command(plan, pods)
    return values


_TEMPLATE_PREFIX = {Runtime.VLLM: "vllm", Runtime.SGLANG: "sglang", Runtime.LLAMA_CPP: "llamacpp"}


def files(plan: DeployPlan, options: DeployOptions) -> list[tuple[str, str, bool]]:
    if plan.runtime is Runtime.OLLAMA:
        return [
            ("k8s/ollama-pvc.yaml.j2", "pvc.yaml", False),
            ("k8s/ollama-configmap.yaml.j2", "configmap.yaml", False),
            ("k8s/ollama-deployment.yaml.j2", "deployment.yaml", False),
            ("k8s/ollama-service.yaml.j2", "service.yaml", False),
            ("k8s/networkpolicy.yaml.j2", "networkpolicy.yaml", False),
            ("k8s/README.md.j2", "README.md", False),
        ]
    prefix = _TEMPLATE_PREFIX[plan.runtime]
    pvc = (
        [] if options.cache_for(plan.nodes) == "host-path" else [("k8s/vllm-pvc.yaml.j2", "pvc.yaml", False)]
    )
    workload = (
        (f"k8s/{prefix}-leaderworkerset.yaml.j2", "leaderworkerset.yaml", False)
        if plan.multi_node
        else (f"k8s/{prefix}-deployment.yaml.j2", "deployment.yaml", False)
    )
    return [
        *pvc,
        workload,
        ("k8s/vllm-service.yaml.j2", "service.yaml", False),
        ("k8s/networkpolicy.yaml.j2", "networkpolicy.yaml", False),
        ("k8s/README.md.j2", "README.md", False),
    ]


def start_hint(plan: DeployPlan, out: Path) -> str:
    return f"kubectl apply -f {shlex.quote(str(out))}"


def launch(bundle: Bundle, console: Console, options: LaunchOptions) -> Verified | None:
    """`kubectl apply -f DIR` (after a client-side dry run with --dry-run-first), then the server's log
    beside the plan (deploy/verify.py `verify_kubectl`) unless options.verify is False."""
    out = bundle.out
    kubectl = tools.which("kubectl")
    if kubectl is None:
        raise LaunchError(
            "kubectl is not on PATH: install it (https://kubernetes.io/docs/tasks/tools/) and point it "
            f"at your cluster, or apply the files yourself: kubectl apply -f {out}"
        )
    if options.dry_run_first:
        tools.show_command(console, ["kubectl", "apply", "--dry-run=client", "-f", str(out)])
        rc = tools.run_command([kubectl, "apply", "--dry-run=client", "-f", str(out)])
        if rc != 0:
            raise LaunchError(
                f"kubectl apply --dry-run=client -f {out} failed (exit {rc}); nothing was applied"
            )
    tools.show_command(console, ["kubectl", "apply", "-f", str(out)])
    rc = tools.run_command([kubectl, "apply", "-f", str(out)])
    if rc != 0:
        raise LaunchError(f"kubectl apply -f {out} failed (exit {rc})")
    ns = f" -n {bundle.options.namespace}" if bundle.options.namespace else ""
    tools.show_shell(
        console, f"kubectl{ns} get pods -w   (details: {out / 'README.md'})", "applied; watch it with: "
    )
    if not options.verify:
        return None
    from vramplan.deploy import verify

    return verify.verify_kubectl(bundle, console, kubectl)
