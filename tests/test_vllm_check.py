"""The first half of ci/vllm_check.py (no vLLM needed): it reads the command lines out of the files
`deploy` writes exactly as bash, Compose and Kubernetes would pass them, and writes config.json files
vLLM reads as the catalog's models."""

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
def vc() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vllm_check", ROOT / "ci" / "vllm_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["vllm_check"] = module
    spec.loader.exec_module(module)
    return module


def test_compose_interpolation(vc: ModuleType) -> None:
    env = {"HEAD_ADDR": "h", "EMPTY": ""}
    assert vc.compose_interpolate("${HEAD_ADDR:?set it}", env) == "h"
    assert vc.compose_interpolate("${MASTER_PORT:-29501}", env) == "29501"
    assert vc.compose_interpolate("${EMPTY:-x}/${EMPTY-y}", env) == "x/"
    assert vc.compose_interpolate("$$HOME $HEAD_ADDR", env) == "$HOME h"
    with pytest.raises(RuntimeError, match="NODE_RANK is required"):
        vc.compose_interpolate("${NODE_RANK:?set NODE_RANK}", env)


@pytest.mark.parametrize(
    ("target", "gpu", "nodes"),
    [("vllm", "h100-80gb:8", 2), ("k8s", "h100-80gb:8", 2), ("vllm", "h200:8", 1), ("k8s", "h200:8", 1)],
)
def test_every_file_yields_the_plans_flags(
    vc: ModuleType, tmp_path: Path, target: str, gpu: str, nodes: int
) -> None:
    catalog = load_catalog()
    choices = Choices(model="deepseek-r1", gpu=parse_gpu(gpu), nodes=nodes)
    bundle = prepare(catalog, choices, None, target, out=tmp_path / "b")
    write(bundle)
    (tmp_path / "bin").mkdir()
    vc._fake_vllm(tmp_path / "bin")
    lines = vc.vllm_lines(bundle.out, [f.name for f in bundle.files], nodes, tmp_path / "bin")
    # serve.sh and both Compose services, or the Deployment / the LWS leader and worker
    expected = {("vllm", 1): 2, ("vllm", 2): 4, ("k8s", 1): 1, ("k8s", 2): 2}[(target, nodes)]
    assert len(lines) == expected
    flags = bundle.plan.settings.engine_args  # type: ignore[attr-defined]
    for where, argv in lines:
        assert argv[:2] == ["serve", "deepseek-ai/DeepSeek-R1"], where
        start = argv.index(flags[0])
        assert argv[start : start + len(flags)] == flags, where
        if nodes > 1:
            rank = argv[argv.index("--node-rank") + 1]
            assert rank in ("0", "1") and ("--headless" in argv) == (rank == "1"), where
            assert argv[argv.index("--master-addr") + 1] == vc.HEAD, where


def test_config_json_of_each_checkpoint(vc: ModuleType) -> None:
    catalog = load_catalog()
    r1 = catalog.get("deepseek-r1")
    fp8 = vc.config_json(r1.architecture, vc._storage(r1.quant("fp8")), "bfloat16")
    assert fp8["architectures"] == ["DeepseekV3ForCausalLM"]
    assert fp8["quantization_config"]["weight_block_size"] == [128, 128]
    assert fp8["n_routed_experts"] == 256 and fp8["moe_intermediate_size"] == 2048
    small = catalog.get("deepseek-r1-distill-qwen-1.5b")
    bf16 = vc.config_json(small.architecture, vc._storage(small.quant("bf16")), "bfloat16")
    assert "quantization_config" not in bf16 and bf16["intermediate_size"] == 8960
    assert bf16["model_type"] == "qwen2" and bf16["torch_dtype"] == "bfloat16"
    gptq = vc.config_json(small.architecture, vc._storage(small.quant("gptq-int4")), "bfloat16")
    assert gptq["quantization_config"]["quant_method"] == "compressed-tensors"
