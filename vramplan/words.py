"""One phrasing for counts in every message: `1 GPU`, `2 GPUs`, `1 request`, `8 requests`."""

from __future__ import annotations


def count(n: int, noun: str, plural: str | None = None) -> str:
    """`n noun` with the noun in the plural unless n is 1 (`plural`: an irregular plural)."""
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"
