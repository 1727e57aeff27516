"""vramplan's own cache directory, and a cache of parsed YAML documents.

Parsing the catalog with PyYAML (importing it included) is about a tenth of `vramplan estimate`'s start-up.
The parsed document (plain dicts, lists and scalars) is kept in `$VRAMPLAN_HOME/yaml/` (default
`~/.cache/vramplan`) together with the text it was parsed from, and an entry is used only when that text
equals the text being loaded, so an edited catalog is parsed again and a stale entry can never be read.
Its file name (a CRC-32 and the length of the text, and the Python version: marshal's format is
version-specific) only finds the entry; zlib and os.path keep hashlib's OpenSSL and pathlib off the
start-up path. Validation still runs on every load; only the YAML parse is skipped. A cache that cannot
be read or written is ignored.
"""

from __future__ import annotations

import marshal
import os
import sys
import zlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path


def _home() -> str:
    return os.path.expanduser(os.environ.get("VRAMPLAN_HOME") or os.path.join("~", ".cache", "vramplan"))


def vramplan_home() -> Path:
    from pathlib import Path

    return Path(_home())


class YAMLSyntaxError(Exception):
    """The text is not valid YAML: `line` (1-based, or None) and `problem` say where and why."""

    def __init__(self, line: int | None, problem: str) -> None:
        super().__init__(problem)
        self.line = line
        self.problem = problem


def _parse(text: str) -> Any:
    import yaml  # only when the cache misses

    try:
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise YAMLSyntaxError(mark.line + 1 if mark else None, str(getattr(exc, "problem", exc))) from None


def load_yaml(text: str) -> Any:
    """`text` parsed as YAML (safe loader), from the cache when this exact text was parsed before."""
    raw = text.encode("utf-8")
    tag = f"{sys.version_info[0]}.{sys.version_info[1]}-{marshal.version}"
    path = os.path.join(_home(), "yaml", f"{zlib.crc32(raw):08x}-{len(raw)}-{tag}.marshal")
    try:
        with open(path, "rb") as f:
            cached_text, doc = marshal.loads(f.read())
        if cached_text == text:
            return doc
    except (OSError, EOFError, ValueError, TypeError):
        pass
    doc = _parse(text)
    try:
        data = marshal.dumps((text, doc))
    except ValueError:  # a type marshal cannot hold (YAML timestamps): no caching
        return doc
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        pass
    return doc
