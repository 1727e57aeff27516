"""`vramplan check` reads a log however it was captured: Windows line endings, terminal colours,
the prefixes of journalctl / docker logs -t / kubectl logs --timestamps / docker compose, a file cut
in the middle of a line, and a file holding several startups (the last one counts, and a note says so).

Each variant of each fixture log must give the same comparison as the plain file (the line numbers
aside, for several startups). Before the audit, colours hid the model's name from the llama.cpp and
Ollama parsers, and a second startup in the same file doubled llama.cpp's and Ollama's buffers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

LOGS = Path(__file__).parent / "fixtures" / "logs" / "synthetic"
CASES = [
    ("vllm_r1_0528_fp8_tp8.log", ["--gpu", "h200:8"]),
    ("ollama_runner_distill_qwen_7b.log", ["--gpu", "rtx-4090"]),
    ("ollama_device_lines.log", ["--model", "deepseek-r1:7b"]),
    ("ollama_offload_671b.log", ["--model", "deepseek-r1:671b"]),
    ("sglang_distill_qwen_7b_3090.log", []),
    ("llama_server_distill_qwen_32b.log", []),
]


def body(name: str) -> list[str]:
    """The log's lines without the fixture's comment header."""
    return [ln for ln in (LOGS / name).read_text().splitlines() if not ln.startswith("#")]


def colour(line: str) -> str:
    """What a terminal capture looks like: the level coloured, the rest reset at the end."""
    line = re.sub(r"\b(INFO|WARNING|level=INFO)\b", "\x1b[32m\\1\x1b[0m", line, count=1)
    return f"\x1b[0;36m{line}\x1b[0m"


VARIANTS: dict[str, Callable[[list[str]], bytes]] = {
    "crlf": lambda lines: "\r\n".join(lines).encode() + b"\r\n",
    "ansi": lambda lines: "\n".join(colour(ln) for ln in lines).encode() + b"\n",
    "journalctl": lambda lines: "\n".join(
        f"Nov 30 12:00:01 gpu-1 ollama[1234]: {ln}" for ln in lines
    ).encode(),
    "docker-t": lambda lines: "\n".join(f"2025-11-30T12:00:01.123456789Z {ln}" for ln in lines).encode(),
    "kubectl": lambda lines: "\n".join(f"2025-11-30T12:00:01.123456789+00:00 {ln}" for ln in lines).encode(),
    "compose": lambda lines: "\n".join(f"vllm-1  | {ln}" for ln in lines).encode(),
}


def check_json(run: Callable[..., Result], path: Path, args: list[str]) -> dict:  # type: ignore[type-arg]
    res = run("check", str(path), *args, "--json")
    assert res.exit_code == 0, res.output
    doc: dict = json.loads(res.stdout)  # type: ignore[type-arg]
    doc.pop("log")
    return doc


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize(("name", "args"), CASES)
def test_captured_logs_read_like_the_plain_file(
    run: Callable[..., Result], tmp_path: Path, name: str, args: list[str], variant: str
) -> None:
    lines = body(name)
    plain = tmp_path / "plain.log"
    plain.write_text("\n".join(lines) + "\n")
    other = tmp_path / f"{variant}.log"
    other.write_bytes(VARIANTS[variant](lines))
    assert check_json(run, other, args) == check_json(run, plain, args)


def strip_lines(doc: object) -> object:
    """`doc` without the line numbers (which differ when a startup is repeated below another)."""
    if isinstance(doc, dict):
        return {k: strip_lines(v) for k, v in doc.items() if k != "line"}
    if isinstance(doc, list):
        return [strip_lines(v) for v in doc]
    return doc


@pytest.mark.parametrize(("name", "args"), CASES)
def test_of_two_startups_the_last_counts(
    run: Callable[..., Result], tmp_path: Path, name: str, args: list[str]
) -> None:
    lines = body(name)
    plain = tmp_path / "plain.log"
    plain.write_text("\n".join(lines) + "\n")
    twice = tmp_path / "twice.log"
    twice.write_text("\n".join(lines + lines) + "\n")
    once, both = check_json(run, plain, args), check_json(run, twice, args)
    notes = both.pop("notes")
    assert strip_lines(both) == strip_lines({k: v for k, v in once.items() if k != "notes"})
    if name != "ollama_offload_671b.log":  # the planner-only log has no runner memory lines between
        assert notes[0] == f"the log holds 2 startups; this compares the last, from line {len(lines) + 1}"
        assert notes[1:] == once["notes"]


def test_a_failed_last_startup_falls_back_to_the_one_before(
    run: Callable[..., Result], tmp_path: Path
) -> None:
    """A server restarted and killed before it allocated anything: the last startup with memory lines
    is compared, and the note says which."""
    lines = body("llama_server_distill_qwen_32b.log")
    build = next(i for i, ln in enumerate(lines) if "build: " in ln)
    log = tmp_path / "restart.log"
    log.write_text("\n".join(lines + lines[build : build + 3]) + "\n")
    res = run("check", str(log), "--json")
    assert res.exit_code == 0, res.output
    note = json.loads(res.stdout)["notes"][0]
    assert (
        note == "the log holds 2 startups; this compares the last with memory lines (startup 1), from line 1"
    )


def test_a_log_cut_mid_line_is_read_up_to_the_cut(run: Callable[..., Result], tmp_path: Path) -> None:
    text = "\n".join(body("vllm_r1_0528_fp8_tp8.log"))
    cut = text.index("Available KV cache memory") + len("Available KV cache me")
    log = tmp_path / "cut.log"
    log.write_text(text[:cut])
    res = run("check", str(log), "--gpu", "h200:8", "--json")
    assert res.exit_code == 0, res.output
    parts = {p["part"] for p in json.loads(res.stdout)["parts"]}
    assert "weights" in parts and "KV pool" not in parts
