"""`deploy --launch` verifies what it started for the targets CI cannot start (vLLM and SGLang through
Docker Compose, the k8s target's vLLM): after `docker compose up -d` / `kubectl apply`, it reads
`docker compose logs SERVICE` / `kubectl logs` until the server says it is ready, and sets each memory
part beside the plan through `vramplan check`'s code.

Neither docker nor kubectl runs here, so the launch module's seams (deploy/launch.py `which`,
`run_command`, `command_output`) stand in for them, and what `docker compose logs` / `kubectl logs`
prints is a real startup log of the corpus (tests/fixtures/logs/real/, each with its source in its
header and index.yaml)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

import vramplan.deploy.launch as launch_mod
from vramplan.deploy import verify

REAL = Path(__file__).resolve().parent / "fixtures" / "logs" / "real"
# vLLM 0.19.1, Qwen3-8B (the R1-0528 distill's architecture) on one A100 40GB: every part within tolerance
VLLM_OK = REAL / "vllm" / "v0191_qwen3_8b_a100_40gb_40k.log"
# SGLang (Jan 2025 docs), Llama-3.1-8B (the Llama distill's architecture) on one H100: within tolerance
SGLANG_OK = REAL / "sglang" / "llama-3.1-8b_h100_sglang-docs-2025-01.log"
# SGLang (Jun 2025 docs CI), Qwen2.5-7B on one H100: the weights miss by -54 % (index.yaml `misses`)
SGLANG_MISS = REAL / "sglang" / "qwen2.5-7b_h100-ci_sglang-docs-2025-06.log"


class Tools:
    """docker / kubectl as the launch sees them: each command recorded, `logs` answering with `log`
    (its first `ready_after` reads: the part before the ready line), `ps` with `state`."""

    def __init__(self, log: str, state: str = "running", ready_after: int = 0) -> None:
        self.log, self.state, self.ready_after = log, state, ready_after
        self.ran: list[list[str]] = []
        self.read: list[list[str]] = []

    def run_command(self, argv: list[str]) -> int:
        self.ran.append(list(argv))
        return 0

    def command_output(self, argv: list[str], timeout_s: float) -> tuple[int, str]:
        assert timeout_s == verify.READ_TIMEOUT_S
        self.read.append(list(argv))
        if "ps" in argv:
            return 0, f"{self.state}\n"
        logs = [a for a in self.read if "logs" in a]
        if len(logs) <= self.ready_after:
            cut = min(self.log.find(line) for line in verify.READY_LINES if line in self.log)
            return 0, self.log[:cut]
        return 0, self.log


@pytest.fixture
def tools(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Tools]:
    def make(log: Path, **kw: object) -> Tools:
        t = Tools(log.read_text(encoding="utf-8"), **kw)  # type: ignore[arg-type]
        monkeypatch.setattr(launch_mod, "which", lambda name: f"/usr/bin/{name}")
        monkeypatch.setattr(launch_mod, "run_command", t.run_command)
        monkeypatch.setattr(launch_mod, "command_output", t.command_output)
        monkeypatch.setattr(verify, "POLL_S", 0)
        return t

    return make


def deploy(run: Callable[..., Result], out: Path, *args: str) -> Result:
    return run("deploy", *args, "--out", str(out), "--launch")


def test_vllm_compose_launch_reads_the_service_log_and_compares(
    run: Callable[..., Result], tmp_path: Path, tools: Callable[..., Tools]
) -> None:
    t = tools(VLLM_OK, ready_after=2)
    out = tmp_path / "b"
    res = deploy(run, out, "deepseek-r1-0528-qwen3-8b", "--gpu", "a100-40gb", "--target", "vllm", "--json")
    assert res.exit_code == 0, res.output
    compose = ["/usr/bin/docker", "compose", "-f", str(out / "docker-compose.yaml")]
    assert t.ran == [[*compose, "up", "-d"]]
    logs = [*compose, "logs", "--no-color", "--no-log-prefix", "vllm"]
    state = [*compose, "ps", "--all", "--format", "{{.State}}", "vllm"]
    # read until the ready line is there: twice without it (each followed by a look at the container)
    assert t.read == [logs, state, logs, state, logs]
    assert (out / "vllm.log").read_text(encoding="utf-8") == VLLM_OK.read_text(encoding="utf-8")
    doc = json.loads(res.stdout)
    assert doc["launched"] is True and doc["verified"]["ok"] is True
    parts = {p["part"]: p for p in doc["verified"]["parts"]}
    # the log's own figures: "Model loading took 15.27 GiB", the KV pool and its tokens
    assert parts["weights"]["measured"] == pytest.approx(15.27 * (1 << 30), rel=0.001)
    assert parts["weights"]["tolerance"] == 0.03 and parts["KV pool"]["tolerance"] == 0.10
    assert all(p["ok"] for p in parts.values())
    assert "waiting up to 20 min for `docker compose logs vllm`" in res.stderr


def test_sglang_compose_launch_prints_the_table(
    run: Callable[..., Result], tmp_path: Path, tools: Callable[..., Tools]
) -> None:
    t = tools(SGLANG_OK)
    out = tmp_path / "b"
    res = deploy(run, out, "deepseek-r1-distill-llama-8b", "--gpu", "h100-80gb:1", "--target", "sglang")
    assert res.exit_code == 0, res.output
    assert t.read[0][-4:] == ["logs", "--no-color", "--no-log-prefix", "sglang"]
    assert "verified: every part within its tolerance" in res.output
    rows = res.output.splitlines()
    for part in ("weights", "KV per token", "KV pool", "KV tokens"):
        assert any(line.startswith(f"{part}  ") for line in rows), part
    # the launch's own lines are laid out as every report is: commands wrap between their words with
    # continuations, never a line ending in spaces
    assert all(line == line.rstrip() for line in rows), res.output
    assert any(line.startswith("$ docker compose") and line.endswith(" \\") for line in rows), res.output
    assert (out / "sglang.log").exists()


def test_a_part_beyond_its_tolerance_exits_1_after_the_table(
    run: Callable[..., Result], tmp_path: Path, tools: Callable[..., Tools]
) -> None:
    tools(SGLANG_MISS)
    res = deploy(
        run, tmp_path / "b", "deepseek-r1-distill-qwen-7b", "--gpu", "h100-80gb:1", "--target", "sglang"
    )
    assert res.exit_code == 1
    assert "±3% MISS" in res.output
    assert res.stderr.splitlines()[-1].startswith(
        "Error: the server ran, but its memory missed the plan beyond docs/accuracy.md's tolerances: weights"
    )


def test_no_verify_starts_and_reads_nothing(
    run: Callable[..., Result], tmp_path: Path, tools: Callable[..., Tools]
) -> None:
    t = tools(VLLM_OK)
    res = deploy(run, tmp_path / "b", "r1-32b", "--gpu", "h100:2", "--target", "vllm", "--no-verify")
    assert res.exit_code == 0, res.output
    assert len(t.ran) == 1 and t.read == []


def test_a_container_that_stops_is_one_line(
    run: Callable[..., Result], tmp_path: Path, tools: Callable[..., Tools]
) -> None:
    tools(VLLM_OK, state="exited", ready_after=10)
    res = deploy(run, tmp_path / "b", "deepseek-r1-0528-qwen3-8b", "--gpu", "a100-40gb", "--target", "vllm")
    assert res.exit_code == 1
    (line,) = [ln for ln in res.stderr.splitlines() if ln.startswith("Error:")]
    assert line.startswith("Error: the server stopped before it was ready (its container is exited)")


def test_the_wait_is_bounded(
    run: Callable[..., Result], tmp_path: Path, tools: Callable[..., Tools], monkeypatch: pytest.MonkeyPatch
) -> None:
    t = tools(VLLM_OK, ready_after=10**6)
    monkeypatch.setattr(verify, "ready_timeout_s", lambda plan: 0)
    res = deploy(run, tmp_path / "b", "deepseek-r1-0528-qwen3-8b", "--gpu", "a100-40gb", "--target", "vllm")
    assert res.exit_code == 1
    assert "the server did not say it was ready within 0 min; it keeps running" in res.stderr
    assert len([a for a in t.read if "logs" in a]) == 1


def test_the_wait_allows_the_plans_startup_time(tmp_path: Path) -> None:
    from vramplan.catalog import load_catalog
    from vramplan.deploy import prepare
    from vramplan.hardware import parse_gpu
    from vramplan.request import Choices

    b = prepare(
        load_catalog(), Choices(model="deepseek-r1", gpu=parse_gpu("h200:8")), None, "vllm", out=tmp_path
    )
    assert verify.ready_timeout_s(b.plan) == b.plan.startup_minutes * 60
    assert 20 * 60 <= verify.ready_timeout_s(b.plan) <= 240 * 60


def test_k8s_launch_reads_the_deployments_log(
    run: Callable[..., Result], tmp_path: Path, tools: Callable[..., Tools]
) -> None:
    t = tools(VLLM_OK)
    out = tmp_path / "b"
    res = deploy(
        run, out, "deepseek-r1-0528-qwen3-8b", "--gpu", "a100-40gb", "--target", "k8s", "--namespace", "llm"
    )
    assert res.exit_code == 0, res.output
    assert t.ran == [["/usr/bin/kubectl", "apply", "-f", str(out)]]
    name = "deepseek-r1-0528-qwen3-8b"
    assert t.read == [["/usr/bin/kubectl", "-n", "llm", "logs", f"deployment/{name}", "-c", "vllm"]]
    assert "verified: every part within its tolerance" in res.output
    assert (out / "server.log").exists()


def test_k8s_multi_node_reads_the_leaders_log(
    run: Callable[..., Result], tmp_path: Path, tools: Callable[..., Tools]
) -> None:
    t = tools(VLLM_OK, ready_after=10**6)
    res = run(
        "deploy", "r1", "--gpu", "h100:8", "--nodes", "2", "--target", "k8s", "--out", str(tmp_path / "b")
    )
    assert res.exit_code == 0, res.output
    from vramplan.catalog import load_catalog
    from vramplan.deploy import prepare
    from vramplan.hardware import parse_gpu
    from vramplan.request import Choices

    choices = Choices(model="r1", gpu=parse_gpu("h100:8"), nodes=2)
    bundle = prepare(load_catalog(), choices, None, "k8s", out=tmp_path / "b")
    assert verify._manifest_server(bundle) == ("pod/deepseek-r1-0", "vllm-leader")
    assert t.read == []


def test_k8s_ollama_has_no_log_to_read(
    run: Callable[..., Result], tmp_path: Path, tools: Callable[..., Tools]
) -> None:
    t = tools(VLLM_OK)
    res = deploy(run, tmp_path / "b", "r1-7b", "--gpu", "l4", "--target", "k8s", "--runtime", "ollama")
    assert res.exit_code == 0, res.output
    assert len(t.ran) == 1 and t.read == []


@pytest.mark.parametrize(("target", "script"), [("sglang", "serve.sh"), ("llama.cpp", "run.sh")])
def test_amd_gpus_get_the_run_script_without_a_cuda_compose_file(
    run: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str, script: str
) -> None:
    """The pinned SGLang and llama.cpp images are CUDA builds: on AMD GPUs the bundle holds the run
    script (for a local ROCm build) and no Compose file with an NVIDIA reservation, says why, and
    --launch never starts the CUDA image even where docker is installed."""
    ran: list[list[str]] = []
    monkeypatch.setattr(
        launch_mod, "which", lambda name: None if name == "llama-server" else f"/usr/bin/{name}"
    )
    monkeypatch.setattr(launch_mod, "run_command", lambda argv: ran.append(list(argv)) or 0)
    monkeypatch.delenv("VRAMPLAN_LLAMA_SERVER", raising=False)
    out = tmp_path / "b"
    res = run("deploy", "r1-7b", "--gpu", "mi300x", "--target", target, "--out", str(out), "--json")
    assert res.exit_code == 0, res.output
    names = sorted(Path(f).name for f in json.loads(res.stdout)["files"])
    assert names == sorted([script, "README.md"])
    written = "".join((out / n).read_text() for n in names)
    assert "No `docker-compose.yaml`: the pinned image" in written and "nvidia" not in written.lower()
    launched = run("deploy", "r1-7b", "--gpu", "mi300x", "--target", target, "--out", str(out), "--launch")
    assert not any("docker" in " ".join(a) for a in ran), ran
    if target == "sglang":
        assert launched.exit_code == 0, launched.output
        assert ran == [["/usr/bin/bash", str(out / "serve.sh")]]
    else:  # no llama-server here: one line naming the HIP build, not the CUDA image
        assert launched.exit_code != 0 and "ROCm/HIP" in launched.output, launched.output
