"""Write tiny random-weight GGUF models that llama.cpp loads, for measured-memory tests.

One `TinySpec` describes the shape; `write_tiny_gguf(path, spec, weight_type=...)` writes the file with the
`gguf` package (GGUFWriter) and returns what it wrote, tensor by tensor, so a test knows the exact bytes.

Architectures and the layouts they follow (llama.cpp as vendored by llama-cpp-python 0.3.36):

- ``llama``: attn_q/k/v/output, SwiGLU FFN, rope over the whole head (llama.cpp checks n_rot == head_dim).
- ``qwen2``: as llama plus attn_q/k/v biases; llama.cpp sizes Q and attn_output as n_embd x n_embd, so
  heads x head_dim must equal hidden (true of every Qwen2 distill).
- ``qwen3``: as llama plus attn_q_norm / attn_k_norm (one head_dim vector each), no biases.
- ``deepseek2``: MLA attention (q_lora_rank > 0 gives attn_q_a / attn_q_a_norm / attn_q_b, 0 gives attn_q),
  attn_kv_a_mqa ``[kv_lora_rank + qk_rope_head_dim, hidden]``, attn_kv_a_norm, and either the MLA split
  ``attn_k_b`` / ``attn_v_b`` (``mla=True``: what convert_hf_to_gguf.py writes since llama.cpp PR 12801,
  marked by ``deepseek2.attention.key_length_mla`` / ``value_length_mla``, with head_count_kv 1,
  key_length kv_lora_rank + rope and value_length kv_lora_rank) or the legacy ``attn_kv_b``
  (``mla=False``: no *_mla keys, head_count_kv = heads, key_length nope + rope, value_length v_head_dim).
  FFN: ``n_dense_lead`` leading dense layers, then MoE layers with a router (ffn_gate_inp, kept F32 as the
  converter does), routed experts (ffn_gate_exps / ffn_up_exps / ffn_down_exps) and shared experts
  (ffn_*_shexp); sigmoid gating adds the ``exp_probs_b.bias`` correction bias as in DeepSeek-V3 / R1.

Weights are random (seeded, so files are byte-for-byte reproducible). Tensors with two or more dimensions
take ``weight_type`` (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K, IQ4_XS, ...) unless ``overrides`` names
another type for them; 1-D tensors (norms, biases) stay F32. A type whose block does not divide a row falls
back the way llama-quantize does (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, Q2_K/Q3_K -> Q4_0, IQ* -> IQ4_NL,
then F16). Types that gguf-py cannot quantize (the K- and IQ-quants) are written as random blocks whose f16
scales are patched to a small finite value, which is enough for llama.cpp to load and run them.

The vocabulary is a byte-level BPE ("gpt2") one: the 256 byte tokens, then two-character merges (each with
its merge rule), then ``<s>`` and ``</s>`` as control tokens at the end; ``vocab`` sets its size (>= 260).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ARCHES = ("llama", "qwen2", "qwen3", "deepseek2")

# tokenizer.ggml.pre that each arch's real converter writes (any value llama.cpp knows would do)
_TOKENIZER_PRE = {"llama": "llama-bpe", "qwen2": "qwen2", "qwen3": "qwen2", "deepseek2": "deepseek-v3"}

# llama-quantize's fallback for a row length the block size does not divide (src/llama-quant.cpp)
_FALLBACK = {
    "IQ1_S": "IQ4_NL",
    "IQ1_M": "IQ4_NL",
    "IQ2_XXS": "IQ4_NL",
    "IQ2_XS": "IQ4_NL",
    "IQ2_S": "IQ4_NL",
    "IQ3_XXS": "IQ4_NL",
    "IQ3_S": "IQ4_NL",
    "IQ4_XS": "IQ4_NL",
    "Q2_K": "Q4_0",
    "Q3_K": "Q4_0",
    "TQ1_0": "Q4_0",
    "TQ2_0": "Q4_0",
    "Q4_K": "Q5_0",
    "Q5_K": "Q5_1",
    "Q6_K": "Q8_0",
}

# byte offsets of the f16 scale fields inside one block (ggml/src/ggml-common.h), for types gguf-py
# cannot quantize: random bytes there could be inf/nan, so they are overwritten with a small value
_F16_FIELDS = {
    "Q2_K": (80, 82),
    "Q3_K": (108,),
    "Q4_K": (0, 2),
    "Q5_K": (0, 2),
    "Q6_K": (208,),
    "IQ2_XXS": (0,),
    "IQ2_XS": (0,),
    "IQ2_S": (0,),
    "IQ3_XXS": (0,),
    "IQ3_S": (0,),
    "IQ1_S": (0,),
    "IQ4_NL": (0,),
    "IQ4_XS": (0,),
}

_FILE_TYPE = {  # general.file_type for the uniform types that have one (llama.cpp guesses it otherwise)
    "F32": 0,
    "F16": 1,
    "Q4_0": 2,
    "Q4_1": 3,
    "Q8_0": 7,
    "Q5_0": 8,
    "Q5_1": 9,
    "Q2_K": 10,
    "Q6_K": 18,
    "BF16": 32,
}


@dataclass(frozen=True)
class TinySpec:
    """The shape of a tiny model; field names follow llama.cpp's hparams where HF and GGUF differ."""

    arch: str = "qwen2"
    hidden: int = 128
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    head_dim: int = 32  # a multiple of 32, so q8_0 / q4_0 K and V caches are allowed
    ffn: int = 256  # dense FFN width (deepseek2: the leading dense layers)
    vocab: int = 512
    n_ctx_train: int = 4096
    tied_embeddings: bool = False
    rope_theta: float = 10000.0
    rms_eps: float = 1e-6
    # write attention.key_length / value_length even when head_dim == hidden / heads (None: only if not)
    explicit_head_dim: bool | None = None
    # deepseek2 (MLA + MoE)
    mla: bool = True
    q_lora_rank: int = 0  # 0: no q LoRA, a plain attn_q (the "lite" layout)
    kv_lora_rank: int = 64  # kv_lora_rank + qk_rope_head_dim: the cached latent, a multiple of 32
    qk_rope_head_dim: int = 32
    qk_nope_head_dim: int = 32
    v_head_dim: int = 32
    n_dense_lead: int = 1
    n_expert: int = 4
    n_expert_used: int = 2
    n_expert_shared: int = 1
    expert_ffn: int = 32
    expert_weights_scale: float = 2.5
    expert_weights_norm: bool = True
    expert_gating: str = "sigmoid"  # "sigmoid" (V3 / R1) or "softmax" (V2)
    n_expert_groups: int = 0  # V3 / R1: 8 groups, 4 used (expert_group_count / expert_group_used_count)
    n_group_used: int = 0

    def __post_init__(self) -> None:
        if self.arch not in ARCHES:
            raise ValueError(f"arch must be one of {ARCHES}, not {self.arch!r}")
        if self.vocab < 260:
            raise ValueError("vocab must be at least 260 (256 byte tokens, a merge and 2 specials)")
        if self.arch == "qwen2" and self.heads * self.head_dim != self.hidden:
            raise ValueError("qwen2 needs heads * head_dim == hidden (llama.cpp sizes Q as n_embd)")
        if self.arch != "deepseek2" and self.heads % self.kv_heads:
            raise ValueError("heads must be a multiple of kv_heads")
        if self.arch == "deepseek2":
            if self.expert_gating not in ("sigmoid", "softmax"):
                raise ValueError("expert_gating is 'sigmoid' or 'softmax'")
            if not 0 < self.n_expert_used <= self.n_expert:
                raise ValueError("need 0 < n_expert_used <= n_expert")
            if self.n_dense_lead > self.layers:
                raise ValueError("n_dense_lead cannot exceed layers")
            if self.n_expert_groups > 1 and (
                self.n_expert % self.n_expert_groups or not 0 < self.n_group_used < self.n_expert_groups
            ):
                raise ValueError(
                    "n_expert_groups must divide n_expert, with 0 < n_group_used < n_expert_groups"
                )

    def with_(self, **changes: Any) -> TinySpec:
        return replace(self, **changes)

    # what llama.cpp derives, for tests that want to state an expectation
    @property
    def n_embd_k_gqa(self) -> int:
        """K elements per token per layer in llama.cpp's cache."""
        if self.arch == "deepseek2":
            if self.mla:
                return self.kv_lora_rank + self.qk_rope_head_dim  # one latent "head" (head_count_kv 1)
            return self.heads * (self.qk_nope_head_dim + self.qk_rope_head_dim)
        return self.kv_heads * self.head_dim

    @property
    def n_embd_v_gqa(self) -> int:
        """V elements per token per layer as the GGUF states it (llama.cpp stores no V for MLA)."""
        if self.arch == "deepseek2":
            return self.kv_lora_rank if self.mla else self.heads * self.v_head_dim
        return self.kv_heads * self.head_dim


def spec_for(arch: str, **changes: Any) -> TinySpec:
    """A small default shape per architecture, with `changes` applied."""
    base: dict[str, Any] = {"arch": arch}
    if arch == "deepseek2":
        base.update(hidden=128, layers=3, heads=4, kv_heads=4, head_dim=64, ffn=192)
    elif arch == "llama":
        base.update(hidden=128, layers=2, heads=4, kv_heads=1, head_dim=32, ffn=320)
    elif arch == "qwen3":
        base.update(hidden=128, layers=2, heads=4, kv_heads=2, head_dim=64, ffn=256)
    base.update(changes)
    return TinySpec(**base)


@dataclass(frozen=True)
class WrittenTensor:
    name: str
    ggml_type: str  # as ggml names it: "F32", "F16", "Q4_K", ...
    ne: tuple[int, ...]  # ggml order: ne[0] is the row length
    nbytes: int  # ggml_nbytes


@dataclass(frozen=True)
class WrittenModel:
    path: Path
    spec: TinySpec
    tensors: tuple[WrittenTensor, ...] = field(repr=False)

    @property
    def tensor_bytes(self) -> int:
        """Sum of ggml_nbytes over the file's tensors: what llama_model_size() reports."""
        return sum(t.nbytes for t in self.tensors)

    @property
    def n_params(self) -> int:
        total = 0
        for t in self.tensors:
            n = 1
            for d in t.ne:
                n *= d
            total += n
        return total


# ---------------------------------------------------------------------------------------------------------
# tensor plan


def tensor_plan(spec: TinySpec) -> list[tuple[str, tuple[int, ...]]]:
    """(name, numpy shape) of every tensor, in file order; numpy shape is ggml's ne reversed."""
    s = spec
    out: list[tuple[str, tuple[int, ...]]] = [("token_embd.weight", (s.vocab, s.hidden))]
    out.append(("output_norm.weight", (s.hidden,)))
    if not s.tied_embeddings:
        out.append(("output.weight", (s.vocab, s.hidden)))
    for i in range(s.layers):
        p = f"blk.{i}."
        out.append((p + "attn_norm.weight", (s.hidden,)))
        if s.arch == "deepseek2":
            out.extend(_deepseek2_attn(s, p))
        else:
            q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim
            out += [(p + "attn_q.weight", (q, s.hidden)), (p + "attn_k.weight", (kv, s.hidden))]
            out += [(p + "attn_v.weight", (kv, s.hidden))]
            if s.arch == "qwen2":
                out += [(p + "attn_q.bias", (q,)), (p + "attn_k.bias", (kv,)), (p + "attn_v.bias", (kv,))]
            if s.arch == "qwen3":
                out += [(p + "attn_q_norm.weight", (s.head_dim,)), (p + "attn_k_norm.weight", (s.head_dim,))]
            out.append((p + "attn_output.weight", (s.hidden, q)))
        out.append((p + "ffn_norm.weight", (s.hidden,)))
        if s.arch == "deepseek2" and i >= s.n_dense_lead:
            out.extend(_deepseek2_moe(s, p))
        else:
            out += [(p + "ffn_gate.weight", (s.ffn, s.hidden)), (p + "ffn_up.weight", (s.ffn, s.hidden))]
            out.append((p + "ffn_down.weight", (s.hidden, s.ffn)))
    return out


def _deepseek2_attn(s: TinySpec, p: str) -> list[tuple[str, tuple[int, ...]]]:
    qk = s.qk_nope_head_dim + s.qk_rope_head_dim
    out: list[tuple[str, tuple[int, ...]]] = []
    if s.q_lora_rank > 0:
        out.append((p + "attn_q_a_norm.weight", (s.q_lora_rank,)))
    out.append((p + "attn_kv_a_norm.weight", (s.kv_lora_rank,)))
    if s.q_lora_rank > 0:
        out.append((p + "attn_q_a.weight", (s.q_lora_rank, s.hidden)))
        out.append((p + "attn_q_b.weight", (s.heads * qk, s.q_lora_rank)))
    else:
        out.append((p + "attn_q.weight", (s.heads * qk, s.hidden)))
    out.append((p + "attn_kv_a_mqa.weight", (s.kv_lora_rank + s.qk_rope_head_dim, s.hidden)))
    if s.mla:
        # ne {qk_nope, kv_lora_rank, n_head} and {kv_lora_rank, v_head_dim, n_head} (llama-model / deepseek2.cpp)
        out.append((p + "attn_k_b.weight", (s.heads, s.kv_lora_rank, s.qk_nope_head_dim)))
        out.append((p + "attn_v_b.weight", (s.heads, s.v_head_dim, s.kv_lora_rank)))
    else:
        out.append((p + "attn_kv_b.weight", (s.heads * (s.qk_nope_head_dim + s.v_head_dim), s.kv_lora_rank)))
    out.append((p + "attn_output.weight", (s.hidden, s.heads * s.v_head_dim)))
    return out


def _deepseek2_moe(s: TinySpec, p: str) -> list[tuple[str, tuple[int, ...]]]:
    out: list[tuple[str, tuple[int, ...]]] = [(p + "ffn_gate_inp.weight", (s.n_expert, s.hidden))]
    if s.expert_gating == "sigmoid":
        out.append((p + "exp_probs_b.bias", (s.n_expert,)))
    out.append((p + "ffn_gate_exps.weight", (s.n_expert, s.expert_ffn, s.hidden)))
    out.append((p + "ffn_up_exps.weight", (s.n_expert, s.expert_ffn, s.hidden)))
    out.append((p + "ffn_down_exps.weight", (s.n_expert, s.hidden, s.expert_ffn)))
    if s.n_expert_shared > 0:
        sh = s.expert_ffn * s.n_expert_shared
        out.append((p + "ffn_gate_shexp.weight", (sh, s.hidden)))
        out.append((p + "ffn_up_shexp.weight", (sh, s.hidden)))
        out.append((p + "ffn_down_shexp.weight", (s.hidden, sh)))
    return out


# ---------------------------------------------------------------------------------------------------------
# types and data


def ggml_type(name: Any) -> Any:
    """gguf.GGMLQuantizationType from a name in any case ("q4_k", "Q4_K", "f16") or the enum itself."""
    import gguf

    if isinstance(name, gguf.GGMLQuantizationType):
        return name
    key = str(name).upper()
    for member in gguf.GGMLQuantizationType:
        if member.name.upper() == key:
            return member
    raise ValueError(f"unknown ggml type {name!r}")


def type_for(name: str, ne0: int, ndim: int, weight_type: Any, overrides: Mapping[str, Any] | None) -> Any:
    """The tensor type this writer gives a tensor: overrides (fnmatch on the name) win, then the rules."""
    import gguf

    T = gguf.GGMLQuantizationType
    if overrides:
        for pattern, t in overrides.items():
            if fnmatch.fnmatchcase(name, pattern):
                return _fit(ggml_type(t), ne0)
    if ndim < 2 or name.endswith("ffn_gate_inp.weight"):
        return T.F32
    return _fit(ggml_type(weight_type), ne0)


def _fit(t: Any, ne0: int) -> Any:
    import gguf

    T = gguf.GGMLQuantizationType
    seen = set()
    while ne0 % gguf.GGML_QUANT_SIZES[t][0] != 0:
        seen.add(t)
        nxt = T[_FALLBACK[t.name]] if t.name in _FALLBACK else T.F16
        t = T.F16 if nxt in seen else nxt
    return t


def _encode(data: Any, t: Any, rng: Any) -> Any:
    """numpy array to write for `data` (float32) stored as type `t`."""
    import gguf
    import numpy as np

    T = gguf.GGMLQuantizationType
    if t == T.F32:
        return data.astype(np.float32)
    if t == T.F16:
        return data.astype(np.float16)
    try:
        return gguf.quants.quantize(data, t)
    except NotImplementedError:
        pass
    block, type_size = gguf.GGML_QUANT_SIZES[t]
    n_blocks = data.size // block
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    scale = np.frombuffer(np.float16(1.0 / 64).tobytes(), dtype=np.uint8)
    for off in _F16_FIELDS.get(t.name, ()):
        raw[:, off : off + 2] = scale
    return raw.reshape((*data.shape[:-1], data.shape[-1] // block * type_size))


# ---------------------------------------------------------------------------------------------------------
# vocabulary


def _byte_chars() -> list[str]:
    """GPT-2's bytes_to_unicode, as a list indexed by byte value."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, cs, strict=True))
    return [chr(table[b]) for b in range(256)]


def vocab_tokens(n_vocab: int) -> tuple[list[str], list[int], list[str]]:
    """(tokens, token types, merges) of a byte-level BPE vocab with exactly n_vocab tokens."""
    chars = _byte_chars()
    # merges over printable ASCII first so the early merges look like text
    order = [chars[b] for b in range(ord("a"), ord("z") + 1)] + [chars[ord(" ")]]
    order += [c for c in chars if c not in order]
    tokens = list(chars)
    merges: list[str] = []
    n_merged = n_vocab - 256 - 2
    for k in range(n_merged):
        if k < len(order) ** 2:
            a, b = order[k // len(order)], order[k % len(order)]
            tokens.append(a + b)
            merges.append(f"{a} {b}")
        else:  # beyond every pair: three-character tokens without merge rules (never produced, still valid)
            j = k - len(order) ** 2
            tokens.append(
                order[j // len(order) ** 2 % len(order)]
                + order[j // len(order) % len(order)]
                + order[j % len(order)]
            )
    tokens += ["<s>", "</s>"]
    types = [1] * (n_vocab - 2) + [3, 3]  # NORMAL, CONTROL
    return tokens, types, merges


# ---------------------------------------------------------------------------------------------------------
# writer


def write_tiny_gguf(
    path: str | Path,
    spec: TinySpec,
    weight_type: Any = "F16",
    overrides: Mapping[str, Any] | None = None,
    seed: int = 0,
    name: str | None = None,
    shape_only: bool = False,
) -> WrittenModel:
    """Write `spec` as a GGUF file at `path`; return the tensors as written (type, ne, nbytes).

    shape_only=True writes the header and tensor infos only and extends the file to its full length
    without writing tensor data (a sparse file: no disk blocks, no time), which is all llama.cpp's
    sizing-only mode (no_alloc) reads; it lets tests size real shapes (a 7B, or the 671B) cheaply. Such a
    file must not be loaded with a real allocation (its weights read as zeros).
    """
    import gguf
    import numpy as np

    path = Path(path)
    s = spec
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), s.arch)
    w.add_name(name or f"tiny-{s.arch}")
    w.add_context_length(s.n_ctx_train)
    w.add_embedding_length(s.hidden)
    w.add_block_count(s.layers)
    w.add_feed_forward_length(s.ffn)
    w.add_head_count(s.heads)
    w.add_layer_norm_rms_eps(s.rms_eps)
    w.add_rope_freq_base(s.rope_theta)
    w.add_vocab_size(s.vocab)
    if s.arch == "deepseek2":
        _deepseek2_keys(w, s)
    else:
        w.add_head_count_kv(s.kv_heads)
        w.add_rope_dimension_count(s.head_dim)
        explicit = s.explicit_head_dim
        if explicit is None:
            explicit = s.head_dim * s.heads != s.hidden
        if explicit:
            w.add_key_length(s.head_dim)
            w.add_value_length(s.head_dim)
    wt = ggml_type(weight_type)
    if not overrides and wt.name in _FILE_TYPE:
        w.add_file_type(_FILE_TYPE[wt.name])

    tokens, types, merges = vocab_tokens(s.vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(_TOKENIZER_PRE[s.arch])
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(s.vocab - 2)
    w.add_eos_token_id(s.vocab - 1)

    written: list[WrittenTensor] = []
    for tname, shape in tensor_plan(s):
        ne = tuple(reversed(shape))
        t = type_for(tname, ne[0], len(shape), wt, overrides)
        block, type_size = gguf.GGML_QUANT_SIZES[t]
        n = 1
        for d in ne:
            n *= d
        nbytes = n // block * type_size
        written.append(WrittenTensor(tname, t.name, ne, nbytes))
        if shape_only:
            w.add_tensor_info(tname, shape, np.dtype(np.float32), nbytes, raw_dtype=t)
            continue
        if len(shape) == 1:
            is_norm = tname.endswith("norm.weight")
            data = np.ones(shape, np.float32) if is_norm else rng.standard_normal(shape, np.float32) * 0.02
        else:
            data = rng.standard_normal(shape, np.float32) * 0.02
        arr = _encode(data, t, rng)
        if t in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            w.add_tensor(tname, arr)
        else:
            w.add_tensor(tname, arr, raw_dtype=t)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    if shape_only:
        w.write_ti_data_to_file()
        assert w.fout is not None
        fout = w.fout[0]
        data_start = w.ggml_pad(fout.tell(), w.data_alignment)
        fout.truncate(data_start + sum(w.ggml_pad(t.nbytes, w.data_alignment) for t in written))
        w.close()
    else:
        w.write_tensors_to_file()
        w.close()
    return WrittenModel(path, s, tuple(written))


def _deepseek2_keys(w: Any, s: TinySpec) -> None:
    import gguf

    qk = s.qk_nope_head_dim + s.qk_rope_head_dim
    w.add_leading_dense_block_count(s.n_dense_lead)
    w.add_q_lora_rank(s.q_lora_rank)  # required unless llama.cpp guesses a "lite" model from the layer count
    w.add_kv_lora_rank(s.kv_lora_rank)
    if s.mla:
        # convert_hf_to_gguf.py (conversion/deepseek.py): MLA is MQA over the latent
        w.add_head_count_kv(1)
        w.add_key_length(s.kv_lora_rank + s.qk_rope_head_dim)
        w.add_value_length(s.kv_lora_rank)
        w.add_key_length_mla(qk)
        w.add_value_length_mla(s.v_head_dim)
    else:  # the layout of GGUFs converted before MLA support (e.g. Ollama's deepseek-r1:671b)
        w.add_head_count_kv(s.heads)
        w.add_key_length(qk)
        w.add_value_length(s.v_head_dim)
    w.add_rope_dimension_count(s.qk_rope_head_dim)
    w.add_expert_feed_forward_length(s.expert_ffn)
    w.add_expert_count(s.n_expert)
    w.add_expert_used_count(s.n_expert_used)
    w.add_expert_shared_count(s.n_expert_shared)
    w.add_expert_weights_scale(s.expert_weights_scale)
    w.add_expert_weights_norm(s.expert_weights_norm)
    gating = (
        gguf.ExpertGatingFuncType.SIGMOID
        if s.expert_gating == "sigmoid"
        else gguf.ExpertGatingFuncType.SOFTMAX
    )
    w.add_expert_gating_func(gating)
    if s.n_expert_groups > 1:
        w.add_expert_group_count(s.n_expert_groups)
        w.add_expert_group_used_count(s.n_group_used)
