"""Golden files: every file `vramplan deploy` writes for the reference plans, byte for byte.

The reference plans (issue 4): the 1.5B distill on one small GPU (an L4), the 32B distill on two
H100s (tensor parallel 2), the 671B FP8 on one node of 8 H200 (and its Ollama and llama.cpp Q4_K_M
builds there at a 32k context, since they run GGUF only: llama.cpp's UD-Q2_K_XL, the largest the catalog
has a Hugging Face repo for), and the 671B on 2 nodes of 8 H100 (vLLM,
SGLang and Kubernetes only: Ollama and llama.cpp plans are for one node). Issue 12 adds SGLang and
llama.cpp bundles of each, and the 671B on one RTX 4090 with its experts in 192 GiB of host RAM, as
`vramplan recommend --gpu rtx-4090:2 --host-memory 192` prints it, and Kubernetes bundles of SGLang
(the 8xH200 Deployment, the 2x8xH100 LeaderWorkerSet) and llama.cpp (the 32B distill, the 671B with its
experts in host RAM).

After a deliberate change to a template or a plan rule, regenerate the files and review the diff:

    VRAMPLAN_UPDATE_GOLDEN=1 pytest tests/test_deploy_golden.py
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from vramplan.deploy.writer import BUNDLE_RECORD

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("VRAMPLAN_UPDATE_GOLDEN", "") not in ("", "0")

# case -> (model, options shared by the targets)
PLANS: dict[str, tuple[str, list[str]]] = {
    "r1-1.5b-l4": ("deepseek-r1-distill-qwen-1.5b", ["--gpu", "l4"]),
    "r1-32b-2xh100": ("deepseek-r1-distill-qwen-32b", ["--gpu", "h100-80gb:2"]),
    "r1-671b-8xh200": ("deepseek-r1", ["--gpu", "h200:8"]),
    "r1-671b-2x8xh100": ("deepseek-r1", ["--gpu", "h100-80gb:8", "--nodes", "2"]),
    "r1-671b-2xrtx4090-host192": (
        "deepseek-r1",
        ["--quant", "UD-IQ1_M", "--gpu", "rtx-4090:2", "--host-memory", "192GiB", "--n-cpu-moe", "59"],
    ),
}
# bundle name -> deploy options beyond the plan's
TARGETS: dict[str, list[str]] = {
    "ollama": ["--target", "ollama"],
    "vllm": ["--target", "vllm"],
    "k8s": ["--target", "k8s"],
    "k8s-ollama": ["--target", "k8s", "--runtime", "ollama"],
    "sglang": ["--target", "sglang"],
    "llama.cpp": ["--target", "llama.cpp"],
    "k8s-sglang": ["--target", "k8s", "--runtime", "sglang"],
    "k8s-llama.cpp": ["--target", "k8s", "--runtime", "llama.cpp"],
}
# (case, bundle, extra options)
BUNDLES: list[tuple[str, str, list[str]]] = [
    ("r1-1.5b-l4", "ollama", []),
    ("r1-1.5b-l4", "vllm", []),
    ("r1-1.5b-l4", "k8s", []),
    ("r1-1.5b-l4", "k8s-ollama", []),
    ("r1-32b-2xh100", "ollama", []),
    ("r1-32b-2xh100", "vllm", []),
    ("r1-32b-2xh100", "k8s", []),
    ("r1-671b-8xh200", "ollama", ["--context", "32768"]),
    ("r1-671b-8xh200", "vllm", []),
    ("r1-671b-8xh200", "k8s", []),
    ("r1-671b-2x8xh100", "vllm", []),
    ("r1-671b-2x8xh100", "k8s", []),
]
# the SGLang and llama.cpp bundles (issue 12; tests/test_deploy_runtime_targets.py checks their numbers)
RUNTIME_BUNDLES: list[tuple[str, str, list[str]]] = [
    ("r1-1.5b-l4", "sglang", []),
    ("r1-1.5b-l4", "llama.cpp", []),
    ("r1-32b-2xh100", "sglang", []),
    ("r1-32b-2xh100", "llama.cpp", []),
    ("r1-671b-8xh200", "sglang", []),
    ("r1-671b-8xh200", "llama.cpp", ["--quant", "UD-Q2_K_XL", "--context", "32768"]),
    ("r1-671b-2x8xh100", "sglang", []),
    ("r1-671b-2xrtx4090-host192", "llama.cpp", ["--context", "4096"]),
]


def deploy_args(case: str, bundle: str, extra: list[str], out: Path) -> list[str]:
    model, opts = PLANS[case]
    return ["deploy", model, *TARGETS[bundle], *opts, *extra, "--out", str(out)]


def render_bundle(run: Callable[..., Result], case: str, bundle: str, extra: list[str], out: Path) -> Path:
    res = run(*deploy_args(case, bundle, extra, out))
    assert res.exit_code == 0, res.output
    return out


# Kubernetes bundles of SGLang (a Deployment; a LeaderWorkerSet across nodes) and llama.cpp (a Deployment)
# (tests/test_deploy_k8s_runtimes.py checks them)
K8S_RUNTIME_BUNDLES: list[tuple[str, str, list[str]]] = [
    ("r1-671b-8xh200", "k8s-sglang", []),
    ("r1-671b-2x8xh100", "k8s-sglang", []),
    ("r1-32b-2xh100", "k8s-llama.cpp", []),
    ("r1-671b-2xrtx4090-host192", "k8s-llama.cpp", ["--context", "4096"]),
]


ALL_BUNDLES = BUNDLES + RUNTIME_BUNDLES + K8S_RUNTIME_BUNDLES


@pytest.mark.parametrize(
    ("case", "bundle", "extra"), ALL_BUNDLES, ids=[f"{c}-{b}" for c, b, _ in ALL_BUNDLES]
)
def test_golden(run: Callable[..., Result], tmp_path: Path, case: str, bundle: str, extra: list[str]) -> None:
    out = render_bundle(run, case, bundle, extra, tmp_path / "bundle")
    golden = GOLDEN / case / bundle
    # the bundle record (tests/test_deploy_bundle.py) holds the version and every file's hash: not golden
    written = sorted(p.name for p in out.iterdir() if p.name != BUNDLE_RECORD)
    if UPDATE:
        golden.mkdir(parents=True, exist_ok=True)
        for old in golden.iterdir():
            old.unlink()
        for name in written:
            (golden / name).write_text((out / name).read_text(encoding="utf-8"), encoding="utf-8")
    expected = sorted(p.name for p in golden.iterdir()) if golden.is_dir() else []
    assert written == expected, f"{golden}: files differ (regenerate with VRAMPLAN_UPDATE_GOLDEN=1)"
    for name in written:
        got = (out / name).read_text(encoding="utf-8")
        want = (golden / name).read_text(encoding="utf-8")
        assert got == want, f"{golden / name} differs (regenerate with VRAMPLAN_UPDATE_GOLDEN=1)"


def test_every_golden_folder_is_a_case() -> None:
    """No stale golden bundles: each folder under tests/golden/ belongs to a case above."""
    known = {f"{c}/{b}" for c, b, _ in ALL_BUNDLES}
    found = {f"{p.parent.name}/{p.name}" for p in GOLDEN.glob("*/*") if p.is_dir()}
    assert found == known


@pytest.mark.parametrize("target", ["vllm", "sglang"])
def test_worker_ranks_read_as_words(run: Callable[..., Result], tmp_path: Path, target: str) -> None:
    """Before: "1..1 on the workers" for two nodes. Now one worker is "1 on the worker", more are a
    range in words."""
    for nodes, says in ((2, "1 on the worker"), (4, "1 to 3 on the workers")):
        out = tmp_path / f"{target}-{nodes}"
        res = run(
            "deploy", "deepseek-r1", "--target", target, "--quant", "fp8", "--gpu", "h100-80gb:8",
            "--nodes", str(nodes), "--context", "8192", "--out", str(out),
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        text = "".join(p.read_text() for p in sorted(out.iterdir()) if p.is_file())
        assert says in text and ".." not in text.replace("...", "")
