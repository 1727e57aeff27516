"""Read a runtime's startup log: which runtime wrote it, the settings it states, and what it allocated.

`parse_log(text)` detects the runtime (llama.cpp / llama-server, Ollama, vLLM, SGLang) and returns a
`ParsedLog`; `read_log(path)` reads a file first. One parser per runtime, each naming the source of the
line formats it reads: `ggml` (llama.cpp), `ollama`, `vllm`, `sglang`. Pure text processing: no I/O
beyond reading the file, no estimator.
"""

from __future__ import annotations

import re
from pathlib import Path

from vramplan.errors import SourceError
from vramplan.logs import ggml, ollama, sglang, vllm
from vramplan.logs.types import Buffer, Figure, ParsedLog, Settings
from vramplan.runtimes import Runtime

__all__ = ["Buffer", "Figure", "ParsedLog", "Settings", "detect", "parse_log", "read_log"]

_OLLAMA_SLOG = re.compile(r"level=\w+ source=\S+\.go:\d+ msg=")


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


def parse_log(text: str, runtime: Runtime | None = None) -> ParsedLog:
    """Parse `text` as `runtime`'s log (detected when None). Raises SourceError when the log has no
    memory lines of a known runtime."""
    rt = runtime or detect(text)
    if rt is None:
        raise SourceError(
            "no memory lines of llama.cpp, llama-server, Ollama, vLLM or SGLang found in the log "
            "(see docs/check.md for the lines vramplan reads)"
        )
    parsed = _PARSERS[rt](text)
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
