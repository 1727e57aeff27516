"""`vramplan deploy` is safe with hostile names, keeps existing files, fails in one line, and launches
through argument lists.

- A served name or a (user-catalog) model / repo with quotes, colons, `$`, `#` and newlines reaches
  shell through `shlex.quote` and YAML through JSON-quoted scalars: the files keep their structure
  (the same lines, the same keys), and the value arrives as one argument, unchanged.
- An existing file is never replaced by a different one without --force; an identical one is kept.
- Bad input: one line on stderr, exit 2; a failure at run time (missing tool, failed command): exit 1.
- Launching runs `kubectl` / `docker` / `bash` with argument lists, never a shell string.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import Result

from vramplan.deploy import launch as launch_mod
from vramplan.deploy.render import oneline, sh_quote, yaml_quote

HOSTILE = "r1\"'\n- injected: $(touch /tmp/pwned) `id` #: x\n---\nkind: Secret"
K8S_VERSION = kubernetes_validate.utils.latest_version()


def deploy(run: Callable[..., Result], out: Path, *args: str) -> Result:
    return run("deploy", *args, "--out", str(out))


def structure(doc: Any) -> Any:
    """The shape of a YAML document: keys and list lengths, not the scalar values."""
    if isinstance(doc, dict):
        return {k: structure(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [structure(v) for v in doc]
    return type(doc).__name__


def serve_argv(script: Path, tmp_path: Path) -> list[str]:
    """The arguments serve.sh hands to `vllm`, from a stand-in `vllm` that prints them."""
    bin_dir = tmp_path / "stub-bin"
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "vllm"
    stub.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, check=True)
    argv: list[str] = json.loads(proc.stdout)
    return argv


def same_shape(plain: Path, hostile: Path, tmp_path: Path) -> None:
    for f in sorted(plain.iterdir()):
        a, b = f.read_text(), (hostile / f.name).read_text()
        if f.suffix == ".sh":
            # a quoted newline is one argument, not a new command
            proc = subprocess.run(["bash", "-n", str(hostile / f.name)], capture_output=True, check=False)
            assert proc.returncode == 0, proc.stderr
            if f.name == "serve.sh":
                assert len(serve_argv(f, tmp_path)) == len(serve_argv(hostile / f.name, tmp_path))
            continue
        assert len(a.splitlines()) == len(b.splitlines()), f"{f.name}: a value added lines"
        if f.suffix == ".yaml":
            docs_a, docs_b = list(yaml.safe_load_all(a)), list(yaml.safe_load_all(b))
            assert [structure(d) for d in docs_a] == [structure(d) for d in docs_b], f.name


# --------------------------------------------------------------------------- quoting


def test_quoting_filters() -> None:
    assert yaml.safe_load(f"k: {yaml_quote(HOSTILE)}") == {"k": HOSTILE}
    assert yaml.safe_load(f"k: {yaml_quote('yes')}") == {"k": "yes"}  # not a boolean
    assert yaml.safe_load(f"k: {yaml_quote('0755')}") == {"k": "0755"}  # not a number
    out = subprocess.run(["bash", "-c", f"printf %s {sh_quote(HOSTILE)}"], capture_output=True, text=True)
    assert out.stdout == HOSTILE
    assert "\n" not in oneline(HOSTILE) and "\u2028" not in oneline("a\u2028b")


@pytest.mark.parametrize("target", ["vllm", "k8s"])
def test_hostile_served_name_changes_no_structure(
    run: Callable[..., Result], tmp_path: Path, target: str
) -> None:
    plan = ["r1-32b", "--target", target, "--gpu", "h100-80gb:2"]
    assert deploy(run, tmp_path / "plain", *plan).exit_code == 0
    res = deploy(run, tmp_path / "hostile", *plan, "--served-name", HOSTILE)
    assert res.exit_code == 0, res.output
    same_shape(tmp_path / "plain", tmp_path / "hostile", tmp_path)
    if target == "vllm":
        compose = yaml.safe_load((tmp_path / "hostile" / "docker-compose.yaml").read_text())
        cmd = compose["services"]["vllm"]["command"]
        # Compose turns $$ back into $: the value arrives as written
        assert cmd[cmd.index("--served-model-name") + 1] == HOSTILE.replace("$", "$$")
    else:
        dep = yaml.safe_load((tmp_path / "hostile" / "deployment.yaml").read_text())
        args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--served-model-name") + 1] == HOSTILE.replace(
            "$", "$$"
        )  # no $(VAR) expansion
        kubernetes_validate.validate(dep, K8S_VERSION, strict=True)


@pytest.mark.skipif(sys.platform == "win32", reason="runs serve.sh")
def test_hostile_served_name_reaches_vllm_as_one_argument(
    run: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """serve.sh runs against a stand-in `vllm` that prints the arguments it was given."""
    res = deploy(
        run, tmp_path / "b", "r1-32b", "--target", "vllm", "--gpu", "h100-80gb:2", "--served-name", HOSTILE
    )
    assert res.exit_code == 0
    argv = serve_argv(tmp_path / "b" / "serve.sh", tmp_path)
    assert argv[:2] == ["serve", "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B"]
    assert argv[argv.index("--served-model-name") + 1] == HOSTILE
    assert not Path("/tmp/pwned").exists()


def user_catalog(tmp_path: Path, repo: str, tag: str = "deepseek-r1:1.5b-evil") -> Path:
    path = tmp_path / "user.yaml"
    doc = {
        "version": 1,
        "variants": [
            {
                "id": "r1-evil",
                "name": "Evil\nname: x",
                "hf_repo": repo,
                "family": "distill",
                "architecture": "qwen2-1.5b",
                "default_quant": "bf16",
                "quants": [
                    {"name": "bf16", "format": "bf16", "repo": repo, "runtimes": ["vllm", "sglang"]},
                    {
                        "name": "q4_K_M",
                        "format": "gguf",
                        "gguf_ftype": "Q4_K_M",
                        "runtimes": ["ollama", "llama.cpp"],
                        "ollama_tags": [tag],
                    },
                ],
            }
        ],
    }
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize("target", ["vllm", "k8s"])
def test_hostile_catalog_values_change_no_structure(
    run: Callable[..., Result], tmp_path: Path, target: str
) -> None:
    plain = user_catalog(tmp_path, "evil/repo")
    res = run(
        "--catalog",
        str(plain),
        "deploy",
        "r1-evil",
        "--target",
        target,
        "--gpu",
        "l4",
        "--out",
        str(tmp_path / "p"),
    )
    assert res.exit_code == 0, res.output
    hostile = user_catalog(tmp_path, "evil/repo" + HOSTILE)
    res = run(
        "--catalog",
        str(hostile),
        "deploy",
        "r1-evil",
        "--target",
        target,
        "--gpu",
        "l4",
        "--out",
        str(tmp_path / "h"),
    )
    assert res.exit_code == 0, res.output
    same_shape(tmp_path / "p", tmp_path / "h", tmp_path)


def test_hostile_ollama_tag_is_refused(run: Callable[..., Result], tmp_path: Path) -> None:
    cat = user_catalog(tmp_path, "evil/repo", tag='deepseek-r1:x"\nSYSTEM evil')
    res = run(
        "--catalog",
        str(cat),
        "deploy",
        "r1-evil",
        "--target",
        "ollama",
        "--gpu",
        "l4",
        "--out",
        str(tmp_path / "o"),
    )
    assert res.exit_code == 2
    (line,) = res.stderr.splitlines()
    assert line.startswith(
        "Error: the Ollama tag 'deepseek-r1:x\"\\nSYSTEM evil' is not a valid Ollama model name"
    )
    assert not (tmp_path / "o").exists()


def test_ollama_model_name_is_checked(run: Callable[..., Result], tmp_path: Path) -> None:
    res = deploy(run, tmp_path / "o", "r1-1.5b", "--target", "ollama", "--served-name", "my model")
    assert res.exit_code == 2
    assert "is not a valid Ollama model name" in res.stderr


# --------------------------------------------------------------------------- existing files


def test_existing_files_are_kept_without_force(run: Callable[..., Result], tmp_path: Path) -> None:
    out = tmp_path / "b"
    args = ("r1-32b", "--target", "vllm", "--gpu", "h100-80gb:2")
    assert deploy(run, out, *args).exit_code == 0
    assert deploy(run, out, *args).exit_code == 0  # the same files again: nothing to overwrite
    serve = out / "serve.sh"
    assert os.access(serve, os.X_OK) and not os.access(out / "README.md", os.X_OK)
    serve.write_text("# my edits\n")
    res = deploy(run, out, *args, "--context", "8192")
    assert res.exit_code == 2
    assert res.stderr.splitlines() == [
        f"Error: {out} already holds other versions of serve.sh, docker-compose.yaml, README.md; "
        "use --force to overwrite them"
    ]
    assert serve.read_text() == "# my edits\n"  # nothing written, not even the files that differ less
    assert "--max-model-len 131072" in (out / "docker-compose.yaml").read_text().replace('"\n      - "', " ")
    res = deploy(run, out, *args, "--context", "8192", "--force")
    assert res.exit_code == 0
    assert "--max-model-len 8192" in serve.read_text()
    assert sorted(p.name for p in out.iterdir()) == [
        ".vramplan-bundle",
        "README.md",
        "docker-compose.yaml",
        "serve.sh",
    ]  # no temp files


def test_out_must_be_a_folder(run: Callable[..., Result], tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    res = deploy(run, f, "r1-32b", "--target", "vllm", "--gpu", "h100-80gb:2")
    assert res.exit_code == 2
    lines = [ln for ln in res.stderr.splitlines() if ln and not ln.startswith(("Usage:", "Try "))]
    assert len(lines) == 1 and lines[0].startswith("Error: Invalid value for '--out'")


def test_default_out_folder(
    run: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    res = run("deploy", "r1-32b", "--target", "k8s", "--gpu", "h100-80gb:2", "--json")
    assert res.exit_code == 0
    doc = json.loads(res.output)
    assert doc == {
        "target": "k8s",
        "out": "deploy/deepseek-r1-distill-qwen-32b-k8s",
        "files": [
            "deploy/deepseek-r1-distill-qwen-32b-k8s/pvc.yaml",
            "deploy/deepseek-r1-distill-qwen-32b-k8s/deployment.yaml",
            "deploy/deepseek-r1-distill-qwen-32b-k8s/service.yaml",
            "deploy/deepseek-r1-distill-qwen-32b-k8s/networkpolicy.yaml",
            "deploy/deepseek-r1-distill-qwen-32b-k8s/README.md",
        ],
        "launched": False,
    }
    assert all((tmp_path / p).is_file() for p in doc["files"])


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["r1-1.5b", "--target", "ollama", "--runtime", "vllm"],
            "Error: --target ollama runs ollama; drop --runtime vllm",
        ),
        (
            ["r1-1.5b", "--target", "sglang", "--runtime", "vllm"],
            "Error: --target sglang runs sglang; drop --runtime vllm",
        ),
        (
            ["r1-1.5b", "--target", "vllm"],
            "Error: vLLM needs GPUs: name them with --gpu NAME[:COUNT], e.g. --gpu h100-80gb:8",
        ),
        (["r1-nope", "--target", "vllm"], "Error: unknown model 'r1-nope'"),
        (["r1", "--target", "vllm", "--gpu", "h100-80gb:8"], "Error: this plan does not fit: GPU"),
        (
            ["r1", "--target", "ollama", "--gpu", "h100:8", "--nodes", "2"],
            "Error: ollama plans are for one node",
        ),
        (
            ["r1-1.5b", "--target", "vllm", "--gpu", "l4", "--served-name", " "],
            "Error: --served-name must not be empty",
        ),
        (
            ["r1-1.5b", "--target", "vllm", "--gpu", "l4", "--dry-run-first"],
            "Error: --dry-run-first goes with",
        ),
        (["r1-1.5b", "--target", "docker", "--gpu", "l4"], "Error: Invalid value for '--target'"),
        (
            ["r1-1.5b", "--target", "vllm", "--gpu", "l4", "--context", "0"],
            "Error: Invalid value for --context",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    run: Callable[..., Result], tmp_path: Path, args: list[str], message: str
) -> None:
    res = deploy(run, tmp_path / "b", *args)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln and not ln.startswith(("Usage:", "Try "))]
    assert len(lines) == 1 and lines[0].startswith(message), res.stderr
    assert "Traceback" not in res.output
    assert not (tmp_path / "b").exists()


# --------------------------------------------------------------------------- launching


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Record the commands a launch would run (all tools present, all succeed)."""
    recorded: list[list[str]] = []

    def fake_run(argv: list[str]) -> int:
        assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)
        recorded.append(argv)
        return 0

    def no_output(argv: list[str], timeout_s: float) -> tuple[int, str]:
        pytest.fail(f"these tests read no server log, yet the launch ran {argv}")

    monkeypatch.setattr(launch_mod, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(launch_mod, "run_command", fake_run)
    monkeypatch.setattr(launch_mod, "command_output", no_output)
    return recorded


def test_k8s_launch_applies_the_folder(
    run: Callable[..., Result], tmp_path: Path, calls: list[list[str]]
) -> None:
    out = tmp_path / "b"
    res = deploy(
        run, out, "r1-32b", "--target", "k8s", "--gpu", "h100:2", "--launch", "--dry-run-first", "--json",
        "--no-verify",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert calls == [
        ["/usr/bin/kubectl", "apply", "--dry-run=client", "-f", str(out)],
        ["/usr/bin/kubectl", "apply", "-f", str(out)],
    ]
    assert json.loads(res.stdout)["launched"] is True


def test_k8s_failed_dry_run_applies_nothing(
    run: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calls: list[list[str]]
) -> None:
    monkeypatch.setattr(launch_mod, "run_command", lambda argv: calls.append(argv) or 1)
    res = deploy(
        run, tmp_path / "b", "r1-32b", "--target", "k8s", "--gpu", "h100:2", "--launch", "--dry-run-first"
    )
    assert res.exit_code == 1
    assert len(calls) == 1 and "--dry-run=client" in calls[0]
    assert res.stderr.splitlines()[-1].endswith("failed (exit 1); nothing was applied")


def test_vllm_launch_uses_docker_compose(
    run: Callable[..., Result], tmp_path: Path, calls: list[list[str]]
) -> None:
    out = tmp_path / "b"
    # --no-verify: the log it reads afterwards is tests/test_deploy_launch_verify.py's
    res = deploy(run, out, "r1-32b", "--target", "vllm", "--gpu", "h100:2", "--launch", "--no-verify")
    assert res.exit_code == 0, res.output
    assert calls == [["/usr/bin/docker", "compose", "-f", str(out / "docker-compose.yaml"), "up", "-d"]]


def test_vllm_launch_falls_back_to_serve_sh(
    run: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calls: list[list[str]]
) -> None:
    monkeypatch.setattr(launch_mod, "which", lambda name: None if name == "docker" else f"/usr/bin/{name}")
    out = tmp_path / "b"
    res = deploy(run, out, "r1-32b", "--target", "vllm", "--gpu", "h100:2", "--launch")
    assert res.exit_code == 0, res.output
    assert calls == [["/usr/bin/bash", str(out / "serve.sh")]]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("k8s", "Error: kubectl is not on PATH: install it (https://kubernetes.io/docs/tasks/tools/)"),
        (
            "vllm",
            "Error: neither docker nor vllm is on PATH: install Docker with the NVIDIA Container Toolkit",
        ),
    ],
)
def test_missing_tools_are_one_line_and_exit_1(
    run: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str, message: str
) -> None:
    monkeypatch.setattr(launch_mod, "which", lambda name: None)
    res = deploy(run, tmp_path / "b", "r1-32b", "--target", target, "--gpu", "h100:2", "--launch")
    assert res.exit_code == 1
    (line,) = res.stderr.splitlines()
    assert line.startswith(message)


def test_docker_without_compose_says_what_to_install(
    run: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calls: list[list[str]]
) -> None:
    """Before the audit: `docker compose up failed (exit 125); GPUs in containers need the NVIDIA
    Container Toolkit`, when docker had no Compose plugin at all."""
    monkeypatch.setattr(launch_mod, "run_command", lambda argv: calls.append(argv) or 125)
    monkeypatch.setattr(launch_mod, "compose_works", lambda docker: False)
    res = deploy(run, tmp_path / "b", "r1-32b", "--target", "vllm", "--gpu", "h100:2", "--launch")
    assert res.exit_code == 1
    (line,) = res.stderr.splitlines()
    assert line.startswith("Error: docker has no Compose plugin (`docker compose version` fails): install it")
    assert line.endswith(f"and run {tmp_path / 'b' / 'serve.sh'}")


def test_a_failed_compose_up_keeps_its_hint(
    run: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calls: list[list[str]]
) -> None:
    monkeypatch.setattr(launch_mod, "run_command", lambda argv: calls.append(argv) or 125)
    monkeypatch.setattr(launch_mod, "compose_works", lambda docker: True)
    res = deploy(run, tmp_path / "b", "r1-32b", "--target", "vllm", "--gpu", "h100:2", "--launch")
    assert res.exit_code == 1
    assert res.stderr.splitlines() == [
        "Error: docker compose up failed (exit 125); GPUs in containers need the NVIDIA Container Toolkit"
    ]


def test_multi_node_vllm_is_not_launched_from_one_machine(
    run: Callable[..., Result], tmp_path: Path, calls: list[list[str]]
) -> None:
    res = deploy(run, tmp_path / "b", "r1", "--target", "vllm", "--gpu", "h100:8", "--nodes", "2", "--launch")
    assert res.exit_code == 2
    assert res.stderr.splitlines()[0].startswith("Error: a 2-node plan starts on every node")
    assert calls == []


def test_run_command_passes_an_argument_list(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake(argv: Any, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        seen.update(argv=argv, **kwargs)
        return subprocess.CompletedProcess(argv, 3)

    monkeypatch.setattr(subprocess, "run", fake)
    assert launch_mod.run_command(["kubectl", "apply", "-f", "a dir; rm -rf /"]) == 3
    assert seen["argv"] == ["kubectl", "apply", "-f", "a dir; rm -rf /"]
    assert not seen.get("shell")


def test_heavy_libraries_load_only_when_used() -> None:
    code = (
        "import sys, vramplan.cli, vramplan.deploy, vramplan.deploy.launch;"
        "print(sorted(m for m in ('jinja2', 'ollama', 'httpx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_failed_write_is_a_runtime_error(
    run: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device", dst)

    monkeypatch.setattr(os, "replace", full_disk)
    res = deploy(run, tmp_path / "b", "r1-32b", "--target", "vllm", "--gpu", "h100:2")
    assert res.exit_code == 1
    (line,) = res.stderr.splitlines()
    assert line.startswith("Error: cannot write ") and line.endswith(": No space left on device")
    assert [p.name for p in (tmp_path / "b").iterdir()] == []  # no temp file left behind


def test_an_ollama_tag_names_what_is_pulled(run: Callable[..., Result], tmp_path: Path) -> None:
    res = deploy(
        run, tmp_path / "b", "deepseek-r1:1.5b-qwen-distill-q8_0", "--target", "ollama", "--gpu", "l4"
    )
    assert res.exit_code == 0, res.output
    modelfile = (tmp_path / "b" / "Modelfile").read_text()
    assert "\nFROM deepseek-r1:1.5b-qwen-distill-q8_0\nPARAMETER num_ctx 4096\n" in modelfile


def test_partial_offload_writes_num_gpu(run: Callable[..., Result], tmp_path: Path) -> None:
    res = deploy(
        run, tmp_path / "b", "r1-32b", "--target", "ollama", "--gpu", "rtx-4090", "--gpu-layers", "40"
    )
    assert res.exit_code == 0, res.output
    assert "PARAMETER num_gpu 40\n" in (tmp_path / "b" / "Modelfile").read_text()


# --------------------------------------------------------------------------- the printed start hint


@pytest.mark.parametrize(
    ("args", "command"),
    [
        (["r1-1.5b", "--target", "ollama", "--gpu", "l4"], lambda out: [str(out / "run.sh")]),
        (["r1-32b", "--target", "vllm", "--gpu", "h100:2"], lambda out: ["cd", str(out)]),
        (
            ["r1", "--target", "vllm", "--gpu", "h100:8", "--nodes", "2"],
            lambda out: ["NODE_RANK=<rank>", "HEAD_ADDR=<head", "address>", str(out / "serve.sh")],
        ),
        (["r1-32b", "--target", "k8s", "--gpu", "h100:2"], lambda out: ["kubectl", "apply", "-f", str(out)]),
    ],
    ids=["ollama", "vllm", "vllm-multi-node", "k8s"],
)
def test_start_hint_is_shell_quoted(
    run: Callable[..., Result], tmp_path: Path, args: list[str], command: Callable[[Path], list[str]]
) -> None:
    """Before: `start: kubectl apply -f /tmp/my bundle/it's $HOME`, which a shell splits and expands."""
    out = tmp_path / "my bundle" / "it's $HOME; `id`"
    res = deploy(run, out, *args)
    assert res.exit_code == 0, res.output
    lines = res.stdout.replace(" \\\n    ", " ").splitlines()  # a long command wraps with continuations
    (hint,) = [ln.removeprefix("start: ") for ln in lines if ln.startswith("start: ")]
    first = hint.removeprefix("on each node: ").split("   (or ")[0].split(" && ")[0]
    assert shlex.split(first) == command(out)
