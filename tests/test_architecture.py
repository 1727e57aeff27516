"""The dependency direction of design.md, checked on the source.

- the pure core never imports click, rich, jinja2 or a network / hardware library;
- heavy libraries are imported only inside the functions that use them (fast start-up);
- the CLI modules do no arithmetic: numbers come from the core.
"""

from __future__ import annotations

import ast
import os
import re
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
    "sweep",
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
    "words",
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
    package = PKG / module  # a module that grew into a package: every file in it
    paths = sorted(package.rglob("*.py")) if package.is_dir() else [PKG / f"{module}.py"]
    if not paths[0].exists():
        pytest.skip(f"{module}.py not written yet")
    for path in paths:
        bad = imports(path, top_level_only=False) & FORBIDDEN_IN_CORE
        assert not bad, f"{path.relative_to(PKG.parent)} imports {sorted(bad)}"


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


# --------------------------------------------------------------------------- the import graph vs docs/architecture.md

LAYOUT = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"
# Modules every module may import: the error family, the YAML cache, the data-file finder, text laid
# out to a width, the phrasing of counts, the version.
SHARED = {"errors", "cache", "resources", "lines", "words", "__init__"}
# "core types" in the report row: the core's modules (design.md: the core never imports click or rich).
CORE_TYPES = {
    "catalog", "precision", "runtimes", "estimate", "recommend", "request", "quantmix", "arch",
    "hardware", "gpus", "check", "logs", "speed", "sources", "sweep",
}  # fmt: skip
# Edges today's code has that its row does not name; each needs a reason, and the test fails when an
# entry is no longer needed, so the list only shrinks.
ALLOWED = {
    # the report printers of `deploy` and `check` format those commands' results
    ("report", "deploy"): "the deploy printer formats a deploy.Bundle",
    # a recommendation is a set of estimates built from requests of catalog variants
    ("recommend", "catalog"): "candidates are catalog variants and quantizations",
    ("recommend", "request"): "each candidate is planned through a Request",
    ("recommend", "runtimes"): "candidates are ranked per runtime",
    ("recommend", "precision"): "quantization ranks by storage format",
    ("recommend", "quantmix"): "the size of a GGUF candidate",
    ("recommend", "arch"): "parameter counts for the ranking",
    # deploy renders a plan: it needs the plan's parts, not only jinja2 and a launcher
    ("deploy", "catalog"): "a bundle names the variant and quantization",
    ("deploy", "estimate"): "a bundle carries the estimate it was sized by",
    ("deploy", "hardware"): "the k8s target names the GPU product; launch reads the probe",
    ("deploy", "request"): "deploy plans through a Request like estimate",
    ("deploy", "precision"): "runtime flags for the KV cache dtype",
    ("deploy", "runtimes"): "one target per runtime, with its defaults",
    # check sets a log's settings beside an estimate: it needs the same vocabulary
    ("check", "catalog"): "a log identifies a catalog variant",
    ("check", "hardware"): "the GPU a log names is looked up in the GPU table",
    ("check", "arch"): "the architecture of the identified model",
    ("check", "precision"): "KV dtypes and weight formats read from the log",
    ("check", "runtimes"): "a log is read with its runtime's rules",
    ("logs", "runtimes"): "each reader belongs to one runtime",
    ("logs", "catalog"): "logs/identify.py finds the variant a log loaded",
    ("logs", "arch"): "logs/identify.py matches the architecture a log prints",
    ("logs", "precision"): "logs/identify.py reads GGML types",
    ("logs", "quantmix"): "logs/identify.py recognises GGUF file types",
    # request resolves the model; estimate / errors vocabulary
    ("request", "estimate"): "a Request is the estimator's input type",
    ("request", "precision"): "--kv-cache-dtype is a precision.KVDtype",
    ("request", "runtimes"): "--runtime is a runtimes.Runtime",
    ("estimate", "catalog"): "an estimate is of a catalog Variant / Quant",
    ("estimate", "hardware"): "per-GPU capacity comes from a GPUSpec",
    ("sources", "arch"): "a source yields an Architecture",
    ("sources", "catalog"): "a source yields a catalog Variant",
    ("sources", "precision"): "tensor types and storage formats",
    ("sources", "quantmix"): "GGUF file types",
    ("sources", "runtimes"): "the runtimes a source's format runs on",
    ("catalog", "quantmix"): "a quantization's per-tensor scheme",
    ("catalog", "runtimes"): "a quantization lists its runtimes",
}


def _cell_names(cell: str) -> list[str]:
    """The modules a path cell names: `vramplan/recommend.py`, `speed.py` -> recommend, speed."""
    names = []
    for part in re.findall(r"`([^`]+)`", cell):
        part = part.removeprefix("vramplan/").rstrip("/")
        if "/" in part or part.startswith("templates") or part.endswith(".yaml"):
            continue
        names.append(part.removesuffix(".py"))
    return names


def layout() -> list[tuple[list[str], str]]:
    """The rows of the table in docs/architecture.md: (modules, may-import text), top to bottom."""
    rows = []
    for line in LAYOUT.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            names = _cell_names(cells[0])
            if names:
                rows.append((names, cells[2]))
    return rows


def allowed_imports() -> dict[str, set[str]]:
    rows = layout()
    allowed: dict[str, set[str]] = {}
    for i, (names, text) in enumerate(rows):
        below = {m for ns, _ in rows[i + 1 :] for m in ns}
        ok = set(SHARED) | set(names)
        for word in (w.strip().removesuffix("(lazily)").strip() for w in text.split(",")):
            if word == "everything below":
                ok |= below
            elif word == "nothing above":
                ok |= below
            elif word == "hardware types":
                ok |= {"hardware", "gpus"}
            elif word == "core types":
                ok |= CORE_TYPES
            elif word.isidentifier():
                ok.add(word)  # a vramplan module, or an outside library (ignored in the graph)
        for n in names:
            allowed[n] = ok
    return allowed


def module_of(path: Path) -> str:
    """vramplan/x.py and vramplan/x/y.py -> x (a package is one node: works for runtimes.py and runtimes/)."""
    return path.relative_to(PKG).parts[0].removesuffix(".py")


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PKG.rglob("*.py"):
        src = module_of(path)
        if src in ("__main__",):
            continue
        deps = graph.setdefault(src, set())
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: inside the package
                    continue
                if node.module == "vramplan":
                    targets = [f"vramplan.{a.name}" for a in node.names]
                elif node.module:
                    targets = [node.module]
            for t in targets:
                parts = t.split(".")
                if parts[0] == "vramplan" and len(parts) > 1 and parts[1] != "__version__":
                    if parts[1] != src:
                        deps.add(parts[1])
    return graph


def test_the_layout_table_covers_every_module() -> None:
    allowed = allowed_imports()
    missing = set(import_graph()) - set(allowed) - SHARED
    assert not missing, f"modules without a row in docs/architecture.md: {sorted(missing)}"


def test_imports_follow_the_layout_table() -> None:
    allowed = allowed_imports()
    bad = sorted(
        (src, dep)
        for src, deps in import_graph().items()
        for dep in deps
        if src in allowed and dep not in allowed[src] and (src, dep) not in ALLOWED
    )
    assert not bad, "imports the layout table (docs/architecture.md) does not allow: " + ", ".join(
        f"{s} -> {d}" for s, d in bad
    )
    graph = import_graph()
    stale = sorted(
        e for e in ALLOWED if e[1] not in graph.get(e[0], set()) or e[1] in allowed.get(e[0], set())
    )
    assert not stale, f"allow-list entries no longer needed: {stale}"


def test_no_import_cycles() -> None:
    graph = import_graph()
    # hardware imports nvml and host inside its functions, one way; nothing imports hardware back
    seen: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        seen[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if seen.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(d) :], d]))
            if d not in seen:
                visit(d)
        stack.pop()
        seen[m] = 2

    for m in sorted(graph):
        if m not in seen:
            visit(m)


def test_hardware_and_nvml_do_not_import_each_other() -> None:
    graph = import_graph()
    assert "hardware" not in graph["nvml"] and "hardware" not in graph["gpus"]
    assert graph["nvml"] == set()
