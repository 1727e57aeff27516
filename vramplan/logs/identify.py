"""Which model and quantization a log is about: by the name it states, else by the shape llama.cpp prints.

- vLLM / SGLang name the model (`model='deepseek-ai/DeepSeek-R1'`, `model_path=...`): an HF id, a local
  path or an HF cache path, resolved through the catalog.
- llama.cpp / Ollama print `general.name` (e.g. "DeepSeek R1 Distill Qwen 7B") and the hparams
  (`print_info: n_layer = 28`, ...). A name the catalog does not know is matched by shape against the
  catalog's architectures; failing that, an `Architecture` is built from the hparams themselves, with
  the weights taken from the `file size` line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from vramplan.arch import Architecture
from vramplan.catalog import Catalog, PublishedSize, Quant, Variant
from vramplan.errors import PlanError, UnknownModelError
from vramplan.logs.types import ParsedLog
from vramplan.precision import WeightFormat
from vramplan.quantmix import GGUF_FTYPES, Scheme
from vramplan.runtimes import Runtime

# llama.cpp's llama_ftype_name (src/llama-model-loader.cpp) -> the file-type names llama-quantize takes
_SIZE_WORDS = {"Small": "S", "Medium": "M", "Large": "L"}


def ftype_from_log(text: str | None) -> str | None:
    """'Q4_K - Medium' -> 'Q4_K_M', 'all F32' -> 'F32', 'IQ1_S - 1.5625 bpw' -> 'IQ1_S',
    'IQ3_S mix - 3.66 bpw' -> 'IQ3_M'; None for names vramplan does not know."""
    if not text:
        return None
    t = text.replace("(guessed)", "").strip()
    if t.startswith("all "):
        t = t[4:]
    if t.startswith("IQ3_S mix"):
        return "IQ3_M"
    head, _, tail = t.partition(" - ")
    head = head.strip().upper()
    word = tail.strip()
    if word in _SIZE_WORDS and head != "Q2_K":  # llama.cpp calls plain Q2_K "Q2_K - Medium"
        head = f"{head}_{_SIZE_WORDS[word]}"
    return head if head in GGUF_FTYPES else None


# vLLM / SGLang `quantization=` values -> catalog quantization names
_TORCH_QUANTS = {
    "fp8": "fp8",
    "awq": "awq-int4",
    "awq_marlin": "awq-int4",
    "gptq": "gptq-int4",
    "gptq_marlin": "gptq-int4",
    "modelopt_fp4": "nvfp4",
    "nvfp4": "nvfp4",
}


@dataclass(frozen=True)
class Identified:
    variant: Variant
    quant: Quant
    how: str  # how the model was identified, for the report


def _candidates(name: str) -> list[str]:
    n = name.strip().strip("'\"")
    out = [n]
    if m := re.search(r"models--([^/]+)--([^/]+)", n):  # an HF cache path
        out.append(f"{m[1]}/{m[2]}")
    if "/" in n.rstrip("/"):
        parts = n.rstrip("/").split("/")
        out += ["/".join(parts[-2:]), parts[-1]]
    base = out[-1]
    stripped = re.sub(r"[-_.](?:UD-)?(?:I?Q\d\w*|F16|F32|BF16|fp16|bf16|fp8)$", "", base, flags=re.I)
    out += [stripped, re.sub(r"[\s_]+", "-", base), re.sub(r"[\s_]+", "-", stripped)]
    return list(dict.fromkeys(c for c in out if c))


def _resolve(catalog: Catalog, name: str) -> tuple[Variant, Quant | None] | None:
    for c in _candidates(name):
        try:
            r = catalog.resolve(c)
        except UnknownModelError:
            continue
        return r.variant, r.quant
    return None


def _hp(log: ParsedLog, key: str) -> int | None:
    raw = log.hparam(key)
    if raw is None:
        return None
    nums = [int(x) for x in re.findall(r"-?\d+", raw)]
    return max(nums) if nums else None


def _by_shape(catalog: Catalog, log: ParsedLog) -> Variant | None:
    keys = {
        "n_layer": "num_hidden_layers",
        "n_embd": "hidden_size",
        "n_head": "num_attention_heads",
        "n_vocab": "vocab_size",
    }
    shape = {f: _hp(log, k) for k, f in keys.items()}
    if any(v is None for v in shape.values()):
        return None
    for v in catalog.variants:
        a = v.architecture
        if all(getattr(a, f) == val for f, val in shape.items()):
            return v
    return None


def _check_named_model(catalog: Catalog, log: ParsedLog, model: str, variant: Variant) -> None:
    """--model must name the model the log ran (or one of the same architecture: a re-release such as
    deepseek-r1-0528 for deepseek-r1): a log that names another catalog model, or whose llama.cpp
    shape is another model's, is refused here rather than planned with the wrong numbers."""
    named = f"{model} ({variant.id})" if model.strip().lower() != variant.id else variant.id
    fix = "drop --model, or check a log of that model"
    found = _resolve(catalog, log.model) if log.model else None
    if found is not None and found[0].architecture != variant.architecture:
        raise PlanError(f"the log is of {found[0].id} (it names {log.model!r}), not of {named}; {fix}")
    if not log.runtime.is_ggml:
        return
    keys = {"n_layer": "num_hidden_layers", "n_embd": "hidden_size", "n_head": "num_attention_heads"}
    shape = {k: _hp(log, k) for k in keys}
    if any(v is None for v in shape.values()):
        return
    theirs = {k: getattr(variant.architecture, f) for k, f in keys.items()}
    if shape != theirs:
        other = _by_shape(catalog, log)
        of = f"of {other.id}" if other is not None else "of another model"
        said = ", ".join(f"{k} {v}" for k, v in shape.items())
        raise PlanError(f"the log is {of} ({said}), not of {named}; {fix}")


def arch_from_hparams(log: ParsedLog) -> Architecture | None:
    """An Architecture from llama.cpp's print_info lines (enough for KV and compute); None if a needed
    value is missing."""
    arch = log.hparam("arch")
    need = {
        k: _hp(log, k) for k in ("n_embd", "n_layer", "n_head", "n_head_kv", "n_ff", "n_vocab", "n_ctx_train")
    }
    if arch is None or any(v is None for v in need.values()):
        return None
    n: dict[str, int] = {k: v for k, v in need.items() if v is not None}
    head_k = _hp(log, "n_embd_head_k")
    if arch == "deepseek2":
        rope = _hp(log, "n_rot")
        lora_kv = _hp(log, "n_lora_kv")
        k_mla, v_mla = _hp(log, "n_embd_head_k_mla"), _hp(log, "n_embd_head_v_mla")
        mla_gguf = n["n_head_kv"] == 1
        k_full = k_mla if mla_gguf and k_mla else head_k
        v_full = v_mla if mla_gguf and v_mla else _hp(log, "n_embd_head_v")
        if not rope or not lora_kv or not k_full or not v_full:
            return None
        gating = log.hparam("expert_gating_func") or "sigmoid"
        n_expert = _hp(log, "n_expert") or None
        return Architecture(
            model_type="deepseek_v3" if gating == "sigmoid" else "deepseek_v2",
            num_key_value_heads=n["n_head"],
            q_lora_rank=_hp(log, "n_lora_q") or None,
            kv_lora_rank=lora_kv,
            qk_nope_head_dim=k_full - rope,
            qk_rope_head_dim=rope,
            v_head_dim=v_full,
            n_routed_experts=n_expert,
            n_shared_experts=_hp(log, "n_expert_shared") if n_expert else None,
            num_experts_per_tok=_hp(log, "n_expert_used") if n_expert else None,
            moe_intermediate_size=_hp(log, "n_ff_exp") if n_expert else None,
            first_k_dense_replace=_hp(log, "n_layer_dense_lead") or 0,
            hidden_size=n["n_embd"],
            intermediate_size=n["n_ff"],
            num_hidden_layers=n["n_layer"],
            num_attention_heads=n["n_head"],
            vocab_size=n["n_vocab"],
            max_position_embeddings=n["n_ctx_train"],
        )
    return Architecture(
        model_type=arch,
        num_key_value_heads=n["n_head_kv"],
        head_dim=head_k if head_k and head_k != n["n_embd"] // n["n_head"] else None,
        attention_bias=arch == "qwen2",
        qk_norm=arch == "qwen3",
        hidden_size=n["n_embd"],
        intermediate_size=n["n_ff"],
        num_hidden_layers=n["n_layer"],
        num_attention_heads=n["n_head"],
        vocab_size=n["n_vocab"],
        max_position_embeddings=n["n_ctx_train"],
    )


def gguf_is_mla(log: ParsedLog) -> bool | None:
    """A deepseek2 GGUF converted with llama.cpp's MLA layout caches one latent head (n_head_kv 1)."""
    kv = _hp(log, "n_head_kv")
    return None if kv is None else kv == 1


def _gguf_quant(log: ParsedLog, ftype: str | None, base: Quant | None) -> Quant | None:
    """A GGUF quantization made from the log: the file type it prints, weights = its file size."""
    size = log.file_size
    if size is None:
        return base
    scheme = base.scheme if base is not None else Scheme(WeightFormat.GGUF, ftype or "F16", "bf16")
    return Quant(
        name=base.name if base is not None else (ftype or "gguf"),
        format=WeightFormat.GGUF,
        runtimes=(Runtime.LLAMA_CPP, Runtime.OLLAMA),
        scheme=scheme,
        gguf_mla=gguf_is_mla(log),
        size=PublishedSize(size.bytes, size.resolution // 2, "the log's file size line", size.text),
        weights_from_size=True,
    )


def _pick_gguf(variant: Variant, log: ParsedLog, ftype: str | None) -> Quant | None:
    """The variant's GGUF quantization of this file type; among several (UD-IQ1_S, IQ1_S), the one whose
    published size is closest to the log's file size."""
    if ftype is None:
        return None
    found = [
        q
        for q in variant.quants
        if q.is_gguf and (q.name.lower() == ftype.lower() or (q.scheme.gguf_ftype or "").upper() == ftype)
    ]
    if not found:
        return None
    fs = log.file_size
    if fs is not None:
        found.sort(key=lambda q: abs((q.size.bytes if q.size else 0) - fs.bytes))
    q = found[0]
    mla = gguf_is_mla(log)
    if variant.architecture.is_mla and mla is not None:
        q = replace(q, gguf_mla=mla)
    return q


def _torch_quant(variant: Variant, log: ParsedLog, named: Quant | None) -> Quant | None:
    if named is not None:
        return named
    q = (log.settings.quantization or "").lower()
    if q in _TORCH_QUANTS:
        try:
            return variant.quant(_TORCH_QUANTS[q])
        except UnknownModelError:
            return None
    if q and q not in ("none",):
        return None
    dtype = (log.settings.dtype or "").lower()
    for name in (("fp16",) if "float16" in dtype and "bfloat" not in dtype else ()) + ("bf16",):
        try:
            return variant.quant(name)
        except UnknownModelError:
            continue
    return None


def identify(
    catalog: Catalog, log: ParsedLog, model: str | None = None, quant: str | None = None
) -> Identified:
    """The variant and quantization the log is about. `model` / `quant` override what the log says."""
    how = ""
    variant: Variant | None = None
    named_quant: Quant | None = None
    if model is not None:
        r = catalog.resolve(model)
        variant, named_quant, how = r.variant, r.quant, f"--model {model}"
        _check_named_model(catalog, log, model, variant)
        if quant is not None and r.via == "ollama" and r.quant and quant.lower() != r.quant.name.lower():
            raise PlanError(
                f"{model} is the {r.quant.name} build; drop --quant or name {r.variant.id} instead"
            )
    elif log.model:
        found = _resolve(catalog, log.model)
        if found:
            variant, named_quant = found
            how = f"the name in the log, {log.model!r}"
    ggml = log.runtime.is_ggml
    if variant is None and ggml:
        variant = _by_shape(catalog, log)
        if variant is not None:
            how = f"its shape (n_layer, n_embd, n_head, n_vocab), {variant.id}'s"
    ftype = ftype_from_log(log.settings.quantization) if ggml else None
    if variant is None and ggml:
        arch = arch_from_hparams(log)
        q = _gguf_quant(log, ftype, None)
        if arch is not None and q is not None:
            name = log.model or "the model in the log"
            v = Variant(
                id=re.sub(r"[^a-z0-9.]+", "-", name.lower()).strip("-") or "log-model",
                name=name,
                hf_repo="",
                family="distill",
                architecture=arch,
                architecture_id="log",
                architecture_source="the llama.cpp print_info lines of the log",
                default_quant=q.name,
                quants=(q,),
            )
            return Identified(v, q, "not in the catalog: its shape from the log's print_info lines")
    if variant is None:
        said = (
            f"names {log.model!r}, which the catalog does not know"
            if log.model
            else "does not name its model"
        )
        raise UnknownModelError(
            f"the {log.runtime.value} log {said}; give --model (a catalog id, alias or HF repo)"
        )
    if quant is not None:
        chosen: Quant | None = variant.plan_quant(quant, log.runtime)  # any llama-quantize type too
    elif ggml:
        chosen = (
            named_quant
            if named_quant is not None and named_quant.is_gguf
            else _pick_gguf(variant, log, ftype)
        )
        if chosen is None:
            chosen = _gguf_quant(log, ftype, None)
            if chosen is not None:
                chosen = replace(chosen, name=ftype or "gguf")
    else:
        chosen = _torch_quant(variant, log, named_quant)
    if chosen is None:
        stated = log.settings.quantization or log.settings.dtype
        said = f"it states {stated}" if stated else "it states no quantization or dtype"
        known = ", ".join(q.name for q in variant.quants)
        raise UnknownModelError(
            f"cannot tell which quantization of {variant.id} the log loaded ({said}); "
            f"give --quant (one of {known})"
        )
    return Identified(variant, chosen, how)
