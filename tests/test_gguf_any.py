"""Any file type llama-quantize makes can be planned for any catalog model (issue 9, item 5): the catalog
keeps saying which GGUFs are published; one it does not list is synthesised from the file type and sized
by llama-quantize's per-tensor rules (vramplan/quantmix.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace

import pytest
from click.testing import Result

from vramplan.catalog import PLANNABLE_GGUF_TYPES, Catalog, load_catalog, synthesised_gguf
from vramplan.errors import PlanError, UnknownModelError
from vramplan.estimate import Estimate, estimate
from vramplan.request import Choices, build_request
from vramplan.runtimes import Runtime

Run = Callable[..., Result]
GB = 10**9

# What llama-quantize makes from a file type (tools/quantize/quantize.cpp QUANT_OPTIONS), less the types
# of newer releases vramplan does not size yet (MXFP4_MOE, NVFP4, Q1_0, Q2_0).
LLAMA_QUANTIZE_TYPES = (
    "Q2_K", "Q2_K_S", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_0", "Q4_1", "Q4_K_S", "Q4_K_M", "Q5_0", "Q5_1",
    "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0", "F16", "BF16", "F32", "IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS",
    "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M", "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0",
)  # fmt: skip


def plan(catalog: Catalog, model: str, quant: str, runtime: Runtime | None = None) -> Estimate:
    return estimate(build_request(catalog, Choices(model, quant=quant, runtime=runtime, context=4096), None))


def weights(catalog: Catalog, model: str, ftype: str) -> int:
    """Weight bytes of the synthesised GGUF (never a published entry's size)."""
    req = build_request(catalog, Choices(model, quant="q8_0", runtime=Runtime.LLAMA_CPP, context=4096), None)
    return estimate(replace(req, quant=synthesised_gguf(catalog.get(model), ftype))).weights_bytes


def test_every_llama_quantize_type_is_plannable() -> None:
    assert set(LLAMA_QUANTIZE_TYPES) <= set(PLANNABLE_GGUF_TYPES)


VARIANTS = [v.id for v in load_catalog().variants]


@pytest.mark.parametrize("model", VARIANTS)
def test_every_type_on_every_variant_estimates(catalog: Catalog, model: str) -> None:
    for ftype in PLANNABLE_GGUF_TYPES:
        est = plan(catalog, model, ftype.lower(), Runtime.LLAMA_CPP)
        assert est.runtime == "llama.cpp"
        assert est.weights_bytes > 0
        ollama = plan(catalog, model, ftype, Runtime.OLLAMA)
        assert ollama.weights_bytes > 0


# Within a variant, more bits per weight is more bytes: the K-quant ladder, the legacy types, the IQ types.
LADDERS = [
    ("Q2_K_S", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0", "F16"),
    ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "BF16", "F32"),
    ("IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M", "IQ4_XS"),
    ("TQ1_0", "TQ2_0", "Q4_K_M"),
]  # fmt: skip


@pytest.mark.parametrize("model", VARIANTS)
def test_weights_grow_with_bits_per_weight(catalog: Catalog, model: str) -> None:
    for ladder in LADDERS:
        sizes = [weights(catalog, model, ft) for ft in ladder]
        assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes), dict(zip(ladder, sizes, strict=True))
    assert weights(catalog, model, "F16") == weights(catalog, model, "BF16")


# Published GGUF files of the distills that the catalog does not list, made with llama-quantize's standard
# mixes (GB as the Hugging Face file listings show them, 3 significant digits). The files also hold
# their metadata (the tokenizer, a few MB); the weights must come within 1 %.
UNSLOTH_7B = "https://huggingface.co/unsloth/DeepSeek-R1-Distill-Qwen-7B-GGUF/tree/main"
BARTOWSKI_7B = "https://huggingface.co/bartowski/DeepSeek-R1-Distill-Qwen-7B-GGUF"
SECOND_STATE_7B = "https://huggingface.co/second-state/DeepSeek-R1-Distill-Qwen-7B-GGUF"
PUBLISHED = [
    ("deepseek-r1-distill-qwen-7b", "Q5_K_M", 5.44, UNSLOTH_7B),
    ("deepseek-r1-distill-qwen-7b", "Q2_K", 3.02, UNSLOTH_7B),
    ("deepseek-r1-distill-qwen-7b", "Q3_K_M", 3.81, UNSLOTH_7B),
    ("deepseek-r1-distill-qwen-7b", "Q4_K_M", 4.68, UNSLOTH_7B),
    ("deepseek-r1-distill-qwen-7b", "Q6_K", 6.25, UNSLOTH_7B),
    ("deepseek-r1-distill-qwen-7b", "F16", 15.2, UNSLOTH_7B),
    ("deepseek-r1-distill-qwen-7b", "Q5_K_S", 5.32, f"{BARTOWSKI_7B}/blob/main/DeepSeek-R1-Distill-Qwen-7B-Q5_K_S.gguf"),
    ("deepseek-r1-distill-qwen-7b", "IQ2_M", 2.78, f"{BARTOWSKI_7B}/blob/7b5d49999e251452759f0643dc0a542b28ff2cc7/DeepSeek-R1-Distill-Qwen-7B-IQ2_M.gguf"),
    ("deepseek-r1-distill-qwen-7b", "IQ3_M", 3.57, "https://huggingface.co/mmnga/DeepSeek-R1-Distill-Qwen-7B-gguf/tree/64f0cc6f8adcf842c14da655d58e2bff58579071/IQ3_M"),
    ("deepseek-r1-distill-qwen-7b", "Q3_K_S", 3.49, SECOND_STATE_7B),
    ("deepseek-r1-distill-qwen-7b", "Q3_K_L", 4.09, SECOND_STATE_7B),
    ("deepseek-r1-distill-qwen-7b", "Q4_0", 4.43, SECOND_STATE_7B),
    ("deepseek-r1-distill-qwen-14b", "Q5_K_M", 10.5, "https://huggingface.co/bartowski/DeepSeek-R1-Distill-Qwen-14B-GGUF/blob/16786c6880be7140dfba74341303b51aaadbc325/DeepSeek-R1-Distill-Qwen-14B-Q5_K_M.gguf"),
]  # fmt: skip


@pytest.mark.parametrize(("model", "ftype", "gb", "source"), PUBLISHED)
def test_synthesised_weights_match_published_files(
    catalog: Catalog, model: str, ftype: str, gb: float, source: str
) -> None:
    assert weights(catalog, model, ftype) == pytest.approx(gb * GB, rel=0.01), source


def test_q5_k_m_distill_exact_bytes(catalog: Catalog) -> None:
    """The Q5_K_M 7B distill, tensor by tensor: 28 layers, 3584 wide, 18944 FFN, 4 KV heads of 128.
    Q5_K_M gives attn_v and ffn_down Q6_K in the use_more_bits layers (14 of 28), Q5_K elsewhere; the
    output Q6_K; norms and biases F32 (llama-quant.cpp `llama_tensor_get_type_impl`)."""
    h, ffn, kv, vocab, n = 3584, 18944, 512, 152064, 28
    q5k, q6k = 176 / 256, 210 / 256  # bytes per weight (ggml-common.h block sizes)
    more = sum(1 for i in range(n) if i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2)
    layer_f32 = 4 * (h + h + h + kv + kv)  # two norms, q / k / v biases
    layer = (h * h + h * kv + h * h + 2 * h * ffn) * q5k + layer_f32
    expected = n * layer + more * (h * kv + h * ffn) * q6k + (n - more) * (h * kv + h * ffn) * q5k
    expected += vocab * h * q5k + vocab * h * q6k + 4 * h  # token_embd Q5_K, output Q6_K, output_norm
    assert more == 14
    assert weights(catalog, "deepseek-r1-distill-qwen-7b", "Q5_K_M") == int(expected)


def test_a_synthesised_quant_says_so_once(catalog: Catalog) -> None:
    est = plan(catalog, "deepseek-r1-distill-qwen-7b", "Q5_K_M")
    note = (
        "no published Q5_K_M GGUF of deepseek-r1-distill-qwen-7b in the catalog: sized by llama-quantize's "
        "rules; make it with llama-quantize from the f16/bf16 GGUF"
    )
    assert est.quant == "Q5_K_M" and est.runtime == "llama.cpp"
    assert [n for n in est.notes if "published" in n] == [note]
    q = catalog.get("r1-7b").plan_quant("q5_k_m")
    assert q.repo is None and q.ollama_tags == () and q.size is None


def test_imatrix_types_and_conversions_say_how_they_are_made(catalog: Catalog) -> None:
    iq = plan(catalog, "deepseek-r1-distill-llama-8b", "iq2_xxs").notes
    assert any(n.endswith("from the f16/bf16 GGUF and an --imatrix") for n in iq)
    bf16 = plan(catalog, "deepseek-r1", "bf16", Runtime.LLAMA_CPP)
    assert bf16.quant == "BF16"
    assert any(n.endswith("convert it with convert_hf_to_gguf.py --outtype bf16") for n in bf16.notes)


def test_the_671b_synthesised_gguf_has_the_mla_layout(catalog: Catalog) -> None:
    est = plan(catalog, "deepseek-r1", "iq2_xxs")
    assert est.quant == "IQ2_XXS"
    assert est.kv_layout == "mla-latent"
    assert any("(the MLA layout current converters write)" in n for n in est.notes)
    # the published UD-IQ2_XXS is unsloth's dynamic mix of the same type, pre-MLA, sized from its shards
    ud = plan(catalog, "deepseek-r1", "UD-IQ2_XXS")
    assert ud.kv_layout == "mha" and not any("no published" in n for n in ud.notes)
    assert ollama_ok(catalog)


def ollama_ok(catalog: Catalog) -> bool:
    est = plan(catalog, "deepseek-r1", "Q3_K_M", Runtime.OLLAMA)
    return est.runtime == "ollama" and est.kv_layout == "mla-latent"


def test_published_quants_keep_their_repo_size_and_tag(catalog: Catalog) -> None:
    v = catalog.get("deepseek-r1-distill-qwen-7b")
    for name in ("Q4_K_M", "q8_0", "F16"):
        q = v.plan_quant(name)
        assert q is v.quant(name) and q.ollama_tags and q.size is not None and not q.plan_note
    assert v.plan_quant("bf16").format.value == "bf16"  # the safetensors, unless a GGUF runtime is named
    assert v.plan_quant("bf16", Runtime.VLLM).format.value == "bf16"
    assert v.plan_quant("bf16", Runtime.LLAMA_CPP).name == "BF16"
    assert v.plan_quant("q8_0", Runtime.OLLAMA) is v.quant("q8_0")
    est = plan(catalog, "deepseek-r1-distill-qwen-7b", "q4_k_m")
    assert est.quant == "q4_K_M" and not any("no published" in n for n in est.notes)


def test_gguf_stays_off_vllm(catalog: Catalog) -> None:
    with pytest.raises(PlanError) as err:
        plan(catalog, "deepseek-r1-distill-qwen-7b", "Q5_K_M", Runtime.VLLM)
    assert str(err.value) == (
        "vllm cannot load deepseek-r1-distill-qwen-7b Q5_K_M (gguf); that quantization runs on: llama.cpp, ollama"
    )


def test_unknown_type_fails_with_the_valid_ones(run: Run) -> None:
    res = run("estimate", "r1-7b", "--quant", "Q5_K_X")
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        "Error: deepseek-r1-distill-qwen-7b has no quantization 'Q5_K_X' (published: bf16, fp8, gptq-int4, "
        "q4_K_M, q8_0, f16; or any llama-quantize type: F32, F16, BF16, Q4_0,"
    )
    assert lines[0].endswith("TQ1_0, TQ2_0); did you mean Q5_K_S, Q5_K_M?")


def test_cli_plans_a_q5_k_m_distill(run: Run) -> None:
    res = run("estimate", "deepseek-r1-distill-qwen-7b", "--quant", "Q5_K_M", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["quant"] == "Q5_K_M" and data["runtime"] == "llama.cpp"
    assert data["notes"][0].startswith("no published Q5_K_M GGUF of deepseek-r1-distill-qwen-7b")


def test_catalog_show_lists_published_quants_and_one_line_for_the_rest(run: Run, catalog: Catalog) -> None:
    res = run("catalog", "show", "r1-7b")
    assert res.exit_code == 0
    assert "Q5_K_M" in res.output and res.output.count("any llama-quantize type can be planned") == 1
    data = json.loads(run("catalog", "show", "r1-7b", "--json").output)
    assert [q["name"] for q in data["quants"]] == [q.name for q in catalog.get("r1-7b").quants]


def test_recommend_enumerates_only_published_quants(run: Run, catalog: Catalog) -> None:
    res = run("recommend", "--gpu", "rtx-4090", "--top", "50", "--json")
    assert res.exit_code == 0, res.output
    published = {(v.id, q.name) for v in catalog.variants for q in v.quants}
    cands = json.loads(res.output)["candidates"]
    assert cands and all((c["model"], c["quant"]) in published for c in cands)


def test_synthesising_an_unknown_type_is_refused(catalog: Catalog) -> None:
    with pytest.raises(UnknownModelError):
        synthesised_gguf(catalog.get("r1-7b"), "Q7_K")
