"""The whole loop against a real llama-server: plan, deploy, launch, read the real startup log, compare.

`vramplan deploy --gguf tiny.gguf --target llama.cpp --launch` runs the bundle's run.sh with the
llama-server that VRAMPLAN_LLAMA_SERVER names (.ci/run builds one, for the CPU, from the llama.cpp source
that llama-cpp-python's sdist vendors), on 127.0.0.1 at a free port; it waits for /health, sends one chat
completion, stops the server and sets the log's memory lines beside the plan through `vramplan check`'s
code. The models are the tiny random-weight GGUFs of tests/support/tiny_gguf.py. Without
VRAMPLAN_LLAMA_SERVER the loop is skipped; the launch's own errors are tested either way.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from vramplan.deploy import launch as tools
from vramplan.deploy import llamacpp

pytest.importorskip("gguf")

SERVER = os.environ.get("VRAMPLAN_LLAMA_SERVER")
needs_server = pytest.mark.skipif(
    not SERVER,
    reason="VRAMPLAN_LLAMA_SERVER names no llama-server binary (.ci/run builds one from llama-cpp-python's "
    "sdist); the loop needs a real server",
)


def tiny(tmp_path: Path, arch: str) -> Path:
    from support.tiny_gguf import spec_for, write_tiny_gguf

    return write_tiny_gguf(
        tmp_path / f"tiny-{arch}.gguf", spec_for(arch), weight_type="F16", name=f"tiny {arch}"
    ).path


def launch(run: Callable[..., Result], model: Path, out: Path, *extra: str) -> Result:
    return run(
        "deploy", "--gguf", str(model), "--target", "llama.cpp", "--context", "1024", "--concurrency", "2",
        "--out", str(out), "--launch", *extra,
    )  # fmt: skip


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict[str, Any], Path]]:
    """One launch per architecture (the JSON document and the bundle folder), shared by the tests."""
    if not SERVER:
        pytest.skip("VRAMPLAN_LLAMA_SERVER names no llama-server binary")
    from click.testing import CliRunner

    from vramplan import hardware
    from vramplan.cli import cli
    from vramplan.hardware import Machine

    out: dict[str, tuple[dict[str, Any], Path]] = {}
    mp = pytest.MonkeyPatch()
    # the plan is for host RAM, as on a CI runner without a GPU (the server here runs on the CPU)
    mp.setattr(hardware, "probe", lambda: Machine(gpus=(), host_memory_bytes=16 << 30, cpu_cores=2))
    tmp = tmp_path_factory.mktemp("loop")
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("VRAMPLAN_HOME", str(tmp / "home"))
    mp.setenv("TERM", "dumb")
    mp.setenv("COLUMNS", "100")
    try:
        for arch in ("qwen2", "deepseek2"):
            model = tiny(tmp, arch)
            folder = tmp / f"bundle-{arch}"
            args = ["deploy", "--gguf", str(model), "--target", "llama.cpp", "--context", "1024"]
            args += ["--concurrency", "2", "--out", str(folder), "--launch", "--json"]
            res = CliRunner().invoke(cli, args, catch_exceptions=False)
            assert res.exit_code == 0, res.output
            out[arch] = (json.loads(res.stdout), folder)
    finally:
        mp.undo()
    return out


@needs_server
@pytest.mark.parametrize("arch", ["qwen2", "deepseek2"])
def test_the_launched_server_allocates_what_was_planned(
    loop: dict[str, tuple[dict[str, Any], Path]], arch: str
) -> None:
    doc, folder = loop[arch]
    assert doc["launched"] is True and doc["target"] == "llama.cpp"
    v = doc["verified"]
    assert v["ok"] is True, v
    assert [p["part"] for p in v["parts"]] == ["weights", "KV cache", "compute buffer"]
    assert all(p["scope"].startswith("host") for p in v["parts"])
    # weights and KV cache exact to the log's rounding; the compute buffer within its 25 %
    assert [p["error"] for p in v["parts"][:2]] == [0, 0]
    assert abs(v["parts"][2]["error"]) <= 0.25
    # llama.cpp's own projection of the same total is there to compare with
    assert v["projected_bytes"] and v["measured_total_bytes"] and v["plan_total_bytes"]
    log = Path(v["log"])
    assert log.parent == folder and "llama_kv_cache" in log.read_text()


@needs_server
def test_the_server_it_started_is_stopped(loop: dict[str, tuple[dict[str, Any], Path]]) -> None:
    doc, _ = loop["qwen2"]
    text = Path(doc["verified"]["log"]).read_text()
    (port,) = re.findall(r"listening on http://127\.0\.0\.1:(\d+)", text)
    with socket.socket() as s:
        s.settimeout(2)
        assert s.connect_ex(("127.0.0.1", int(port))) != 0  # nothing listens there any more
    assert "cleaning up before exit" in text


@needs_server
def test_a_part_beyond_its_tolerance_fails_the_launch(
    loop: dict[str, tuple[dict[str, Any], Path]], tmp_path: Path
) -> None:
    """The same comparison on the real log with its KV buffer doubled: a miss, so `deploy` would exit 1."""
    from vramplan import hardware
    from vramplan.catalog import load_catalog
    from vramplan.deploy import prepare
    from vramplan.deploy.verify import verify_llama_log
    from vramplan.request import Choices

    doc, folder = loop["qwen2"]
    text = Path(doc["verified"]["log"]).read_text()
    kv = re.search(r"llama_kv_cache:\s+CPU KV buffer size =\s+([\d.]+) MiB", text)
    assert kv is not None
    changed = text.replace(kv.group(0), kv.group(0).replace(kv.group(1), f"{2 * float(kv.group(1)):.2f}"))
    log = tmp_path / "changed.log"
    log.write_text(changed)
    model = next(folder.parent.glob("tiny-qwen2.gguf"))
    choices = Choices(model=None, gguf=str(model), context=1024, concurrency=2)
    machine = hardware.Machine(gpus=(), host_memory_bytes=16 << 30, cpu_cores=2)
    bundle = prepare(load_catalog(), choices, machine, "llama.cpp", out=folder)
    v = verify_llama_log(bundle, log)
    assert not v.ok and [p.part for p in v.misses] == ["KV cache"]
    assert v.misses[0].error == pytest.approx(-0.5, abs=0.01)


@needs_server
def test_no_verify_starts_asks_and_stops(run: Callable[..., Result], tmp_path: Path) -> None:
    res = launch(run, tiny(tmp_path, "qwen2"), tmp_path / "b", "--no-verify", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["launched"] is True and "verified" not in doc


# --------------------------------------------------------------------------- without a server


def test_without_llama_server_or_docker_the_launch_says_what_to_install(
    run: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VRAMPLAN_LLAMA_SERVER", raising=False)
    monkeypatch.setattr(tools, "which", lambda name: None)
    res = launch(run, tiny(tmp_path, "qwen2"), tmp_path / "b")
    assert res.exit_code == 1
    assert (
        res.output.strip()
        .splitlines()[-1]
        .startswith(
            "Error: neither llama-server nor docker is on PATH: build llama.cpp (b11312 or later) and set "
            "VRAMPLAN_LLAMA_SERVER to its llama-server"
        )
    )


def test_a_server_that_exits_early_is_one_line_with_its_log(
    run: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 'llama-server' that fails at once (here: `false`) ends the launch with exit 1, not a hang."""
    monkeypatch.setenv("VRAMPLAN_LLAMA_SERVER", "false")
    res = launch(run, tiny(tmp_path, "qwen2"), tmp_path / "b")
    assert res.exit_code == 1
    assert "Error: llama-server exited with status 1 before it was ready" in res.output


def test_the_launch_waits_longer_for_bigger_models() -> None:
    class Est:
        weights_bytes = 100 << 30

    class Plan:
        estimate = Est()

    assert llamacpp.load_timeout_s(Plan()) == 60 + 2 * 400  # type: ignore[arg-type]
