"""The SGLang and llama.cpp bundles (issue 12): valid Compose files, flags checked against each runtime's
own source, numbers equal to the estimate, and recommend's llama.cpp rows whose deploy commands work.

- SGLang: every flag against SGLang 0.5.23's ServerArgs (the wheel on PyPI): fields declared in
  sglang/srt/arg_groups/fields/*.py become `--field-name` (arg_groups/arg_utils.py), `--reasoning-parser`
  is added in sglang/srt/server_args.py. With sglang importable, its own parser reads every command line.
- llama.cpp: every flag against common/arg.cpp of the llama.cpp that llama-cpp-python 0.3.36 vendors
  (commit 0c1e570); with VRAMPLAN_LLAMA_SERVER naming a llama-server, its `--help` lists each of them.

The files read are the golden bundles (tests/test_deploy_golden.py proves them equal to what deploy writes).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import Result
from test_deploy_golden import GOLDEN, PLANS, RUNTIME_BUNDLES
from test_deploy_validate import compose_validator  # noqa: F401 (a fixture)

from vramplan.deploy.llamacpp import LLAMA_CPP_IMAGE, LLAMA_CPP_RELEASE
from vramplan.deploy.sglang import SGLANG_IMAGE, SGLANG_VERSION

# Every launch_server flag vramplan writes, and where SGLang 0.5.23 declares it.
VERIFIED_SGLANG_FLAGS = {
    "--model-path": "arg_groups/fields/model.py model_path",
    "--host": "arg_groups/fields/serving.py host",
    "--port": "arg_groups/fields/serving.py port",
    "--served-model-name": "arg_groups/fields/serving.py served_model_name",
    "--tp-size": "arg_groups/fields/parallel.py tp_size (alias --tensor-parallel-size)",
    "--pp-size": "arg_groups/fields/parallel.py pp_size (alias --pipeline-parallel-size)",
    "--dp-size": "arg_groups/fields/parallel.py dp_size (alias --data-parallel-size)",
    "--nnodes": "arg_groups/fields/parallel.py nnodes",
    "--node-rank": "arg_groups/fields/parallel.py node_rank",
    "--dist-init-addr": "arg_groups/fields/parallel.py dist_init_addr (HOST:PORT)",
    "--context-length": "arg_groups/fields/model.py context_length",
    "--max-running-requests": "arg_groups/fields/schedule.py max_running_requests",
    "--mem-fraction-static": "arg_groups/fields/schedule.py mem_fraction_static",
    "--kv-cache-dtype": "arg_groups/fields/model.py kv_cache_dtype (auto, fp8_e4m3, bfloat16, ...)",
    "--trust-remote-code": "arg_groups/fields/model.py trust_remote_code",
    "--reasoning-parser": "server_args.py add_argument (parser/reasoning_parser.py 'deepseek-r1')",
}

# Every llama-server flag vramplan writes, and its line in common/arg.cpp (llama.cpp 0c1e570).
VERIFIED_LLAMA_SERVER_FLAGS = {
    "-m": "common/arg.cpp {-m, --model} FNAME",
    "-hf": "common/arg.cpp {-hf, -hfr, --hf-repo} <user>/<model>[:quant]",
    "--alias": "common/arg.cpp {-a, --alias} STRING (comma-separated)",
    "--ctx-size": "common/arg.cpp {-c, --ctx-size} N",
    "--parallel": "common/arg.cpp {-np, --parallel} N",
    "-ngl": "common/arg.cpp {-ngl, --gpu-layers, --n-gpu-layers} N",
    "--n-cpu-moe": "common/arg.cpp {-ncmoe, --n-cpu-moe} N",
    "-fa": "common/arg.cpp {-fa, --flash-attn} [on|off|auto]",
    "--cache-type-k": "common/arg.cpp {-ctk, --cache-type-k} TYPE (kv_cache_types: f16, bf16, q8_0, q4_0, ...)",
    "--cache-type-v": "common/arg.cpp {-ctv, --cache-type-v} TYPE",
    "-ub": "common/arg.cpp {-ub, --ubatch-size} N",
    "--jinja": "common/arg.cpp {--jinja} / {--no-jinja}",
    "--reasoning-format": "common/arg.cpp {--reasoning-format} FORMAT (deepseek: common/chat.cpp)",
    "--host": "common/arg.cpp {--host} HOST",
    "--port": "common/arg.cpp {--port} PORT",
}
# what `deploy --launch` adds on the command line (deploy/verify.py)
LAUNCH_FLAGS = {
    "--log-verbosity": "common/arg.cpp {-lv, --verbosity, --log-verbosity} N (4: trace)",
    "--log-colors": "common/arg.cpp {--log-colors} [on|off|auto]",
}


def bundles(target: str) -> list[tuple[str, list[str], Path]]:
    return [(case, extra, GOLDEN / case / b) for case, b, extra in RUNTIME_BUNDLES if b == target]


def command_tokens(script: Path, start: str) -> list[str]:
    """The arguments of the `exec ...` command of a bundle script, from `start` on (without comments)."""
    text = script.read_text()
    body = text[text.index(start) :]
    return [t for t in shlex.split(body.replace("\\\n", " "), comments=True)]


def flags_of(tokens: list[str]) -> set[str]:
    return {t for t in tokens if re.fullmatch(r"--?[a-z][a-z0-9-]*", t)}


# --------------------------------------------------------------------------- Compose


def test_compose_files_validate(compose_validator: Any) -> None:  # noqa: F811
    files = [folder / "docker-compose.yaml" for t in ("sglang", "llama.cpp") for _, _, folder in bundles(t)]
    assert len(files) == 8
    for path in files:
        doc = yaml.safe_load(path.read_text())
        errors = [e.message for e in compose_validator.iter_errors(doc)]
        assert not errors, f"{path}: {errors}"
        for name, service in doc["services"].items():
            (device,) = service["deploy"]["resources"]["reservations"]["devices"]
            assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"], (path, name)
            assert service["image"] in (SGLANG_IMAGE, LLAMA_CPP_IMAGE)


def test_llama_server_compose_listens_on_loopback_only() -> None:
    for _, _, folder in bundles("llama.cpp"):
        service = yaml.safe_load((folder / "docker-compose.yaml").read_text())["services"]["llama-server"]
        assert service["ports"] == ["127.0.0.1:8080:8080"]
        assert service["image"] == f"ghcr.io/ggml-org/llama.cpp:server-cuda-{LLAMA_CPP_RELEASE}"


# --------------------------------------------------------------------------- flags


def sglang_commands() -> list[list[str]]:
    out = []
    for _, _, folder in bundles("sglang"):
        out.append(command_tokens(folder / "serve.sh", "sglang.launch_server")[1:])
        for service in yaml.safe_load((folder / "docker-compose.yaml").read_text())["services"].values():
            out.append([str(a) for a in service["command"]])
    return out


def test_every_sglang_flag_was_checked(run: Callable[..., Result], tmp_path: Path) -> None:
    assert SGLANG_VERSION == "0.5.23" and SGLANG_IMAGE == "lmsysorg/sglang:v0.5.23"
    # a dense model on idle GPUs adds data-parallel replicas
    res = run("deploy", "r1-1.5b", "--target", "sglang", "--gpu", "l4:4", "--tp", "1", "--out", str(tmp_path))
    assert res.exit_code == 0, res.output
    used = flags_of(command_tokens(tmp_path / "serve.sh", "sglang.launch_server"))
    assert "--dp-size" in used
    for tokens in sglang_commands():
        used |= flags_of(tokens)
    used |= {"--nnodes", "--node-rank", "--dist-init-addr"} & set(
        (GOLDEN / "r1-671b-2x8xh100" / "sglang" / "serve.sh").read_text().split()
    )
    assert used == set(VERIFIED_SGLANG_FLAGS), sorted(used ^ set(VERIFIED_SGLANG_FLAGS))


def test_sglang_parses_every_command_line() -> None:
    """SGLang's own parser (sglang.srt.server_args.prepare_server_args) reads each command line."""
    server_args = pytest.importorskip(
        "sglang.srt.server_args", reason="sglang is not installed (pip install --no-deps 'sglang==0.5.23')"
    )
    for tokens in sglang_commands():
        args = tokens[tokens.index("--model-path") :] if "--model-path" in tokens else tokens
        args = [a for a in args if "$" not in a and a != '"${node_args[@]}"']
        parsed = server_args.prepare_server_args(args)
        assert parsed.reasoning_parser == "deepseek-r1"


def llama_commands() -> list[list[str]]:
    out = []
    for _, _, folder in bundles("llama.cpp"):
        out.append(command_tokens(folder / "run.sh", 'exec "$LLAMA_SERVER"')[1:])
        service = yaml.safe_load((folder / "docker-compose.yaml").read_text())["services"]["llama-server"]
        out.append([str(a) for a in service["command"]])
    return out


def test_every_llama_server_flag_was_checked(run: Callable[..., Result], tmp_path: Path) -> None:
    pytest.importorskip("gguf")
    from support.tiny_gguf import spec_for, write_tiny_gguf

    # a GGUF file is loaded with -m
    model = write_tiny_gguf(tmp_path / "tiny.gguf", spec_for("qwen2"), weight_type="F16")
    res = run("deploy", "--gguf", str(model.path), "--target", "llama.cpp", "--out", str(tmp_path / "b"))
    assert res.exit_code == 0, res.output
    used = flags_of(command_tokens(tmp_path / "b" / "run.sh", 'exec "$LLAMA_SERVER"'))
    assert "-m" in used
    for tokens in llama_commands():
        used |= flags_of(tokens)
    assert used == set(VERIFIED_LLAMA_SERVER_FLAGS), sorted(used ^ set(VERIFIED_LLAMA_SERVER_FLAGS))


@pytest.mark.skipif(
    not os.environ.get("VRAMPLAN_LLAMA_SERVER"),
    reason="VRAMPLAN_LLAMA_SERVER names no llama-server (.ci/run builds one from llama-cpp-python's sdist)",
)
def test_llama_server_help_lists_every_flag() -> None:
    proc = subprocess.run(
        [os.environ["VRAMPLAN_LLAMA_SERVER"], "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    listed = set(re.findall(r"(?<![\w-])--?[a-z][a-z0-9-]*", proc.stdout + proc.stderr))
    missing = (set(VERIFIED_LLAMA_SERVER_FLAGS) | set(LAUNCH_FLAGS)) - listed
    assert not missing, sorted(missing)


# --------------------------------------------------------------------------- numbers = the estimate


def estimate_json(run: Callable[..., Result], args: list[str]) -> dict[str, Any]:
    res = run("estimate", *args, "--json")
    assert res.exit_code == 0, res.output
    doc: dict[str, Any] = json.loads(res.output)
    return doc


def readme_estimate(folder: Path) -> list[str]:
    (line,) = [
        ln for ln in (folder / "README.md").read_text().splitlines() if ln.startswith("vramplan estimate ")
    ]
    return shlex.split(line)[2:]


@pytest.mark.parametrize(
    ("case", "extra", "folder"), bundles("sglang"), ids=[c for c, _, _ in bundles("sglang")]
)
def test_sglang_numbers_are_the_estimates(
    run: Callable[..., Result], case: str, extra: list[str], folder: Path
) -> None:
    """The README's estimate command (with the written --mem-fraction-static) gives the README's plan,
    whose fraction is SGLang's default for the GPU as `vramplan estimate` states it without one."""
    model, opts = PLANS[case]
    default = estimate_json(run, [model, "--runtime", "sglang", *opts, *extra])
    (stated,) = [i["value"] for i in default["inputs"] if i["flag"] == "--mem-fraction-static"]
    pinned = estimate_json(run, readme_estimate(folder))
    args = command_tokens(folder / "serve.sh", "sglang.launch_server")
    value = {t: args[i + 1] for i, t in enumerate(args[:-1]) if t.startswith("--")}
    assert float(value["--mem-fraction-static"]) == float(stated)
    assert (
        value["--context-length"] == str(pinned["context"]) == default["runtime_settings"]["--context-length"]
    )
    assert value["--tp-size"] == str(pinned["topology"]["tensor_parallel"])
    peak = max(d["total_bytes"] for d in pinned["per_gpu"])
    assert f"{peak / (1 << 30):.2f} GiB" in (folder / "README.md").read_text()
    # the fraction written is within rounding of the default: the same plan to 0.1 % of a GPU
    for a, b in zip(pinned["per_gpu"], default["per_gpu"], strict=True):
        assert abs(a["kv_cache_bytes"] - b["kv_cache_bytes"]) <= 0.001 * b["capacity_bytes"]


@pytest.mark.parametrize(
    ("case", "extra", "folder"), bundles("llama.cpp"), ids=[c for c, _, _ in bundles("llama.cpp")]
)
def test_llama_server_numbers_are_the_estimates(
    run: Callable[..., Result], case: str, extra: list[str], folder: Path
) -> None:
    est = estimate_json(run, readme_estimate(folder))
    args = command_tokens(folder / "run.sh", 'exec "$LLAMA_SERVER"')
    value = {t: args[i + 1] for i, t in enumerate(args[:-1]) if t.startswith("-")}
    # -c counts every slot's cells: the estimate's --ctx-size (context x requests) and --parallel
    assert value["--ctx-size"] == est["runtime_settings"]["--ctx-size"]
    assert value["--parallel"] == est["runtime_settings"]["--parallel"]
    assert value["-ub"] == str(est["batch_tokens"])
    assert value["--cache-type-k"] == {"fp16": "f16", "q8_0": "q8_0", "q4_0": "q4_0"}[est["kv_cache_dtype"]]
    layers = sum(d["layers"] for d in est["per_gpu"])
    if "--gpu-layers" in readme_estimate(folder):
        assert value["-ngl"] == str(layers)
    else:  # every repeating layer and the output layer
        assert int(value["-ngl"]) == layers + 1 or int(value["-ngl"]) == layers
    peak = max(d["total_bytes"] for d in est["per_gpu"])
    assert f"{peak / (1 << 30):.2f} GiB" in (folder / "README.md").read_text()


def test_the_671b_with_experts_in_host_ram_keeps_them_there() -> None:
    folder = GOLDEN / "r1-671b-2xrtx4090-host192" / "llama.cpp"
    args = command_tokens(folder / "run.sh", 'exec "$LLAMA_SERVER"')
    assert args[args.index("--n-cpu-moe") + 1] == "59" and args[args.index("-ngl") + 1] == "62"
    assert "--host-memory 192GiB --n-cpu-moe 59" in (folder / "README.md").read_text()


# --------------------------------------------------------------------------- recommend -> deploy


@pytest.mark.parametrize("gpu", ["rtx-4090", "rtx-4090:2"])
def test_recommend_gives_the_671b_a_llama_cpp_deploy_command_that_works(
    run: Callable[..., Result], tmp_path: Path, gpu: str
) -> None:
    """`recommend --gpu rtx-4090 --host-memory 192` ranks the 671B on llama.cpp with host RAM first;
    its deploy command writes the bundle (layers offloaded on one card, experts on two)."""
    res = run("recommend", "--gpu", gpu, "--host-memory", "192", "--json")
    assert res.exit_code == 0, res.output
    rows = [c for c in json.loads(res.output)["candidates"] if c["fits"]]
    assert all(c["deploy_command"] for c in rows)  # every runtime has a target now
    row = next(c for c in rows if c["model"] == "deepseek-r1")
    assert row["runtime"] == "llama.cpp"
    command = shlex.split(row["deploy_command"])
    assert command[:2] == ["vramplan", "deploy"]
    res = run(*command[1:], "--out", str(tmp_path / "b"))
    assert res.exit_code == 0, res.output
    script = (tmp_path / "b" / "run.sh").read_text()
    assert "-hf unsloth/DeepSeek-R1-GGUF:" in script
    assert ("--n-cpu-moe" in script) == (gpu == "rtx-4090:2"), script


# --------------------------------------------------------------------------- bad input


def test_gguf_deploys_with_llama_cpp_only(run: Callable[..., Result], tmp_path: Path) -> None:
    pytest.importorskip("gguf")
    from support.tiny_gguf import spec_for, write_tiny_gguf

    model = write_tiny_gguf(tmp_path / "tiny.gguf", spec_for("qwen2"), weight_type="F16")
    res = run(
        "deploy", "--gguf", str(model.path), "--target", "vllm", "--gpu", "l4", "--out", str(tmp_path / "o")
    )
    assert res.exit_code == 2
    assert res.output.strip().splitlines()[-1].startswith("Error: ")


def test_no_verify_goes_with_a_launch(run: Callable[..., Result], tmp_path: Path) -> None:
    res = run("deploy", "r1-1.5b", "--target", "llama.cpp", "--no-verify", "--out", str(tmp_path))
    assert res.exit_code == 2
    assert res.output.strip() == (
        "Error: --no-verify goes with --launch and --target ollama, vllm, sglang, llama.cpp, k8s"
    )


def test_a_catalog_quant_without_a_repo_names_those_with_one(
    run: Callable[..., Result], tmp_path: Path
) -> None:
    res = run("deploy", "deepseek-r1", "--target", "llama.cpp", "--gpu", "h200:8", "--context", "32768")
    assert res.exit_code == 2
    assert res.output.strip() == (
        "Error: the catalog names no Hugging Face repo for deepseek-r1 q4_K_M (llama-server downloads "
        "with -hf): give --gguf FILE or --quant UD-IQ1_S / UD-IQ1_M / UD-IQ2_XXS / UD-Q2_K_XL"
    )


def test_sglang_needs_gpus(run: Callable[..., Result], tmp_path: Path) -> None:
    res = run("deploy", "r1-1.5b", "--target", "sglang", "--out", str(tmp_path))
    assert res.exit_code == 2
    assert "Error: " in res.output
