"""Read a runtime's startup log: which runtime wrote it, the settings it states, and what it allocated.

`parse_log(text)` detects the runtime (llama.cpp / llama-server, Ollama, vLLM, SGLang) and returns a
`ParsedLog`; `read_log(path)` reads a file first. One parser per runtime, each naming the source of the
line formats it reads: `ggml` (llama.cpp), `ollama`, `vllm`, `sglang`. Pure text processing: no I/O
beyond reading the file, no estimator.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from vramplan.errors import SourceError
from vramplan.logs import ggml, ollama, sglang, vllm
from vramplan.logs.types import Buffer, Figure, ParsedLog, Settings
from vramplan.runtimes import Runtime

__all__ = [
    "READERS",
    "Buffer",
    "Figure",
    "LogReader",
    "ParsedLog",
    "Settings",
    "detect",
    "parse_log",
    "read_log",
    "reader_for",
]

_OLLAMA_SLOG = re.compile(r"level=\w+ source=\S+\.go:\d+ msg=")
# Terminal colours and other escape sequences (ECMA-48 CSI and OSC): Ollama, vLLM and SGLang colour
# their log levels when they write to a terminal, and `script` / `docker logs -t` keep the codes.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


class LogReader(Protocol):
    """What every runtime's log reader gives; `READERS` holds one per runtime.

    - `runtime`: the runtime whose log it reads;
    - `score(text)`: how many of the lines only this runtime prints `text` holds (0: not its log);
    - `start` / `memory`: a line that begins a startup (a process or model load) / a memory line, which
      cut a log that holds several startups to the last one with memory lines;
    - `keep(line)`: a line before the chosen startup that still holds for it (Ollama's server lines);
    - `parse(text)`: the settings and allocations of one startup, as a `ParsedLog`. Settings are typed
      (`Settings`: ints, floats, bools); the runtime's own names are kept as printed and mapped to
      vramplan's types inside the reader (the KV cache type: `Settings.kv_dtype`, from ggml's cache type
      names or vLLM / SGLang's `kv_cache_dtype` names, logs/types.py)."""

    @property
    def runtime(self) -> Runtime: ...

    @property
    def start(self) -> re.Pattern[str]: ...

    @property
    def memory(self) -> re.Pattern[str]: ...

    def score(self, text: str) -> int: ...

    def keep(self, line: str) -> bool: ...

    def parse(self, text: str) -> ParsedLog: ...


@dataclass(frozen=True)
class _Reader:
    """A reader module (ggml, ollama, vllm, sglang) seen through the `LogReader` protocol."""

    runtime: Runtime
    markers: tuple[str, ...]  # lines only this runtime prints
    start: re.Pattern[str]
    memory: re.Pattern[str]
    parser: Callable[[str], ParsedLog]
    server: re.Pattern[str] | None = None  # lines kept from before the chosen startup
    gate: re.Pattern[str] | None = None  # a line format the log must have before markers count

    def score(self, text: str) -> int:
        if self.gate is not None and not self.gate.search(text):
            return 0
        return sum(m in text for m in self.markers)

    def keep(self, line: str) -> bool:
        return self.server is not None and self.server.search(line) is not None

    def parse(self, text: str) -> ParsedLog:
        return self.parser(text)


# Detection order: Ollama first (its log holds its runner's llama.cpp lines too, and wins whenever its
# own structured lines are there), then vLLM and SGLang (whose logs may mention the other) by the most
# markers, then llama.cpp. The last marker of vLLM / SGLang / Ollama is a weak one (their name), left
# out of detection.
READERS: tuple[LogReader, ...] = (
    _Reader(
        Runtime.OLLAMA,
        ollama.MARKERS[:-1],
        ollama.START,
        ollama.MEMORY,
        ollama.parse,
        server=ollama.SERVER,
        gate=_OLLAMA_SLOG,
    ),
    _Reader(Runtime.VLLM, vllm.MARKERS[:-1], vllm.START, vllm.MEMORY, vllm.parse),
    _Reader(Runtime.SGLANG, sglang.MARKERS[:-1], sglang.START, sglang.MEMORY, sglang.parse),
    _Reader(Runtime.LLAMA_CPP, ggml.MARKERS, ggml.START, ggml.MEMORY, ggml.parse),
)
_BY_RUNTIME = {r.runtime: r for r in READERS}


def reader_for(runtime: Runtime) -> LogReader:
    return _BY_RUNTIME[runtime]


def detect(text: str) -> Runtime | None:
    """The runtime that wrote `text`, by the lines only it prints; None if none is recognised."""
    first = READERS[0]
    if first.score(text):
        return first.runtime
    scores = {r.runtime: r.score(text) for r in READERS[1:]}
    best = max(scores, key=lambda r: scores[r])
    return best if scores[best] else None


def last_startup(text: str, runtime: Runtime) -> tuple[str, str | None]:
    """The last startup in `text` that printed memory lines, and a note saying so when the log holds
    several (a restarted server, a log appended to). A startup begins at the first start line (a
    process or model load beginning) after memory lines. Lines of other startups become empty lines,
    so line numbers stay those of the file; Ollama's server lines (GPU, version, settings) before
    the chosen load are kept, as they hold for it."""
    reader = _BY_RUNTIME[runtime]
    start, memory = reader.start, reader.memory
    lines = text.splitlines()
    begins = [0]
    with_memory: list[int] = []
    seen = False  # memory lines since the current startup began (other than a start line's own)
    for i, line in enumerate(lines):
        is_start = start.search(line) is not None
        if seen and is_start:
            begins.append(i)
            seen = False
        if memory.search(line):
            seen = seen or not is_start  # Ollama's planner line starts a load and states memory
            if with_memory[-1:] != [len(begins) - 1]:
                with_memory.append(len(begins) - 1)
    if len(begins) == 1 or not with_memory:
        return text, None
    k = with_memory[-1]
    first = begins[k]
    end = begins[k + 1] if k + 1 < len(begins) else len(lines)
    kept = [""] * len(lines)
    for i in range(first):
        if not reader.keep(lines[i]):
            continue
        if "Listening on " in lines[i]:
            kept[:i] = [""] * i  # a later server start: the earlier one's lines do not hold
        kept[i] = lines[i]
    kept[first:end] = lines[first:end]
    which = "the last" if k == len(begins) - 1 else f"the last with memory lines (startup {k + 1})"
    note = f"the log holds {len(begins)} startups; this compares {which}, from line {first + 1}"
    return "\n".join(kept) + "\n", note


def parse_log(text: str, runtime: Runtime | None = None) -> ParsedLog:
    """Parse `text` as `runtime`'s log (detected when None); of several startups, the last one.
    Raises SourceError when the log has no memory lines of a known runtime."""
    text = _ANSI.sub("", text)
    rt = runtime or detect(text)
    if rt is None:
        raise SourceError(
            "no memory lines of llama.cpp, llama-server, Ollama, vLLM or SGLang found in the log "
            "(see docs/check.md for the lines vramplan reads)"
        )
    text, note = last_startup(text, rt)
    parsed = _BY_RUNTIME[rt].parse(text)
    if note is not None:
        parsed = replace(parsed, notes=(note, *parsed.notes))
    if not parsed.has_memory_lines:
        raise SourceError(
            f"the {rt.value} log has no memory lines (model, KV cache or compute buffer sizes); "
            "give the full startup log, from launch until the server is ready"
        )
    return parsed


def read_log(path: str | Path, runtime: Runtime | None = None) -> ParsedLog:
    if not str(path).strip():
        raise SourceError("LOGFILE names no file (an empty path)")
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise SourceError(f"{path}: no such log file") from None
    except IsADirectoryError:
        raise SourceError(f"{path}: is a directory, not a log file") from None
    except OSError as exc:
        raise SourceError(f"{path}: cannot read the log ({exc.strerror or exc})") from None
    text = raw.decode("utf-8", errors="replace")
    if not text.strip():
        raise SourceError(f"{path}: the log is empty")
    try:
        return parse_log(text, runtime)
    except SourceError as exc:
        raise SourceError(f"{path}: {exc}") from None
