"""Lines that fit the console: tables, wrapped notes and shell commands.

Every printer lays its text out here, to the console's width (80 in a pipe, the terminal's width
otherwise), by three rules: a word (a model id, a quant, a repo id, a path, a number with its unit) is
never broken across lines; no line ends in spaces; no line is wider than the console, unless a single
word is. A note wraps at spaces under its label; a table gives its columns their natural widths, lets
the columns that hold prose or lists wrap between words when it must, and says when even that does not
fit (its printer then shortens or stacks its rows); a command wraps with a shell continuation (` \\`),
so that it still pastes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

from vramplan.lines import DOT as DOT  # re-exported: the printers take them from here
from vramplan.lines import NBSP as NBSP
from vramplan.lines import RULE, command_words, hint_lines, shell_lines
from vramplan.lines import wrap as wrap

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

Cell = Union[str, "Text"]


def width_of(console: Console) -> int:
    return max(console.width, 20)


def say(
    console: Console,
    text: str,
    first: str = "",
    rest: str | None = None,
    style: str = "",
    keep: Sequence[str] = (),
) -> None:
    """Print `text` wrapped to the console (see `wrap`)."""
    for line in wrap(text, width_of(console), first, rest, keep):
        emit(console, line, style)


def note(
    console: Console, text: str, label: str = "note: ", indent: str = "", keep: Sequence[str] = ()
) -> None:
    """A note ("note: ...") with its lines wrapped under the text after the label."""
    say(console, text, indent + label, keep=keep)


def emit(console: Console, line: Cell, style: str = "") -> None:
    """One line as it is: already laid out, so rich neither wraps nor crops it."""
    console.print(line, style=style or None, soft_wrap=True, overflow="ignore", crop=False)


def command(console: Console, argv: Sequence[str], first: str = "$ ", tail: str = "") -> None:
    """A shell command, wrapped between arguments with ` \\` continuations (an option stays with its
    value), the continuation lines indented four more spaces; `tail` (a remark) follows the last line
    when it fits there, else on a line of its own."""
    shell(console, command_words(argv), first, tail)


def shell_line(console: Console, line: str, first: str = "") -> None:
    """A shell line as a runtime's start hint gives it ("cd DIR && docker compose up -d   (or ...)"),
    wrapped as `command` wraps, between its words and never inside a quoted one."""
    for out in hint_lines(line, width_of(console), first):
        emit(console, out)


def shell(console: Console, words: Sequence[str], first: str = "$ ", tail: str = "") -> None:
    """Words of a shell line (quoted already) wrapped with ` \\` continuations, then `tail`."""
    for out in shell_lines(words, width_of(console), first, tail):
        emit(console, out)


# --------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class Column:
    header: str
    right: bool = False  # right-justified (numbers)
    wrap: bool = False  # may wrap between words (prose, lists); an identifier column never does


def _len(c: Cell) -> int:
    from rich.cells import cell_len

    return cell_len(c) if isinstance(c, str) else c.cell_len


def _longest_word(c: Cell) -> int:
    """How narrow a cell can wrap: its longest word (a styled cell does not wrap: all of it)."""
    return max((len(w) for w in c.split()), default=0) if isinstance(c, str) else c.cell_len


def table(
    columns: Sequence[Column], rows: Sequence[Sequence[Cell]], width: int, gap: int = 2
) -> list[Text] | None:
    """The table's lines (header, rule, rows), or None when it cannot fit `width` without breaking a
    word. Columns get their natural widths; when those are too wide, the wrapping columns give up room,
    the widest first, down to their longest word."""
    widths = [max([_len(col.header), *(_len(r[i]) for r in rows)]) for i, col in enumerate(columns)]
    floor = [
        max([len(col.header), *(_longest_word(r[i]) for r in rows)]) if col.wrap else widths[i]
        for i, col in enumerate(columns)
    ]
    excess = sum(widths) + gap * (len(columns) - 1) - width
    while excess > 0:
        slack = [(widths[i] - floor[i], i) for i in range(len(columns)) if widths[i] > floor[i]]
        if not slack:
            return None
        widths[max(slack)[1]] -= 1
        excess -= 1
    return render(columns, rows, widths, gap)


def render(
    columns: Sequence[Column], rows: Sequence[Sequence[Cell]], widths: Sequence[int], gap: int = 2
) -> list[Text]:
    from rich.text import Text

    def cell_lines(col: Column, c: Cell, w: int) -> list[Cell]:
        if isinstance(c, str) and col.wrap and _len(c) > w:
            return list(wrap(c, w))
        return [c]

    def line(cells: Sequence[Cell]) -> Text:
        out = Text()
        for i, (col, c, w) in enumerate(zip(columns, cells, widths, strict=True)):
            pad = " " * max(w - _len(c), 0)
            out.append(" " * gap if i else "")
            out.append(pad if col.right else "")
            out.append(c)
            out.append("" if col.right else pad)
        out.rstrip()
        return out

    lines = [line([col.header for col in columns])]
    lines.append(Text(RULE * (sum(widths) + gap * (len(widths) - 1))))
    for r in rows:
        parts = [cell_lines(col, c, w) for col, c, w in zip(columns, r, widths, strict=True)]
        for k in range(max(len(p) for p in parts)):
            lines.append(line([p[k] if k < len(p) else "" for p in parts]))
    return lines


def natural(columns: Sequence[Column], rows: Sequence[Sequence[Cell]], gap: int = 2) -> list[Text]:
    """The table at its natural widths (lines may run over a console too narrow for its words)."""
    widths = [max([_len(col.header), *(_len(r[i]) for r in rows)]) for i, col in enumerate(columns)]
    return render(columns, rows, widths, gap)


def print_table(console: Console, lines: Sequence[Text]) -> None:
    for line in lines:
        emit(console, line)


def common_prefixes(ids: Sequence[str]) -> list[str]:
    """The runs of whole "-"-separated parts, each with its "-", that every id starts with (or is, less
    the "-"), shortest first, leaving at least one id a shorter rest: "deepseek-", then "deepseek-r1-"
    for the DeepSeek-R1 family."""
    ids = list(dict.fromkeys(ids))
    if not ids:
        return []
    parts = max(ids, key=len).split("-")
    out = []
    for n in range(1, len(parts)):
        p = "-".join(parts[:n]) + "-"
        whole = all((i.startswith(p) and len(i) > len(p)) or i == p[:-1] for i in ids)
        if whole and any(i.startswith(p) for i in ids):
            out.append(p)
    return out


def short_id(model_id: str, prefix: str) -> str:
    return (
        model_id[len(prefix) :] if prefix and model_id.startswith(prefix) and model_id != prefix else model_id
    )
