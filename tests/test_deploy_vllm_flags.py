"""The vLLM flags `deploy` writes are ones vLLM 0.33.0 accepts for the model they name: a KV dtype in
the model's own dtype, tensor parallel sizes that divide every dimension vLLM splits, the checkpoint
the plan is for, and a served name vLLM reads as a value. (ci/vllm_check.py builds every distinct
command line through vLLM itself; these are the rules behind it, checked without vLLM.)"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from vramplan.catalog import Variant, load_catalog
from vramplan.estimate import Request, estimate
from vramplan.hardware import gpu_spec
from vramplan.runtimes import Runtime


def deploy(run: Callable[..., Result], out: Path, *args: str) -> Result:
    return run("deploy", *args, "--out", str(out))


def serve_args(out: Path) -> list[str]:
    """The `vllm serve` arguments of serve.sh, without the node arguments."""
    text = (out / "serve.sh").read_text()
    command = text[text.index("exec vllm serve") :].replace("\\\n", " ")
    return shlex.split(command.splitlines()[0])


def error_line(res: Result) -> str:
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1, res.stderr
    return lines[0]


# --------------------------------------------------------------------------- KV cache dtype


def test_fp16_kv_for_a_bf16_checkpoint_is_refused(run: Callable[..., Result], tmp_path: Path) -> None:
    # vLLM: 'kv_cache_dtype="float16" is incompatible with dtype="bfloat16"' (vllm/config/vllm.py)
    res = deploy(run, tmp_path, "r1-7b", "-t", "vllm", "--gpu", "h100-80gb", "--kv-cache-dtype", "fp16")
    assert error_line(res) == (
        "Error: vLLM keeps a 16-bit KV cache only in the model's dtype, and it runs "
        "deepseek-r1-distill-qwen-7b bf16 in bfloat16 here; use --kv-cache-dtype auto or bf16 "
        "(the same 2 bytes per value)"
    )


def test_bf16_kv_in_a_bf16_model_is_written(run: Callable[..., Result], tmp_path: Path) -> None:
    res = deploy(run, tmp_path, "r1-7b", "-t", "vllm", "--gpu", "h100-80gb", "--kv-cache-dtype", "bf16")
    assert res.exit_code == 0, res.stderr
    args = serve_args(tmp_path)
    assert args[args.index("--kv-cache-dtype") + 1] == "bfloat16"


def test_a_gpu_without_bf16_runs_the_model_in_fp16(run: Callable[..., Result], tmp_path: Path) -> None:
    # capability 7.5: vLLM falls back to float16 (vllm/platforms/cuda.py `supported_dtypes`)
    res = deploy(run, tmp_path / "a", "r1-1.5b", "-t", "vllm", "--gpu", "t4", "--kv-cache-dtype", "fp16")
    assert res.exit_code == 0, res.stderr
    args = serve_args(tmp_path / "a")
    assert args[args.index("--kv-cache-dtype") + 1] == "float16"
    res = deploy(run, tmp_path / "b", "r1-1.5b", "-t", "vllm", "--gpu", "t4", "--kv-cache-dtype", "bf16")
    assert "runs deepseek-r1-distill-qwen-1.5b bf16 in float16 here" in error_line(res)


# --------------------------------------------------------------------------- tensor parallel sizes


def test_the_1_5b_on_eight_gpus_gets_a_tp_that_divides_its_mlp(
    run: Callable[..., Result], tmp_path: Path
) -> None:
    # 12 heads allow TP 6, but 8960 (intermediate size) / 6 is not whole: vLLM's
    # MergedColumnParallelLinear stops at load
    res = deploy(run, tmp_path, "r1-1.5b", "-t", "vllm", "--gpu", "h200:8")
    assert res.exit_code == 0, res.stderr
    args = serve_args(tmp_path)
    assert args[args.index("--tensor-parallel-size") + 1] == "4"
    assert args[args.index("--data-parallel-size") + 1] == "2"


def test_int4_groups_stay_whole_on_each_rank(run: Callable[..., Result], tmp_path: Path) -> None:
    # 8960 / 4 = 2240 input rows of down_proj per rank, 17.5 groups of 128: Marlin and Triton W4A16
    # refuse the layer (marlin.py / triton_w4a16.py `can_implement`), so TP 2 with 2 replicas
    res = deploy(run, tmp_path, "r1-1.5b", "--quant", "gptq-int4", "-t", "vllm", "--gpu", "a100-80gb:4")
    assert res.exit_code == 0, res.stderr
    args = serve_args(tmp_path)
    assert args[args.index("--tensor-parallel-size") + 1] == "2"
    assert args[args.index("--data-parallel-size") + 1] == "2"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("r1-14b", "--quant", "gptq-int4", "--gpu", "a100-80gb:8", "--tp", "8"),
            "Error: tensor parallel size 8 does not divide the model's 13824 intermediate size into whole "
            "128-element quantization blocks; use one of 1, 2, 4",
        ),
        (
            ("r1-1.5b", "--gpu", "h200:8", "--tp", "6"),
            "Error: tensor parallel size 6 does not divide the model's 8960 intermediate size; use one of 1, 2, 4",
        ),
        (
            ("r1", "--gpu", "h200:8", "--nodes", "4", "--tp", "32"),
            "Error: tensor parallel size 32 does not divide the model's 18432 intermediate size into whole "
            "128-element quantization blocks; use one of 1, 2, 4, 8, 16",
        ),
    ],
)
def test_a_tp_vllm_cannot_split_is_refused(
    run: Callable[..., Result], tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    assert error_line(deploy(run, tmp_path, *args, "-t", "vllm")) == message


def _splits_whole(arch_tp: tuple[int, int, int, int, int | None], tp: int) -> bool:
    heads, kv, ff, vocab, moe_ff = arch_tp
    padded_vocab = -(-vocab // 64) * 64  # vocab_parallel_embedding.py pad_vocab_size
    kv_ok = kv % tp == 0 if tp <= kv else tp % kv == 0  # linear.py QKVParallelLinear
    return (
        heads % tp == 0
        and kv_ok
        and ff % tp == 0
        and padded_vocab % tp == 0
        and (moe_ff is None or moe_ff % tp == 0)
    )


CATALOG = load_catalog()
VLLM_VARIANTS = [v for v in CATALOG.variants if any(Runtime.VLLM in q.runtimes for q in v.quants)]


@pytest.mark.parametrize("variant", VLLM_VARIANTS, ids=lambda v: v.id)
@pytest.mark.parametrize("gpus", range(1, 9))
def test_every_default_tp_splits_every_dimension(variant: Variant, gpus: int) -> None:
    """For every catalog model and 1..8 GPUs, the TP vramplan picks divides what vLLM divides."""
    a = variant.architecture
    quant = next(q for q in variant.quants if Runtime.VLLM in q.runtimes)
    req = Request(variant, quant, Runtime.VLLM, context=4096, gpu=gpu_spec("h200"), gpus_per_node=gpus)
    tp = estimate(req).topology.tensor_parallel
    kv = 1 if a.is_mla else a.num_key_value_heads
    assert _splits_whole(
        (a.num_attention_heads, kv, a.intermediate_size, a.vocab_size, a.moe_intermediate_size), tp
    )


# --------------------------------------------------------------------------- checkpoints and names


def test_a_quant_without_a_checkpoint_is_not_served_from_another(
    run: Callable[..., Result], tmp_path: Path
) -> None:
    # deepseek-ai/DeepSeek-R1-0528 is the FP8 release; its bf16 is an upcast nobody publishes
    res = deploy(
        run, tmp_path, "deepseek-r1-0528", "--quant", "bf16", "-t", "vllm", "--gpu", "h200:8", "--nodes", "2"
    )
    assert error_line(res) == (
        "Error: deepseek-r1-0528 bf16 has no published checkpoint (upcast from the FP8 release with "
        "DeepSeek's inference/fp8_cast_bf16.py): vLLM would load deepseek-ai/DeepSeek-R1-0528, which is "
        "fp8. Convert it yourself and serve that directory, or deploy the published one with --quant fp8 "
        "(vramplan estimate deepseek-r1-0528 --quant fp8 --runtime vllm --gpu h200:8 --nodes 2 shows its plan)"
    )
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_the_k8s_target_refuses_it_too(run: Callable[..., Result], tmp_path: Path) -> None:
    res = deploy(
        run, tmp_path, "deepseek-r1-0528", "--quant", "bf16", "-t", "k8s", "--gpu", "h200:8", "--nodes", "2"
    )
    assert "has no published checkpoint" in error_line(res)


@pytest.mark.parametrize("target", ["vllm", "k8s"])
def test_a_served_name_that_looks_like_an_option_is_refused(
    run: Callable[..., Result], tmp_path: Path, target: str
) -> None:
    res = deploy(run, tmp_path, "r1-7b", "-t", target, "--gpu", "h100-80gb", "--served-name", "--port")
    assert (
        error_line(res) == "Error: --served-name '--port' starts with '-', which vLLM would read as an option"
    )
