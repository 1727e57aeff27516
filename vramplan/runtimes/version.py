"""Runtime versions as their logs and releases print them, ordered; and rules tables keyed by them.

- vLLM / SGLang / Ollama releases: `0.7.3`, `v0.7.3`, `0.6.6.post1`, `0.10.1rc2.dev123+g1234abc`,
  `0.4.3.post2`, `0.12.3-rc1`, ordered as PEP 440 orders them (dev < rc < release < post).
- llama.cpp builds: `b4714`, `4714 (0d55958c)`, `version: 6097 (abc1234)`: the build number, which
  counts the commits of the master branch and so orders them (llama.cpp's CMake `BUILD_NUMBER`).
- llama-cpp-python's vendored ggml prints a release-style `0.5.0-dev`: a release, not a build number,
  so it is not ordered against llama.cpp builds (a table keyed by builds does not place it).

`parse_version` answers None for anything it cannot read, never raises.
"""

from __future__ import annotations

import re
from typing import Generic, TypeVar

T = TypeVar("T")

# compiled on first use: `vramplan estimate` reads no version and should not pay for the patterns
_BUILD_PATTERN = r"(?:(?:version|build)\s*[:=]?\s*)?b?(\d+)(?:\s*\(\s*[0-9a-f]+\s*\))?"
_RELEASE_PATTERN = (
    r"v?(?P<release>\d+(?:\.\d+)*)"
    r"(?:[-._]?(?P<pre>a|alpha|b|beta|rc|c|pre|preview)[-._]?(?P<pre_n>\d*))?"
    r"(?:[-._]?post[-._]?(?P<post>\d*))?"
    r"(?:[-._]?dev[-._]?(?P<dev>\d*))?"
    r"(?:\+[0-9a-z][0-9a-z.\-_]*)?"
)
_PRE_RANK = {"a": 0, "alpha": 0, "b": 1, "beta": 1, "rc": 2, "c": 2, "pre": 2, "preview": 2}

RELEASE = "release"
BUILD = "build"


class Version:
    """One parsed version: its scheme (release or llama.cpp build), the text it was read from, and a
    key that orders versions of one scheme. Versions of different schemes are not ordered (< raises
    TypeError, == is False)."""

    __slots__ = ("key", "release", "scheme", "text")

    def __init__(self, scheme: str, text: str, release: tuple[int, ...], key: tuple[object, ...]) -> None:
        self.scheme = scheme
        self.text = text
        self.release = release
        self.key = key

    def __repr__(self) -> str:
        return f"Version({self.text!r})"

    def __str__(self) -> str:
        return self.text

    def _other(self, other: object) -> Version | None:
        if isinstance(other, Version) and other.scheme == self.scheme:
            return other
        return None

    def __eq__(self, other: object) -> bool:
        o = self._other(other)
        return o is not None and self.key == o.key

    def __hash__(self) -> int:
        return hash((self.scheme, self.key))

    def comparable(self, other: Version) -> bool:
        return self.scheme == other.scheme

    def __lt__(self, other: Version) -> bool:
        o = self._other(other)
        if o is None:
            return NotImplemented
        return self.key < o.key

    def __le__(self, other: Version) -> bool:
        o = self._other(other)
        if o is None:
            return NotImplemented
        return self.key <= o.key

    def __gt__(self, other: Version) -> bool:
        o = self._other(other)
        if o is None:
            return NotImplemented
        return self.key > o.key

    def __ge__(self, other: Version) -> bool:
        o = self._other(other)
        if o is None:
            return NotImplemented
        return self.key >= o.key


def _num(text: str | None) -> int:
    return int(text) if text else 0


def parse_version(text: object) -> Version | None:
    """The version in `text` (a runtime's own spelling, see the module docstring), or None."""
    if not isinstance(text, str):
        return None
    t = text.strip()
    if not t or len(t) > 200:
        return None
    m = re.fullmatch(_BUILD_PATTERN, t, re.IGNORECASE)
    if m is not None and (not m.group(1).startswith("0") or m.group(1) == "0") and "." not in t:
        n = int(m.group(1))
        return Version(BUILD, t, (n,), (n,))
    m = re.fullmatch(_RELEASE_PATTERN, t, re.IGNORECASE)
    if m is None:
        return None
    release = tuple(int(p) for p in m["release"].split("."))
    if len(release) < 2:
        return None  # a lone number is a llama.cpp build, handled above; "07" is neither
    trimmed = release
    while len(trimmed) > 1 and trimmed[-1] == 0:
        trimmed = trimmed[:-1]  # 0.9 == 0.9.0
    pre, post, dev = m["pre"], m["post"], m["dev"]
    # PEP 440 order: a dev release without pre / post sorts before the pre-releases of its release,
    # the pre-releases before the release, the release before its post-releases
    if pre is not None:
        pre_key: tuple[int, ...] = (0, _PRE_RANK[pre.lower()], _num(m["pre_n"]))
    elif dev is not None and post is None:
        pre_key = (-1,)
    else:
        pre_key = (1,)
    post_key = -1 if post is None else _num(post)
    dev_key = (1, 0) if dev is None else (0, _num(dev))
    return Version(RELEASE, t, release, (trimmed, pre_key, post_key, dev_key))


def as_version(version: Version | str | None) -> Version | None:
    if version is None or isinstance(version, Version):
        return version
    return parse_version(version)


class Versioned(Generic[T]):
    """A rule's value over a runtime's versions: rows of (since, value, source), oldest first.

    `since` None is the first row's "from the start". `at(None)` is the newest row (current releases);
    `at(v)` the last row whose `since` is at or before v; a version before the first row's `since` gets
    that oldest row (no older rule is known); a version the table cannot order (unknown, or of another
    scheme) gets the newest row. The `since` texts are read and checked on first use (`rows`), so a
    start-up that asks only for current releases parses no version."""

    __slots__ = ("_parsed", "_raw", "name")

    def __init__(self, name: str, *rows: tuple[str | None, T, str]) -> None:
        if not rows:
            raise ValueError(f"{name}: a versioned rule needs at least one row")
        self.name = name
        self._raw = rows
        self._parsed: tuple[tuple[Version | None, T, str], ...] | None = None

    @property
    def rows(self) -> tuple[tuple[Version | None, T, str], ...]:
        """The rows with their `since` read; ValueError for a table out of order, a `since` that cannot
        be read, or a row without its source."""
        if self._parsed is not None:
            return self._parsed
        name = self.name
        parsed: list[tuple[Version | None, T, str]] = []
        for since, value, source in self._raw:
            v = parse_version(since) if since is not None else None
            if since is not None and v is None:
                raise ValueError(f"{name}: cannot read the version {since!r}")
            if parsed and (v is None or (parsed[-1][0] is not None and not parsed[-1][0] < v)):
                raise ValueError(f"{name}: rows must be in increasing version order")
            if not source:
                raise ValueError(f"{name}: the row since {since} names no source")
            parsed.append((v, value, source))
        self._parsed = tuple(parsed)
        return self._parsed

    def row(self, version: Version | str | None = None) -> tuple[Version | None, T, str]:
        v = as_version(version)
        rows = self.rows
        if v is None:
            return rows[-1]
        found = None
        for row in rows:
            since = row[0]
            if since is None:
                found = row
            elif not since.comparable(v):
                return rows[-1]
            elif since <= v:
                found = row
        return found if found is not None else rows[0]

    def at(self, version: Version | str | None = None) -> T:
        if version is None:
            return self._raw[-1][1]
        return self.row(version)[1]

    def source_at(self, version: Version | str | None = None) -> str:
        if version is None:
            return self._raw[-1][2]
        return self.row(version)[2]

    def is_newest(self, version: Version | str | None) -> bool:
        return self.row(version) is self.rows[-1]
