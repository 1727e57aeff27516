"""A GGUF file -> the `Variant` and `Quant` the estimator takes, with the file's exact tensor bytes.

The hyperparameters are read under the keys llama.cpp reads them (`src/llama-model.cpp`
`load_hparams`, `src/models/deepseek2.cpp` `load_arch_hparams`; key names in `src/llama-arch.cpp`),
with llama.cpp's defaults where a key is optional:

| GGUF key (`ARCH.` prefix)          | Architecture field        | default when absent            |
|------------------------------------|---------------------------|--------------------------------|
| embedding_length                   | hidden_size               | required                       |
| feed_forward_length                | intermediate_size         | required                       |
| block_count - nextn_predict_layers | num_hidden_layers         | required (nextn: 0)            |
| attention.head_count               | num_attention_heads       | required                       |
| attention.head_count_kv            | num_key_value_heads       | head_count                     |
| attention.key_length               | head_dim                  | embedding_length / head_count  |
| context_length                     | max_position_embeddings   | required                       |
| (token_embd.weight ne1)            | vocab_size                | -                              |
| (no output.weight tensor)          | tie_word_embeddings       | -                              |
| (attn_q.bias / attn_q_norm tensor) | attention_bias / qk_norm  | -                              |

deepseek2 (DeepSeek-V2/V3/R1) adds: attention.q_lora_rank (0: none), attention.kv_lora_rank,
rope.dimension_count (qk_rope_head_dim), expert_count, expert_shared_count, expert_used_count,
expert_feed_forward_length, leading_dense_block_count, and the head sizes. An MLA GGUF (llama.cpp
PR 12801 and later) writes attention.key_length_mla / value_length_mla (the per-head sizes
qk_nope + qk_rope and v_head_dim) with head_count_kv 1, key_length kv_lora_rank + rope and
value_length kv_lora_rank; a GGUF converted before has no *_mla keys, head_count_kv = head_count,
key_length qk_nope + qk_rope and value_length v_head_dim. llama.cpp treats a file as MLA when both
*_mla keys are non-zero (`llama_hparams::is_mla`), and so does this module: that picks the KV layout.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from vramplan.arch import Architecture, Tensor, file_tensor, out_of_bounds
from vramplan.catalog import PublishedSize, Quant, Variant
from vramplan.errors import SourceError
from vramplan.precision import WeightFormat
from vramplan.quantmix import GGUF_FTYPES, Scheme
from vramplan.runtimes import Runtime
from vramplan.sources.gguf_reader import SPLIT_NAME, GGUFHeader, TensorInfo, read_model

SUPPORTED_ARCHES = ("llama", "qwen2", "qwen3", "deepseek2")

# llama.h `enum llama_ftype`: general.file_type -> the name llama-quantize gives it
FILE_TYPES: dict[int, str] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4_MOE",
    39: "NVFP4",
    40: "Q1_0",
    41: "Q2_0",
}


class _Keys:
    """Typed access to `ARCH.*` keys, with one-line errors naming the file and the key."""

    def __init__(self, header: GGUFHeader, arch: str) -> None:
        self.h, self.arch = header, arch

    def _fail(self, key: str, msg: str) -> SourceError:
        return SourceError(f"{self.h.path}: {self.arch}.{key}: {msg}")

    def int(self, key: str, default: int | None = None) -> int:
        value = self.h.metadata.get(f"{self.arch}.{key}")
        if value is None:
            if default is None:
                raise self._fail(key, "missing; the file lacks a key llama.cpp needs")
            return default
        if isinstance(value, list):  # per-layer arrays (llama.cpp get_key_or_arr): uniform ones only
            if not value or any(v != value[0] for v in value):
                raise self._fail(key, "differs between layers, which vramplan does not model")
            value = value[0]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self._fail(key, f"expected a non-negative integer, got {value!r}")
        return value


def _general(header: GGUFHeader, key: str) -> Any:
    return header.metadata.get(f"general.{key}")


def architecture(header: GGUFHeader, tensors: tuple[TensorInfo, ...]) -> tuple[Architecture, bool | None]:
    """The Architecture a GGUF header describes, and (deepseek2 only) whether it uses the MLA layout."""
    arch = _general(header, "architecture")
    if not isinstance(arch, str):
        raise SourceError(f"{header.path}: no general.architecture key; not a model GGUF")
    if arch not in SUPPORTED_ARCHES:
        raise SourceError(
            f"{header.path}: architecture {arch!r} is not supported; vramplan reads GGUFs of "
            f"{', '.join(SUPPORTED_ARCHES)}"
        )
    k = _Keys(header, arch)
    names = {t.name: t for t in tensors}
    embd = names.get("token_embd.weight")
    if embd is None or len(embd.shape) != 2:
        raise SourceError(f"{header.path}: no 2-D token_embd.weight tensor; not a complete {arch} model")
    hidden = k.int("embedding_length")
    heads = k.int("attention.head_count")
    if hidden == 0 or heads == 0:
        raise SourceError(f"{header.path}: {arch}.embedding_length and attention.head_count must be positive")
    nextn = k.int("nextn_predict_layers", 0)
    layers = k.int("block_count") - nextn
    if layers <= 0:
        raise SourceError(f"{header.path}: {arch}.block_count leaves no layers")
    common: dict[str, Any] = {
        "hidden_size": hidden,
        "intermediate_size": k.int("feed_forward_length"),
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "vocab_size": embd.shape[1],
        "max_position_embeddings": k.int("context_length"),
        "tie_word_embeddings": "output.weight" not in names,
        "num_nextn_predict_layers": nextn,
    }
    if arch != "deepseek2":
        kv_heads = k.int("attention.head_count_kv", heads)
        head_dim = k.int("attention.key_length", hidden // heads)
        if k.int("attention.value_length", hidden // heads) != head_dim:
            raise SourceError(
                f"{header.path}: {arch}.attention.value_length differs from key_length, "
                "which vramplan does not model for this architecture"
            )
        if kv_heads == 0 or heads % kv_heads:
            raise SourceError(
                f"{header.path}: {arch}.attention.head_count_kv {kv_heads} does not divide {heads}"
            )
        a = Architecture(
            model_type=arch,
            num_key_value_heads=kv_heads,
            head_dim=head_dim if head_dim * heads != hidden else None,
            attention_bias="blk.0.attn_q.bias" in names,
            qk_norm="blk.0.attn_q_norm.weight" in names,
            **common,
        )
        return a, None
    return _deepseek2(header, k, common)


def _deepseek2(header: GGUFHeader, k: _Keys, common: dict[str, Any]) -> tuple[Architecture, bool]:
    heads = common["num_attention_heads"]
    rope = k.int("rope.dimension_count")
    kv_lora = k.int("attention.kv_lora_rank")
    k_mla, v_mla = k.int("attention.key_length_mla", 0), k.int("attention.value_length_mla", 0)
    is_mla = k_mla != 0 and v_mla != 0  # llama_hparams::is_mla
    key_len = k.int("attention.key_length", common["hidden_size"] // heads)
    value_len = k.int("attention.value_length", common["hidden_size"] // heads)
    kv_heads = k.int("attention.head_count_kv", heads)
    if is_mla:
        qk_head, v_head = k_mla, v_mla
        # convert_hf_to_gguf.py writes the MLA cache as one latent "head": key = kv_lora_rank + rope
        if kv_heads != 1 or key_len != kv_lora + rope or value_len != kv_lora:
            raise SourceError(
                f"{header.path}: an MLA deepseek2 GGUF needs head_count_kv 1, key_length kv_lora_rank + "
                f"rope ({kv_lora + rope}) and value_length kv_lora_rank ({kv_lora}); it has {kv_heads}, "
                f"{key_len}, {value_len}"
            )
    else:
        qk_head, v_head = key_len, value_len
        if kv_heads != heads:
            raise SourceError(
                f"{header.path}: a deepseek2 GGUF without MLA keys caches every head, so head_count_kv "
                f"must equal head_count ({heads}); it is {kv_heads}"
            )
    if qk_head <= rope:
        raise SourceError(f"{header.path}: deepseek2 key length {qk_head} leaves no room for rope {rope}")
    experts = k.int("expert_count", 0)
    moe: dict[str, Any] = {}
    if experts:
        gating = header.metadata.get("deepseek2.expert_gating_func", 1)
        moe = {
            "n_routed_experts": experts,
            "n_shared_experts": k.int("expert_shared_count", 0) or None,
            "num_experts_per_tok": k.int("expert_used_count"),
            "moe_intermediate_size": k.int("expert_feed_forward_length"),
            "first_k_dense_replace": k.int("leading_dense_block_count", 0),
        }
        # llama.h LLAMA_EXPERT_GATING_FUNC_TYPE_SIGMOID = 2: DeepSeek-V3 / R1; softmax (1): V2
        model_type = "deepseek_v3" if gating == 2 else "deepseek_v2"
    else:
        model_type = "deepseek_v2"
    a = Architecture(
        model_type=model_type,
        num_key_value_heads=heads,  # as DeepSeek's config.json states it
        q_lora_rank=k.int("attention.q_lora_rank", 0) or None,
        kv_lora_rank=kv_lora,
        qk_nope_head_dim=qk_head - rope,
        qk_rope_head_dim=rope,
        v_head_dim=v_head,
        **moe,
        **common,
    )
    return a, is_mla


def quant_name(header: GGUFHeader, tensors: tuple[TensorInfo, ...]) -> str:
    """general.file_type as llama-quantize names it; without one, the type holding the most bytes."""
    ft = _general(header, "file_type")
    if isinstance(ft, int) and ft in FILE_TYPES:
        return FILE_TYPES[ft]
    by_type: Counter[str] = Counter()
    for t in tensors:
        by_type[t.ggml_type.name] += t.nbytes
    return by_type.most_common(1)[0][0]


def load_gguf(path: str | Path) -> tuple[Variant, Quant]:
    """The variant and quantization a GGUF file (or the first shard of a split one) holds."""
    header, tensors = read_model(path)
    if not tensors:
        raise SourceError(f"{header.path}: the GGUF holds no tensors")
    arch, is_mla = architecture(header, tensors)
    if (bad := out_of_bounds(arch)) is not None:
        raise SourceError(f"{header.path}: {bad}")
    table: list[tuple[Tensor, int]] = []
    skipped = 0
    for t in tensors:
        ft = file_tensor(t.name, t.shape)
        if ft.layer is not None and ft.layer >= arch.num_hidden_layers:
            # multi-token-prediction layers (blk.N.* past the trunk): llama.cpp skips them unless
            # asked to load them (src/models/deepseek2.cpp: mtp_flags |= TENSOR_SKIP without load_mtp)
            skipped += t.nbytes
            continue
        table.append((ft, t.nbytes))
    total = sum(b for _, b in table)
    qname = quant_name(header, tensors)
    p = Path(path)
    split = SPLIT_NAME.match(p.name)
    stem = (
        split["prefix"] if split else p.name[: -len(".gguf")] if p.name.lower().endswith(".gguf") else p.name
    )
    notes = f"read from the GGUF header of {p.name}"
    if skipped:
        notes += f"; {skipped} bytes of multi-token-prediction layers are not loaded"
    quant = Quant(
        name=qname,
        format=WeightFormat.GGUF,
        runtimes=(Runtime.LLAMA_CPP, Runtime.OLLAMA),
        scheme=Scheme(WeightFormat.GGUF, qname if qname in GGUF_FTYPES else None),
        gguf_mla=is_mla,
        size=PublishedSize(total + skipped, 0, f"GGUF header of {p}", f"{total + skipped} bytes"),
        notes=notes,
        tensor_table=tuple(table),
    )
    name = _general(header, "name")
    variant = Variant(
        id=stem,
        name=name if isinstance(name, str) and name else stem,
        hf_repo="",
        family="gguf",
        architecture=arch,
        architecture_id=f"gguf:{arch.gguf_arch}",
        architecture_source=f"GGUF header of {p}",
        default_quant=qname,
        quants=(quant,),
        notes=notes,
    )
    return variant, quant
