"""`vramplan estimate --sweep context|concurrency`: the picture (golden files at 80 and 120 columns),
its layout at any width, the colour and plain forms, the JSON series, and `--gpu` lists."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import pytest
from click.testing import Result
from golden_util import assert_golden
from rich.console import Console

from vramplan import hardware
from vramplan.catalog import load_catalog
from vramplan.estimate import estimate
from vramplan.hardware import parse_gpu
from vramplan.report.sweep import print_sweeps
from vramplan.request import Choices, build_request
from vramplan.sweep import Sweep, sweep

Run = Callable[..., Result]

CASES = {
    "sweep_context_32b_q4km_rtx4090": [
        "deepseek-r1-distill-qwen-32b", "-q", "q4_K_M", "--gpu", "rtx-4090", "--sweep", "context",
    ],
    "sweep_context_32b_q4km_gpu_list": [
        "deepseek-r1-distill-qwen-32b", "-q", "q4_K_M", "--gpu", "rtx-4090,l40s,h100-80gb", "--sweep", "context",
    ],
    "sweep_concurrency_671b_h200x8": ["deepseek-r1", "--gpu", "h200:8", "--sweep", "concurrency"],
}  # fmt: skip
# the words of each picture that must never be broken across lines
IDENTIFIERS = {
    "sweep_context_32b_q4km_rtx4090": ["deepseek-r1-distill-qwen-32b", "q4_K_M", "llama.cpp", "rtx-4090"],
    "sweep_context_32b_q4km_gpu_list": ["deepseek-r1-distill-qwen-32b", "rtx-4090", "l40s", "h100-80gb"],
    "sweep_concurrency_671b_h200x8": ["deepseek-r1", "fp8", "vllm", "h200"],
}


def picture(run: Run, monkeypatch: pytest.MonkeyPatch, columns: int, args: list[str]) -> str:
    monkeypatch.setenv("COLUMNS", str(columns))
    result = run("estimate", *args)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("columns", [80, 120])
@pytest.mark.parametrize("name", sorted(CASES))
def test_the_picture(run: Run, monkeypatch: pytest.MonkeyPatch, name: str, columns: int) -> None:
    assert_golden(f"cli/{name}_{columns}.txt", picture(run, monkeypatch, columns, CASES[name]))


@pytest.mark.parametrize("columns", [60, 80, 100, 120, 160])
@pytest.mark.parametrize("name", sorted(CASES))
def test_the_picture_fits_the_width(
    run: Run, monkeypatch: pytest.MonkeyPatch, name: str, columns: int
) -> None:
    text = picture(run, monkeypatch, columns, CASES[name])
    lines = text.splitlines()
    assert all(len(line) <= columns for line in lines), max(lines, key=len)
    assert all(line == line.rstrip() for line in lines)
    assert text.isascii()  # not a terminal: plain characters
    words = {w for line in lines for w in line.split()}
    for ident in IDENTIFIERS[name]:
        assert ident in words, ident
    bars = [line for line in lines if line.rstrip().endswith(("|", "#", "=", "+", "."))]
    # the bars use the width there is: the longest reaches the last column or the one before it (the
    # usable line's cell), up to bars of 120 cells
    longest = max(len(line) for line in bars)
    assert columns - 1 <= longest if columns <= 120 else 120 < longest < columns


def make(model: str, gpu: str | None, axis: str, **kw: object) -> Sweep:
    choices = Choices(model=model, gpu=parse_gpu(gpu) if gpu else None, **kw)  # type: ignore[arg-type]
    machine = None if gpu else hardware.probe()  # the tests' machine: no GPU, 64 GiB of RAM
    return sweep(build_request(load_catalog(), choices, machine), axis)


def test_the_series_rises_and_stops_fitting_at_the_solvers_limit() -> None:
    s = make("deepseek-r1-distill-qwen-32b", "rtx-4090", "context", quant="q4_K_M")
    values = [p.value for p in s.points]
    assert values == sorted(values) and values[0] == 1024 and values[-1] == 131072
    totals = [p.device.total_bytes for p in s.points]
    assert totals == sorted(totals)
    limit = [p for p in s.points if p.limit]
    assert [p.value for p in limit] == [s.largest] == [s.plan.max_context]
    assert all(p.fits == (p.value <= limit[0].value) for p in s.points)
    for p in s.points:
        d = p.device
        assert d.total_bytes == d.weights_bytes + d.kv_cache_bytes + d.activation_bytes + d.overhead_bytes
    # each point is the plain estimate at that context
    req = build_request(load_catalog(), Choices(model="deepseek-r1-distill-qwen-32b", quant="q4_K_M",
                                                gpu=parse_gpu("rtx-4090"), context=limit[0].value), None)  # fmt: skip
    assert estimate(req).per_gpu[0] == limit[0].device


def test_a_concurrency_sweep_holds_the_context_and_draws_the_fullest_gpu() -> None:
    s = make("deepseek-r1", "h200:8", "concurrency")
    assert [p.value for p in s.points] == [1, 2, 4, 8]
    assert s.largest == s.plan.max_concurrency == 4
    assert [p.fits for p in s.points] == [True, True, True, False]
    assert s.points[0].device.usable_bytes == s.capacity_bytes


def test_a_cpu_plan_is_drawn_against_host_ram() -> None:
    s = make("deepseek-r1:7b", None, "concurrency", host_memory_bytes=32 << 30)
    assert s.plan.cpu_plan and s.points[0].device.index == -1
    assert s.largest is not None and 1 < s.largest < s.points[-1].value


def test_json_gives_the_series(run: Run) -> None:
    result = run("estimate", *CASES["sweep_context_32b_q4km_rtx4090"], "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["sweep_axis"] == "context" and doc["sweep_largest"] == doc["max_context"]
    assert [p["context"] for p in doc["sweep"]][:2] == [1024, 2048]
    limit = [p for p in doc["sweep"] if p["largest_that_fits"]]
    assert len(limit) == 1 and limit[0]["fits"] is True and limit[0]["context"] == doc["max_context"]
    assert all(isinstance(p["device"]["total_bytes"], int) for p in doc["sweep"])
    assert all(p["per_gpu"] == [p["device"]] for p in doc["sweep"])  # one GPU: the one drawn


def test_json_of_a_gpu_list_is_one_plan_per_gpu(run: Run) -> None:
    result = run("estimate", *CASES["sweep_context_32b_q4km_gpu_list"], "--json")
    plans = json.loads(result.stdout)["plans"]
    assert [p["topology"]["gpu"] for p in plans] == ["rtx-4090", "l40s", "h100-80gb"]
    assert [p["sweep_largest"] for p in plans] == sorted(p["sweep_largest"] for p in plans)


def draw(console: Console) -> str:
    print_sweeps([make("deepseek-r1-distill-qwen-32b", "rtx-4090", "context", quant="q4_K_M")], console)
    assert isinstance(console.file, io.StringIO)
    return console.file.getvalue()


def test_a_colour_terminal_gets_coloured_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "xterm-256color")
    out = draw(Console(file=io.StringIO(), force_terminal=True, width=80, color_system="standard"))
    assert "\x1b[" in out and "█" in out and "│" in out and "▶" in out


@pytest.mark.parametrize(
    "console",
    [
        lambda: Console(file=io.StringIO(), force_terminal=False, width=80),  # a pipe
        lambda: Console(file=io.StringIO(), force_terminal=True, width=80, no_color=True),  # NO_COLOR
    ],
)
def test_plain_characters_where_there_is_no_colour(console: Callable[[], Console]) -> None:
    out = draw(console())
    assert out.isascii() and "#" in out and "|" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["deepseek-r1:7b", "--gpu", "l4,t4"],
            "Error: --gpu l4,t4 names 2 GPUs; compare them with --sweep context or --sweep concurrency\n",
        ),
        (
            ["deepseek-r1:7b", "--gpu", "l4,,t4", "--sweep", "context"],
            "Error: --gpu 'l4,,t4' has an empty name; write NAME[:COUNT],NAME[:COUNT]\n",
        ),
    ],
)
def test_bad_gpu_lists_are_one_line(run: Run, args: list[str], message: str) -> None:
    result = run("estimate", *args)
    assert result.exit_code == 2
    assert result.stderr == message
