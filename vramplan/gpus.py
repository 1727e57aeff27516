"""The GPU spec table: `gpus.yaml` (and the `gpus:` sections of user catalogs), validated on load, and
the names that find an entry (vramplan ids and aliases, names as NVML reports them).

Memory is the total the driver reports (nvidia-smi / NVML `memory.total`), not the marketing figure:
an "80 GB" H100 reports 81559 MiB. Bandwidth is the vendor's peak (GB/s, 10^9 bytes). Every entry names
its source. The table is read only when a GPU is named or matched (`vramplan estimate` without `--gpu`
on a machine without a GPU never reads it); the parsed YAML is cached like the model catalog's
(vramplan/cache.py). A user catalog (`--catalog FILE`, `VRAMPLAN_CATALOG`) may add cards in a `gpus:`
list with the same fields; reusing a built-in name needs `override: true`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from vramplan.cache import YAMLSyntaxError, load_yaml
from vramplan.errors import CatalogError, HardwareError
from vramplan.host import metal_gpu_share

MiB = 1 << 20
GiB = 1 << 30

INTERCONNECTS = ("nvlink", "pcie", "infinity-fabric", "none")  # none: one GPU per machine (Apple silicon)
# A node of more GPUs than this is taken for a typo (the largest single-system boards, e.g. the
# GB200 NVL72's 72 GPUs, are racks of 4-GPU nodes); more than the card's usual server is only a note.
MAX_GPUS_PER_NODE = 64


@dataclass(frozen=True)
class GPUSpec:
    """One card of the GPU spec table: memory as NVML reports it, bandwidth and features."""

    name: str  # vramplan's id: lower case with dashes
    label: str  # what people call it
    memory_bytes: int  # as NVML reports memory.total
    bandwidth_gbps: float  # peak memory bandwidth, GB/s
    compute_capability: tuple[int, int] | None  # None for non-NVIDIA cards
    fp8: bool  # native FP8 tensor cores (Ada, Hopper, Blackwell; CDNA3)
    fp4: bool  # native FP4 tensor cores (Blackwell; CDNA4)
    interconnect: str  # nvlink, pcie, infinity-fabric
    max_per_node: int  # most cards one usual server takes
    aliases: tuple[str, ...] = ()
    nvml_names: tuple[str, ...] = ()  # the names NVML / nvidia-smi report for the card
    source: str = ""  # the vendor's spec page or datasheet (bandwidth, features)
    memory_source: str = ""  # where memory_bytes comes from (a published nvidia-smi / rocm-smi total)
    gfx_arch: str | None = None  # AMD cards: the LLVM gfx target (gfx942), in place of a compute capability
    # Apple silicon: the whole unified memory, which CPU and GPU share; memory_bytes is then Metal's
    # share of it (what the GPU may use), and the host gets what the GPU part of a plan leaves
    unified_memory_bytes: int | None = None

    @property
    def unified(self) -> bool:
        """An Apple silicon GPU: its memory is the Mac's, shared with the CPU."""
        return self.unified_memory_bytes is not None


# --------------------------------------------------------------------------- loading

_FIELDS = (
    "name",
    "label",
    "memory_mib",
    "unified_memory_mib",
    "memory_source",
    "bandwidth_gbps",
    "compute_capability",
    "gfx_arch",
    "fp8",
    "fp4",
    "interconnect",
    "max_per_node",
    "aliases",
    "nvml_names",
    "source",
)
_REQUIRED = (
    "name",
    "label",
    "memory_source",
    "bandwidth_gbps",
    "fp8",
    "fp4",
    "interconnect",
    "max_per_node",
    "source",
)
_NAME = r"^[a-z0-9][a-z0-9.-]*$"  # re caches the compiled form on first use


def _fail(path: str, where: str, msg: str) -> CatalogError:
    return CatalogError(f"{path}: {where}: {msg}")


def _typed(path: str, where: str, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise _fail(path, where, f"expected {what}, got a boolean")
    if not isinstance(value, kinds):
        raise _fail(path, where, f"expected {what}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise _fail(path, where, f"expected a finite number, got {value!r}")
    return value


def _strings(path: str, where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _fail(path, where, "expected a list of strings")
    return tuple(_typed(path, f"{where}.{i}", v, str, "a string") for i, v in enumerate(value))


def _compute_capability(path: str, where: str, value: Any) -> tuple[int, int]:
    text = repr(value) if isinstance(value, float) else value  # 8.9 written without quotes
    m = re.fullmatch(r"(\d+)\.(\d+)", text) if isinstance(text, str) else None
    if m is None:
        raise _fail(path, where, f"expected MAJOR.MINOR such as '9.0', got {value!r}")
    return int(m.group(1)), int(m.group(2))


def parse_gpu_entry(raw: Any, path: str, where: str, *, user: bool = False) -> tuple[GPUSpec, bool]:
    """One entry of a `gpus:` list as a spec, and whether it says `override: true` (user catalogs only).
    An unknown key, a missing field or a wrong type is an error naming the file, the entry and the field."""
    if not isinstance(raw, dict):
        raise _fail(path, where, f"expected a mapping, got {type(raw).__name__}")
    name = raw.get("name")
    if isinstance(name, str):
        where = f"{where} ({name})"
    allowed = (*_FIELDS, "override") if user else _FIELDS
    for key in raw:
        if key not in allowed:
            import difflib  # only for the did-you-mean hint of an error

            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise _fail(path, f"{where}.{key}", f"unknown field{hint}")
    for key in _REQUIRED:
        if key not in raw:
            raise _fail(path, f"{where}.{key}", "missing required field")
    if ("memory_mib" in raw) == ("unified_memory_mib" in raw):
        raise _fail(
            path,
            where,
            "give memory_mib (a GPU's own memory) or unified_memory_mib (Apple silicon), one of them",
        )

    def at(key: str) -> str:
        return f"{where}.{key}"

    name = _typed(path, at("name"), raw["name"], str, "a string")
    if not re.match(_NAME, name):
        raise _fail(path, at("name"), "names are lower case letters, digits, dots and dashes")
    memory_key = "memory_mib" if "memory_mib" in raw else "unified_memory_mib"
    memory = _typed(path, at(memory_key), raw[memory_key], int, "a whole number of MiB")
    bandwidth = _typed(path, at("bandwidth_gbps"), raw["bandwidth_gbps"], (int, float), "a number")
    per_node = _typed(path, at("max_per_node"), raw["max_per_node"], int, "a whole number")
    if memory <= 0:
        raise _fail(path, at(memory_key), "must be positive")
    if bandwidth <= 0:
        raise _fail(path, at("bandwidth_gbps"), "must be positive")
    if not 1 <= per_node <= MAX_GPUS_PER_NODE:
        raise _fail(path, at("max_per_node"), f"must be between 1 and {MAX_GPUS_PER_NODE}")
    interconnect = _typed(path, at("interconnect"), raw["interconnect"], str, "a string")
    if interconnect not in INTERCONNECTS:
        raise _fail(path, at("interconnect"), f"must be one of {', '.join(INTERCONNECTS)}")
    unified = memory_key == "unified_memory_mib"
    if unified and (per_node != 1 or interconnect != "none"):
        raise _fail(
            path,
            where,
            "an Apple silicon GPU (unified_memory_mib) is one per machine: max_per_node 1, interconnect none",
        )
    if "compute_capability" in raw and "gfx_arch" in raw:
        raise _fail(path, where, "give compute_capability (NVIDIA) or gfx_arch (AMD), not both")
    cc = raw.get("compute_capability")
    gfx = raw.get("gfx_arch")
    if gfx is not None and not re.fullmatch(r"gfx[0-9a-f]+", _typed(path, at("gfx_arch"), gfx, str, "text")):
        raise _fail(path, at("gfx_arch"), f"expected an LLVM target such as 'gfx942', got {gfx!r}")
    aliases = _strings(path, at("aliases"), raw.get("aliases", []))
    for i, a in enumerate(aliases):
        if not re.match(_NAME, a):
            raise _fail(path, at(f"aliases.{i}"), "names are lower case letters, digits, dots and dashes")
    override = _typed(path, at("override"), raw.get("override", False), bool, "true or false")
    spec = GPUSpec(
        name=name,
        label=_typed(path, at("label"), raw["label"], str, "a string"),
        # Apple silicon: the GPU may use Metal's share of the unified memory (vramplan/host.py)
        memory_bytes=metal_gpu_share(memory * MiB, None) if unified else memory * MiB,
        bandwidth_gbps=float(bandwidth),
        compute_capability=None if cc is None else _compute_capability(path, at("compute_capability"), cc),
        fp8=_typed(path, at("fp8"), raw["fp8"], bool, "true or false"),
        fp4=_typed(path, at("fp4"), raw["fp4"], bool, "true or false"),
        interconnect=interconnect,
        max_per_node=per_node,
        aliases=aliases,
        nvml_names=_strings(path, at("nvml_names"), raw.get("nvml_names", [])),
        source=_typed(path, at("source"), raw["source"], str, "a string"),
        memory_source=_typed(path, at("memory_source"), raw["memory_source"], str, "a string"),
        gfx_arch=gfx,
        unified_memory_bytes=memory * MiB if unified else None,
    )
    return spec, override


def parse_gpu_list(doc: Any, path: str, *, user: bool = False) -> list[tuple[GPUSpec, bool]]:
    """The `gpus:` list of a parsed document (gpus.yaml, or a user catalog: None when it has none)."""
    if user and (not isinstance(doc, dict) or doc.get("gpus") is None):
        return []
    if not isinstance(doc, dict):
        raise _fail(path, "(top level)", "expected a mapping with a `gpus:` list")
    if not user:
        for key in doc:
            if key not in ("version", "gpus"):
                raise _fail(path, str(key), "unknown field")
        if doc.get("version", 1) != 1:
            raise _fail(path, "version", "this vramplan reads GPU table version 1")
    raw = doc.get("gpus")
    if not isinstance(raw, list):
        raise _fail(path, "gpus", "expected a list")
    return [parse_gpu_entry(r, path, f"gpus[{i}]", user=user) for i, r in enumerate(raw)]


class GPUTable:
    """The GPU spec table: the built-in cards, then the cards of user catalogs. (A plain class: a
    dataclass costs a millisecond of `vramplan estimate`'s start-up to define.)"""

    __slots__ = ("by_name", "specs")

    def __init__(self, specs: tuple[GPUSpec, ...], by_name: dict[str, GPUSpec]) -> None:
        self.specs = specs
        self.by_name = by_name  # ids and aliases


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except IsADirectoryError:
        raise CatalogError(f"{path}: is a directory, not a catalog file") from None
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read the catalog ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise CatalogError(f"{path}: not a YAML catalog (not UTF-8 text)") from None


def _parse(path: str) -> Any:
    try:
        return load_yaml(_read(path))
    except YAMLSyntaxError as exc:
        where = f"line {exc.line}" if exc.line else "?"
        raise CatalogError(f"{path}: {where}: not valid YAML ({exc.problem})") from None


def builtin_gpus_path() -> str:
    from vramplan.resources import data_file

    return data_file("gpus.yaml")


@lru_cache(maxsize=8)
def _table(user_paths: tuple[str, ...]) -> GPUTable:
    path = builtin_gpus_path()
    entries = [(spec, path, False) for spec, _ in parse_gpu_list(_parse(path), path)]
    builtin = {n for spec, _, _ in entries for n in (spec.name, *spec.aliases)}
    for p in user_paths:
        if not p.strip():
            raise CatalogError("--catalog or VRAMPLAN_CATALOG names no file (an empty path)")
        for i, (spec, override) in enumerate(parse_gpu_list(_parse(p), p, user=True)):
            taken = [n for n in (spec.name, *spec.aliases) if n in builtin]
            if taken and not override:
                raise _fail(
                    p,
                    f"gpus[{i}] ({spec.name})",
                    f"{taken[0]!r} is a built-in GPU name; add `override: true` to replace that entry",
                )
            if any(
                s.name == spec.name for s, _, _ in entries
            ):  # replaces the built-in card of that name, in its place; its
                # aliases keep finding it (`h100` is the user's h100-80gb)
                old = next(s for s, _, _ in entries if s.name == spec.name)
                spec = replace(spec, aliases=tuple(dict.fromkeys((*spec.aliases, *old.aliases))))
                entries = [(spec, p, True) if s.name == spec.name else (s, q, u) for s, q, u in entries]
            else:
                entries.append((spec, p, True))
    by_name: dict[str, GPUSpec] = {}
    owner: dict[str, str] = {}
    for spec, p, _ in entries:
        for n in (spec.name, *spec.aliases):
            if n in by_name and by_name[n].name != spec.name:
                raise CatalogError(f"{p}: GPU name {n!r} is used by both {owner[n]} and {spec.name}")
            by_name[n], owner[n] = spec, spec.name
    return GPUTable(tuple(s for s, _, _ in entries), by_name)


_active_catalogs: tuple[str, ...] = ()


def use_catalogs(paths: Iterable[str]) -> None:
    """The user catalogs (`--catalog FILE`) whose `gpus:` join the table, besides VRAMPLAN_CATALOG's."""
    global _active_catalogs
    _active_catalogs = tuple(paths)


def user_catalog_paths(extra: Sequence[str] = ()) -> tuple[str, ...]:
    env = os.environ.get("VRAMPLAN_CATALOG")
    paths = [p for p in env.split(os.pathsep) if p] if env else []
    return (*paths, *_active_catalogs, *extra)


def gpu_table(extra: Sequence[str] = ()) -> GPUTable:
    """The table: gpus.yaml, then the `gpus:` of user catalogs (VRAMPLAN_CATALOG, `use_catalogs`, `extra`)."""
    return _table(user_catalog_paths(extra))


def builtin_specs() -> tuple[GPUSpec, ...]:
    """The cards of gpus.yaml alone (what the docs list)."""
    return _table(()).specs


# --------------------------------------------------------------------------- names -> specs


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-")


def alias_note(name: str, table: GPUTable | None = None) -> str | None:
    """When `name` is an alias that picks one card of several (`h100`: the SXM card, where h100-pcie
    and h100-nvl are H100s too), a line saying which card it picked and what the others are called;
    None for a card's own id, an alias of one card only, or a name the table lacks."""
    t = gpu_table() if table is None else table
    key = _key(name)
    spec = t.by_name.get(key)
    if spec is None or key == spec.name:
        return None
    others = [s.name for s in t.specs if s.name != spec.name and s.name.startswith(key)]
    if not others:
        return None
    rest = "the others" if len(others) > 1 else "the other"
    return f"--gpu {key} is the {spec.name} ({spec.label}); name {' or '.join(others)} for {rest}"


def gpu_spec(name: str, table: GPUTable | None = None) -> GPUSpec:
    """The spec called `name`: a vramplan id or alias (any case), or a name as NVML reports it."""
    t = gpu_table() if table is None else table
    key = _key(name)
    if key in t.by_name:
        return t.by_name[key]
    if key.startswith("apple-") and key[6:] in t.by_name:  # "Apple M3 Max 128GB", as Apple writes it
        return t.by_name[key[6:]]
    by_nvml = _match_by_nvml_name(name, t)
    if by_nvml is not None:
        return by_nvml
    sizes = _sizes_of(key.removeprefix("apple-"), t)
    if sizes:
        # A family name without its memory (`m3-max`): the sizes differ by far more than any rounding
        # (36 to 128 GB), so the plan would be a guess; the error lists what there is to pick from.
        raise HardwareError(
            f"--gpu {name.strip()!r} comes in {len(sizes)} memory sizes; name one: {', '.join(sizes)}"
        )
    import difflib  # only for the did-you-mean hint of an error

    names = t.by_name
    matches = [names[m].name for m in difflib.get_close_matches(key, list(names), n=10, cutoff=0.5)]
    same_family = [names[n].name for n in names if n.split("-")[0] == key.split("-")[0]]
    close = list(dict.fromkeys(matches[:1] + same_family + matches[1:]))[:3]  # one name per card
    known = ", ".join(g.name for g in t.specs if not g.unified)
    if any(g.unified for g in t.specs):  # 31 Macs: their pattern, not their names
        known += "; Apple silicon: CHIP-SIZEgb, e.g. m3-max-128gb (docs/gpus.md lists them)"
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known GPUs: {known}"
    raise HardwareError(f"unknown GPU {name!r}{hint}")


def _sizes_of(family: str, table: GPUTable) -> list[str]:
    """The cards called FAMILY-<N>gb (`m3-max` -> m3-max-36gb ... m3-max-128gb), smallest first."""
    pattern = re.compile(re.escape(family) + r"-\d+gb")
    cards = [g for g in table.specs if pattern.fullmatch(g.name)]
    return [g.name for g in sorted(cards, key=lambda g: g.unified_memory_bytes or g.memory_bytes)]


def is_known_gpu(name: str) -> bool:
    """Whether `name` is an id of the table (built-in or a user catalog's), so `--gpu NAME` reproduces it."""
    return any(g.name == name for g in gpu_table().specs)


_BRAND_WORDS = {"nvidia", "tesla", "geforce", "amd", "instinct"}
# A name that matched only in part must report memory within this share of the table's, or it is
# another card that shares words with a table entry (an "RTX 4090 Laptop GPU" has 16 GB, not 24).
PARTIAL_MATCH_MEMORY_TOLERANCE = 0.05


def _tokens(name: str) -> tuple[str, ...]:
    words = re.split(r"[\s\-_/]+", name.strip().lower())
    return tuple(w for w in words if w and w not in _BRAND_WORDS)


def split_mig_name(name: str) -> tuple[str, str | None]:
    """A MIG device's name as its card's name and its profile: "NVIDIA A100-SXM4-40GB MIG 1g.5gb" ->
    ("NVIDIA A100-SXM4-40GB", "1g.5gb"); other names come back whole, with None."""
    m = re.match(r"^(.*?)\s+MIG\s+(\S+)\s*$", name.strip())
    return (m.group(1), m.group(2)) if m else (name.strip(), None)


def _named(name: str, table: GPUTable) -> list[GPUSpec]:
    """The entries that list this NVML name exactly, else the same words without brand words, case
    and separators."""
    text = name.strip()
    exact = [g for g in table.specs if text in g.nvml_names]
    if exact:
        return exact
    words = _tokens(text)
    return [g for g in table.specs if any(_tokens(n) == words for n in g.nvml_names)]


def _match_by_nvml_name(name: str, table: GPUTable) -> GPUSpec | None:
    named = _named(name, table)
    return named[0] if named else None


def _agrees(spec: GPUSpec, memory_total_bytes: int) -> bool:
    return abs(memory_total_bytes - spec.memory_bytes) <= PARTIAL_MATCH_MEMORY_TOLERANCE * spec.memory_bytes


def _contains(words: tuple[str, ...], part: tuple[str, ...]) -> bool:
    n = len(part)
    return n > 0 and any(words[i : i + n] == part for i in range(len(words) - n + 1))


def match_nvml_name(
    name: str, memory_total_bytes: int | None = None, table: GPUTable | None = None
) -> tuple[GPUSpec | None, str | None]:
    """The table entry for a name NVML reports, and a note when the match is not exact.

    Exact name first, then the normalised name (no brand words, case or separators: old drivers
    say "A100-SXM4-40GB"), then the longest table name contained in it ("NVIDIA H200 NVL" holds
    "NVIDIA H200") if the card's memory agrees. A MIG device name maps to its parent card."""
    t = gpu_table() if table is None else table
    parent, profile = split_mig_name(name)
    check_memory = memory_total_bytes is not None and profile is None
    named = _named(parent, t)
    if named:
        # One name, several cards (an RTX 4060 Ti has 8 or 16 GB): the memory tells them apart.
        fits = [g for g in named if memory_total_bytes is None or profile or _agrees(g, memory_total_bytes)]
        if fits:
            return fits[0], None
        mib = (memory_total_bytes or 0) // MiB
        table_sizes = ", ".join(f"{g.name} {g.memory_bytes // MiB} MiB" for g in named)
        return None, (
            f"{parent!r} reports {mib} MiB, unlike the table's {table_sizes}: "
            "plans use the memory NVML reports and its bandwidth is not known"
        )
    words = _tokens(parent)
    best: list[tuple[int, GPUSpec]] = []
    for g in t.specs:
        size = max((len(_tokens(n)) for n in g.nvml_names if _contains(words, _tokens(n))), default=0)
        if size:
            best.append((size, g))
    if not best:
        return None, None
    top = max(size for size, _ in best)
    winners = [g for size, g in best if size == top]
    if check_memory and memory_total_bytes is not None:
        winners = [g for g in winners if _agrees(g, memory_total_bytes)]
    if len(winners) != 1:
        return None, None
    spec = winners[0]
    return spec, f"{parent!r} is not in the GPU table; using {spec.name} ({spec.label}), the closest entry"


def spec_for_nvml_name(name: str, memory_total_bytes: int | None = None) -> GPUSpec | None:
    return match_nvml_name(name, memory_total_bytes)[0]
