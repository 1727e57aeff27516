"""The picture of `vramplan estimate --sweep`: memory against context (or concurrency) as stacked
bars of weights / KV cache / activations / overhead, the usable memory as a line, and the point where
the plan stops fitting; one block per GPU of a `--gpu` list on a shared scale, then one row per GPU.

Lines never exceed the console's width nor end in spaces, and words (model ids, GPU names) are never
broken. Where the output is not a terminal, or NO_COLOR is set, the bars are plain ASCII characters.
"""

from __future__ import annotations

import textwrap
from itertools import groupby
from typing import TYPE_CHECKING, Any

from vramplan.report import GiB
from vramplan.report.estimate import _device_json, estimate_json
from vramplan.sweep import Sweep, SweepPoint

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

# (part, plain character, colour) in the order the bars stack
PARTS = (
    ("weights", "#", "blue"),
    ("KV cache", "=", "magenta"),
    ("activations", "+", "yellow"),
    ("overhead", ".", "bright_black"),
)
LINE = ("|", "│", "bold red")  # the usable memory: plain, colour, style
MARK = (">", "▶")  # the row of the largest value that fits: plain, colour
MIN_WIDTH = 30  # narrower, the bars keep a few cells and lines may run over
MAX_BAR = 120  # a wider bar reads no better


# --------------------------------------------------------------------------- JSON


def sweep_json(s: Sweep) -> dict[str, Any]:
    """`estimate --json` of the plan, with the series: one entry per point, smallest value first."""
    doc = estimate_json(s.plan)
    doc["sweep_axis"] = s.axis
    doc["sweep_largest"] = s.largest
    doc["sweep"] = [_point_json(s.axis, p) for p in s.points]
    return doc


def _point_json(axis: str, p: SweepPoint) -> dict[str, Any]:
    return {
        axis: p.value,
        "per_gpu": [_device_json(d) for d in p.per_gpu],
        "device": _device_json(p.device),  # the one drawn: the fullest GPU, or the host of a CPU plan
        "host": _device_json(p.host),
        "fits": p.fits,
        "largest_that_fits": p.limit,
    }


def sweeps_json(sweeps: list[Sweep]) -> dict[str, Any]:
    """One sweep: its document; a `--gpu` list: {"plans": [one document per GPU]}."""
    if len(sweeps) == 1:
        return sweep_json(sweeps[0])
    return {"plans": [sweep_json(s) for s in sweeps]}


# --------------------------------------------------------------------------- the picture


def _wrap(text: str, width: int, indent: str = "") -> list[str]:
    return textwrap.wrap(
        text,
        width,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    ) or [""]


def _gib(n: int) -> str:
    return f"{n / GiB:.1f}"


def _requests(n: int) -> str:
    return "1 request" if n == 1 else f"{n} requests"


def _where(s: Sweep) -> str:
    t = s.plan.topology
    if s.plan.cpu_plan:
        return "host RAM"
    if t.gpus_used > 1:
        return f"the fullest of {t.gpus_used} x {t.gpu}"
    return f"one {t.gpu or 'GPU of unknown size'}"


def _verdict(s: Sweep) -> str:
    e, axis = s.plan, s.axis
    at = f"at {_requests(e.concurrency)}" if axis == "context" else f"at {e.context} tokens each"
    if s.largest is None:
        return "no capacity known: give --gpu NAME[:COUNT] to see where it stops fitting"
    if s.largest == 0:
        return f"does not fit at any {axis} {at}"
    if s.largest >= s.top:
        return f"fits at every {axis} up to {s.top_is}, {s.top}, {at}"
    return f"fits up to {axis} {s.largest} {at}; above it, it does not"


def _bar(p: SweepPoint, scale: int, width: int, capacity: int | None) -> list[int]:
    """The bar of one point as cells of `width + 1`: the part index (0-3), 4 empty, 5 the usable line."""
    d = p.device
    cells = [4] * (width + 1)
    start = 0
    total = 0
    for i, n in enumerate((d.weights_bytes, d.kv_cache_bytes, d.activation_bytes, d.overhead_bytes)):
        total += n
        end = min(round(total / scale * width), width)
        for c in range(start, end):
            cells[c] = i
        start = max(start, end)
    if capacity:
        cells[min(round(capacity / scale * width), width)] = 5
    return cells


def print_sweeps(sweeps: list[Sweep], console: Console) -> None:
    """Draw the sweeps (one, or one per GPU of a `--gpu` list) on a shared scale."""
    from rich.text import Text

    plain = (
        not console.is_terminal
        or console.no_color
        or console.is_dumb_terminal
        or console.color_system is None
    )
    width = max(console.width, MIN_WIDTH)
    first = sweeps[0]
    e, axis = first.plan, first.axis
    lines: list[Text | str] = []
    lines += _wrap(f"{e.model}  {e.quant} on {e.runtime}", width)  # a block that differs says so
    held = f"at {_requests(e.concurrency)}" if axis == "context" else f"at {e.context} tokens each"
    what = "memory" if len(sweeps) > 1 else f"memory of {_where(first)}"
    lines += _wrap(f"{what} against {axis} {held}, in GiB", width)

    values = [p.value for s in sweeps for p in s.points]
    totals = [p.device.total_bytes for s in sweeps for p in s.points]
    scale = max([*totals, *(s.capacity_bytes or 0 for s in sweeps), 1])
    vw = max(len(axis), *(len(str(v)) for v in values))
    tw = max(3, *(len(_gib(n)) for n in totals))
    prefix = 2 + vw + 2 + tw + 2
    bar_width = max(min(width - prefix - 1, MAX_BAR), 4)
    chars = [c for _, c, _ in PARTS]
    styles = [s for _, _, s in PARTS]

    def row(mark: str, value: str, total: str, cells: list[int]) -> Text | str:
        head = f"{mark} {value:>{vw}}  {total:>{tw}}  "
        if plain:
            body = "".join(" " if c == 4 else (LINE[0] if c == 5 else chars[c]) for c in cells)
            return (head + body).rstrip()
        text = Text(head)
        for c, run in groupby(cells):
            n = len(list(run))
            if c == 4:
                text.append(" " * n)
            elif c == 5:
                text.append(LINE[1] * n, style=LINE[2])
            else:
                text.append("█" * n, style=styles[c])
        text.rstrip()
        return text

    top = _gib(scale)
    axis_line = f"{'':1} {axis:>{vw}}  {'GiB':>{tw}}  0{top:>{bar_width}}"
    for s in sweeps:
        lines.append("")
        if len(sweeps) > 1:
            cap = f", {_gib(s.capacity_bytes)} GiB usable" if s.capacity_bytes else ""
            how = ""
            if (s.plan.quant, s.plan.runtime) != (e.quant, e.runtime):
                how = f"; {s.plan.quant} on {s.plan.runtime}"
            if axis == "concurrency" and s.plan.context != e.context:
                how += f"; at {s.plan.context} tokens each"
            lines += _wrap(f"{_where(s)}{cap}{how}", width)
        lines.append(axis_line)
        for p in s.points:
            mark = (MARK[0] if plain else MARK[1]) if p.limit else " "
            lines.append(
                row(
                    mark,
                    str(p.value),
                    _gib(p.device.total_bytes),
                    _bar(p, scale, bar_width, s.capacity_bytes),
                )
            )
    lines.append("")
    capacity = first.capacity_bytes
    usable = "usable" if len(sweeps) > 1 or not capacity else f"usable {_gib(capacity)} GiB"
    items = [(c if plain else "█", style, name) for name, c, style in PARTS]
    if any(s.capacity_bytes for s in sweeps):  # else neither is drawn
        items += [
            (LINE[0] if plain else LINE[1], LINE[2], usable),
            (MARK[0] if plain else MARK[1], "", "the largest that fits"),
        ]
    lines += _legend(items, width, plain)
    if len(sweeps) == 1:
        lines += _wrap(_verdict(first), width)
    else:
        lines += _summary(sweeps, width)
    for line in lines:
        console.print(line, overflow="ignore", crop=False, soft_wrap=True, highlight=False)


def _legend(items: list[tuple[str, str, str]], width: int, plain: bool) -> list[Text | str]:
    """The legend's items ("# weights"), two spaces apart, as many to a line as fit."""

    out: list[Text | str] = []
    line: list[tuple[str, str, str]] = []
    used = 0
    for item in items:
        size = len(item[0]) + 1 + len(item[2])
        if line and used + 2 + size > width:
            out.append(_legend_line(line, plain))
            line, used = [], 0
        used += size + (2 if line else 0)
        line.append(item)
    if line:
        out.append(_legend_line(line, plain))
    return out


def _legend_line(items: list[tuple[str, str, str]], plain: bool) -> Text | str:
    from rich.text import Text

    if plain:
        return "  ".join(f"{glyph} {name}" for glyph, _, name in items)
    text = Text()
    for i, (glyph, style, name) in enumerate(items):
        text.append("  " if i else "")
        text.append(glyph, style=style or None)
        text.append(f" {name}")
    return text


def _summary(sweeps: list[Sweep], width: int) -> list[Text | str]:
    """One row per GPU of a `--gpu` list: its usable memory and the largest value that fits."""
    axis = sweeps[0].axis
    head = ("GPU", "usable GiB", f"largest {axis} that fits")
    rows = []
    for s in sweeps:
        if s.largest is None:
            largest = "unknown"
        elif s.largest == 0:
            largest = "none"
        elif s.largest >= s.top:
            largest = f"{s.top} (all)"
        else:
            largest = str(s.largest)
        cap = _gib(s.capacity_bytes) if s.capacity_bytes else "-"
        rows.append((s.plan.topology.gpu or "-", cap, largest))
    w0 = max(len(r[0]) for r in [head, *rows])
    w1 = max(len(r[1]) for r in [head, *rows])
    out: list[Text | str] = [""]
    for r in [head, *rows]:
        out.append(f"{r[0]:<{w0}}  {r[1]:>{w1}}  {r[2]}".rstrip())
    if max(len(str(x)) for x in out) > width:  # stack the rows on a narrow terminal
        out = [""]
        for r in rows:
            out += _wrap(f"{r[0]}: {r[1]} GiB usable, largest {axis} that fits {r[2]}", width, "  ")
    return out
