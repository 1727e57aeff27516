"""Text laid out in lines of a given width, with no terminal library: prose wrapped at word boundaries
(a word, a number with its unit, a flag with its value never broken), shell commands wrapped between
their words with ` \\` continuations so that they still paste. The report printers and the deploy
launches' progress lines both lay their text out here.
"""

from __future__ import annotations

import re
import shlex
import textwrap
from collections.abc import Sequence

NBSP = "\xa0"  # joins what must stay on one line while wrapping; printed as a space
DOT = "  ·  "  # the separator of the facts on one line; a line may break after it, never before
RULE = "─"
NUMBER_UNIT = re.compile(r"(\d) (?=(?:GiB|MiB|GB/s|GB|B|bytes|tokens|cells|tok/s)\b)")  # "4.77 MiB" too
LABEL_NUMBER = re.compile(r": (?=\d[\d.,]*(?:\s|$))")  # "tokens: 26" keeps its figure
FLAG_VALUE = re.compile(r"(?<!\S)(--[a-z][\w-]*) (?=[^\s-])")  # "--nodes 5" in prose stays on one line


def wrap(
    text: str, width: int, first: str = "", rest: str | None = None, keep: Sequence[str] = ()
) -> list[str]:
    """`text` in lines of at most `width` (a longer word keeps its own line whole), the first starting
    with `first`, the others with `rest` (by default as many spaces, so they sit under the text); the
    phrases of `keep` (names with spaces: "NVIDIA H100 80GB HBM3") are not broken either."""
    rest = " " * len(first) if rest is None else rest
    for k in keep:
        text = text.replace(k, k.replace(" ", NBSP))
    glued = FLAG_VALUE.sub(r"\1" + NBSP, text.replace(DOT, NBSP * 2 + "·  "))
    glued = LABEL_NUMBER.sub(":" + NBSP, NUMBER_UNIT.sub(r"\1" + NBSP, glued))
    lines = textwrap.wrap(
        glued,
        width,
        initial_indent=first,
        subsequent_indent=rest,
        break_long_words=False,
        break_on_hyphens=False,
    ) or [first.rstrip()]
    # a word too long for its indent (a URL) starts its line instead, where it fits there
    return [_fit(line.replace(NBSP, " ").rstrip(), width) for line in lines]


def _fit(line: str, width: int) -> str:
    return line.lstrip() if len(line) > width and len(line.lstrip()) <= width else line


def shell_words(line: str) -> list[str]:
    """`line` split at the spaces outside quotes, each word kept as written (quotes and all)."""
    words: list[str] = []
    word, quote, escaped = "", "", False
    for ch in line:
        if escaped:
            word, escaped = word + ch, False
        elif ch == "\\" and quote != "'":
            word, escaped = word + ch, True
        elif quote:
            word += ch
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            word, quote = word + ch, ch
        elif ch == " ":
            if word:
                words.append(word)
            word = ""
        else:
            word += ch
    return [*words, word] if word else words


def shell_lines(words: Sequence[str], width: int, first: str = "$ ", tail: str = "") -> list[str]:
    """Words of a shell line (quoted already) in lines of `width`, wrapped with ` \\` continuations (the
    continuation lines indented four more spaces), then `tail` (a remark) on the last line if it fits."""
    indent = " " * (len(first) - len(first.lstrip()))
    lines: list[str] = []
    line = first + words[0]
    for w in words[1:]:
        if len(line) + 1 + len(w) + 2 > width:  # room for " \\"
            lines.append(line + " \\")
            line = indent + "    " + w
        else:
            line += " " + w
    if tail and len(line) + len(tail) + 3 > width:
        lines.append(line)
        lines += wrap(tail, width, indent + "  ")
    else:
        lines.append(line + (f"   {tail}" if tail else ""))
    return lines


def command_words(argv: Sequence[str]) -> list[str]:
    words: list[str] = []
    for a in argv:
        q = shlex.quote(a)
        if words and words[-1].startswith("-") and " " not in words[-1] and not a.startswith("-"):
            words[-1] += " " + q  # --flag value
        else:
            words.append(q)
    return words


def hint_lines(line: str, width: int, first: str = "") -> list[str]:
    """A shell line as a start hint gives it ("cd DIR && docker compose up -d   (or ...)") in lines of
    `width`: wrapped between its words, never inside a quoted one, the remark after three spaces last."""
    cmd, sep, remark = line.partition("   (")
    return shell_lines(shell_words(cmd) or [""], width, first, f"({remark}" if sep else "")
