"""Storage formats: how many bytes a tensor or a KV-cache row takes in each format.

Two families:
- GGML types (every type a GGUF file can hold). Block sizes and bytes per block are those of
  ggml-org/llama.cpp `ggml/src/ggml-common.h` (the `static_assert(sizeof(block_...))` lines) and
  `ggml/src/ggml.c` (`type_traits`); type ids are the `GGML_TYPE_*` values of `ggml/include/ggml.h`.
- Hugging Face checkpoint storages (bf16, fp8 with block or channel scales, AWQ / GPTQ int4, NVFP4),
  each with the tensors its format stores beside the weight (scales, zero points), as written by the
  tools named at each entry.

Everything here is integer arithmetic on element counts; nothing is rounded to a unit.
"""

from __future__ import annotations

import enum
import math
from typing import NamedTuple

from vramplan.errors import PlanError


# A NamedTuple, not a dataclass: as immutable and typed, and ten times cheaper to define at import
# (`vramplan estimate` imports this module on every start; see the note in vramplan/estimate.py).
class GGMLType(NamedTuple):
    """A ggml tensor type: its GGML_TYPE_* id and its block of elements and bytes."""

    name: str
    type_id: int
    block_size: int  # elements per block
    type_size: int  # bytes per block


# (name, GGML_TYPE_* id, elements per block, bytes per block) from ggml.h / ggml-common.h.
_GGML_TABLE: tuple[tuple[str, int, int, int], ...] = (
    ("F32", 0, 1, 4),
    ("F16", 1, 1, 2),
    ("Q4_0", 2, 32, 18),  # fp16 scale + 16 B of nibbles
    ("Q4_1", 3, 32, 20),
    ("Q5_0", 6, 32, 22),
    ("Q5_1", 7, 32, 24),
    ("Q8_0", 8, 32, 34),  # fp16 scale + 32 int8
    ("Q8_1", 9, 32, 36),
    ("Q2_K", 10, 256, 84),
    ("Q3_K", 11, 256, 110),
    ("Q4_K", 12, 256, 144),
    ("Q5_K", 13, 256, 176),
    ("Q6_K", 14, 256, 210),
    ("Q8_K", 15, 256, 292),
    ("IQ2_XXS", 16, 256, 66),
    ("IQ2_XS", 17, 256, 74),
    ("IQ3_XXS", 18, 256, 98),
    ("IQ1_S", 19, 256, 50),
    ("IQ4_NL", 20, 32, 18),
    ("IQ3_S", 21, 256, 110),
    ("IQ2_S", 22, 256, 82),
    ("IQ4_XS", 23, 256, 136),
    ("I8", 24, 1, 1),
    ("I16", 25, 1, 2),
    ("I32", 26, 1, 4),
    ("I64", 27, 1, 8),
    ("F64", 28, 1, 8),
    ("IQ1_M", 29, 256, 56),
    ("BF16", 30, 1, 2),
    ("TQ1_0", 34, 256, 54),
    ("TQ2_0", 35, 256, 66),
    ("MXFP4", 39, 32, 17),
    ("NVFP4", 40, 64, 36),
    ("Q1_0", 41, 128, 18),
    ("Q2_0", 42, 64, 18),
)

GGML_TYPES: dict[str, GGMLType] = {row[0]: GGMLType(*row) for row in _GGML_TABLE}
GGML_TYPES_BY_ID: dict[int, GGMLType] = {t.type_id: t for t in GGML_TYPES.values()}


def ggml_type(name: str) -> GGMLType:
    """The GGML type called `name` (any case: `q4_k`, `Q4_K`)."""
    try:
        return GGML_TYPES[name.upper()]
    except KeyError:
        valid = ", ".join(GGML_TYPES)
        raise PlanError(f"unknown GGML type {name!r}; known types: {valid}") from None


def ggml_row_bytes(gtype: GGMLType, n_elements: int) -> int:
    """Bytes of `n_elements` consecutive elements (one row) in `gtype`, as ggml_row_size computes it."""
    if n_elements % gtype.block_size:
        raise PlanError(
            f"a row of {n_elements} elements is not a whole number of {gtype.name} blocks "
            f"({gtype.block_size} elements each)"
        )
    return n_elements // gtype.block_size * gtype.type_size


def ggml_tensor_bytes(gtype: GGMLType, shape: tuple[int, ...]) -> int:
    """Bytes of a tensor of ggml shape (ne0, ne1, ...): whole rows of ne0 elements (ggml_nbytes)."""
    return ggml_row_bytes(gtype, shape[0]) * math.prod(shape[1:])


class KVDtype(str, enum.Enum):
    """The KV-cache element types a user can ask for (`--kv-cache-dtype`)."""

    AUTO = "auto"
    BF16 = "bf16"
    FP16 = "fp16"
    FP8 = "fp8"
    Q8_0 = "q8_0"
    Q4_0 = "q4_0"


def kv_row_bytes(dtype: KVDtype, n_elements: int) -> int:
    """Bytes of one KV row of `n_elements` in `dtype` (AUTO must be resolved by the runtime first).

    bf16/fp16: 2 B; fp8 (e4m3, vLLM/SGLang `--kv-cache-dtype fp8`): 1 B; q8_0/q4_0 are the ggml block
    types of llama.cpp's `--cache-type-k/-v` (34 B and 18 B per 32 elements).
    """
    if dtype in (KVDtype.BF16, KVDtype.FP16):
        return 2 * n_elements
    if dtype is KVDtype.FP8:
        return n_elements
    if dtype is KVDtype.Q8_0:
        return ggml_row_bytes(GGML_TYPES["Q8_0"], n_elements)
    if dtype is KVDtype.Q4_0:
        return ggml_row_bytes(GGML_TYPES["Q4_0"], n_elements)
    raise PlanError("the KV-cache dtype 'auto' must be resolved by a runtime before sizing")


class WeightFormat(str, enum.Enum):
    """Checkpoint formats a catalog quantization can be stored in."""

    BF16 = "bf16"
    FP16 = "fp16"
    FP8 = "fp8"
    AWQ_INT4 = "awq-int4"
    GPTQ_INT4 = "gptq-int4"
    NVFP4 = "nvfp4"
    GGUF = "gguf"


class Storage(str, enum.Enum):
    """How one Hugging Face checkpoint tensor is stored (weight plus its side tensors)."""

    F32 = "f32"
    BF16 = "bf16"
    FP16 = "fp16"
    # DeepSeek-V3/R1 native FP8: e4m3 weight + one fp32 `weight_scale_inv` per 128x128 block
    # (deepseek-ai/DeepSeek-V3 README_WEIGHTS.md).
    FP8_BLOCK128 = "fp8-block128"
    # compressed-tensors "FP8-dynamic" (RedHatAI/neuralmagic checkpoints): e4m3 weight + one
    # `weight_scale` per output channel, stored in the model dtype (bf16).
    FP8_CHANNEL = "fp8-channel"
    # AutoAWQ GEMM, 4 bit, group 128: qweight int32 [in, out/8], qzeros int32 [in/128, out/8],
    # scales fp16 [in/128, out] (casper-hansen/AutoAWQ `WQLinear_GEMM`).
    AWQ_INT4_G128 = "awq-int4-g128"
    # compressed-tensors pack-quantized w4a16, symmetric, group 128: weight_packed int32 [out, in/8],
    # weight_scale bf16 [out, in/128], weight_shape int64 [2] (neuralmagic/compressed-tensors).
    GPTQ_INT4_G128 = "gptq-int4-g128"
    # NVIDIA ModelOpt NVFP4: e2m1 weight packed two per byte, one fp8 e4m3 `weight_scale` per 16
    # elements, fp32 `weight_scale_2` and `input_scale` per tensor (nvidia/DeepSeek-R1-FP4 model card).
    NVFP4_G16 = "nvfp4-g16"


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def storage_bytes(storage: Storage, out_features: int, in_features: int, count: int = 1) -> int:
    """Bytes of `count` matrices of out_features x in_features (experts are `count` matrices)."""
    n = out_features * in_features
    if storage is Storage.F32:
        one = 4 * n
    elif storage in (Storage.BF16, Storage.FP16):
        one = 2 * n
    elif storage is Storage.FP8_BLOCK128:
        one = n + 4 * _ceil_div(out_features, 128) * _ceil_div(in_features, 128)
    elif storage is Storage.FP8_CHANNEL:
        one = n + 2 * out_features
    elif storage is Storage.AWQ_INT4_G128:
        groups = _ceil_div(in_features, 128)
        one = n // 2 + groups * out_features // 2 + groups * out_features * 2
    elif storage is Storage.GPTQ_INT4_G128:
        groups = _ceil_div(in_features, 128)
        one = n // 2 + out_features * groups * 2 + 16
    elif storage is Storage.NVFP4_G16:
        one = n // 2 + _ceil_div(in_features, 16) * out_features + 4 + 4
    else:  # pragma: no cover - enum is closed
        raise AssertionError(storage)
    return one * count
