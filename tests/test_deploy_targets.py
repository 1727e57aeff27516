"""Deploy targets are one registry: the CLI's --target choices and recommend's deploy commands come from
it, every target names templates that exist, and an unknown target is an error, never a fallthrough to
another target's launch."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from vramplan.catalog import Catalog
from vramplan.deploy import Bundle
from vramplan.deploy.launch import launch
from vramplan.deploy.targets import TARGETS, deploy_targets, get_target
from vramplan.errors import PlanError
from vramplan.resources import data_path
from vramplan.runtimes import Runtime


def test_the_cli_offers_exactly_the_registry() -> None:
    from vramplan.cli.deploy_cmd import deploy

    option = next(p for p in deploy.params if p.name == "target")
    assert list(option.type.choices) == list(TARGETS)  # type: ignore[attr-defined]


def test_unknown_target_is_an_error() -> None:
    with pytest.raises(
        PlanError, match=r"unknown deploy target 'helm'; known: ollama, vllm, sglang, llama\.cpp, k8s"
    ):
        get_target("helm")


def test_a_plan_of_an_unknown_target_is_not_launched_by_another(tmp_path: Path) -> None:
    class Plan:
        target = "helm"

    bundle = Bundle(Plan(), tmp_path, ())  # type: ignore[arg-type]
    with pytest.raises(PlanError, match="unknown deploy target"):
        launch(bundle, Console(file=None))


@pytest.mark.parametrize("name", list(TARGETS))
def test_each_target_has_its_template_folder(name: str) -> None:
    assert (data_path("templates") / name).is_dir()


def test_runtimes_a_target_runs_by_itself_get_deploy_commands() -> None:
    assert dict(deploy_targets()) == {
        Runtime.OLLAMA: "ollama",
        Runtime.VLLM: "vllm",
        Runtime.SGLANG: "sglang",
        Runtime.LLAMA_CPP: "llama.cpp",
    }


def test_a_target_refuses_a_runtime_it_does_not_run() -> None:
    with pytest.raises(PlanError, match="--target vllm runs vllm; drop --runtime ollama"):
        get_target("vllm").runtime_for(Runtime.OLLAMA)
    with pytest.raises(PlanError, match=r"--target sglang runs sglang; drop --runtime llama\.cpp"):
        get_target("sglang").runtime_for(Runtime.LLAMA_CPP)
    assert get_target("k8s").runtime_for(Runtime.SGLANG) is Runtime.SGLANG
    assert get_target("k8s").runtime_for(None) is Runtime.VLLM


def test_an_ollama_tag_deploys_on_ollama_in_k8s(catalog: Catalog, tmp_path: Path) -> None:
    """`deploy deepseek-r1:7b --target k8s` runs Ollama, the runtime the tag names (as `estimate` plans
    it), not the target's default vLLM, which cannot load the tag's GGUF; a catalog id keeps vLLM."""
    from vramplan.deploy import prepare
    from vramplan.hardware import parse_gpu
    from vramplan.request import Choices

    gpu = parse_gpu("l40s")
    tag = prepare(catalog, Choices("deepseek-r1:7b", gpu=gpu), None, "k8s", out=tmp_path / "a")
    assert (tag.plan.runtime, tag.plan.quant) == (Runtime.OLLAMA, "q4_K_M")
    plain = prepare(catalog, Choices("r1-7b", gpu=gpu), None, "k8s", out=tmp_path / "b")
    assert plain.plan.runtime is Runtime.VLLM
    with pytest.raises(PlanError, match="vllm cannot load deepseek-r1-distill-qwen-7b q4_K_M"):
        prepare(
            catalog, Choices("deepseek-r1:7b", gpu=gpu, runtime=Runtime.VLLM), None, "k8s", out=tmp_path / "c"
        )
