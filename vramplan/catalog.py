"""The model catalog: load and validate `model_catalog.yaml` (and user catalogs), resolve names.

The file is parsed once into frozen objects; an unknown key, a missing field or a wrong type is an
error naming the file, the entry and the field. Names resolve from a catalog id, an alias, an Ollama
tag (which also fixes the quantization) or a Hugging Face repo id; an unknown name answers with the
closest known names.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any, NamedTuple

from vramplan.arch import Architecture, Tensor, out_of_bounds, param_count
from vramplan.cache import YAMLSyntaxError, load_yaml
from vramplan.errors import CatalogError, UnknownModelError
from vramplan.precision import GGML_TYPES, Storage, WeightFormat
from vramplan.quantmix import GGUF_FTYPES, Scheme
from vramplan.runtimes import Runtime

HARDWARE_FEATURES = ("fp8", "fp4")
QUALITY_METRICS = (
    "aime_2024",
    "aime_2025",
    "math_500",
    "gpqa_diamond",
    "livecodebench",
    "codeforces_rating",
)


# A NamedTuple, not a dataclass: as immutable and typed, and ten times cheaper to define at import
# (`vramplan estimate` imports this module on every start; see the note in vramplan/estimate.py).
class PublishedSize(NamedTuple):
    """A size as its source publishes it: exact bytes, or GB / GiB rounded to the digits shown."""

    bytes: int
    rounding: int  # half a unit of the last digit shown (0 for exact byte counts)
    source: str
    text: str  # the figure as published, e.g. "4.7 GB"


@dataclass(frozen=True)
class Quant:
    """One quantization of a variant as the catalog lists it: format, runtimes, repo, tags, size."""

    name: str
    format: WeightFormat
    runtimes: tuple[Runtime, ...]
    scheme: Scheme
    repo: str | None = None
    ollama_tags: tuple[str, ...] = ()
    requires: str | None = None  # hardware feature the format needs for native speed: fp8 / fp4
    gguf_mla: bool | None = None  # deepseek2 GGUFs: converted with llama.cpp's MLA layout (PR 12801)
    size: PublishedSize | None = None
    notes: str = ""
    # Exact bytes of every tensor, when read from a file (a GGUF header, safetensors headers) rather
    # than modelled from the architecture and the scheme.
    tensor_table: tuple[tuple[Tensor, int], ...] | None = None
    # The published size is exact and the per-tensor mix only an approximation: scale the mix to it.
    weights_from_size: bool = False
    # A note every plan of this quantization carries (a GGUF file type the catalog does not publish).
    plan_note: str = ""

    @property
    def is_gguf(self) -> bool:
        return self.format is WeightFormat.GGUF


# The families a catalog entry may name: DeepSeek-R1 and the models distilled from it (all think in
# <think> ... </think>, which runtimes' R1 reasoning parsers split off).
R1_FAMILIES = ("r1", "r1-zero", "r1-0528", "distill")


@dataclass(frozen=True)
class Variant:
    """One model of the catalog: its ids and names, architecture and quantizations."""

    id: str
    name: str
    hf_repo: str
    family: str  # one of R1_FAMILIES for catalog entries; "gguf" / "hf" for models read from a source
    architecture: Architecture
    architecture_id: str
    architecture_source: str
    default_quant: str
    quants: tuple[Quant, ...]
    aliases: tuple[str, ...] = ()
    base_model: str | None = None
    released: str | None = None
    quality: tuple[tuple[str, float], ...] = ()  # (metric, score) pairs, metrics of QUALITY_METRICS
    quality_source: str | None = None
    notes: str = ""
    # a user catalog's entry that says `override: true`: it replaces the entry of its id from a catalog
    # loaded before it (without the key, a second entry of one id is an error)
    override: bool = False

    @property
    def scores(self) -> dict[str, float]:
        return dict(self.quality)

    @property
    def params(self) -> int:
        for q in self.quants:  # a file's own tensor list is exact
            if q.tensor_table is not None:
                return sum(t.n_elements for t, _ in q.tensor_table)
        return param_count(self.architecture)

    def quant(self, name: str) -> Quant:
        for q in self.quants:
            if q.name.lower() == name.lower():
                return q
        import difflib  # only for the did-you-mean hint of an error

        names = [q.name for q in self.quants]
        by_lower = {n.lower(): n for n in names}
        close = [
            by_lower[c] for c in difflib.get_close_matches(name.lower(), list(by_lower), n=2, cutoff=0.6)
        ]
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(f"{self.id} has no quantization {name!r} (known: {', '.join(names)}){hint}")

    def plan_quant(self, name: str, runtime: Runtime | None = None) -> Quant:
        """The quantization a plan names: a published one of the catalog, else any file type
        llama-quantize makes, synthesised (no repo, no Ollama tag) and sized by its per-tensor rules.

        A published quantization wins, unless `runtime` is named, cannot load it, and is a GGUF runtime:
        `--quant bf16 --runtime llama.cpp` is then the BF16 GGUF, not the bf16 safetensors."""
        key = name.strip().lower()
        published = next((q for q in self.quants if q.name.lower() == key), None)
        ftype = key.upper()
        if published is not None and (
            ftype not in GGUF_FTYPES
            or runtime is None
            or runtime in published.runtimes
            or not runtime.is_ggml
            or published.is_gguf
        ):
            return published
        if ftype in GGUF_FTYPES:
            return synthesised_gguf(self, ftype)
        import difflib  # only for the did-you-mean hint of an error

        names = [q.name for q in self.quants]
        by_lower = {n.lower(): n for n in [*names, *PLANNABLE_GGUF_TYPES]}
        close = [by_lower[c] for c in difflib.get_close_matches(key, list(by_lower), n=2, cutoff=0.6)]
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"{self.id} has no quantization {name!r} (published: {', '.join(names)}; or any llama-quantize "
            f"type: {', '.join(PLANNABLE_GGUF_TYPES)}){hint}"
        )


# Every file type llama-quantize makes that vramplan sizes (quantmix.GGUF_FTYPES), in llama.cpp's spelling.
PLANNABLE_GGUF_TYPES: tuple[str, ...] = tuple(GGUF_FTYPES)

# File types whose tensors llama-quantize refuses to make without an importance matrix (llama-quant.cpp
# `tensor_requires_imatrix`: IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S and IQ3_XXS tensors, and the Q2_K
# tensors of a Q2_K_S file; IQ3_XS gives attn_q / attn_k / ffn_up / ffn_gate IQ3_XXS).
_NEEDS_IMATRIX = frozenset(
    {"IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS", "Q2_K_S"}
)


def synthesised_gguf(variant: Variant, ftype: str) -> Quant:
    """A GGUF of `variant` in file type `ftype` that the catalog does not publish: what llama-quantize
    makes from a bf16 conversion (convert_hf_to_gguf.py), in the layout current converters write (for
    deepseek2: the MLA layout of llama.cpp PR 12801)."""
    ft = ftype.upper()
    if ft not in GGUF_FTYPES:
        raise UnknownModelError(f"unknown GGUF file type {ftype!r}; known: {', '.join(PLANNABLE_GGUF_TYPES)}")
    if ft in ("F16", "BF16", "F32"):
        how = f"convert it with convert_hf_to_gguf.py --outtype {ft.lower()}"
    else:
        imatrix = " and an --imatrix" if ft in _NEEDS_IMATRIX else ""
        how = f"make it with llama-quantize from the f16/bf16 GGUF{imatrix}"
    mla = variant.architecture.is_mla
    layout = " (the MLA layout current converters write)" if mla else ""
    return Quant(
        name=ft,
        format=WeightFormat.GGUF,
        runtimes=(Runtime.LLAMA_CPP, Runtime.OLLAMA),
        scheme=Scheme(WeightFormat.GGUF, ft, "bf16"),
        gguf_mla=True if mla else None,
        plan_note=(
            f"no published {ft} GGUF of {variant.id} in the catalog: sized by llama-quantize's rules"
            f"{layout}; {how}"
        ),
    )


class Resolved(NamedTuple):
    """What a model name resolved to: the variant, and the quantization when the name fixes it."""

    variant: Variant
    quant: Quant | None = None
    via: str = "id"  # id, alias, ollama, hf


@dataclass(frozen=True)
class Catalog:
    """The validated catalog: its variants, and the files they were read from."""

    variants: tuple[Variant, ...]
    sources: tuple[str, ...]

    def _index(self) -> dict[str, Resolved]:
        idx: dict[str, Resolved] = {}
        for v in self.variants:
            idx[v.id] = Resolved(v, None, "id")
            idx[v.hf_repo.lower()] = Resolved(v, None, "hf")
            for a in v.aliases:
                idx[a.lower()] = Resolved(v, None, "alias")
            repos: dict[str, list[Quant]] = {}
            for q in v.quants:
                for tag in q.ollama_tags:
                    idx[tag.lower()] = Resolved(v, q, "ollama")
                if q.repo:
                    repos.setdefault(q.repo.lower(), []).append(q)
            for repo, qs in repos.items():
                # a repo holding one quantization fixes it; a GGUF repo of several fixes only the variant
                idx.setdefault(repo, Resolved(v, qs[0] if len(qs) == 1 else None, "hf"))
        return idx

    def resolve(self, name: str) -> Resolved:
        idx = _cached_index(self)
        key = name.strip().lower()
        if not key:
            raise UnknownModelError("the model name is empty; `vramplan catalog` lists the names it takes")
        if key.startswith("hf.co/") or key.startswith("huggingface.co/"):
            key = key.split("/", 1)[1]
        if key in idx:
            return idx[key]
        if ":" not in key and f"{key}:latest" in idx:
            return idx[f"{key}:latest"]
        import difflib  # only for the did-you-mean hint of an error

        close: list[str] = []
        seen: set[str] = set()
        for match in difflib.get_close_matches(key, list(idx), n=10, cutoff=0.5):
            if idx[match].variant.id not in seen and len(close) < 3:  # one name per variant
                seen.add(idx[match].variant.id)
                close.append(match)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `vramplan catalog` lists them"
        raise UnknownModelError(f"unknown model {name!r}{hint}")

    def get(self, variant_id: str) -> Variant:
        return self.resolve(variant_id).variant

    def names(self) -> list[str]:
        return sorted(_cached_index(self))


@lru_cache(maxsize=8)
def _cached_index(cat: Catalog) -> dict[str, Resolved]:
    return cat._index()


# --------------------------------------------------------------------------- parsing


class _Ctx:
    """Where in which file a value sits, for error messages."""

    def __init__(self, path: str, where: str) -> None:
        self.path, self.where = path, where

    def at(self, more: str) -> _Ctx:
        return _Ctx(self.path, f"{self.where}.{more}" if self.where else more)

    def fail(self, msg: str) -> CatalogError:
        return CatalogError(f"{self.path}: {self.where}: {msg}")


def _mapping(ctx: _Ctx, value: Any, allowed: Iterable[str], required: Iterable[str] = ()) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ctx.fail(f"expected a mapping, got {type(value).__name__}")
    allowed_set = set(allowed)
    for key in value:
        if key not in allowed_set:
            import difflib  # only for the did-you-mean hint of an error

            close = difflib.get_close_matches(str(key), sorted(allowed_set), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ctx.at(str(key)).fail(f"unknown field{hint}")
    for key in required:
        if key not in value:
            raise ctx.at(key).fail("missing required field")
    return value


def _keys(value: Any) -> Iterable[str]:
    """The keys of a mapping whose keys are free (names), so that `_mapping` checks only its type."""
    return value.keys() if isinstance(value, dict) else ()


def _typed(ctx: _Ctx, value: Any, kind: type | tuple[type, ...]) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise ctx.fail(f"expected {' or '.join(k.__name__ for k in kinds)}, got a boolean")
    if not isinstance(value, kinds):
        raise ctx.fail(f"expected {' or '.join(k.__name__ for k in kinds)}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ctx.fail(f"expected a finite number, got {value!r}")
    return value


def _str_list(ctx: _Ctx, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ctx.fail("expected a list of strings")
    return tuple(_typed(ctx.at(str(i)), v, str) for i, v in enumerate(value))


_ARCH_FIELDS = {f.name: f for f in fields(Architecture)}
_ARCH_REQUIRED = [
    "model_type",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "vocab_size",
    "max_position_embeddings",
]


def _architecture(ctx: _Ctx, raw: Any) -> tuple[Architecture, str]:
    m = _mapping(ctx, raw, ["source", "config"], ["source", "config"])
    source = _typed(ctx.at("source"), m["source"], str)
    cfg = _mapping(ctx.at("config"), m["config"], _ARCH_FIELDS, _ARCH_REQUIRED)
    values: dict[str, Any] = {}
    for key, val in cfg.items():
        c = ctx.at("config").at(key)
        if key == "model_type":
            values[key] = _typed(c, val, str)
        elif key in ("tie_word_embeddings", "attention_bias", "qk_norm"):
            values[key] = _typed(c, val, bool)
        else:
            if val is not None or _ARCH_FIELDS[key].default is not None:
                _typed(c, val, int)
                if val < 0 or (val == 0 and key not in ("first_k_dense_replace", "num_nextn_predict_layers")):
                    raise c.fail(f"must be a positive integer, got {val}")
            values[key] = val
    arch = Architecture(**values)
    if (bad := out_of_bounds(arch)) is not None:
        raise ctx.at("config").fail(bad)
    if arch.num_attention_heads % arch.num_key_value_heads:
        raise ctx.at("config.num_key_value_heads").fail("must divide num_attention_heads")
    mla = [arch.kv_lora_rank, arch.qk_nope_head_dim, arch.qk_rope_head_dim, arch.v_head_dim]
    if any(x is not None for x in mla) and any(x is None for x in mla):
        raise ctx.at("config").fail(
            "MLA needs all of kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim"
        )
    moe = [arch.n_routed_experts, arch.num_experts_per_tok, arch.moe_intermediate_size]
    if any(x is not None for x in moe) and any(x is None for x in moe):
        raise ctx.at("config").fail(
            "a mixture of experts needs n_routed_experts, num_experts_per_tok and moe_intermediate_size"
        )
    return arch, source


def _size(ctx: _Ctx, raw: Any) -> PublishedSize:
    m = _mapping(ctx, raw, ["bytes", "gb", "gib", "source"], ["source"])
    source = _typed(ctx.at("source"), m["source"], str)
    units = [k for k in ("bytes", "gb", "gib") if k in m]
    if len(units) != 1:
        raise ctx.fail("give exactly one of bytes, gb, gib")
    unit = units[0]
    val = _typed(ctx.at(unit), m[unit], (int, float))
    if val <= 0:
        raise ctx.at(unit).fail("must be positive")
    if unit == "bytes":
        return PublishedSize(int(val), 0, source, f"{int(val)} bytes")
    scale = 10**9 if unit == "gb" else 2**30
    text = repr(val)
    decimals = len(text.split(".")[1]) if "." in text else 0
    rounding = int(scale * 0.5 * 10**-decimals)
    return PublishedSize(round(val * scale), rounding, source, f"{val} {unit.upper().replace('GIB', 'GiB')}")


_QUANT_FIELDS = [
    "name",
    "format",
    "runtimes",
    "repo",
    "gguf_ftype",
    "tensor_types",
    "storage",
    "base_dtype",
    "ollama_tags",
    "requires",
    "gguf_mla",
    "weights_from_size",
    "size",
    "notes",
]


def _quant(ctx: _Ctx, raw: Any) -> Quant:
    m = _mapping(ctx, raw, _QUANT_FIELDS, ["name", "format", "runtimes"])
    name = _typed(ctx.at("name"), m["name"], str)
    try:
        fmt = WeightFormat(_typed(ctx.at("format"), m["format"], str))
    except ValueError:
        raise ctx.at("format").fail(
            f"{m['format']!r} is not one of {', '.join(f.value for f in WeightFormat)}"
        ) from None
    runtimes = []
    for i, r in enumerate(_str_list(ctx.at("runtimes"), m["runtimes"])):
        try:
            runtimes.append(Runtime(r))
        except ValueError:
            raise ctx.at(f"runtimes.{i}").fail(
                f"{r!r} is not one of {', '.join(x.value for x in Runtime)}"
            ) from None
    ftype = m.get("gguf_ftype")
    if fmt is WeightFormat.GGUF:
        if ftype is None:
            raise ctx.at("gguf_ftype").fail("a gguf quantization needs its file type (e.g. Q4_K_M)")
        if _typed(ctx.at("gguf_ftype"), ftype, str).upper() not in GGUF_FTYPES:
            raise ctx.at("gguf_ftype").fail(f"unknown GGUF file type {ftype!r}")
    elif ftype is not None:
        raise ctx.at("gguf_ftype").fail("only gguf quantizations have a GGUF file type")
    overrides = []
    tt = m.get("tensor_types") or {}
    for pattern, value in _mapping(ctx.at("tensor_types"), tt, _keys(tt)).items():
        c = ctx.at("tensor_types").at(str(pattern))
        _typed(c, value, str)
        ok = value.upper() in GGML_TYPES if fmt is WeightFormat.GGUF else value in Storage._value2member_map_
        if not ok:
            raise c.fail(f"{value!r} is not a known {'GGML type' if fmt is WeightFormat.GGUF else 'storage'}")
        overrides.append((str(pattern), value))
    base = m.get("base_dtype", "bf16")
    if base not in ("bf16", "fp16"):
        raise ctx.at("base_dtype").fail("must be bf16 or fp16")
    storage = m.get("storage")
    if storage is not None:
        if fmt is WeightFormat.GGUF:
            raise ctx.at("storage").fail("gguf quantizations take gguf_ftype and tensor_types, not storage")
        if storage not in Storage._value2member_map_:
            raise ctx.at("storage").fail(f"{storage!r} is not one of {', '.join(s.value for s in Storage)}")
    requires = m.get("requires")
    if requires is not None and requires not in HARDWARE_FEATURES:
        raise ctx.at("requires").fail(f"must be one of {', '.join(HARDWARE_FEATURES)}")
    gguf_mla = m.get("gguf_mla")
    if gguf_mla is not None:
        _typed(ctx.at("gguf_mla"), gguf_mla, bool)
    from_size = _typed(ctx.at("weights_from_size"), m.get("weights_from_size", False), bool)
    if from_size and "size" not in m:
        raise ctx.at("weights_from_size").fail("needs a published size")
    tags = _str_list(ctx.at("ollama_tags"), m.get("ollama_tags", []))
    if tags and Runtime.OLLAMA not in runtimes:
        raise ctx.at("ollama_tags").fail("a quantization with Ollama tags must list the ollama runtime")
    return Quant(
        name=name,
        format=fmt,
        runtimes=tuple(runtimes),
        scheme=Scheme(fmt, ftype.upper() if ftype else None, base, storage, tuple(overrides)),
        repo=_typed(ctx.at("repo"), m["repo"], str) if m.get("repo") else None,
        ollama_tags=tags,
        requires=requires,
        gguf_mla=gguf_mla,
        size=_size(ctx.at("size"), m["size"]) if "size" in m else None,
        weights_from_size=from_size,
        notes=_typed(ctx.at("notes"), m.get("notes", ""), str),
    )


_VARIANT_FIELDS = [
    "id",
    "name",
    "hf_repo",
    "family",
    "architecture",
    "aliases",
    "base_model",
    "released",
    "quality",
    "default_quant",
    "quants",
    "notes",
    "override",
]


def _variant(ctx: _Ctx, raw: Any, archs: Mapping[str, tuple[Architecture, str]]) -> Variant:
    m = _mapping(
        ctx,
        raw,
        _VARIANT_FIELDS,
        ["id", "name", "hf_repo", "family", "architecture", "default_quant", "quants"],
    )
    vid = _typed(ctx.at("id"), m["id"], str)
    if vid != vid.lower() or " " in vid:
        raise ctx.at("id").fail("ids are lower case without spaces")
    ctx = _Ctx(ctx.path, f"{ctx.where} ({vid})")
    arch_id = _typed(ctx.at("architecture"), m["architecture"], str)
    if arch_id not in archs:
        raise ctx.at("architecture").fail(f"unknown architecture {arch_id!r}")
    if not isinstance(m["quants"], list) or not m["quants"]:
        raise ctx.at("quants").fail("expected a non-empty list")
    quants = tuple(_quant(ctx.at(f"quants[{i}]"), q) for i, q in enumerate(m["quants"]))
    seen: set[str] = set()
    for i, q in enumerate(quants):
        if q.name.lower() in seen:
            raise ctx.at(f"quants[{i}].name").fail(f"duplicate quantization {q.name!r}")
        seen.add(q.name.lower())
    default = _typed(ctx.at("default_quant"), m["default_quant"], str)
    if default.lower() not in seen:
        raise ctx.at("default_quant").fail(f"{default!r} is not one of this variant's quantizations")
    quality: dict[str, float] = {}
    qsource = None
    if "quality" in m:
        qm = _mapping(ctx.at("quality"), m["quality"], [*QUALITY_METRICS, "source"], ["source"])
        qsource = _typed(ctx.at("quality.source"), qm["source"], str)
        for k in QUALITY_METRICS:
            if k in qm:
                quality[k] = float(_typed(ctx.at(f"quality.{k}"), qm[k], (int, float)))
    family = _typed(ctx.at("family"), m["family"], str)
    if family not in R1_FAMILIES:
        raise ctx.at("family").fail(f"must be one of {', '.join(R1_FAMILIES)}")
    arch, arch_source = archs[arch_id]
    return Variant(
        id=vid,
        name=_typed(ctx.at("name"), m["name"], str),
        hf_repo=_typed(ctx.at("hf_repo"), m["hf_repo"], str),
        family=family,
        architecture=arch,
        architecture_id=arch_id,
        architecture_source=arch_source,
        default_quant=default,
        quants=quants,
        aliases=_str_list(ctx.at("aliases"), m.get("aliases", [])),
        base_model=_typed(ctx.at("base_model"), m["base_model"], str) if "base_model" in m else None,
        released=str(m["released"]) if m.get("released") is not None else None,
        quality=tuple(quality.items()),
        quality_source=qsource,
        notes=_typed(ctx.at("notes"), m.get("notes", ""), str),
        override=_typed(ctx.at("override"), m.get("override", False), bool),
    )


# The catalog format this vramplan reads (the `version:` key of a catalog file; absent: this one).
CATALOG_VERSION = 1


def parse_catalog(
    text: str, path: str, base_archs: Mapping[str, tuple[Architecture, str]] | None = None
) -> tuple[list[Variant], dict[str, tuple[Architecture, str]]]:
    """Parse one catalog document; architectures of `base_archs` may be referenced."""
    try:
        doc = load_yaml(text)
    except YAMLSyntaxError as exc:
        where = f"line {exc.line}" if exc.line else "?"
        raise CatalogError(f"{path}: {where}: not valid YAML ({exc.problem})") from None
    if doc is None:
        raise CatalogError(f"{path}: the catalog is empty; it needs at least a `variants:` list")
    # the version first: a catalog of another version may have other fields
    version = doc.get("version", CATALOG_VERSION) if isinstance(doc, dict) else CATALOG_VERSION
    if type(version) is not int or version != CATALOG_VERSION:
        raise CatalogError(
            f"{path}: unsupported catalog version {version!r} (this vramplan reads version {CATALOG_VERSION})"
        )
    top = _mapping(_Ctx(path, "(top level)"), doc, ["version", "architectures", "variants", "gpus"])
    if _gpus_section(path, top):
        top = {"variants": [], **top}
    elif "variants" not in top:
        raise _Ctx(path, "(top level).variants").fail("missing required field")
    archs = dict(base_archs or {})
    raw_archs = top.get("architectures") or {}
    for aid, raw in _mapping(_Ctx(path, "architectures"), raw_archs, _keys(raw_archs)).items():
        archs[str(aid)] = _architecture(_Ctx(path, f"architectures.{aid}"), raw)
    if not isinstance(top["variants"], list):
        raise _Ctx(path, "variants").fail("expected a list")
    variants = [_variant(_Ctx(path, f"variants[{i}]"), raw, archs) for i, raw in enumerate(top["variants"])]
    ids: set[str] = set()
    for i, v in enumerate(variants):
        if v.id in ids:
            raise _Ctx(path, f"variants[{i}].id").fail(f"duplicate id {v.id!r}")
        ids.add(v.id)
    return variants, archs


def _gpus_section(path: str, top: Mapping[str, Any]) -> bool:
    """Whether a catalog has a `gpus:` list (which then may stand without `variants:`). Its entries are
    GPUs for the spec table: vramplan/gpus.py reads and validates them (same fields as gpus.yaml)
    whenever the table is used; here it only has to be a list."""
    if top.get("gpus") is None:
        return False
    if not isinstance(top["gpus"], list):
        raise _Ctx(path, "gpus").fail("expected a list of GPUs")
    return True


@lru_cache(maxsize=4)
def _load(paths: tuple[str, ...]) -> Catalog:
    variants: dict[str, Variant] = {}
    archs: dict[str, tuple[Architecture, str]] = {}
    for p in paths:
        if not p.strip():
            raise CatalogError("--catalog or VRAMPLAN_CATALOG names no file (an empty path)")
        try:
            with open(p, encoding="utf-8") as f:
                text = f.read()
        except IsADirectoryError:
            raise CatalogError(f"{p}: is a directory, not a catalog file") from None
        except OSError as exc:
            raise CatalogError(f"{p}: cannot read the catalog ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise CatalogError(f"{p}: not a YAML catalog (not UTF-8 text)") from None
        new, archs = parse_catalog(text, p, archs)
        for i, v in enumerate(new):
            if v.id in variants and not v.override:
                raise _Ctx(p, f"variants[{i}] ({v.id})").fail(
                    f"{v.id!r} is a model id of the catalog already; add `override: true` to replace "
                    "that entry"
                )
            variants[v.id] = v
    cat = Catalog(tuple(variants.values()), paths)
    _check_names_unique(cat)
    return cat


def _check_names_unique(cat: Catalog) -> None:
    owner: dict[str, str] = {}
    for v in cat.variants:
        names = [v.id, v.hf_repo.lower(), *(a.lower() for a in v.aliases)]
        names += [t.lower() for q in v.quants for t in q.ollama_tags]
        for n in names:
            if owner.get(n, v.id) != v.id:
                raise CatalogError(f"{cat.sources[-1]}: name {n!r} is used by both {owner[n]} and {v.id}")
            owner[n] = v.id


def builtin_catalog_path() -> str:
    from vramplan.resources import data_file

    return data_file("model_catalog.yaml")


def load_catalog(extra: Iterable[str] = ()) -> Catalog:
    """The built-in catalog plus user catalogs (`--catalog FILE` and `VRAMPLAN_CATALOG`, `:`-separated)."""
    paths = [builtin_catalog_path()]
    env = os.environ.get("VRAMPLAN_CATALOG")
    if env:
        paths += [p for p in env.split(os.pathsep) if p]
    paths += list(extra)
    return _load(tuple(paths))
