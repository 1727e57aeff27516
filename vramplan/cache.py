"""vramplan's own cache directory, and a cache of parsed YAML documents.

Parsing the catalog with PyYAML (importing it included) is about a tenth of `vramplan estimate`'s start-up.
The parsed document (plain dicts, lists and scalars) is kept in `$VRAMPLAN_HOME/yaml/` (default
`~/.cache/vramplan`), keyed by a hash of the text and the Python version (marshal's format is
version-specific), so an edited catalog is parsed again and a stale entry can never be read. Validation
still runs on every load; only the YAML parse is skipped. A cache that cannot be read or written is
ignored.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import sys
from pathlib import Path
from typing import Any


def vramplan_home() -> Path:
    return Path(
        os.path.expanduser(os.environ.get("VRAMPLAN_HOME") or os.path.join("~", ".cache", "vramplan"))
    )


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
    tag = f"{sys.version_info[0]}.{sys.version_info[1]}-{marshal.version}"
    key = hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()
    path = vramplan_home() / "yaml" / f"{key}-{tag}.marshal"
    try:
        return marshal.loads(path.read_bytes())
    except (OSError, EOFError, ValueError, TypeError):
        pass
    doc = _parse(text)
    try:
        data = marshal.dumps(doc)
    except ValueError:  # a type marshal cannot hold (YAML timestamps): no caching
        return doc
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError:
        pass
    return doc
