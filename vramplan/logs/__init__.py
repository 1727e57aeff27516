"""Read a runtime's startup log: which runtime wrote it, the settings it states, and what it allocated.

`parse_log(text)` detects the runtime (llama.cpp / llama-server, Ollama, vLLM, SGLang) and returns a
`ParsedLog`; `read_log(path)` reads a file first. One parser per runtime, each naming the source of the
line formats it reads: `ggml` (llama.cpp), `ollama`, `vllm`, `sglang`. Pure text processing: no I/O
beyond reading the file, no estimator.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from vramplan.errors import SourceError
from vramplan.logs import ggml, ollama, sglang, vllm
from vramplan.logs.types import Buffer, Figure, ParsedLog, Settings
from vramplan.runtimes import Runtime

__all__ = ["Buffer", "Figure", "ParsedLog", "Settings", "detect", "parse_log", "read_log"]

_OLLAMA_SLOG = re.compile(r"level=\w+ source=\S+\.go:\d+ msg=")
# Terminal colours and other escape sequences (ECMA-48 CSI and OSC): Ollama, vLLM and SGLang colour
# their log levels when they write to a terminal, and `script` / `docker logs -t` keep the codes.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


def detect(text: str) -> Runtime | None:
    """The runtime that wrote `text`, by the lines only it prints; None if none is recognised.

    Ollama first (its log holds its runner's llama.cpp lines too), then vLLM and SGLang (whose logs may
    mention the other), then llama.cpp."""
    if _OLLAMA_SLOG.search(text) and any(m in text for m in ollama.MARKERS[:-1]):
        return Runtime.OLLAMA
    scores = {
        Runtime.VLLM: sum(m in text for m in vllm.MARKERS[:-1]),
        Runtime.SGLANG: sum(m in text for m in sglang.MARKERS[:-1]),
        Runtime.LLAMA_CPP: sum(m in text for m in ggml.MARKERS),
    }
    best = max(scores, key=lambda r: scores[r])
    return best if scores[best] else None


_PARSERS = {
    Runtime.LLAMA_CPP: ggml.parse,
    Runtime.OLLAMA: ollama.parse,
    Runtime.VLLM: vllm.parse,
    Runtime.SGLANG: sglang.parse,
}


_STARTUPS = {
    Runtime.LLAMA_CPP: (ggml.START, ggml.MEMORY),
    Runtime.OLLAMA: (ollama.START, ollama.MEMORY),
    Runtime.VLLM: (vllm.START, vllm.MEMORY),
    Runtime.SGLANG: (sglang.START, sglang.MEMORY),
}


def last_startup(text: str, runtime: Runtime) -> tuple[str, str | None]:
    """The last startup in `text` that printed memory lines, and a note saying so when the log holds
    several (a restarted server, a log appended to). A startup begins at the first start line (a
    process or model load beginning) after memory lines. Lines of other startups become empty lines,
    so line numbers stay those of the file; Ollama's server lines (GPU, version, settings) before
    the chosen load are kept, as they hold for it."""
    start, memory = _STARTUPS[runtime]
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
    if runtime is Runtime.OLLAMA:
        for i in range(first):
            if "Listening on " in lines[i]:
                kept[:i] = [""] * i  # a later server start: the earlier one's lines do not hold
            if ollama.SERVER.search(lines[i]):
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
    parsed = _PARSERS[rt](text)
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
