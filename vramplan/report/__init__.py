"""Printing: rich tables with memory bars, and the JSON forms of results (integer bytes).

One module per command's results (estimate, catalog, ...); sizes are shown in GiB with the unit
written out, JSON carries bytes only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.text import Text

GiB = 1 << 30


def gib(n: int | None) -> str:
    return "-" if n is None else f"{n / GiB:.2f} GiB"


def bar(used: int, capacity: int | None, width: int = 20) -> Text:
    """A memory bar: filled share of what the runtime may use; red when over (width 0: the share)."""
    from rich.text import Text

    if not capacity:
        return Text("size unknown", style="dim")
    share = used / capacity
    if not width:
        return Text(f"{share:.0%}", style="red" if share > 1 else "")
    filled = min(width, round(share * width))
    style = "red" if share > 1 else ("yellow" if share > 0.9 else "green")
    return Text("█" * filled + "░" * (width - filled), style=style) + Text(f" {share:5.0%}")


def dumps(doc: Any) -> str:
    import json  # only --json needs it

    return json.dumps(doc, indent=2, allow_nan=False)  # NaN / Infinity are not JSON
