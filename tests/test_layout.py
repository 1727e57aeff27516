"""The layout rules every printer uses: words whole, no trailing spaces, lines within the width."""

from __future__ import annotations

import io
import shlex

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from vramplan.report.layout import Column, command, common_prefixes, shell_line, table, wrap


def console(width: int) -> Console:
    return Console(width=width, file=io.StringIO(), color_system=None, highlight=False)


def out(c: Console) -> str:
    return c.file.getvalue()  # type: ignore[attr-defined, no-any-return]


def test_wrap_hangs_under_the_label_and_keeps_words_whole() -> None:
    text = "vllm reserves --gpu-memory-utilization 0.92 x 79.6 GiB = 73.3 GiB per GPU; its pool gets 27.5 GiB"
    lines = wrap(text, 40, "note: ")
    assert lines == [
        "note: vllm reserves",
        "      --gpu-memory-utilization 0.92 x",
        "      79.6 GiB = 73.3 GiB per GPU; its",
        "      pool gets 27.5 GiB",
    ]


def test_a_word_longer_than_its_indent_allows_starts_its_line() -> None:
    url = "https://huggingface.co/deepseek-ai/DeepSeek-R1-0528#deepseek-r1-0528-qwen3-8b"
    assert wrap(f"aime 86 ({url})", 80, "quality: ") == ["quality: aime 86", f"({url})"]


words = st.lists(st.text("abcdefgh-./", min_size=1, max_size=12), min_size=1, max_size=30)


@settings(max_examples=50, deadline=None)
@given(words, st.integers(20, 120))
def test_wrap_never_breaks_a_word_nor_leaves_trailing_spaces(ws: list[str], width: int) -> None:
    lines = wrap(" ".join(ws), width, "note: ")
    assert all(line == line.rstrip() and len(line) <= width for line in lines)
    assert " ".join(" ".join(lines).split()).removeprefix("note: ") == " ".join(ws)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text("abc-=' $/", min_size=1, max_size=15), min_size=1, max_size=20), st.integers(30, 120))
def test_a_wrapped_command_pastes_as_the_same_arguments(argv: list[str], width: int) -> None:
    c = console(width)
    command(c, ["vramplan", *argv], first="    $ ")
    lines = out(c).splitlines()
    assert all(line == line.rstrip() for line in lines)
    pasted = out(c).replace(" \\\n", " ").strip().removeprefix("$ ")
    assert shlex.split(pasted) == ["vramplan", *argv]


def test_a_start_hint_wraps_between_words_never_inside_quotes() -> None:
    c = console(40)
    path = shlex.quote("/tmp/my bundle/it's $HOME; `id`")
    shell_line(c, f"cd {path} && docker compose up -d   (or ./serve.sh)", "start: ")
    text = out(c)
    assert text.splitlines()[0] == "start: cd \\"
    joined = text.replace(" \\\n    ", " ")
    assert shlex.split(joined.splitlines()[0].removeprefix("start: "))[:2] == [
        "cd",
        "/tmp/my bundle/it's $HOME; `id`",
    ]
    assert "(or ./serve.sh)" in text


def test_a_table_wraps_its_prose_columns_and_refuses_to_break_an_id() -> None:
    cols = [Column("model"), Column("quantizations", wrap=True)]
    rows = [["deepseek-r1-distill-qwen-32b", "bf16, fp8, gptq-int4, q4_K_M, q8_0, f16"]]
    lines = [str(x) for x in table(cols, rows, 52) or []]
    assert lines == [
        "model                         quantizations",
        "─" * 52,
        "deepseek-r1-distill-qwen-32b  bf16, fp8, gptq-int4,",
        "                              q4_K_M, q8_0, f16",
    ]
    assert table(cols, rows, 35) is None  # even "gptq-int4," beside the id is too wide


def test_common_prefixes_are_whole_parts_every_id_shares() -> None:
    ids = ["deepseek-r1", "deepseek-r1-0528-qwen3-8b", "deepseek-r1-distill-llama-70b"]
    assert common_prefixes(ids) == ["deepseek-", "deepseek-r1-"]
    assert common_prefixes(["deepseek-r1-distill-qwen-7b", "qwen3-8b"]) == []
