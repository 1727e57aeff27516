"""Every command's text output at 80, 100 and 120 columns: no identifier broken across lines (each one
the command's JSON names appears whole on one line, or in the short form its legend states), nothing
cut off with an ellipsis, no trailing spaces, no line wider than the console, no leading blank line."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from nvml_fake import FakeNVML

from vramplan import hardware
from vramplan.catalog import load_catalog
from vramplan.cli import cli
from vramplan.hardware import probe_machine
from vramplan.host import HostInfo

GiB = 1 << 30
WIDTHS = (80, 100, 120)
REAL = Path(__file__).parent / "fixtures" / "logs" / "real"
SHORT = re.compile(r'model: the id less its "(\S+)" prefix')

OFFLOAD = ["--host-memory", "192", "--context", "8192", "--gpu-layers", "8"]
GPU_LIST = "rtx-4090,l40s,h100-80gb"
R1_32B_FP8 = ["-m", "deepseek-r1-distill-qwen-32b", "-q", "fp8"]
R1_IQ1_S = ["-m", "deepseek-r1", "-q", "UD-IQ1_S"]

# (arguments, the keys of its JSON whose values are identifiers the text shows)
ESTIMATE_KEYS = ("model", "quant", "runtime", "gpu")
CASES: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "estimate-1gpu": (["estimate", "r1-7b", "--gpu", "l4"], ESTIMATE_KEYS),
    "estimate-offload": (
        ["estimate", "deepseek-r1", "-r", "llama.cpp", "-q", "UD-IQ1_S", "--gpu", "rtx-4090", *OFFLOAD],
        ESTIMATE_KEYS,
    ),
    "estimate-multi-gpu": (["estimate", "deepseek-r1", "--gpu", "h100:8", "--nodes", "2"], ESTIMATE_KEYS),
    "estimate-cpu": (["estimate", "deepseek-r1:7b"], ESTIMATE_KEYS),
    "sweep-context": (
        [
            "estimate",
            "deepseek-r1-distill-qwen-32b",
            "-q",
            "q4_K_M",
            "--gpu",
            "rtx-4090",
            "--sweep",
            "context",
        ],
        ESTIMATE_KEYS,
    ),
    "sweep-gpu-list": (
        ["estimate", "deepseek-r1-distill-qwen-32b", "-q", "q4_K_M", "--gpu", GPU_LIST, "--sweep", "context"],
        ESTIMATE_KEYS,
    ),
    "recommend-offload-misfits": (
        ["recommend", "--gpu", "rtx-4090", "--host-memory", "192"],
        ("model", "quant", "runtime", "gpu"),
    ),
    "recommend-8gpu": (["recommend", "--gpu", "h100:8"], ("model", "quant", "runtime", "gpu")),
    "recommend-host": (["recommend"], ("model", "quant", "runtime")),
    "catalog": (["catalog"], ("id",)),
}
for v in load_catalog().variants:
    CASES[f"catalog-show-{v.id}"] = (
        ["catalog", "show", v.id],
        ("id", "hf_repo", "aliases", "name", "repo", "ollama_tags"),
    )
CHECK_KEYS = ("model", "quant", "runtime")
for name, args in {
    "check-vllm": ["vllm/v0110_distill_qwen32b_fp8_l40s_24k.log", *R1_32B_FP8, "--gpu", "l40s"],
    "check-sglang": ["sglang/r1_tp8_8xmi308x_sglang-0.4.6.log", "-m", "deepseek-r1", "-q", "fp8"],
    "check-sglang-3090": ["sglang/distill-qwen-7b_rtx3090_sglang-0.4.2.log"],
    "check-ollama": [
        "ollama/r1-671b-q4km-win-6.9gib-v0.5.x-planner.log",
        "-m",
        "deepseek-r1",
        "-q",
        "q4_K_M",
    ],
    "check-llamacpp": ["llamacpp/llama-cli_r1-ud-iq1_s_2gpu-ngl61_ctx8192_b46xx-excerpt.log", *R1_IQ1_S],
}.items():
    CASES[name] = (["check", *args], CHECK_KEYS)
DEPLOY_KEYS = ("model", "quant", "runtime", "gpu")
# (target, the runtime it plans, the rest of the arguments)
DEPLOYS = {
    "deploy-ollama": ("ollama", "ollama", ["r1-7b", "--gpu", "rtx-4090"]),
    "deploy-vllm-2-nodes": ("vllm", "vllm", ["deepseek-r1", "--gpu", "h100:8", "--nodes", "2"]),
    "deploy-k8s": ("k8s", "vllm", ["r1-32b", "--gpu", "h100:2"]),
    "deploy-llamacpp": ("llama.cpp", "llama.cpp", ["r1-7b", "--gpu", "rtx-4090", "-q", "q4_K_M"]),
}
HARDWARE = ("a100_40gb_mig", "h100_x4_gpu2_lost", "l40_x2", "mixed_4090_3090")


def invoke(args: list[str]) -> Result:
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def strings(doc: Any, keys: tuple[str, ...]) -> Iterator[str]:
    """The string values (or the strings of list values) of `keys` anywhere in `doc`."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k == "repo" and doc.get("ollama_tags"):  # catalog show lists the tags then
                continue
            if k in keys and isinstance(v, str):
                yield v
            elif k in keys and isinstance(v, list):
                yield from (x for x in v if isinstance(x, str))
            else:
                yield from strings(v, keys)
    elif isinstance(doc, list):
        for v in doc:
            yield from strings(v, keys)


def words(doc: Any) -> Iterator[str]:
    """Every string of `doc` without spaces (ids, names, paths): where one is in the text at all, it
    must be whole on a line."""
    if isinstance(doc, dict):
        for v in doc.values():
            yield from words(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from words(v)
    elif isinstance(doc, str) and len(doc) > 3 and " " not in doc:
        yield doc


def assert_laid_out(text: str, width: int, identifiers: list[str], doc: Any = None) -> None:
    lines = text.splitlines()
    assert lines and lines[0].strip(), "the output starts with a blank line"
    for line in lines:
        assert line == line.rstrip(), f"trailing spaces: {line!r}"
        assert len(line) <= width, f"{len(line)} > {width} columns: {line!r}"
        assert "…" not in line, f"cut off: {line!r}"
    prefix = SHORT.search(" ".join(text.split()))
    for ident in identifiers:
        short = ident.removeprefix(prefix[1]) if prefix and ident.startswith(prefix[1]) else ident
        found = any(
            re.search(rf"(?<![\w.-]){re.escape(x)}(?![\w-])", line) for line in lines for x in (ident, short)
        )
        assert found, f"{ident!r} is not whole on any line at {width} columns"
    squashed = "".join(line.removesuffix(" \\").strip() for line in lines)
    for w in set(words(doc)):
        if w in squashed.replace(" ", ""):
            assert any(w in line for line in lines), f"{w!r} is broken across lines at {width} columns"


def json_of(args: list[str]) -> Any:
    result = invoke([*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_command_fits(case: str, width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    args, keys = CASES[case]
    monkeypatch.chdir(REAL)  # check's logs by short relative paths
    monkeypatch.setenv("COLUMNS", str(width))
    result = invoke(args)
    assert result.exit_code == 0, result.output
    idents = sorted({s for s in strings(json_of(args), keys) if s and " " not in s})
    assert idents, "the JSON names nothing to look for"
    doc = json_of(args)
    assert_laid_out(result.stdout, width, idents, doc)
    if args[0] == "recommend":  # each ranked row holds its model, quant and runtime whole
        assert_rows(result.stdout, doc)


def assert_rows(text: str, doc: Any) -> None:
    prefix = SHORT.search(" ".join(text.split()))
    for c in doc["candidates"]:
        if c["rank"] is None or c.get("slow"):  # a misfit, or a row of the "fits, but slow" list
            continue
        model = c["model"]
        if prefix and model.startswith(prefix[1]):
            model = model.removeprefix(prefix[1])
        row = rf"^ *{c['rank']} +{re.escape(model)} +{re.escape(c['quant'])} +{re.escape(c['runtime'])} "
        assert re.search(row, text, re.M), f"no row {c['rank']} {model} {c['quant']} {c['runtime']}"


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("case", sorted(DEPLOYS))
def test_deploy_fits(case: str, width: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", str(width))
    target, runtime, rest = DEPLOYS[case]
    args = ["deploy", "--target", target, *rest]
    result = invoke([*args, "--out", "bundle"])
    assert result.exit_code == 0, result.output
    plan = json_of(["estimate", "-r", runtime, *rest])
    doc = json.loads(invoke([*args, "--out", "bundle-json", "--json"]).stdout)
    files = [Path(f).name for f in doc["files"]]
    idents = [plan["model"], plan["quant"], *files]
    assert_laid_out(result.stdout, width, idents, doc)


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    host = HostInfo(memory_bytes=2015 * GiB, available_bytes=1990 * GiB, cpu_cores=224)

    def use(recording: str) -> None:
        m = probe_machine(FakeNVML(recording), environ={}, host=host)
        monkeypatch.setattr(hardware, "probe", lambda: m)

    return use


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("recording", HARDWARE)
def test_hardware_fits(
    recording: str, width: int, machine: Callable[[str], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    machine(recording)
    monkeypatch.setenv("COLUMNS", str(width))
    result = invoke(["hardware"])
    assert result.exit_code == 0, result.output
    doc = json_of(["hardware"])
    idents = [doc["plan"]["gpu"], *(g["name"] for g in doc["gpus"]), *(g["spec"] for g in doc["gpus"])]
    assert_laid_out(result.stdout, width, [i for i in idents if i], doc)
    result = invoke(["estimate", "r1-7b"])  # planned for what the probe found
    doc = json_of(["estimate", "r1-7b"])
    assert_laid_out(result.stdout, width, [doc["model"], doc["quant"], doc["topology"]["gpu"]], doc)


def test_a_table_gives_way_rather_than_break_an_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: at 80 columns the model column folded ids mid-word (`deepse` / `ek-r1-`). Now the ids
    lose the prefix they share (the legend says which), and keep it where the width allows."""
    args = ["recommend", "--gpu", "rtx-4090", "--host-memory", "192"]
    doc = json_of(args)
    monkeypatch.setenv("COLUMNS", "80")
    out = invoke(args).stdout
    assert 'model: the id less its "deepseek-' in " ".join(out.split())
    assert re.search(r"^ 1  (r1-)?0528-qwen3-8b +q8_0 +ollama ", out, re.M)
    assert_rows(out, doc)
    monkeypatch.setenv("COLUMNS", "120")
    out = invoke(args).stdout
    assert "prefix" not in out and re.search(r"^ 1  deepseek-r1-0528-qwen3-8b +q8_0 +ollama ", out, re.M)
    assert_rows(out, doc)


@pytest.mark.parametrize("width", WIDTHS)
def test_verified_table_fits(width: int) -> None:
    """`deploy --launch` for llama.cpp prints the plan beside the server's log (the launch itself needs
    a llama-server binary; the printing is checked here with figures of that shape)."""
    from rich.console import Console

    from vramplan.deploy.verify import Verified, VerifiedPart
    from vramplan.report.deploy import print_verified

    parts = (
        VerifiedPart("weights", "host (CPU_Mapped model buffer)", "bytes", 4.36 * GiB, 4.36 * GiB, 0, 0.02),
        VerifiedPart("KV cache", "host", "bytes", 0.11 * GiB, 0.11 * GiB, 0, 0.02),
        VerifiedPart("compute buffer", "host", "bytes", 0.30 * GiB, 0.28 * GiB, -0.0667, 0.25),
    )
    v = Verified(
        log=Path("bundle-deepseek-r1-distill-qwen-7b/llama-server.log"),
        parts=parts,
        plan_total_bytes=int(4.77 * GiB),
        projected_bytes=int(4.9 * GiB),
        measured_total_bytes=int(4.75 * GiB),
        answer="Hello",
        notes=(
            "the compute buffer is llama.cpp's graph reservation (llama-context.cpp), planned per device",
        ),
    )
    console = Console(width=width, file=io.StringIO(), color_system=None, highlight=False, markup=False)
    print_verified(v, console)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert_laid_out(
        text, width, ["bundle-deepseek-r1-distill-qwen-7b/llama-server.log", "(llama-context.cpp),"]
    )
