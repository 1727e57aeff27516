"""The rendered bundles are valid for the tools that read them, and say what the estimate says.

- Kubernetes manifests: `kubernetes-validate` in strict mode (unknown fields fail) for a current and an
  older Kubernetes; the LeaderWorkerSet against its CRD schema vendored in `tests/schemas/` made strict
  (`additionalProperties: false` on every object schema that lists properties), and its pod templates
  as Pods through `kubernetes-validate`.
- Compose files: the Compose specification's JSON schema, as shipped by PyPI `check-jsonschema`
  (`check_jsonschema/builtin_schemas/vendor/compose-spec.json`), a test dependency. Each service
  reserves its GPUs with `capabilities: [gpu]`.
- Shell scripts: `bash -n`.
- Numbers: each file's context, concurrency, parallel layout, GPU count and memory share equal
  `vramplan estimate --json` for the same plan.
- vLLM flags: every flag in a rendered file is one checked against vLLM 0.33.0's argument definitions.

The tests read `tests/golden/`, which `test_deploy_golden.py` proves equal to what `deploy` renders.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from click.testing import Result
from test_deploy_golden import BUNDLES, GOLDEN, PLANS

from vramplan.deploy.vllm import VLLM_IMAGE, VLLM_VERSION

REPO = Path(__file__).resolve().parents[1]
K8S_VERSIONS = [kubernetes_validate.utils.latest_version(), "1.31.0"]

# Every `vllm serve` flag vramplan writes, and where vLLM 0.33.0 defines it (files of the vllm 0.33.0
# wheel from PyPI). A flag not listed here must be checked the same way before a template uses it.
VERIFIED_VLLM_FLAGS = {
    "--host": "entrypoints/common/cli_args.py FrontendArgs.host",
    "--port": "entrypoints/common/cli_args.py FrontendArgs.port",
    "--headless": "entrypoints/common/cli_args.py make_arg_parser",
    "--served-model-name": "engine/arg_utils.py ModelConfig.served_model_name",
    "--max-model-len": "engine/arg_utils.py ModelConfig.max_model_len",
    "--quantization": "engine/arg_utils.py ModelConfig.quantization ('fp8' in QuantizationMethods)",
    "--trust-remote-code": "engine/arg_utils.py ModelConfig.trust_remote_code",
    "--reasoning-parser": "engine/arg_utils.py StructuredOutputsConfig.reasoning_parser ('deepseek_r1')",
    "--tensor-parallel-size": "engine/arg_utils.py ParallelConfig.tensor_parallel_size",
    "--pipeline-parallel-size": "engine/arg_utils.py ParallelConfig.pipeline_parallel_size",
    "--data-parallel-size": "engine/arg_utils.py ParallelConfig.data_parallel_size",
    "--enable-expert-parallel": "engine/arg_utils.py ParallelConfig.enable_expert_parallel",
    "--nnodes": "engine/arg_utils.py ParallelConfig.nnodes (multiprocessing multi-node)",
    "--node-rank": "engine/arg_utils.py ParallelConfig.node_rank",
    "--master-addr": "engine/arg_utils.py ParallelConfig.master_addr",
    "--master-port": "engine/arg_utils.py ParallelConfig.master_port",
    "--gpu-memory-utilization": "engine/arg_utils.py CacheConfig.gpu_memory_utilization",
    "--kv-cache-dtype": "engine/arg_utils.py CacheConfig.cache_dtype ('auto', 'bfloat16', 'float16', 'fp8')",
    "--max-num-seqs": "engine/arg_utils.py SchedulerConfig.max_num_seqs",
    "--max-num-batched-tokens": "engine/arg_utils.py SchedulerConfig.max_num_batched_tokens",
}


def golden_files(pattern: str) -> list[Path]:
    return sorted(GOLDEN.glob(pattern))


def vendored_schema(name: str) -> Path:
    """A schema vendored under tests/schemas/ (its README gives the source, commit and licence)."""
    return Path(__file__).parent / "schemas" / name


def strict(schema: Any) -> Any:
    """A copy of a CRD schema where every object schema with `properties` allows no other keys."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


@pytest.fixture(scope="module")
def lws_validator() -> jsonschema.protocols.Validator:
    schema = strict(json.loads(vendored_schema("leaderworkerset-v1.schema.json").read_text()))
    return jsonschema.Draft7Validator(schema)


@pytest.fixture(scope="module")
def compose_validator() -> jsonschema.protocols.Validator:
    from importlib.resources import files

    text = files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    schema = json.loads(text)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def manifests() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in golden_files("*/k8s*/*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                yield path, doc


def as_pod(template: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pod"}, **template}


# --------------------------------------------------------------------------- Kubernetes


def test_there_are_manifests_of_every_kind() -> None:
    kinds = {doc["kind"] for _, doc in manifests()}
    assert kinds == {
        "Deployment", "Service", "PersistentVolumeClaim", "ConfigMap", "LeaderWorkerSet", "NetworkPolicy",
    }  # fmt: skip


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kubernetes_manifests_validate_strictly(version: str, lws_validator: Any) -> None:
    for path, doc in manifests():
        if doc["kind"] == "LeaderWorkerSet":
            lws_validator.validate(doc)
            lwt = doc["spec"]["leaderWorkerTemplate"]
            for template in (lwt["leaderTemplate"], lwt["workerTemplate"]):
                kubernetes_validate.validate(as_pod(template), version, strict=True)
            for claim in lwt.get("volumeClaimTemplates", []):
                pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", **claim}
                kubernetes_validate.validate(pvc, version, strict=True)
        else:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{path}: {exc.message}")


def test_strict_validation_catches_unknown_fields(lws_validator: Any) -> None:
    _, deployment = next((p, d) for p, d in manifests() if d["kind"] == "Deployment")
    bad = copy.deepcopy(deployment)
    bad["spec"]["template"]["spec"]["containers"][0]["startupProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSIONS[0], strict=True)
    _, lws = next((p, d) for p, d in manifests() if d["kind"] == "LeaderWorkerSet")
    bad = copy.deepcopy(lws)
    bad["spec"]["leaderWorkerTemplate"]["restartPolicys"] = "Default"
    with pytest.raises(jsonschema.ValidationError):
        lws_validator.validate(bad)


def test_leaderworkerset_is_set_up_for_a_multi_node_vllm() -> None:
    (path,) = golden_files("r1-671b-2x8xh100/k8s/leaderworkerset.yaml")
    lws = yaml.safe_load(path.read_text())
    assert lws["apiVersion"] == "leaderworkerset.x-k8s.io/v1"
    spec, lwt = lws["spec"], lws["spec"]["leaderWorkerTemplate"]
    assert spec["startupPolicy"] == "LeaderCreated"
    assert lwt["restartPolicy"] == "RecreateGroupOnPodRestart"
    assert lwt["size"] == 2
    leader = lwt["leaderTemplate"]["spec"]["containers"][0]
    worker = lwt["workerTemplate"]["spec"]["containers"][0]
    assert leader["args"][-8:] == [
        "--nnodes", "2", "--node-rank", "0", "--master-addr", "$(LWS_LEADER_ADDRESS)",
        "--master-port", "29501",
    ]  # fmt: skip
    assert worker["args"][-9:] == [
        "--nnodes", "2", "--node-rank", "$(LWS_WORKER_INDEX)", "--master-addr", "$(LWS_LEADER_ADDRESS)",
        "--master-port", "29501", "--headless",
    ]  # fmt: skip
    assert leader["startupProbe"]["httpGet"]["path"] == "/health"
    assert "startupProbe" not in worker and "readinessProbe" not in worker  # headless: no HTTP server
    for template in (lwt["leaderTemplate"], lwt["workerTemplate"]):
        assert template["spec"]["enableServiceLinks"] is False
        assert template["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    service = yaml.safe_load((path.parent / "service.yaml").read_text())
    assert service["spec"]["selector"] == {
        "leaderworkerset.sigs.k8s.io/name": "deepseek-r1",
        "role": "leader",
    }


@pytest.mark.parametrize("case", ["r1-1.5b-l4", "r1-32b-2xh100", "r1-671b-8xh200"])
def test_vllm_deployment_follows_the_pitfall_list(case: str) -> None:
    folder = GOLDEN / case / "k8s"
    dep = yaml.safe_load((folder / "deployment.yaml").read_text())
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    assert pod["enableServiceLinks"] is False
    assert c["command"] == ["vllm", "serve"]
    assert c["image"] == VLLM_IMAGE
    volumes = {v["name"]: v for v in pod["volumes"]}
    shm = volumes["shm"]["emptyDir"]
    assert (
        shm["medium"] == "Memory"
        and shm["sizeLimit"] == f"{2 * c['resources']['limits']['nvidia.com/gpu']}Gi"
    )
    # the HF token is a file from the Secret (optional: the models are not gated), never an env var
    env = {e["name"]: e for e in c["env"]}
    assert "HF_TOKEN" not in env and not any("secretKeyRef" in e.get("valueFrom", {}) for e in c["env"])
    assert volumes["hf-token"]["secret"] == {
        "secretName": "hf-token", "optional": True, "defaultMode": 0o440, "items": [{"key": "token", "path": "token"}],
    }  # fmt: skip
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert env["HF_TOKEN_PATH"]["value"] == mounts["hf-token"] + "/token"
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"
    startup = c["startupProbe"]
    budget_min = startup["periodSeconds"] * startup["failureThreshold"] / 60
    assert budget_min >= (100 if case.startswith("r1-671b") else 20)
    assert c["resources"]["limits"]["nvidia.com/gpu"] == c["resources"]["requests"]["nvidia.com/gpu"]
    assert yaml.safe_load((folder / "service.yaml").read_text())["metadata"]["name"] != "vllm"


def test_gpu_product_label_is_the_nvml_name_with_hyphens() -> None:
    for case, product in [
        ("r1-1.5b-l4", "NVIDIA-L4"),
        ("r1-32b-2xh100", "NVIDIA-H100-80GB-HBM3"),
        ("r1-671b-8xh200", "NVIDIA-H200"),
    ]:
        dep = yaml.safe_load((GOLDEN / case / "k8s" / "deployment.yaml").read_text())
        assert dep["spec"]["template"]["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": product}


# --------------------------------------------------------------------------- Compose and shell


def test_compose_files_validate_and_reserve_gpus(compose_validator: Any) -> None:
    files = golden_files("*/vllm/docker-compose.yaml")
    assert len(files) == 4
    for path in files:
        doc = yaml.safe_load(path.read_text())
        errors = [e.message for e in compose_validator.iter_errors(doc)]
        assert not errors, f"{path}: {errors}"
        for name, service in doc["services"].items():
            (device,) = service["deploy"]["resources"]["reservations"]["devices"]
            assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"], (path, name)
            assert isinstance(device["count"], int) and device["count"] >= 1
            assert service["ipc"] == "host"
            # names only: each from the caller's environment, never a value
            assert service["environment"][0] == "HF_TOKEN"
            assert all("=" not in e for e in service["environment"])


def test_compose_schema_requires_gpu_capabilities(compose_validator: Any) -> None:
    doc = yaml.safe_load((GOLDEN / "r1-32b-2xh100" / "vllm" / "docker-compose.yaml").read_text())
    del doc["services"]["vllm"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"]
    assert list(compose_validator.iter_errors(doc))


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_shell_scripts_parse() -> None:
    scripts = golden_files("*/*/*.sh")
    assert len(scripts) == 15  # vLLM 4, Ollama 3, SGLang 4, llama.cpp 4
    for path in scripts:
        proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, f"{path}: {proc.stderr}"


# --------------------------------------------------------------------------- vLLM flags


def vllm_flags_in(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", text))


def script_flags(path: Path) -> set[str]:
    """Flags on the command lines of serve.sh (not in comments or messages)."""
    lines = [ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith(("#", "echo", ":"))]
    return vllm_flags_in("\n".join(lines))


def test_every_vllm_flag_was_checked_against_vllm(run: Callable[..., Result], tmp_path: Path) -> None:
    """The flags in every vLLM file (serve.sh, Compose, Kubernetes) are the checked ones."""
    assert VLLM_VERSION == "0.33.0" and VLLM_IMAGE == "vllm/vllm-openai:v0.33.0"
    # a dense model on idle GPUs adds data-parallel replicas
    res = run("deploy", "r1-1.5b", "--target", "vllm", "--gpu", "l4:4", "--tp", "1", "--out", str(tmp_path))
    assert res.exit_code == 0, res.output
    used = script_flags(tmp_path / "serve.sh")
    assert "--data-parallel-size" in used
    for path in golden_files("*/vllm/serve.sh"):
        used |= script_flags(path)
    for path in golden_files("*/vllm/docker-compose.yaml"):
        for service in yaml.safe_load(path.read_text())["services"].values():
            used |= vllm_flags_in(" ".join(service["command"]))
    for _, doc in manifests():
        if doc["kind"] == "Deployment" and doc["spec"]["template"]["spec"]["containers"][0]["name"] == "vllm":
            used |= vllm_flags_in(" ".join(doc["spec"]["template"]["spec"]["containers"][0]["args"]))
        if doc["kind"] == "LeaderWorkerSet":
            for t in ("leaderTemplate", "workerTemplate"):
                if doc["spec"]["leaderWorkerTemplate"][t]["spec"]["containers"][0]["command"] != [
                    "vllm",
                    "serve",
                ]:
                    continue  # SGLang's (tests/test_deploy_k8s_runtimes.py)
                args = doc["spec"]["leaderWorkerTemplate"][t]["spec"]["containers"][0]["args"]
                used |= vllm_flags_in(" ".join(args))
    assert used <= set(VERIFIED_VLLM_FLAGS), sorted(used - set(VERIFIED_VLLM_FLAGS))
    assert used == set(VERIFIED_VLLM_FLAGS)  # and the list holds no flag that is never written


# --------------------------------------------------------------------------- numbers = the estimate


def estimate_for(run: Callable[..., Result], case: str, runtime: str, extra: list[str]) -> dict[str, Any]:
    model, opts = PLANS[case]
    res = run("estimate", model, "--runtime", runtime, *opts, *extra, "--json")
    assert res.exit_code == 0, res.output
    doc: dict[str, Any] = json.loads(res.output)
    return doc


def serve_args(text: str) -> dict[str, str | None]:
    """`--flag value` pairs of serve.sh's `vllm serve` command."""
    body = text[text.index("exec vllm serve") :]
    node_args = re.search(r"^node_args=\((.*)\)$", text, re.M)
    body += " " + (node_args.group(1) if node_args else "")
    tokens = [t for line in body.splitlines() for t in line.strip().rstrip("\\").split()]
    out: dict[str, str | None] = {}
    for i, t in enumerate(tokens):
        if t.startswith("--"):
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            out[t] = None if nxt is None or nxt.startswith(("--", '"')) else nxt
    return out


def gpu_count(doc: dict[str, Any]) -> int:
    usable = doc["per_gpu"][0]["usable_bytes"]
    assert usable is not None
    return int(doc["topology"]["tensor_parallel"] * doc["topology"]["pipeline_parallel"])


@pytest.mark.parametrize(("case", "bundle", "extra"), BUNDLES, ids=[f"{c}-{b}" for c, b, _ in BUNDLES])
def test_numbers_match_the_estimate(
    run: Callable[..., Result], case: str, bundle: str, extra: list[str]
) -> None:
    runtime = "ollama" if "ollama" in bundle else "vllm"
    est = estimate_for(run, case, runtime, extra)
    folder = GOLDEN / case / bundle
    peak = max(d["total_bytes"] for d in est["per_gpu"])
    readme = (folder / "README.md").read_text()
    assert f"{peak / (1 << 30):.2f} GiB" in readme
    requests = "1 request" if est["concurrency"] == 1 else f"{est['concurrency']} requests"
    assert f"{est['context']} tokens per request, {requests} at once" in readme
    topo = est["topology"]
    if runtime == "ollama":
        modelfile = (
            (folder / "Modelfile").read_text()
            if bundle == "ollama"
            else yaml.safe_load((folder / "configmap.yaml").read_text())["data"]["Modelfile"]
        )
        assert f"PARAMETER num_ctx {est['context']}\n" in modelfile
        assert est["runtime_settings"]["num_ctx"] == str(est["context"])
        env = {}
        if bundle == "ollama":
            for line in (folder / "ollama.env").read_text().splitlines():
                if line and not line.startswith("#"):
                    k, v = line.split("=", 1)
                    env[k] = v
        else:
            dep = yaml.safe_load((folder / "deployment.yaml").read_text())
            env = {e["name"]: e["value"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["OLLAMA_CONTEXT_LENGTH"] == str(est["context"])
        assert env["OLLAMA_NUM_PARALLEL"] == est["runtime_settings"]["OLLAMA_NUM_PARALLEL"]
        assert (
            env["OLLAMA_KV_CACHE_TYPE"]
            == {"fp16": "f16", "q8_0": "q8_0", "q4_0": "q4_0"}[est["kv_cache_dtype"]]
        )
        return
    util = est["per_gpu"][0]["usable_bytes"] / est["per_gpu"][0]["capacity_bytes"]
    expected: dict[str, str | None] = dict(est["runtime_settings"])
    expected["--tensor-parallel-size"] = str(topo["tensor_parallel"])
    expected["--gpu-memory-utilization"] = f"{util:.2f}"
    gpus_per_node = gpu_count(est) // topo["nodes"]
    if bundle == "vllm":
        args = serve_args((folder / "serve.sh").read_text())
        compose = yaml.safe_load((folder / "docker-compose.yaml").read_text())
        counts = {
            s["deploy"]["resources"]["reservations"]["devices"][0]["count"]
            for s in compose["services"].values()
        }
        assert counts == {gpus_per_node}
    else:
        name = "leaderworkerset.yaml" if topo["nodes"] > 1 else "deployment.yaml"
        doc = yaml.safe_load((folder / name).read_text())
        pod = (
            doc["spec"]["leaderWorkerTemplate"]["leaderTemplate"]
            if topo["nodes"] > 1
            else doc["spec"]["template"]
        )
        (c,) = pod["spec"]["containers"]
        assert c["resources"]["limits"]["nvidia.com/gpu"] == gpus_per_node
        tokens = c["args"]
        args = {t: (tokens[i + 1] if i + 1 < len(tokens) and not tokens[i + 1].startswith("--") else None)
                for i, t in enumerate(tokens) if t.startswith("--")}  # fmt: skip
    for flag, value in expected.items():
        assert args.get(flag) == value, (flag, args.get(flag), value)
    assert args.get("--pipeline-parallel-size", "1") == str(topo["pipeline_parallel"])
    if topo["nodes"] > 1:
        assert args["--nnodes"] == str(topo["nodes"])


def test_readme_estimate_command_reproduces_the_plan(run: Callable[..., Result]) -> None:
    """The `vramplan estimate ...` line in a README gives the same figures as the default plan."""
    readme = (GOLDEN / "r1-671b-2x8xh100" / "vllm" / "README.md").read_text()
    (line,) = [ln for ln in readme.splitlines() if ln.startswith("vramplan estimate ")]
    res = run(*line.split()[1:], "--json")
    assert res.exit_code == 0, res.output
    again = json.loads(res.output)
    base = estimate_for(run, "r1-671b-2x8xh100", "vllm", [])
    assert again["per_gpu"] == base["per_gpu"] and again["context"] == base["context"]
