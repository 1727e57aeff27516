"""The first half of ci/sglang_check.py (no SGLang needed): it reads the `python -m sglang.launch_server`
argument lists out of the files `deploy --target sglang` writes exactly as bash and Compose would pass
them. (The second half, SGLang's own parser, needs torch and runs in CI's vLLM venv: .ci/run.)"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from vramplan.catalog import load_catalog
from vramplan.deploy import prepare, write
from vramplan.hardware import parse_gpu
from vramplan.request import Choices

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sc() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sglang_check", ROOT / "ci" / "sglang_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["sglang_check"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("gpu", "nodes"), [("h200:8", 1), ("h100-80gb:8", 2)])
def test_every_file_yields_the_plans_flags(sc: ModuleType, tmp_path: Path, gpu: str, nodes: int) -> None:
    choices = Choices(model="deepseek-r1", gpu=parse_gpu(gpu), nodes=nodes)
    bundle = prepare(load_catalog(), choices, None, "sglang", out=tmp_path / "b", served_name="R1 'x' $y")
    write(bundle)
    (tmp_path / "bin").mkdir()
    sc._fake_python(tmp_path / "bin")
    lines = sc.sglang_lines(bundle.out, [f.name for f in bundle.files], nodes, tmp_path / "bin")
    # serve.sh and the Compose service, or serve.sh on the head and a worker and both Compose services
    assert len(lines) == (2 if nodes == 1 else 4)
    flags = bundle.plan.settings.server_args  # type: ignore[attr-defined]
    assert "R1 'x' $y" in flags
    for where, argv in lines:
        assert argv[:2] == ["--model-path", "deepseek-ai/DeepSeek-R1"], where
        start = argv.index(flags[0])
        assert argv[start : start + len(flags)] == flags, where
        if nodes > 1:
            assert argv[argv.index("--nnodes") + 1] == "2", where
            assert argv[argv.index("--node-rank") + 1] in ("0", "1"), where
            assert argv[argv.index("--dist-init-addr") + 1] == f"{sc.HEAD}:20000", where
        else:
            assert "--nnodes" not in argv, where
    if nodes > 1:
        assert {a[a.index("--node-rank") + 1] for _, a in lines} == {"0", "1"}


def test_the_plans_cover_every_target_running_sglang(sc: ModuleType) -> None:
    todo = sc.plans(load_catalog())
    targets = {opt["target"] for _, opt in todo}
    assert targets == set(sc.sglang_targets()) and "sglang" in targets
    assert any(opt.get("try_multi") for _, opt in todo)
    assert {opt.get("kv") for _, opt in todo} >= {"bf16", "fp8"}


@pytest.mark.parametrize(("gpu", "nodes"), [("h200:8", 1), ("h100-80gb:8", 2)])
def test_k8s_manifests_yield_the_plans_flags(sc: ModuleType, tmp_path: Path, gpu: str, nodes: int) -> None:
    """The k8s target runs several runtimes: asked for SGLang, its Deployment or LeaderWorkerSet holds
    the same server arguments as the SGLang target, with the LWS variables expanded per pod."""
    from vramplan.runtimes import Runtime

    choices = Choices(model="deepseek-r1", gpu=parse_gpu(gpu), nodes=nodes, runtime=Runtime.SGLANG)
    bundle = prepare(load_catalog(), choices, None, "k8s", out=tmp_path / "b")
    write(bundle)
    lines = sc.sglang_lines(bundle.out, [f.name for f in bundle.files], nodes, tmp_path)
    assert len(lines) == (1 if nodes == 1 else 2)  # the Deployment, or the LWS leader and its workers
    flags = bundle.plan.settings.server_args  # type: ignore[attr-defined]
    for where, argv in lines:
        assert argv[:2] == ["--model-path", "deepseek-ai/DeepSeek-R1"], where
        start = argv.index(flags[0])
        assert argv[start : start + len(flags)] == flags, where
    if nodes > 1:
        assert {a[a.index("--node-rank") + 1] for _, a in lines} == {"0", "1"}
