"""The dependency direction of design.md, checked on the source.

- the pure core never imports click, rich, jinja2 or a network / hardware library;
- heavy libraries are imported only inside the functions that use them (fast start-up);
- the CLI modules do no arithmetic: numbers come from the core.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "vramplan"
CORE = [
    "arch",
    "catalog",
    "errors",
    "estimate",
    "hardware",
    "host",
    "precision",
    "quantmix",
    "recommend",
    "request",
    # the runtime rules: shared types, versions, and one module per runtime
    *(
        f"runtimes/{m}"
        for m in ("__init__", "types", "version", "base", "vllm", "sglang", "llamacpp", "ollama")
    ),
    "cache",
    "speed",
    "sources/gguf_reader",
    "sources/gguf_model",
    # the log parsers and the comparison with the estimate (`vramplan check`)
    "check",
    *(f"logs/{m}" for m in ("__init__", "types", "ggml", "ollama", "vllm", "sglang", "identify")),
]
# Edges that talk to one outside library each, lazily; otherwise held to the core's rules.
EDGES = {"nvml": {"pynvml"}}
FORBIDDEN_IN_CORE = {
    "click",
    "rich",
    "jinja2",
    "huggingface_hub",
    "pynvml",
    "ollama",
    "requests",
    "httpx",
    "urllib",
    "socket",
    "subprocess",
}
HEAVY = {
    "huggingface_hub",
    "pynvml",
    "ollama",
    "jinja2",
    "gguf",
    "llama_cpp",
    "numpy",
    "kubernetes_validate",
    "jsonschema",
}


def imports(path: Path, *, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("module", CORE)
def test_core_is_pure(module: str) -> None:
    path = PKG / f"{module}.py"
    if not path.exists():
        pytest.skip(f"{module}.py not written yet")
    bad = imports(path, top_level_only=False) & FORBIDDEN_IN_CORE
    assert not bad, f"vramplan/{module}.py imports {sorted(bad)}"


@pytest.mark.parametrize("module", sorted(EDGES))
def test_edges_import_only_their_library(module: str) -> None:
    bad = imports(PKG / f"{module}.py", top_level_only=False) & (FORBIDDEN_IN_CORE - EDGES[module])
    assert not bad, f"vramplan/{module}.py imports {sorted(bad)}"


def test_heavy_imports_are_lazy() -> None:
    for path in PKG.rglob("*.py"):
        bad = imports(path, top_level_only=True) & HEAVY
        assert not bad, f"{path.relative_to(PKG.parent)} imports {sorted(bad)} at module level"


def test_cli_does_no_arithmetic() -> None:
    for path in (PKG / "cli").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.BinOp) and isinstance(
                node.op, (ast.Mult, ast.Div, ast.FloorDiv, ast.Pow, ast.Sub)
            ):
                raise AssertionError(f"{path.name}:{node.lineno}: arithmetic belongs in the core")


def test_starting_the_cli_loads_no_heavy_library() -> None:
    code = "import sys, vramplan.cli; print(' '.join(sorted(m for m in sys.modules)))"
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert not (loaded & HEAVY), sorted(loaded & HEAVY)


def test_estimate_loads_only_what_it_uses(tmp_path: Path) -> None:
    """`vramplan estimate` must feel instant (benchmarks/latency.py): the command group imports only
    the invoked command, `--json` needs no rich, a cached catalog needs no PyYAML, and pathlib,
    hashlib and difflib stay off the path."""
    code = (
        "import sys\n"
        "from vramplan.cli import main\n"
        "sys.argv = ['vramplan', 'estimate', 'deepseek-r1:7b', '--gpu', 'h100-80gb', '--json']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "sys.stderr.write(' '.join(sorted(sys.modules)))\n"
    )
    env = {**os.environ, "VRAMPLAN_HOME": str(tmp_path)}
    for _ in range(2):  # the first run fills the YAML cache
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
    loaded = set(done.stderr.split())
    assert "vramplan.cli.estimate_cmd" in loaded
    others = {f"vramplan.cli.{c}_cmd" for c in ("catalog", "check", "deploy", "hardware", "recommend")}
    unwanted = others | {"vramplan.recommend", "vramplan.deploy", "vramplan.check", "vramplan.nvml"}
    unwanted |= {"rich", "yaml", "pathlib", "hashlib", "difflib"}
    assert not (loaded & unwanted), sorted(loaded & unwanted)


def test_lazy_commands_still_suggest_a_close_name() -> None:
    from click.testing import CliRunner

    from vramplan.cli import cli

    result = CliRunner().invoke(cli, ["estimat"])
    assert result.exit_code == 2
    assert "No such command 'estimat'. Did you mean 'estimate'?" in result.output


def test_every_command_module_is_in_the_lazy_group() -> None:
    """A command module (vramplan/cli/*_cmd.py) is imported only through COMMAND_MODULES."""
    from vramplan.cli import COMMAND_MODULES

    modules = {f"vramplan.cli.{p.stem}" for p in (PKG / "cli").glob("*_cmd.py")}
    assert modules == set(COMMAND_MODULES.values())
