"""The catalog: every variant the issue names, strict validation, and name resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from vramplan.catalog import Catalog, builtin_catalog_path, load_catalog, parse_catalog
from vramplan.errors import CatalogError, UnknownModelError
from vramplan.precision import WeightFormat
from vramplan.runtimes import Runtime

IDS = [
    "deepseek-r1",
    "deepseek-r1-zero",
    "deepseek-r1-0528",
    "deepseek-r1-distill-qwen-1.5b",
    "deepseek-r1-distill-qwen-7b",
    "deepseek-r1-distill-llama-8b",
    "deepseek-r1-distill-qwen-14b",
    "deepseek-r1-distill-qwen-32b",
    "deepseek-r1-distill-llama-70b",
    "deepseek-r1-0528-qwen3-8b",
]


def test_every_variant_is_there(catalog: Catalog) -> None:
    assert sorted(v.id for v in catalog.variants) == sorted(IDS)
    for v in catalog.variants:
        assert v.hf_repo.lower() == "deepseek-ai/" + v.id
        assert v.quality and v.quality_source
        assert v.architecture_source.startswith("https://huggingface.co/deepseek-ai/")


def test_distills_carry_the_required_quants(catalog: Catalog) -> None:
    for v in catalog.variants:
        if v.family != "distill":
            continue
        formats = {q.format for q in v.quants}
        assert {WeightFormat.BF16, WeightFormat.FP8} <= formats
        assert formats & {WeightFormat.AWQ_INT4, WeightFormat.GPTQ_INT4}
        gguf = {q.scheme.gguf_ftype for q in v.quants if q.is_gguf and q.ollama_tags}
        assert gguf == {"Q4_K_M", "Q8_0", "F16"}


def test_671b_carries_the_required_quants(catalog: Catalog) -> None:
    r1 = catalog.get("deepseek-r1")
    names = {q.name for q in r1.quants}
    assert {"fp8", "bf16", "awq-int4", "nvfp4", "q4_K_M", "q8_0"} <= names
    assert {"UD-IQ1_S", "UD-IQ1_M", "UD-IQ2_XXS", "UD-Q2_K_XL"} <= names
    assert r1.quant("fp8").requires == "fp8" and r1.quant("nvfp4").requires == "fp4"


@pytest.mark.parametrize(
    ("name", "model", "quant"),
    [
        ("deepseek-r1:7b", "deepseek-r1-distill-qwen-7b", "q4_K_M"),
        ("DeepSeek-R1:7B", "deepseek-r1-distill-qwen-7b", "q4_K_M"),
        ("deepseek-r1:70b-llama-distill-q8_0", "deepseek-r1-distill-llama-70b", "q8_0"),
        ("deepseek-r1:8b", "deepseek-r1-0528-qwen3-8b", "q4_K_M"),
        ("deepseek-r1", "deepseek-r1", None),
        ("deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", "deepseek-r1-distill-qwen-32b", None),
        ("hf.co/deepseek-ai/DeepSeek-R1-0528", "deepseek-r1-0528", None),
        ("r1-14b", "deepseek-r1-distill-qwen-14b", None),
        ("RedHatAI/DeepSeek-R1-Distill-Qwen-7B-FP8-dynamic", "deepseek-r1-distill-qwen-7b", "fp8"),
    ],
)
def test_names_resolve(catalog: Catalog, name: str, model: str, quant: str | None) -> None:
    r = catalog.resolve(name)
    assert r.variant.id == model
    assert (r.quant.name if r.quant else None) == quant


def test_unknown_model_suggests_close_names(catalog: Catalog) -> None:
    with pytest.raises(UnknownModelError) as err:
        catalog.resolve("deepseek-r1-distill-qwen-7")
    assert str(err.value).startswith(
        "unknown model 'deepseek-r1-distill-qwen-7'; did you mean deepseek-r1-distill-qwen-7b"
    )


def test_unknown_quant_lists_known(catalog: Catalog) -> None:
    with pytest.raises(UnknownModelError) as err:
        catalog.get("deepseek-r1-distill-qwen-7b").quant("q4_k_s")
    assert str(err.value) == (
        "deepseek-r1-distill-qwen-7b has no quantization 'q4_k_s' "
        "(known: bf16, fp8, gptq-int4, q4_K_M, q8_0, f16); did you mean q4_K_M?"
    )


def test_quant_names_match_case_insensitively(catalog: Catalog) -> None:
    assert catalog.get("r1-7b").quant("Q4_K_M").name == "q4_K_M"


MINIMAL = """
version: 1
architectures:
  tiny:
    source: https://example.org/config.json
    config: {model_type: llama, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2,
             num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 256, max_position_embeddings: 2048}
variants:
  - id: my-tiny
    name: My Tiny
    hf_repo: me/My-Tiny
    family: distill
    architecture: tiny
    default_quant: bf16
    quants:
      - {name: bf16, format: bf16, runtimes: [vllm]}
"""


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("hidden_size: 64", "hidden_sise: 64"),
            "cat.yaml: architectures.tiny.config.hidden_sise: unknown field (did you mean 'hidden_size'?)",
        ),
        (
            ("format: bf16", "format: bf17"),
            "cat.yaml: variants[0] (my-tiny).quants[0].format: 'bf17' is not one of bf16, fp16, fp8, awq-int4, gptq-int4, nvfp4, gguf",
        ),
        (
            ("runtimes: [vllm]", "runtimes: [tgi]"),
            "cat.yaml: variants[0] (my-tiny).quants[0].runtimes.0: 'tgi' is not one of vllm, sglang, llama.cpp, ollama",
        ),
        (
            ("architecture: tiny", "architecture: huge"),
            "cat.yaml: variants[0] (my-tiny).architecture: unknown architecture 'huge'",
        ),
        (
            ("default_quant: bf16", "default_quant: fp8"),
            "cat.yaml: variants[0] (my-tiny).default_quant: 'fp8' is not one of this variant's quantizations",
        ),
        (
            ("num_hidden_layers: 2", "num_hidden_layers: two"),
            "cat.yaml: architectures.tiny.config.num_hidden_layers: expected int, got 'two'",
        ),
        (
            ("num_key_value_heads: 2", "num_key_value_heads: 3"),
            "cat.yaml: architectures.tiny.config.num_key_value_heads: must divide num_attention_heads",
        ),
        (("    name: My Tiny\n", ""), "cat.yaml: variants[0].name: missing required field"),
        (("id: my-tiny", "id: My Tiny"), "cat.yaml: variants[0].id: ids are lower case without spaces"),
        (("variants:", "variants: {"), "cat.yaml: line 9: not valid YAML"),
    ],
)
def test_malformed_catalog_names_file_entry_and_field(edit: tuple[str, str], message: str) -> None:
    text = MINIMAL.replace(*edit)
    assert text != MINIMAL
    with pytest.raises(CatalogError) as err:
        parse_catalog(text, "cat.yaml")
    assert str(err.value).startswith(message)


def test_user_catalog_adds_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "mine.yaml"
    p.write_text(MINIMAL)
    cat = load_catalog([str(p)])
    assert cat.get("my-tiny").params > 0
    assert cat.get("deepseek-r1").id == "deepseek-r1"
    monkeypatch.setenv("VRAMPLAN_CATALOG", str(p))
    assert load_catalog().resolve("me/my-tiny").variant.id == "my-tiny"


def test_user_catalog_cannot_shadow_a_built_in_id_silently(tmp_path: Path) -> None:
    """An entry with a built-in id is an error, unless it says `override: true`: then it replaces the
    built-in entry (here the 7B, which becomes the tiny model)."""
    p = tmp_path / "shadow.yaml"
    p.write_text(MINIMAL.replace("id: my-tiny", "id: deepseek-r1-distill-qwen-7b"))
    with pytest.raises(CatalogError) as err:
        load_catalog([str(p)])
    assert str(err.value) == (
        f"{p}: variants[0] (deepseek-r1-distill-qwen-7b): 'deepseek-r1-distill-qwen-7b' is a model id of "
        "the catalog already; add `override: true` to replace that entry"
    )
    p = tmp_path / "override.yaml"  # another file: a catalog is read once per set of paths
    p.write_text(MINIMAL.replace("id: my-tiny", "id: deepseek-r1-distill-qwen-7b\n    override: true"))
    cat = load_catalog([str(p)])
    assert cat.get("deepseek-r1-distill-qwen-7b").name == "My Tiny"
    assert cat.get("deepseek-r1-distill-qwen-7b").override is True
    p = tmp_path / "bad-override.yaml"
    p.write_text(MINIMAL.replace("id: my-tiny", "id: my-tiny\n    override: yes please"))
    with pytest.raises(CatalogError, match=r"variants\[0\] \(my-tiny\)\.override: expected bool"):
        load_catalog([str(p)])


@pytest.mark.parametrize("version", ["99", "0", "'1'"])
def test_an_unsupported_catalog_version_says_so(version: str) -> None:
    """Before: `version: 99` with a catalog of another shape reported a missing field."""
    text = f"version: {version}\nmodels: []\n"
    with pytest.raises(CatalogError) as err:
        parse_catalog(text, "cat.yaml")
    shown = {"99": "99", "0": "0", "'1'": "'1'"}[version]
    assert str(err.value) == f"cat.yaml: unsupported catalog version {shown} (this vramplan reads version 1)"


def test_user_catalog_name_clash_is_an_error(tmp_path: Path) -> None:
    p = tmp_path / "clash.yaml"
    p.write_text(MINIMAL.replace("id: my-tiny", "id: my-tiny\n    aliases: [r1]"))
    with pytest.raises(CatalogError, match="name 'r1' is used by both deepseek-r1 and my-tiny"):
        load_catalog([str(p)])


def test_builtin_catalog_is_the_checkout_file() -> None:
    assert Path(builtin_catalog_path()).name == "model_catalog.yaml"


def test_every_quant_runtime_pair_is_consistent(catalog: Catalog) -> None:
    for v in catalog.variants:
        for q in v.quants:
            if q.is_gguf:
                assert set(q.runtimes) <= {Runtime.LLAMA_CPP, Runtime.OLLAMA}
            else:
                assert set(q.runtimes) <= {Runtime.VLLM, Runtime.SGLANG}
