"""Deployments an SRE would ship: what checkov says of every Kubernetes manifest `deploy` writes, and the
settings behind it (sizes from the plan, the security context, the shared model cache of a
LeaderWorkerSet, AMD GPUs, the namespace and image options), and the Compose file's RDMA, AMD,
published address and API key.

checkov (PyPI `checkov`, a test dependency) runs once on every golden Kubernetes bundle and on bundles
rendered here for the options the golden ones do not cover; a LeaderWorkerSet's leader and worker
templates are scanned as Pods too (checkov does not know the CRD). No check may fail except the ones
in `EXCEPTIONS`, each under its condition and each justified in docs/deploy.md; a control manifest
without the hardening shows the scan does fail.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from click.testing import Result
from test_deploy_golden import GOLDEN, PLANS

from vramplan.deploy.k8s import LWS_FEATURES, LWS_USED, PROCESS_GIB, SHM_GIB_PER_GPU, VCPUS_PER_PROCESS
from vramplan.deploy.ollama import OLLAMA_ROCM_IMAGE
from vramplan.deploy.vllm import VLLM_IMAGE, VLLM_ROCM_IMAGE

REPO = Path(__file__).resolve().parents[1]
GiB = 1 << 30
DIGEST = "sha256:" + "0123456789abcdef" * 4

# Bundles rendered here beside the golden ones: name -> deploy arguments.
EXTRA: dict[str, list[str]] = {
    "vllm-pinned": ["deepseek-r1", "--gpu", "h200:8", "--namespace", "llm", "--image", f"vllm/vllm-openai@{DIGEST}"],
    "ollama-pinned": [
        "r1-1.5b", "--gpu", "l4", "--runtime", "ollama", "--namespace", "llm",
        "--image", f"ollama/ollama@{DIGEST}",
    ],
    "lws-host-path": ["deepseek-r1", "--gpu", "h100-80gb:8", "--nodes", "2", "--cache", "host-path"],
    "lws-pinned": [
        "deepseek-r1", "--gpu", "h100-80gb:8", "--nodes", "2", "--namespace", "llm",
        "--image", f"vllm/vllm-openai@{DIGEST}",
    ],
    "amd-vllm": ["r1-7b", "--gpu", "mi300x"],
    "amd-ollama": ["r1-7b", "--gpu", "mi300x", "--runtime", "ollama"],
    "amd-lws": ["deepseek-r1", "--gpu", "mi300x:8", "--nodes", "2"],
    "sglang-pinned": [
        "deepseek-r1", "--gpu", "h200:8", "--runtime", "sglang", "--namespace", "llm",
        "--image", f"lmsysorg/sglang@{DIGEST}",
    ],
    "sglang-lws-pinned": [
        "deepseek-r1", "--gpu", "h100-80gb:8", "--nodes", "2", "--runtime", "sglang", "--namespace", "llm",
        "--image", f"lmsysorg/sglang@{DIGEST}",
    ],
    "llamacpp-pinned": [
        "r1-32b", "--gpu", "h100-80gb:2", "--runtime", "llama.cpp", "--namespace", "llm",
        "--image", f"ghcr.io/ggml-org/llama.cpp@{DIGEST}",
    ],
}  # fmt: skip


@dataclass(frozen=True)
class Exception_:
    """A check allowed to fail, and when (docs/deploy.md "Hardened manifests" says why)."""

    check: str
    when: str  # readable, for the failure message

    def allows(self, doc: dict[str, Any], pod_role: str | None) -> bool:
        containers = pod_spec(doc)["containers"] if pod_spec(doc) else []
        images = [c["image"] for c in containers]
        amd = any("rocm" in i for i in images)
        if self.check == "CKV_K8S_21":  # the default namespace: no --namespace given
            return "namespace" not in doc["metadata"]
        if self.check == "CKV_K8S_43":  # image by tag: no --image NAME@DIGEST given
            return any("@" not in i for i in images)
        if self.check == "CKV_K8S_40":  # UID below 10000: vLLM's own user (2000), or root on AMD
            return amd or any(i.startswith("vllm/vllm-openai") for i in images)
        if self.check in ("CKV_K8S_22", "CKV_K8S_23"):  # root and a writable root file system: ROCm
            return amd
        if self.check in ("CKV_K8S_8", "CKV_K8S_9"):  # probes: headless LeaderWorkerSet workers
            return pod_role == "worker"
        return False


EXCEPTIONS = {
    e.check: e
    for e in (
        Exception_("CKV_K8S_21", "no --namespace: kubectl's namespace"),
        Exception_("CKV_K8S_43", "an image by tag: pass --image NAME@sha256:..."),
        Exception_("CKV_K8S_40", "vLLM's image user is UID 2000; ROCm runs as root"),
        Exception_("CKV_K8S_22", "ROCm: writable root file system"),
        Exception_("CKV_K8S_23", "ROCm: root"),
        Exception_("CKV_K8S_8", "LeaderWorkerSet workers: no liveness probe (headless)"),
        Exception_("CKV_K8S_9", "LeaderWorkerSet workers: no readiness probe (headless)"),
    )
}


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    if doc.get("kind") == "Pod":
        spec: dict[str, Any] = doc["spec"]
        return spec
    if doc.get("kind") == "Deployment":
        spec = doc["spec"]["template"]["spec"]
        return spec
    return None


def lws_pods(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """A LeaderWorkerSet's leader and worker templates as Pods (role, pod)."""
    lwt = doc["spec"]["leaderWorkerTemplate"]
    for role in ("leader", "worker"):
        t = lwt[f"{role}Template"]
        meta = {**t.get("metadata", {}), "name": f"{doc['metadata']['name']}-{role}"}
        if "namespace" in doc["metadata"]:
            meta["namespace"] = doc["metadata"]["namespace"]
        yield role, {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": t["spec"]}


def render(run: Callable[..., Result], out: Path, args: list[str]) -> Path:
    res = run("deploy", *args, "--target", "k8s", "--out", str(out))
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every Kubernetes bundle: the golden ones and the EXTRA ones, by name."""
    from click.testing import CliRunner

    from vramplan.cli import cli

    out = tmp_path_factory.mktemp("k8s")
    env = {"VRAMPLAN_CATALOG": None, "VRAMPLAN_HOME": str(out / "home"), "HF_HUB_OFFLINE": "1"}

    def invoke(*args: str) -> Result:  # the `run` fixture's runner, for a module-wide fixture
        return CliRunner().invoke(cli, list(args), catch_exceptions=False, env=env)

    found = {f"{p.parent.name}/{p.name}": p for p in sorted(GOLDEN.glob("*/k8s*")) if p.is_dir()}
    for name, args in EXTRA.items():
        found[name] = render(invoke, out / name, args)
    return found


@pytest.fixture(scope="module")
def scan(bundles: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """checkov over every bundle (LWS templates as Pods) and a control manifest without hardening:
    {"failed": [(bundle, file, kind, name, check)], "docs": {(bundle, file, name): doc}, "passed": n}."""
    if importlib.util.find_spec("checkov") is None:
        pytest.skip("checkov is not installed (pip install checkov, or the project's `test` extra)")
    root = tmp_path_factory.mktemp("scan")
    docs: dict[tuple[str, str, str], tuple[dict[str, Any], str | None]] = {}
    for name, folder in [*bundles.items(), ("control", None)]:
        dest = root / name.replace("/", "__")
        dest.mkdir()
        if folder is None:  # the 8xH200 Deployment stripped of its hardening: checkov must object
            (dep,) = yaml.safe_load_all((GOLDEN / "r1-671b-8xh200" / "k8s" / "deployment.yaml").read_text())
            pod = dep["spec"]["template"]["spec"]
            del pod["securityContext"], pod["automountServiceAccountToken"]
            for c in pod["containers"]:
                del (
                    c["securityContext"],
                    c["resources"]["limits"]["cpu"],
                    c["resources"]["requests"]["memory"],
                )
            (dest / "deployment.yaml").write_text(yaml.safe_dump(dep))
            docs[(name, "deployment.yaml", dep["metadata"]["name"])] = (dep, None)
            continue
        for path in sorted(folder.glob("*.yaml")):
            text = path.read_text()
            (dest / path.name).write_text(text)
            for doc in yaml.safe_load_all(text):
                if doc is None:
                    continue
                docs[(name, path.name, doc["metadata"]["name"])] = (doc, None)
                if doc["kind"] == "LeaderWorkerSet":
                    pods = list(lws_pods(doc))
                    (dest / f"{path.stem}-pods.yaml").write_text(yaml.safe_dump_all([p for _, p in pods]))
                    for role, pod in pods:
                        docs[(name, f"{path.stem}-pods.yaml", pod["metadata"]["name"])] = (pod, role)
    cmd = [sys.executable, "-m", "checkov.main", "-d", str(root), "--framework", "kubernetes"]
    cmd += ["--skip-download", "-o", "json"]
    # no network: no update check against PyPI, no policy mappings from the vendor's API
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(root), "BC_SKIP_MAPPING": "TRUE"}
    env["CKV_SKIP_PACKAGE_UPDATE_CHECK"] = "true"
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    assert proc.stdout.strip(), proc.stderr[-2000:]
    reports = json.loads(proc.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed, passed = [], 0
    for report in reports:
        passed += len(report["results"].get("passed_checks", []))
        for c in report["results"].get("failed_checks", []):
            parts = Path(c["file_path"]).parts
            bundle, file = parts[-2].replace("__", "/"), parts[-1]
            kind = c["resource"].split(".")[0]
            resource_name = (
                c["resource"].split(".")[2] if kind != "Pod" or file.endswith("-pods.yaml") else None
            )
            failed.append((bundle, file, kind, resource_name, c["check_id"]))
    return {"failed": failed, "docs": docs, "passed": passed}


def test_checkov_fails_nothing_but_the_justified_exceptions(scan: dict[str, Any]) -> None:
    unexplained = []
    for bundle, file, kind, name, check in scan["failed"]:
        if bundle == "control":
            continue
        if kind == "Pod" and not file.endswith("-pods.yaml"):
            # CKV2 graph checks report the Deployment's pod; only the NetworkPolicy one is graph-level
            unexplained.append((bundle, file, kind, check))
            continue
        doc, role = scan["docs"][(bundle, file, name)]
        exc = EXCEPTIONS.get(check)
        if exc is None or not exc.allows(doc, role):
            unexplained.append((bundle, file, kind, name, check))
    assert not unexplained
    assert scan["passed"] > 1000  # checkov did check them


def test_every_exception_is_still_needed(scan: dict[str, Any]) -> None:
    seen = {check for bundle, *_, check in scan["failed"] if bundle != "control"}
    assert seen == set(EXCEPTIONS)


def test_pinned_namespaced_nvidia_ollama_passes_every_check(scan: dict[str, Any]) -> None:
    assert [f for f in scan["failed"] if f[0] == "ollama-pinned"] == []
    assert {f[4] for f in scan["failed"] if f[0] == "vllm-pinned"} == {"CKV_K8S_40"}


def test_pinned_namespaced_sglang_and_llama_cpp_pass_every_check(scan: dict[str, Any]) -> None:
    """SGLang's and llama.cpp's pods run as UID 10001 (their images' root is not needed), and SGLang's
    LeaderWorkerSet workers serve /health: no exception applies to them."""
    pinned = ("sglang-pinned", "sglang-lws-pinned", "llamacpp-pinned")
    assert [f for f in scan["failed"] if f[0] in pinned] == []
    assert {d[0] for d in scan["docs"]} >= set(pinned)


def test_the_scan_catches_a_manifest_without_hardening(scan: dict[str, Any]) -> None:
    control = {f[4] for f in scan["failed"] if f[0] == "control"}
    # privilege escalation, capabilities, seccomp, the service-account token, CPU limit, memory request
    assert {"CKV_K8S_20", "CKV_K8S_37", "CKV_K8S_31", "CKV_K8S_38", "CKV_K8S_11", "CKV_K8S_12"} <= control


def test_docs_state_the_values_the_manifests_use() -> None:
    from vramplan.deploy import k8s
    from vramplan.deploy.options import HOST_CACHE_PATH

    section = (REPO / "docs" / "deploy.md").read_text().split("## Hardened manifests")[1]
    for phrase in (
        f"{k8s.PROCESS_GIB} GiB per process",
        f"{k8s.SHM_GIB_PER_GPU} GiB per GPU",
        f"{k8s.VCPUS_PER_PROCESS} vCPUs per vLLM process",
        f"`HOME` ({k8s.HOME_GIB} GiB) and `/tmp` ({k8s.TMP_GIB} GiB)",
        f"UID {k8s.VLLM_UID}, GID {k8s.VLLM_GID}",
        f"Ollama: UID {k8s.OLLAMA_UID}",
        f"CPU-only plans {k8s.OLLAMA_CPU_ONLY_VCPUS}",
        f"`{HOST_CACHE_PATH}`",
        f"`{VLLM_ROCM_IMAGE}`",
        f"`{OLLAMA_ROCM_IMAGE}`",
        f"must be {k8s.lws_minimum(k8s.LWS_USED)[0]} or later",
    ):
        assert phrase in section, phrase


def test_docs_justify_every_exception() -> None:
    text = (REPO / "docs" / "deploy.md").read_text()
    section = text[text.index("## Hardened manifests") :]
    for check in EXCEPTIONS:
        assert re.search(rf"^\| `{check}` \|", section, re.M), check


# --------------------------------------------------------------------------- sizes from the plan


def estimate(run: Callable[..., Result], args: list[str]) -> dict[str, Any]:
    res = run("estimate", *args, "--runtime", "vllm", "--json")
    assert res.exit_code == 0, res.output
    doc: dict[str, Any] = json.loads(res.output)
    return doc


@pytest.mark.parametrize("case", ["r1-1.5b-l4", "r1-32b-2xh100", "r1-671b-8xh200", "r1-671b-2x8xh100"])
def test_cpu_and_memory_are_sized_from_the_plan(run: Callable[..., Result], case: str) -> None:
    model, opts = PLANS[case]
    est = estimate(run, [model, *opts])
    nodes, per_gpu = est["topology"]["nodes"], est["per_gpu"]
    folder = GOLDEN / case / "k8s"
    if nodes == 1:
        (dep,) = yaml.safe_load_all((folder / "deployment.yaml").read_text())
        pods = [(dep["spec"]["template"]["spec"], per_gpu)]
    else:
        (lws,) = yaml.safe_load_all((folder / "leaderworkerset.yaml").read_text())
        lwt, n = lws["spec"]["leaderWorkerTemplate"], len(per_gpu) // nodes
        pods = [(lwt["leaderTemplate"]["spec"], per_gpu[:n]), (lwt["workerTemplate"]["spec"], per_gpu[n:])]
    for pod, devices in pods:
        (c,) = pod["containers"]
        res = c["resources"]
        assert res["requests"] == res["limits"]  # Guaranteed QoS: evicted last
        gpus = res["limits"]["nvidia.com/gpu"]
        assert gpus == len(devices)
        processes = 2 + gpus  # API server, engine core, one worker per GPU (no data parallelism here)
        assert res["limits"]["cpu"] == str(VCPUS_PER_PROCESS * processes)
        weights_gib = -(-sum(d["weights_bytes"] for d in devices) // GiB)
        shm = SHM_GIB_PER_GPU * gpus
        assert res["limits"]["memory"] == f"{shm + PROCESS_GIB * processes + weights_gib}Gi"
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["shm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": f"{shm}Gi"}


def test_data_parallel_replicas_count_in_the_pod_size(run: Callable[..., Result], tmp_path: Path) -> None:
    out = render(run, tmp_path / "b", ["r1-1.5b", "--gpu", "l4:4", "--tp", "1"])
    (dep,) = yaml.safe_load_all((out / "deployment.yaml").read_text())
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert "--data-parallel-size" in c["args"] and c["resources"]["limits"]["nvidia.com/gpu"] == 4
    # 4 API servers, 4 engine cores, 4 workers and the DP coordinator
    assert c["resources"]["limits"]["cpu"] == str(VCPUS_PER_PROCESS * 13)


# --------------------------------------------------------------------------- security context


def test_vllm_runs_as_the_images_own_user_with_a_read_only_root() -> None:
    (dep,) = yaml.safe_load_all((GOLDEN / "r1-32b-2xh100" / "k8s" / "deployment.yaml").read_text())
    pod = dep["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    sc = pod["securityContext"]
    assert sc["runAsNonRoot"] is True and (sc["runAsUser"], sc["runAsGroup"], sc["fsGroup"]) == (2000, 0, 0)
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = pod["containers"]
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
    }  # fmt: skip
    env = {e["name"]: e.get("value") for e in c["env"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert env["HOME"] == "/home/vllm" and mounts["/home/vllm"] == "home" and mounts["/tmp"] == "tmp"
    assert mounts[env["HF_HOME"]] == "cache"
    assert c["imagePullPolicy"] == "Always" and c["image"] == VLLM_IMAGE  # a tag may move: pull it again


def test_ollama_pod_execs_the_server_and_keeps_the_model_loaded() -> None:
    (dep,) = yaml.safe_load_all((GOLDEN / "r1-1.5b-l4" / "k8s-ollama" / "deployment.yaml").read_text())
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    script = c["args"][0].strip().splitlines()
    assert script[-1] == "exec ollama serve"  # the server is PID 1 once the model exists
    assert any(line.startswith("trap ") and "TERM" in line for line in script)  # and sh forwards TERM before
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["OLLAMA_KEEP_ALIVE"] == "-1"
    assert pod["securityContext"]["runAsUser"] > 10000 and c["securityContext"]["readOnlyRootFilesystem"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["models"] == env["HOME"] + "/.ollama"


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--namespace", "Prod"], "--namespace 'Prod' is not a Kubernetes namespace name"),
        (["--namespace", "a" * 64], "is not a Kubernetes namespace name"),
        (["--namespace", "-x"], "is not a Kubernetes namespace name"),
        (["--image", "vllm/vllm-openai"], "names no tag or digest"),
        (["--image", "vllm/vllm-openai@sha256:abc"], "is not an image reference"),
        (["--image", "Vllm/x:1"], "is not an image reference"),
        (["--cache", "rwo", "--gpu", "h100-80gb:8", "--nodes", "2"], "--cache rwo: a ReadWriteOnce claim"),
        (["--publish-address", "0.0.0.0"], "--publish-address goes with --target vllm"),
    ],
)
def test_bad_k8s_options_are_one_line(
    run: Callable[..., Result], tmp_path: Path, args: list[str], message: str
) -> None:
    model = ["deepseek-r1"] if "--nodes" in args else ["r1-1.5b", "--gpu", "l4"]
    res = run("deploy", *model, "--target", "k8s", *args, "--out", str(tmp_path / "b"))
    assert res.exit_code == 2
    (line,) = [ln for ln in res.stderr.splitlines() if ln]
    assert line.startswith("Error: ") and message in line
    assert not (tmp_path / "b").exists()


def test_namespace_goes_on_every_object(run: Callable[..., Result], tmp_path: Path) -> None:
    out = render(run, tmp_path / "b", ["r1-1.5b", "--gpu", "l4", "--runtime", "ollama", "--namespace", "llm"])
    docs = [d for p in sorted(out.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text())]
    assert len(docs) == 5 and all(d["metadata"]["namespace"] == "llm" for d in docs)


def test_an_image_by_digest_is_not_pulled_again(run: Callable[..., Result], tmp_path: Path) -> None:
    image = f"registry.example.com:5000/ml/vllm@{DIGEST}"
    out = render(run, tmp_path / "b", ["r1-1.5b", "--gpu", "l4", "--image", image])
    (dep,) = yaml.safe_load_all((out / "deployment.yaml").read_text())
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["image"] == image and c["imagePullPolicy"] == "IfNotPresent"


# --------------------------------------------------------------------------- multi-node


def test_leaderworkerset_shares_one_cache_and_states_its_controller_version() -> None:
    folder = GOLDEN / "r1-671b-2x8xh100" / "k8s"
    text = (folder / "leaderworkerset.yaml").read_text()
    (lws,) = yaml.safe_load_all(text)
    lwt = lws["spec"]["leaderWorkerTemplate"]
    assert "volumeClaimTemplates" not in lwt  # no claim per pod kept forever
    (pvc,) = yaml.safe_load_all((folder / "pvc.yaml").read_text())
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    for role in ("leaderTemplate", "workerTemplate"):
        volumes = {v["name"]: v for v in lwt[role]["spec"]["volumes"]}
        assert volumes["cache"] == {
            "name": "cache",
            "persistentVolumeClaim": {"claimName": pvc["metadata"]["name"]},
        }
    # the version stated is the newest of the releases that introduced what the manifest uses
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    used = [f for f in LWS_FEATURES if re.search(rf"\b{f}\b", body)]
    assert tuple(used) == LWS_USED and "volumeClaimTemplates" not in used
    want = max((LWS_FEATURES[f][0] for f in used), key=lambda v: tuple(int(x) for x in v[1:].split(".")))
    assert f"# Needs the LeaderWorkerSet controller {want} or later" in text
    assert lws["metadata"]["annotations"]["vramplan/lws-min-version"] == want == "v0.6.0"


def test_host_path_cache_is_a_directory_on_each_node(run: Callable[..., Result], tmp_path: Path) -> None:
    out = render(run, tmp_path / "b", EXTRA["lws-host-path"])
    assert not (out / "pvc.yaml").exists()
    (lws,) = yaml.safe_load_all((out / "leaderworkerset.yaml").read_text())
    for role in ("leaderTemplate", "workerTemplate"):
        volumes = {v["name"]: v for v in lws["spec"]["leaderWorkerTemplate"][role]["spec"]["volumes"]}
        assert volumes["cache"]["hostPath"] == {"path": "/var/lib/vramplan/hf-cache", "type": "Directory"}


def test_networkpolicy_admits_the_api_and_the_group(run: Callable[..., Result]) -> None:
    for case, port, group in [("r1-1.5b-l4/k8s", 8000, False), ("r1-1.5b-l4/k8s-ollama", 11434, False),
                              ("r1-671b-2x8xh100/k8s", 8000, True)]:  # fmt: skip
        (np,) = yaml.safe_load_all((GOLDEN / case / "networkpolicy.yaml").read_text())
        assert np["spec"]["policyTypes"] == ["Ingress"]
        ingress = np["spec"]["ingress"]
        assert ingress[0]["ports"] == [{"protocol": "TCP", "port": port}]
        assert len(ingress) == (2 if group else 1)


# --------------------------------------------------------------------------- AMD


@pytest.mark.parametrize("name", ["amd-vllm", "amd-ollama", "amd-lws"])
def test_amd_manifests_have_no_nvidia_settings(bundles: dict[str, Path], name: str) -> None:
    folder = bundles[name]
    for path in folder.glob("*.yaml"):
        assert "nvidia" not in path.read_text().lower(), path.name
    deployment = folder / ("leaderworkerset.yaml" if name == "amd-lws" else "deployment.yaml")
    (doc,) = yaml.safe_load_all(deployment.read_text())
    pods = [p for _, p in lws_pods(doc)] if name == "amd-lws" else [doc["spec"]["template"]]
    for pod in pods:
        (c,) = pod["spec"]["containers"]
        assert c["image"] == (OLLAMA_ROCM_IMAGE if name == "amd-ollama" else VLLM_ROCM_IMAGE)
        assert c["resources"]["limits"]["amd.com/gpu"] >= 1
        assert "nodeSelector" not in pod["spec"] and "tolerations" not in pod["spec"]


def test_amd_manifests_validate_strictly(bundles: dict[str, Path]) -> None:
    from test_deploy_validate import as_pod, strict, vendored_schema

    schema = strict(json.loads(vendored_schema("leaderworkerset-v1.schema.json").read_text()))
    for name in ("amd-vllm", "amd-ollama", "amd-lws", "lws-host-path"):
        for path in bundles[name].glob("*.yaml"):
            for doc in yaml.safe_load_all(path.read_text()):
                if doc["kind"] == "LeaderWorkerSet":
                    jsonschema.Draft7Validator(schema).validate(doc)
                    for _, pod in lws_pods(doc):
                        kubernetes_validate.validate(as_pod({"spec": pod["spec"]}), "1.31.0", strict=True)
                else:
                    kubernetes_validate.validate(doc, "1.31.0", strict=True)


# --------------------------------------------------------------------------- Compose


def compose(run: Callable[..., Result], tmp_path: Path, args: list[str]) -> dict[str, Any]:
    res = run("deploy", *args, "--target", "vllm", "--out", str(tmp_path / "c"))
    assert res.exit_code == 0, res.output
    doc: dict[str, Any] = yaml.safe_load((tmp_path / "c" / "docker-compose.yaml").read_text())
    return doc


@pytest.fixture(scope="module")
def compose_validator() -> jsonschema.protocols.Validator:
    from importlib.resources import files

    schema = json.loads(
        files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    )
    return jsonschema.validators.validator_for(schema)(schema)


def test_compose_publishes_on_loopback_unless_asked(run: Callable[..., Result], tmp_path: Path) -> None:
    doc = compose(run, tmp_path, ["r1-1.5b", "--gpu", "l4"])
    assert doc["services"]["vllm"]["ports"] == ["127.0.0.1:8000:8000"]
    doc = compose(run, tmp_path / "all", ["r1-1.5b", "--gpu", "l4", "--publish-address", "0.0.0.0"])
    assert doc["services"]["vllm"]["ports"] == ["0.0.0.0:8000:8000"]
    res = run("deploy", "r1-1.5b", "--gpu", "l4", "--target", "vllm", "--publish-address", "all",
              "--out", str(tmp_path / "bad"))  # fmt: skip
    assert res.exit_code == 2 and "--publish-address 'all' is not an IP address" in res.stderr


def test_compose_api_key_comes_from_a_secret_file(
    run: Callable[..., Result], tmp_path: Path, compose_validator: Any
) -> None:
    doc = compose(run, tmp_path, ["r1-1.5b", "--gpu", "l4", "--api-key-file", "./vllm-api-key"])
    assert not list(compose_validator.iter_errors(doc))
    assert doc["secrets"] == {"vllm_api_key": {"file": "./vllm-api-key"}}
    service = doc["services"]["vllm"]
    assert service["secrets"] == ["vllm_api_key"]
    sh, dash_c, script, name = service["entrypoint"]
    assert (sh, dash_c, name) == ("/bin/sh", "-c", "vllm-serve")
    # Compose turns $$ into $: the key is read from the file and vLLM replaces the shell
    assert script == 'export VLLM_API_KEY="$$(cat /run/secrets/vllm_api_key)"; exec vllm serve "$$@"'
    assert "--api-key" not in service["command"]  # never on a command line


def test_multi_node_compose_has_rdma_and_the_network_variables(
    run: Callable[..., Result], compose_validator: Any
) -> None:
    doc = yaml.safe_load((GOLDEN / "r1-671b-2x8xh100" / "vllm" / "docker-compose.yaml").read_text())
    assert not list(compose_validator.iter_errors(doc))
    for service in doc["services"].values():
        assert "/dev/infiniband" in service["devices"]
        assert service["cap_add"] == ["IPC_LOCK"]
        assert service["ulimits"]["memlock"] == {"soft": -1, "hard": -1}
        assert {"NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME", "NCCL_IB_HCA"} <= set(service["environment"])


def test_amd_compose_uses_rocm_devices_and_no_nvidia(
    run: Callable[..., Result], tmp_path: Path, compose_validator: Any
) -> None:
    for args in (["r1-7b", "--gpu", "mi300x"], ["deepseek-r1", "--gpu", "mi300x:8", "--nodes", "2"]):
        doc = compose(run, tmp_path / args[0], args)
        assert not list(compose_validator.iter_errors(doc))
        assert "nvidia" not in (tmp_path / args[0] / "c" / "docker-compose.yaml").read_text().lower()
        for service in doc["services"].values():
            assert service["image"] == VLLM_ROCM_IMAGE
            assert {"/dev/kfd", "/dev/dri"} <= set(service["devices"])
            assert service["group_add"] == ["video"] and "deploy" not in service


def test_image_option_reaches_compose(run: Callable[..., Result], tmp_path: Path) -> None:
    doc = compose(run, tmp_path, ["r1-1.5b", "--gpu", "l4", "--image", "vllm/vllm-openai:v0.33.0-custom"])
    assert doc["services"]["vllm"]["image"] == "vllm/vllm-openai:v0.33.0-custom"


def test_namespaced_launch_says_where_to_watch(
    run: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vramplan.deploy import launch as launch_mod

    monkeypatch.setattr(launch_mod, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(launch_mod, "run_command", lambda argv: 0)
    res = run("deploy", "r1-1.5b", "--gpu", "l4", "--target", "k8s", "--namespace", "llm", "--launch",
              "--no-verify", "--out", str(tmp_path / "b"))  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "watch it with: kubectl -n llm get pods -w" in res.output
