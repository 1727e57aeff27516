"""`vramplan check` over the corpus of real, published startup logs (tests/fixtures/logs/real/).

Each runtime's folder has an `index.yaml`: one entry per log with its source, version, the catalog model
it is compared with, the `--gpu` it ran on and the exact extra arguments `vramplan check` needs. This
module runs every entry through the same code as `vramplan check FILE ARGS` (read_log + check_log) and
classifies each part against the tolerances of issue 9 (`TOLERANCES`). Entries marked `held_out: true`
were gathered after the rules were final; they are reported apart and never tuned on.

`python benchmarks/corpus.py` prints the summary and every miss; benchmarks/accuracy.py puts the same
tables into docs/accuracy.md.
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from vramplan.catalog import load_catalog  # noqa: E402
from vramplan.check import TOLERANCES, check_log  # noqa: E402
from vramplan.errors import VramplanError  # noqa: E402
from vramplan.hardware import parse_gpu  # noqa: E402
from vramplan.logs import read_log  # noqa: E402
from vramplan.runtimes import Runtime  # noqa: E402

CORPUS = ROOT / "tests" / "fixtures" / "logs" / "real"

# Issue 9's target: the share of comparisons that must fall within check.TOLERANCES.
TARGET_SHARE = 0.90

_ENTRY_KEYS = {"file", "source", "runtime", "version", "model", "same_architecture", "gpu", "args"}
_ENTRY_KEYS |= {"held_out"}
_OPTIONAL_KEYS = {"misses"}  # part -> the cause of a known miss, written after analysis


@dataclass(frozen=True)
class Entry:
    path: Path
    source: str
    runtime: str
    version: str | None
    model: str
    gpu: str | None
    args: tuple[str, ...]
    held_out: bool
    misses: dict[str, str]

    @property
    def name(self) -> str:
        return f"{self.path.parent.name}/{self.path.name}"


@dataclass(frozen=True)
class Row:
    entry: Entry
    part: str
    scope: str
    unit: str
    measured: float
    estimate: float
    error: float

    @property
    def tolerance(self) -> float | None:
        return TOLERANCES.get(self.part)

    @property
    def within(self) -> bool | None:
        tol = self.tolerance
        return None if tol is None else abs(self.error) <= tol


@dataclass(frozen=True)
class Outcome:
    entry: Entry
    rows: tuple[Row, ...]
    failure: str | None  # the one line `vramplan check` printed instead of a comparison
    notes: tuple[str, ...]


def load_entries(root: Path = CORPUS) -> list[Entry]:
    entries: list[Entry] = []
    for index in sorted(root.glob("*/index.yaml")):
        raw = yaml.safe_load(index.read_text(encoding="utf-8")) or []
        if not isinstance(raw, list):
            raise ValueError(f"{index}: a list of entries expected")
        for i, item in enumerate(raw):
            if not isinstance(item, dict):
                raise ValueError(f"{index}: entry {i} is not a mapping")
            keys = set(item)
            if not _ENTRY_KEYS <= keys or keys - _ENTRY_KEYS - _OPTIONAL_KEYS:
                missing = sorted(_ENTRY_KEYS - keys)
                extra = sorted(keys - _ENTRY_KEYS - _OPTIONAL_KEYS)
                name = item.get("file")
                raise ValueError(f"{index}: entry {i} ({name}): missing {missing}, unknown {extra}")
            path = index.parent / item["file"]
            if not path.is_file():
                raise ValueError(f"{index}: {item['file']} does not exist")
            entries.append(
                Entry(
                    path=path,
                    source=str(item["source"]),
                    runtime=str(item["runtime"]),
                    version=None if item["version"] is None else str(item["version"]),
                    model=str(item["model"]),
                    gpu=item["gpu"],
                    args=tuple(str(a) for a in item["args"] or ()),
                    held_out=bool(item["held_out"]),
                    misses=dict(item.get("misses") or {}),
                )
            )
    return entries


def _options(args: tuple[str, ...]) -> dict[str, str]:
    """`vramplan check`'s options as an entry's args give them (--model, --quant, --gpu, --runtime)."""
    names = {"--model": "model", "-m": "model", "--quant": "quant", "-q": "quant", "--gpu": "gpu"}
    names |= {"--runtime": "runtime", "-r": "runtime"}
    out: dict[str, str] = {}
    it = iter(args)
    for a in it:
        key, _, value = a.partition("=")
        if key not in names:
            raise ValueError(f"unknown check option {a!r}")
        out[names[key]] = value if value else next(it)
    return out


def run_entry(entry: Entry, catalog: Any = None) -> Outcome:
    catalog = catalog if catalog is not None else load_catalog()
    opts = _options(entry.args)
    try:
        parsed = read_log(entry.path, Runtime(opts["runtime"]) if "runtime" in opts else None)
        gpu = parse_gpu(opts["gpu"]) if "gpu" in opts else None
        result = check_log(
            catalog, parsed, str(entry.path), model=opts.get("model"), quant=opts.get("quant"), gpu=gpu
        )
    except VramplanError as exc:  # the line `vramplan check` prints, with the log named as in the tables
        return Outcome(entry, (), str(exc).replace(str(entry.path), entry.name), ())
    rows = tuple(Row(entry, p.part, p.scope, p.unit, p.measured, p.estimate, p.error) for p in result.parts)
    return Outcome(entry, rows, None, result.notes)


def run_all(entries: list[Entry]) -> list[Outcome]:
    catalog = load_catalog()
    return [run_entry(e, catalog) for e in entries]


def _pct(x: float) -> str:
    return f"{x:+.1%}"


def summary_lines(outcomes: list[Outcome]) -> list[str]:
    """The markdown summary: per runtime and part, count, median, worst, share within tolerance."""
    lines = [
        "| runtime | part | comparisons | median error | worst error | within tolerance |",
        "|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, str], list[Row]] = {}
    for o in outcomes:
        for r in o.rows:
            groups.setdefault((o.entry.runtime, r.part), []).append(r)
    for (rt, part), rows in sorted(groups.items()):
        errs = [r.error for r in rows]
        tol = TOLERANCES.get(part)
        ok = sum(bool(r.within) for r in rows)
        within = "not targeted" if tol is None else f"{ok}/{len(rows)} (±{tol:.0%})"
        lines.append(
            f"| {rt} | {part} | {len(rows)} | {_pct(statistics.median(errs))} | "
            f"{_pct(max(errs, key=abs))} | {within} |"
        )
    targeted = [r for o in outcomes for r in o.rows if r.within is not None]
    ok = sum(bool(r.within) for r in targeted)
    read = sum(o.failure is None for o in outcomes)
    lines += [
        "",
        f"Logs read: {read} of {len(outcomes)}. Comparisons within tolerance: {ok} of {len(targeted)}"
        + (f" ({ok / len(targeted):.0%}; target {TARGET_SHARE:.0%})." if targeted else "."),
    ]
    return lines


def miss_lines(outcomes: list[Outcome]) -> list[str]:
    lines = ["| log | part | scope | measured | estimate | error | cause |", "|---|---|---|---|---|---|---|"]
    for o in outcomes:
        if o.failure is not None:
            lines.append(f"| {o.entry.name} | (not read) | | | | | {o.failure} |")
        for r in o.rows:
            if r.within is False:
                cause = o.entry.misses.get(r.part, "not analysed")
                lines.append(
                    f"| {o.entry.name} | {r.part} | {r.scope} | {_fmt(r.measured, r.unit)} | "
                    f"{_fmt(r.estimate, r.unit)} | {_pct(r.error)} | {cause} |"
                )
    return lines


def log_lines(outcomes: list[Outcome]) -> list[str]:
    """One row per log: what it is and where it came from."""
    lines = ["| log | runtime | version | GPU | compared with | source |", "|---|---|---|---|---|---|"]
    for o in outcomes:
        e = o.entry
        lines.append(
            f"| {e.name} | {e.runtime} | {e.version or 'not printed'} | {e.gpu or 'from the log'} | "
            f"{e.model} | {e.source} |"
        )
    return lines


def markdown(outcomes: list[Outcome], heading: str, intro: tuple[str, ...] = ()) -> list[str]:
    """A section of docs/accuracy.md: the summary, every miss with its cause, and the logs."""
    if not outcomes:
        return [f"## {heading}", "", "No logs in this set yet.", ""]
    return [
        f"## {heading}",
        "",
        *((*intro, "") if intro else ()),
        *summary_lines(outcomes),
        "",
        f"### Misses beyond the tolerances ({heading.lower()})",
        "",
        *miss_lines(outcomes),
        "",
        f"### The logs ({heading.lower()})",
        "",
        *log_lines(outcomes),
        "",
    ]


def _fmt(x: float, unit: str) -> str:
    if unit == "bytes":
        return f"{x / (1 << 30):.2f} GiB" if x >= 1 << 30 else f"{x / (1 << 20):.1f} MiB"
    return f"{x:,.2f}" if unit == "requests" else f"{x:,.0f}"


def main(argv: list[str]) -> int:
    entries = load_entries()
    held = "--held-out" in argv
    chosen = [e for e in entries if e.held_out == held]
    outcomes = run_all(chosen)
    print("\n".join(summary_lines(outcomes)))
    print()
    print("\n".join(miss_lines(outcomes)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
