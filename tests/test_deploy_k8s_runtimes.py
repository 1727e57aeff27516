"""Kubernetes bundles of SGLang and llama.cpp (issue 12): `deploy --target k8s --runtime sglang` (a
Deployment; a LeaderWorkerSet across nodes) and `--runtime llama.cpp` (a llama-server Deployment).

- The container runs the very command of the runtime's own target (`--target sglang` / `--target
  llama.cpp`, their golden Compose files), plus only what the pod adds: a LeaderWorkerSet pod's node
  flags, llama-server's `--threads` sized to the CPU limit, a --gguf file's path on the models volume.
- Every flag is one checked against the runtime's source (tests/test_deploy_runtime_targets.py lists
  them); with sglang importable, its own parser reads each command line.
- Pod sizes follow the plan; the LeaderWorkerSet passes LWS's variables; every pod is probed.
- Every catalog variant x quantization these runtimes load deploys on Kubernetes where `estimate` says it
  fits (8 x H200, and 2 nodes of 8 x H100), each manifest valid in strict mode, and is refused with one
  line where it does not.

kubernetes-validate and checkov run on the golden bundles in tests/test_deploy_validate.py and
tests/test_deploy_k8s_hardening.py (they read every `tests/golden/*/k8s*` folder).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import Result
from test_deploy_golden import GOLDEN, K8S_RUNTIME_BUNDLES
from test_deploy_runtime_targets import VERIFIED_LLAMA_SERVER_FLAGS, VERIFIED_SGLANG_FLAGS, flags_of
from test_deploy_validate import K8S_VERSIONS, as_pod, lws_validator  # noqa: F401 (a fixture)

from vramplan.catalog import Catalog
from vramplan.deploy import k8s
from vramplan.deploy.llamacpp import LLAMA_CPP_IMAGE
from vramplan.deploy.sglang import DIST_INIT_PORT, SGLANG_IMAGE, SGLANG_PORT

GiB = 1 << 30
# what the llama.cpp pod adds to llama-server's command line, and where llama.cpp defines it
K8S_LLAMA_SERVER_FLAGS = {"--threads": "common/arg.cpp {-t, --threads} N"}


def bundles(runtime: str) -> list[tuple[str, list[str], Path]]:
    return [(c, extra, GOLDEN / c / b) for c, b, extra in K8S_RUNTIME_BUNDLES if b == f"k8s-{runtime}"]


def workload(folder: Path) -> dict[str, Any]:
    name = "leaderworkerset.yaml" if (folder / "leaderworkerset.yaml").exists() else "deployment.yaml"
    doc: dict[str, Any] = yaml.safe_load((folder / name).read_text())
    return doc


def pods(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """role -> pod spec: "server" for a Deployment, "leader" and "worker" for a LeaderWorkerSet."""
    if doc["kind"] == "Deployment":
        return {"server": doc["spec"]["template"]["spec"]}
    lwt = doc["spec"]["leaderWorkerTemplate"]
    return {"leader": lwt["leaderTemplate"]["spec"], "worker": lwt["workerTemplate"]["spec"]}


def container(pod: dict[str, Any]) -> dict[str, Any]:
    (c,) = pod["containers"]
    return c  # type: ignore[no-any-return]


def estimate_json(run: Callable[..., Result], args: list[str]) -> dict[str, Any]:
    res = run("estimate", *args, "--json")
    assert res.exit_code == 0, res.output
    doc: dict[str, Any] = json.loads(res.output)
    return doc


def readme_estimate(folder: Path) -> list[str]:
    (line,) = [
        ln for ln in (folder / "README.md").read_text().splitlines() if ln.startswith("vramplan estimate ")
    ]
    return line.split()[2:]


# --------------------------------------------------------------------------- SGLang


def test_there_are_both_layouts_of_sglang() -> None:
    kinds = sorted(workload(folder)["kind"] for _, _, folder in bundles("sglang"))
    assert kinds == ["Deployment", "LeaderWorkerSet"]


@pytest.mark.parametrize(
    ("case", "extra", "folder"), bundles("sglang"), ids=[c for c, _, _ in bundles("sglang")]
)
def test_sglang_runs_the_sglang_targets_command(case: str, extra: list[str], folder: Path) -> None:
    """The container's command is the one `--target sglang` writes for the plan (its Compose file), with
    the LeaderWorkerSet's variables where Compose has the head's address and the node's rank."""
    compose = yaml.safe_load((GOLDEN / case / "sglang" / "docker-compose.yaml").read_text())["services"]
    for role, pod in pods(workload(folder)).items():
        c = container(pod)
        assert c["image"] == SGLANG_IMAGE
        assert c["command"] == ["python3", "-m", "sglang.launch_server"]
        assert c["ports"] == [{"name": "http", "containerPort": SGLANG_PORT}]
        service = compose[{"server": "sglang", "leader": "head", "worker": "worker"}[role]]
        want = [str(a) for a in service["command"]]
        if role == "server":
            assert c["args"] == want
            continue
        # --nnodes N --node-rank R --dist-init-addr ADDR:PORT at the end, the rest as Compose has it
        assert c["args"][:-6] == want[:-6]
        rank = "0" if role == "leader" else "$(LWS_WORKER_INDEX)"
        assert c["args"][-6:] == [
            "--nnodes", str(workload(folder)["spec"]["leaderWorkerTemplate"]["size"]),
            "--node-rank", rank, "--dist-init-addr", f"$(LWS_LEADER_ADDRESS):{DIST_INIT_PORT}",
        ]  # fmt: skip
        assert want[-6:-2] == ["--nnodes", c["args"][-5], "--node-rank", want[-3]]


def sglang_k8s_commands() -> list[list[str]]:
    return [container(p)["args"] for _, _, f in bundles("sglang") for p in pods(workload(f)).values()]


def test_every_sglang_flag_on_kubernetes_was_checked() -> None:
    used = set().union(*(flags_of(args) for args in sglang_k8s_commands()))
    assert used <= set(VERIFIED_SGLANG_FLAGS), sorted(used - set(VERIFIED_SGLANG_FLAGS))
    assert {"--nnodes", "--node-rank", "--dist-init-addr", "--mem-fraction-static"} <= used


def test_sglang_parses_every_kubernetes_command_line() -> None:
    """SGLang's own parser reads each container's arguments, with LWS's variables as Kubernetes fills them."""
    server_args = pytest.importorskip(
        "sglang.srt.server_args", reason="sglang is not installed (pip install --no-deps 'sglang==0.5.23')"
    )
    for args in sglang_k8s_commands():
        filled = [
            a.replace("$(LWS_LEADER_ADDRESS)", "10.0.0.1").replace("$(LWS_WORKER_INDEX)", "1") for a in args
        ]
        parsed = server_args.prepare_server_args(filled)
        assert parsed.reasoning_parser == "deepseek-r1"


def test_sglang_leaderworkerset_is_set_up_for_sglangs_multi_node_launch() -> None:
    (folder,) = [f for _, _, f in bundles("sglang") if (f / "leaderworkerset.yaml").exists()]
    lws = workload(folder)
    assert lws["apiVersion"] == "leaderworkerset.x-k8s.io/v1"
    assert lws["spec"]["startupPolicy"] == "LeaderCreated"
    assert lws["spec"]["leaderWorkerTemplate"]["restartPolicy"] == "RecreateGroupOnPodRestart"
    text = (folder / "leaderworkerset.yaml").read_text()
    # only the variables whose LWS release the manifest states (deploy/k8s.py LWS_USED)
    assert {v for v in k8s.LWS_FEATURES if v.startswith("LWS_") and v in text} <= set(k8s.LWS_USED)
    assert lws["metadata"]["annotations"]["vramplan/lws-min-version"] == k8s.lws_minimum(k8s.LWS_USED)[0]
    for role, pod in pods(lws).items():
        c = container(pod)
        # every node serves /health: the leader its API, a worker SGLang's health server for ranks >= 1
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["httpGet"] == {"path": "/health", "port": "http"}, (role, probe)
    service = yaml.safe_load((folder / "service.yaml").read_text())
    assert service["spec"]["selector"]["role"] == "leader"
    assert service["spec"]["ports"][0]["port"] == SGLANG_PORT
    policy = yaml.safe_load((folder / "networkpolicy.yaml").read_text())
    assert policy["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": SGLANG_PORT}]
    assert policy["spec"]["ingress"][1]["from"][0]["podSelector"]["matchLabels"] == {
        "leaderworkerset.sigs.k8s.io/name": lws["metadata"]["name"]
    }


@pytest.mark.parametrize(
    ("case", "extra", "folder"), bundles("sglang"), ids=[c for c, _, _ in bundles("sglang")]
)
def test_sglang_pods_are_sized_from_the_plan(
    run: Callable[..., Result], case: str, extra: list[str], folder: Path
) -> None:
    """GPUs per pod from the topology; memory = /dev/shm + 4 GiB per SGLang process + the checkpoint bytes
    of the pod's GPUs; 2 vCPUs per process (server, detokenizer, a scheduler per GPU; a worker node
    only its schedulers)."""
    est = estimate_json(run, readme_estimate(folder))
    topo = est["topology"]
    per_node = topo["tensor_parallel"] * topo["pipeline_parallel"] // topo["nodes"]
    for role, pod in pods(workload(folder)).items():
        limits = container(pod)["resources"]["limits"]
        assert container(pod)["resources"]["requests"] == limits
        assert limits["nvidia.com/gpu"] == per_node
        node = 1 if role == "worker" else 0
        devices = est["per_gpu"][node * per_node : (node + 1) * per_node]
        weights = math.ceil(sum(d["weights_bytes"] for d in devices) / GiB)
        processes = per_node + (1 if role == "worker" else 2)
        shm = k8s.SHM_GIB_PER_GPU * per_node
        assert limits["memory"] == f"{shm + k8s.PROCESS_GIB * processes + weights}Gi", role
        assert limits["cpu"] == str(k8s.VCPUS_PER_PROCESS * processes), role
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["shm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": f"{shm}Gi"}


def test_sglang_runs_unprivileged_with_a_read_only_root() -> None:
    for _, _, folder in bundles("sglang"):
        for pod in pods(workload(folder)).values():
            assert pod["securityContext"]["runAsUser"] == k8s.SGLANG_UID >= 10000
            assert pod["securityContext"]["runAsNonRoot"] is True
            c = container(pod)
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            env = {e["name"]: e["value"] for e in c["env"]}
            mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
            assert env["HOME"] == mounts["home"] and env["USER"] == "sglang"
            assert env["HF_HOME"] == mounts["cache"] == env["HOME"] + "/.cache/huggingface"
            assert env["HF_TOKEN_PATH"] == mounts["hf-token"] + "/token"


# --------------------------------------------------------------------------- llama.cpp


@pytest.mark.parametrize(
    ("case", "extra", "folder"), bundles("llama.cpp"), ids=[c for c, _, _ in bundles("llama.cpp")]
)
def test_llama_server_runs_the_llama_cpp_targets_command(case: str, extra: list[str], folder: Path) -> None:
    """The container's arguments are the Compose file's of `--target llama.cpp`, then `--threads` at the
    pod's CPU limit; the image's entrypoint is llama-server."""
    compose = yaml.safe_load((GOLDEN / case / "llama.cpp" / "docker-compose.yaml").read_text())
    service = compose["services"]["llama-server"]
    doc = workload(folder)
    assert doc["kind"] == "Deployment"
    c = container(pods(doc)["server"])
    assert c["image"] == service["image"] == LLAMA_CPP_IMAGE
    assert "command" not in c
    cpu = c["resources"]["limits"]["cpu"]
    assert c["args"] == [str(a) for a in service["command"]] + ["--threads", cpu]
    assert c["ports"] == [{"name": "http", "containerPort": 8080}]
    used = flags_of(c["args"])
    allowed = set(VERIFIED_LLAMA_SERVER_FLAGS) | set(K8S_LLAMA_SERVER_FLAGS)
    assert used <= allowed, sorted(used - allowed)


@pytest.mark.parametrize(
    ("case", "extra", "folder"), bundles("llama.cpp"), ids=[c for c, _, _ in bundles("llama.cpp")]
)
def test_llama_server_pod_is_sized_from_the_plan(
    run: Callable[..., Result], case: str, extra: list[str], folder: Path
) -> None:
    """Memory holds the whole GGUF (memory-mapped: what stays in host RAM, and the GPU part in the page
    cache while it loads) and the process; the host computes the experts of --n-cpu-moe, so that pod
    gets the host-compute vCPUs."""
    est = estimate_json(run, readme_estimate(folder))
    c = container(pods(workload(folder))["server"])
    limits = c["resources"]["limits"]
    assert c["resources"]["requests"] == limits
    assert limits["nvidia.com/gpu"] == est["topology"]["gpus_per_node"]
    gguf = sum(d["weights_bytes"] for d in est["per_gpu"]) + est["host"]["total_bytes"]
    assert limits["memory"] == f"{k8s.PROCESS_GIB + math.ceil(gguf / GiB)}Gi"
    experts_on_host = "--n-cpu-moe" in c["args"]
    assert experts_on_host == (case == "r1-671b-2xrtx4090-host192")
    assert limits["cpu"] == str(k8s.LLAMA_CPP_HOST_VCPUS if experts_on_host else 2 * k8s.VCPUS_PER_PROCESS)
    if experts_on_host:  # the experts' bytes live in the pod's memory, not only pass through it
        assert int(limits["memory"][:-2]) * GiB > est["host"]["total_bytes"] > 100 * GiB


def test_llama_server_keeps_its_models_on_the_cache_volume() -> None:
    for _, _, folder in bundles("llama.cpp"):
        pod = pods(workload(folder))["server"]
        c = container(pod)
        env = {e["name"]: e["value"] for e in c["env"]}
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        assert env["LLAMA_CACHE"] == mounts["cache"] == k8s.LLAMA_CPP_MODELS
        assert c["args"][0] == "-hf"  # llama-server downloads it there at the first start
        assert set(mounts) == {"cache", "home", "tmp"}  # no /dev/shm (one process), no HF token (public)
        assert pod["securityContext"]["runAsUser"] == k8s.LLAMA_CPP_UID >= 10000
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["startupProbe"]["httpGet"] == {"path": "/health", "port": "http"}
        pvc = yaml.safe_load((folder / "pvc.yaml").read_text())
        assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
        assert "-hf" in (folder / "README.md").read_text()


def test_a_gguf_file_is_read_from_the_models_volume(run: Callable[..., Result], tmp_path: Path) -> None:
    pytest.importorskip("gguf")
    from support.tiny_gguf import spec_for, write_tiny_gguf

    model = write_tiny_gguf(tmp_path / "tiny.gguf", spec_for("qwen2"), weight_type="F16")
    out = tmp_path / "b"
    res = run("deploy", "--gguf", str(model.path), "--target", "k8s", "--runtime", "llama.cpp", "--gpu", "l4",
              "--namespace", "llm", "--out", str(out))  # fmt: skip
    assert res.exit_code == 0, res.output
    c = container(pods(workload(out))["server"])
    assert c["args"][:2] == ["-m", f"{k8s.LLAMA_CPP_MODELS}/tiny.gguf"]
    assert (
        str(tmp_path) not in (out / "deployment.yaml").read_text()
    )  # the pod never sees this machine's path
    assert f"`{k8s.LLAMA_CPP_MODELS}/tiny.gguf`: copy it there" in (out / "README.md").read_text()


def test_llama_cpp_on_several_nodes_is_one_line(run: Callable[..., Result], tmp_path: Path) -> None:
    res = run("deploy", "r1-1.5b", "--target", "k8s", "--runtime", "llama.cpp", "--gpu", "l4", "--nodes", "2",
              "--out", str(tmp_path))  # fmt: skip
    assert res.exit_code == 2
    assert res.output.strip() == "Error: llama.cpp plans are for one node; use vllm or sglang for several"


# --------------------------------------------------------------------------- every catalog variant

LAYOUTS = {"8xh200": ["--gpu", "h200:8"], "2x8xh100": ["--gpu", "h100-80gb:8", "--nodes", "2"]}


def catalog_plans() -> list[tuple[str, str, str, str]]:
    from vramplan.catalog import load_catalog

    catalog: Catalog = load_catalog()
    out = []
    for v in catalog.variants:
        for q in v.quants:
            runtime = "llama.cpp" if q.is_gguf else "sglang"
            if q.is_gguf and not q.repo:
                continue  # llama-server has nothing to download (tests/test_deploy_runtime_targets.py)
            for layout in LAYOUTS:
                out.append((v.id, q.name, runtime, layout))
    return out


@pytest.mark.parametrize(("model", "quant", "runtime", "layout"), catalog_plans(), ids="-".join)
def test_every_catalog_variant_that_fits_deploys_on_kubernetes(
    run: Callable[..., Result], tmp_path: Path, lws_validator: Any, model: str, quant: str, runtime: str,  # noqa: F811
    layout: str,
) -> None:  # fmt: skip
    plan = [model, "--quant", quant, "--runtime", runtime, *LAYOUTS[layout]]
    est = run("estimate", *plan, "--json")
    res = run("deploy", *plan, "--target", "k8s", "--out", str(tmp_path / "b"))
    if est.exit_code != 0:  # a plan vramplan does not make: the same one line from deploy
        assert runtime == "llama.cpp" and layout == "2x8xh100"
        assert res.exit_code == 2 and res.output.strip() == est.output.strip()
        return
    if not json.loads(est.output)["fits"]:
        assert res.exit_code == 2 and res.output.strip().startswith("Error: this plan does not fit: ")
        return
    assert res.exit_code == 0, res.output
    for path in sorted((tmp_path / "b").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc["kind"] == "LeaderWorkerSet":
                lws_validator.validate(doc)
                for role, pod in pods(doc).items():
                    kubernetes_validate.validate(as_pod({"spec": pod}), K8S_VERSIONS[0], strict=True)
                    assert container(pod)["args"][-1].startswith("$(LWS_LEADER_ADDRESS):"), role
            else:
                kubernetes_validate.validate(doc, K8S_VERSIONS[0], strict=True)


def test_docs_state_the_values_the_manifests_use() -> None:
    section = (Path(__file__).resolve().parents[1] / "docs" / "deploy.md").read_text()
    section = section.split("## Hardened manifests")[1].split("\n## ")[0]
    for phrase in (
        f"SGLang and llama.cpp: UID {k8s.SGLANG_UID}",
        f"{k8s.LLAMA_CPP_HOST_VCPUS} vCPUs and `--threads {k8s.LLAMA_CPP_HOST_VCPUS}`",
        f"llama-server: {2 * k8s.VCPUS_PER_PROCESS} vCPUs on GPUs",
        f"the models volume at `{k8s.LLAMA_CPP_MODELS}`",
        f"{k8s.VCPUS_PER_PROCESS} vCPUs per SGLang process",
    ):
        assert phrase in section, phrase


@pytest.mark.parametrize(
    ("runtime", "image"),
    [("sglang", SGLANG_IMAGE), ("llama.cpp", LLAMA_CPP_IMAGE)],
)
def test_amd_gpus_are_refused_with_one_line(
    run: Callable[..., Result], tmp_path: Path, runtime: str, image: str
) -> None:
    """The pinned SGLang and llama.cpp images are CUDA builds: an AMD plan is refused, not written with an
    NVIDIA image and `nvidia.com/gpu`."""
    res = run(
        "deploy", "r1-7b", "--gpu", "mi300x", "--target", "k8s", "--runtime", runtime, "--out", str(tmp_path)
    )
    assert res.exit_code == 2
    assert res.output.strip() == (
        f"Error: --runtime {runtime} on Kubernetes runs {image}, a CUDA image with NVIDIA GPUs: for AMD GPUs "
        "deploy --runtime vllm or --runtime ollama"
    )
    assert not tmp_path.joinpath("deployment.yaml").exists()
