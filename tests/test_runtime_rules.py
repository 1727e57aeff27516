"""The runtime rules package: versions as each runtime prints them, the (since, value, source) tables,
the registry, the one KV-pool formula, and the seam itself (no memory rule branches on the runtime
outside vramplan/runtimes/)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vramplan.catalog import Catalog
from vramplan.estimate import Request, estimate
from vramplan.hardware import gpu_spec
from vramplan.runtimes import (
    LlamaCppRules,
    OllamaRules,
    Rules,
    Runtime,
    SGLangRules,
    Version,
    Versioned,
    VLLMRules,
    parse_version,
    rules_for,
    vllm_cudagraph_bytes,
)

GiB = 1 << 30


def v(text: str) -> Version:
    parsed = parse_version(text)
    assert parsed is not None, text
    return parsed


# ------------------------------------------------------------------------------------------ Version


@pytest.mark.parametrize(
    ("text", "scheme", "release"),
    [
        # vLLM: the engine line's version, with or without a v; post releases; dev builds from git
        ("v0.7.3", "release", (0, 7, 3)),
        ("0.11.2", "release", (0, 11, 2)),
        ("0.6.6.post1", "release", (0, 6, 6)),
        ("0.10.1rc2.dev123+g1234abcd", "release", (0, 10, 1)),
        # SGLang
        ("0.4.3.post2", "release", (0, 4, 3)),
        # llama.cpp build numbers as `llama-server --version`, the log's build line and the tags spell them
        ("b4714", "build", (4714,)),
        ("4714 (0d55958c)", "build", (4714,)),
        ("version: 6097 (abc1234)", "build", (6097,)),
        # llama-cpp-python's vendored ggml
        ("0.5.0-dev", "release", (0, 5, 0)),
        # Ollama
        ("0.5.7", "release", (0, 5, 7)),
        ("0.12.3-rc1", "release", (0, 12, 3)),
        (" 0.12.3 ", "release", (0, 12, 3)),
    ],
)
def test_reads_each_runtimes_version_strings(text: str, scheme: str, release: tuple[int, ...]) -> None:
    parsed = v(text)
    assert (parsed.scheme, parsed.release, parsed.text) == (scheme, release, text.strip())


@pytest.mark.parametrize(
    "older, newer",
    [
        ("0.10.1.dev5", "0.10.1rc1"),  # a dev build before the pre-releases of its release
        ("0.10.1rc2.dev123+g1234abcd", "0.10.1rc2"),
        ("0.10.1rc1", "0.10.1rc2"),
        ("0.10.1rc2", "0.10.1"),
        ("0.10.1", "0.10.1.post1"),
        ("0.10.1.post1", "0.10.2"),
        ("0.9.2", "0.21"),
        ("0.21", "0.33.0"),
        ("0.4.3.post1", "0.4.3.post2"),
        ("0.12.3-rc1", "0.12.3"),
        ("0.5.0-dev", "0.5.0"),
        ("0.15.4", "0.15.5"),
        ("b4714", "version: 6097 (abc1234)"),
        ("4714 (0d55958c)", "b4715"),
    ],
)
def test_orders_versions(older: str, newer: str) -> None:
    assert v(older) < v(newer) and v(newer) > v(older)
    assert v(older) <= v(newer) and v(newer) >= v(older) and v(older) != v(newer)


@pytest.mark.parametrize(
    "a, b", [("v0.7.3", "0.7.3"), ("0.9", "0.9.0"), ("b4714", "4714 (0d55958c)"), ("0.33", "0.33.0")]
)
def test_equal_spellings_are_equal(a: str, b: str) -> None:
    assert v(a) == v(b) and hash(v(a)) == hash(v(b))
    assert v(a) <= v(b) and v(a) >= v(b) and not v(a) < v(b)


def test_a_build_number_and_a_release_are_not_ordered() -> None:
    build, release = v("b4714"), v("0.5.0-dev")
    assert build != release
    with pytest.raises(TypeError):
        _ = build < release


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "abc",
        "v",
        "1.2.x",
        "0.1.0-foo",
        "4714 (not hex!)",
        "07",
        "0.x",
        "b",
        "version:",
        "..",
        "1..2",
    ],
)
def test_unreadable_versions_are_none(text: str) -> None:
    assert parse_version(text) is None


def test_a_version_that_is_not_text_is_none() -> None:
    assert parse_version(None) is None
    assert parse_version(12) is None


@given(st.text(max_size=40))
def test_parsing_never_raises(text: str) -> None:
    parsed = parse_version(text)
    assert parsed is None or parsed == parse_version(text)


# ------------------------------------------------------------------------------------------ Versioned

TABLE: Versioned[int] = Versioned(
    "test rule", (None, 1, "before 0.21"), ("0.21", 2, "since 0.21"), ("0.33", 3, "since 0.33")
)


@pytest.mark.parametrize(
    "version, value",
    [
        (None, 3),  # current releases: the newest row
        ("0.9.2", 1),
        ("0.20.9", 1),
        ("0.21.0rc1", 1),  # a pre-release of 0.21 is before it
        ("0.21", 2),
        ("0.21.0", 2),
        ("0.32.1.post3", 2),
        ("0.33.0", 3),
        ("1.0", 3),
        ("not a version", 3),  # unreadable: the newest row
        ("b4714", 3),  # another scheme: not placed, the newest row
    ],
)
def test_versioned_at(version: str | None, value: int) -> None:
    assert TABLE.at(version) == value


def test_versioned_row_keeps_its_source() -> None:
    since, value, source = TABLE.row("0.25")
    assert (str(since), value, source) == ("0.21", 2, "since 0.21")
    assert TABLE.source_at(None) == "since 0.33" and TABLE.is_newest("0.40") and not TABLE.is_newest("0.1")


def test_a_version_before_the_first_since_gets_the_oldest_row() -> None:
    table: Versioned[str] = Versioned("t", ("0.15.5", "vram", "since 0.15.5"))
    assert table.at("0.12.3") == "vram" and table.at(v("0.15.5")) == "vram"


@pytest.mark.parametrize(
    "rows",
    [
        (),
        (("0.21", 1, "x"), ("0.9", 2, "y")),  # out of order
        (("0.21", 1, "x"), ("0.21", 2, "y")),  # twice
        ((None, 1, "x"), (None, 2, "y")),  # "from the start" twice
        (("0.21", 1, ""),),  # no source
        (("later", 1, "x"),),  # unreadable since
    ],
)
def test_bad_tables_are_refused(rows: tuple[tuple[str | None, int, str], ...]) -> None:
    with pytest.raises(ValueError):
        Versioned("bad", *rows).rows  # noqa: B018 (read on first use)


TABLES = 9  # version tables in runtimes/vllm.py, ollama.py and sglang.py: one dropped by accident fails


def test_every_rules_table_reads() -> None:
    from vramplan.runtimes import ollama, sglang, vllm

    tables = [t for m in (vllm, ollama, sglang) for t in vars(m).values() if isinstance(t, Versioned)]
    assert len(tables) == TABLES
    for t in tables:
        assert t.rows and all(source for _, _, source in t.rows)
        assert t.at(None) == t.rows[-1][1] and t.source_at(None) == t.rows[-1][2]


# ------------------------------------------------------------------------------------------ registry


@pytest.mark.parametrize(
    "runtime, cls",
    [
        (Runtime.VLLM, VLLMRules),
        (Runtime.SGLANG, SGLangRules),
        (Runtime.LLAMA_CPP, LlamaCppRules),
        (Runtime.OLLAMA, OllamaRules),
    ],
)
def test_one_rules_object_per_runtime(runtime: Runtime, cls: type[Rules]) -> None:
    rules = rules_for(runtime)
    assert type(rules) is cls and rules.runtime is runtime and rules.version is None
    assert rules_for(runtime) is rules  # bound once
    assert rules_for(runtime, "0.5.7") is rules_for(runtime, "0.5.7")


def test_vllm_utilization_default_by_version() -> None:
    assert rules_for(Runtime.VLLM).gpu_memory_utilization == 0.92
    assert rules_for(Runtime.VLLM, "0.33.0").gpu_memory_utilization == 0.92
    assert rules_for(Runtime.VLLM, "0.32.1").gpu_memory_utilization == 0.9
    assert rules_for(Runtime.VLLM, "v0.7.3").gpu_memory_utilization == 0.9
    assert rules_for(Runtime.VLLM, "garbage").gpu_memory_utilization == 0.92
    assert rules_for(Runtime.VLLM, "0.9.2").usable_fraction() == 0.9
    assert rules_for(Runtime.VLLM, "0.9.2").usable_fraction(0.8) == 0.8
    assert rules_for(Runtime.SGLANG).gpu_memory_utilization is None  # no such setting
    assert rules_for(Runtime.SGLANG).usable_fraction() == 1.0


def test_vllm_cuda_graphs_and_the_kv_pool_by_version(catalog: Catalog) -> None:
    arch = catalog.get("deepseek-r1-distill-qwen-7b").architecture
    parts = (80 * GiB, 15 * GiB, 2 * GiB, GiB)
    old, new = rules_for(Runtime.VLLM, "0.11.2"), rules_for(Runtime.VLLM, "0.21.0")
    assert not isinstance(old, SGLangRules) and isinstance(old, VLLMRules) and isinstance(new, VLLMRules)
    assert (old.cudagraphs_before_pool, new.cudagraphs_before_pool) == (False, True)
    old_pool = old.kv_pool_bytes(arch, 1, *parts, utilization=0.9)
    new_pool = new.kv_pool_bytes(arch, 1, *parts, utilization=0.9)
    assert new_pool == int(80 * GiB * 0.9) - 15 * GiB - 2 * GiB - GiB
    assert old_pool is not None and new_pool is not None
    assert old_pool - new_pool == vllm_cudagraph_bytes(arch, 1)
    assert old.kv_pool_caveats() and not new.kv_pool_caveats()


def test_sglang_pool_and_the_ggml_runtimes_without_one(catalog: Catalog) -> None:
    arch = catalog.get("deepseek-r1-distill-qwen-7b").architecture
    parts = (24 * GiB, 15 * GiB, 2 * GiB, GiB)
    sglang = rules_for(Runtime.SGLANG)
    assert sglang.kv_pool_bytes(arch, 1, *parts) == 24 * GiB - 3 * GiB - 15 * GiB
    assert sglang.kv_pool_bytes(arch, 1, *parts, mem_fraction_static=0.8) == int(0.8 * 24 * GiB) - 15 * GiB
    for rt in (Runtime.LLAMA_CPP, Runtime.OLLAMA):
        assert rules_for(rt).kv_pool_bytes(arch, 1, *parts) is None


def test_ollama_default_context_since_0_15_5(catalog: Catalog) -> None:
    arch = catalog.get("deepseek-r1-distill-qwen-7b").architecture
    for version in (None, "0.15.5", "0.17.7"):
        rules = rules_for(Runtime.OLLAMA, version)
        assert rules.default_context(arch, 48 * GiB) == min(262144, arch.max_position_embeddings)
        assert rules.default_context(arch, 24 * GiB) == 32768
        assert rules.default_context(arch, 16 * GiB) == 4096
        assert rules.default_context(arch, None) == 4096
    assert rules_for(Runtime.LLAMA_CPP).default_context(arch, 24 * GiB) == arch.max_position_embeddings


def test_capabilities() -> None:
    vllm, sglang, llama, ollama = (
        rules_for(r) for r in (Runtime.VLLM, Runtime.SGLANG, Runtime.LLAMA_CPP, Runtime.OLLAMA)
    )
    assert [r.layer_split for r in (vllm, sglang, llama, ollama)] == [False, False, True, True]
    assert [r.runs_on_host for r in (vllm, sglang, llama, ollama)] == [False, False, True, True]
    assert [r.spans_nodes for r in (vllm, sglang, llama, ollama)] == [True, True, False, False]
    assert [r.cpu_moe_option for r in (vllm, sglang, llama, ollama)] == [False, False, True, False]


# ------------------------------------------------------------------------------------------ notes


def test_sglang_without_fp8_gets_no_vllm_marlin_note(catalog: Catalog) -> None:
    v = catalog.get("deepseek-r1")
    a100 = gpu_spec("a100-80gb")
    notes = {}
    for rt in (Runtime.VLLM, Runtime.SGLANG):
        e = estimate(Request(v, v.quant("fp8"), rt, context=4096, gpu=a100, gpus_per_node=8, nodes=2))
        notes[rt] = " ".join(e.notes)
    assert "Marlin" in notes[Runtime.VLLM]
    assert "Marlin" not in notes[Runtime.SGLANG] and "vLLM runs" not in notes[Runtime.SGLANG]
    assert "a100-80gb has no native FP8 support" in notes[Runtime.SGLANG]


# ------------------------------------------------------------------------------------------ the seam

PKG = Path(__file__).resolve().parent.parent / "vramplan"

# Where a module outside vramplan/runtimes/ may still compare a runtime (`x is Runtime.X`,
# `Runtime.X in ...`) or ask `.is_ggml`: none of these is a memory rule.
ALLOWED = {
    ("catalog.py", "_quant"): "catalog validation: an Ollama tag needs a quantization Ollama runs",
    ("catalog.py", "Variant.plan_quant"): "which file a quantization names: a GGUF runtime loads the GGUF",
    ("request.py", "default_runtime"): "which runtime a quantization runs on when none is named",
    (
        "request.py",
        "_local_default",
    ): "which runtime runs on Apple silicon or a GPU-less host when none is named",
    (
        "check.py",
        "_kv_dtype",
    ): "the log format: ggml logs print --cache-type-k/-v, vLLM / SGLang kv_cache_dtype",
    ("check.py", "choices_from_log"): "the log format: which settings each runtime's log states",
    ("check.py", "_torch_parts"): "the log format: the line that states the KV pool (vLLM vs SGLang)",
    ("check.py", "check_log"): "the log format: ggml buffers per device vs per-rank figures",
    (
        "deploy/k8s.py",
        "files",
    ): "deploy: the Kubernetes target writes a vLLM, SGLang, llama.cpp or Ollama server",
    ("deploy/k8s.py", "_processes"): "deploy: the processes each server runs, for its pod's vCPUs and memory",
    ("deploy/k8s.py", "_api_port"): "deploy: the port each server listens on",
    ("deploy/k8s.py", "server_command"): "deploy: the container command of the SGLang and llama.cpp pods",
    ("deploy/k8s.py", "template_values"): "deploy: the SGLang and llama.cpp pods' command lines",
    ("deploy/k8s.py", "pod_sizes"): "deploy: a pod's vCPUs and host memory for the server's processes",
    ("deploy/k8s.py", "run_as"): "deploy: the user each server's image runs as",
    ("deploy/verify.py", "verify_kubectl"): "deploy: Ollama logs no memory at start, so no log is read",
    ("logs/identify.py", "identify"): "log readers: GGUF names and hparams appear only in ggml logs",
    ("logs/identify.py", "_check_named_model"): "log readers: the model's shape is printed only in ggml logs",
}


def runtime_branches(path: Path) -> list[tuple[str, int]]:
    """(enclosing function, line) of each runtime comparison and `.is_ggml` in a module."""

    def is_runtime(node: ast.AST) -> bool:
        return (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "Runtime"
        )

    found: list[tuple[str, int]] = []

    def visit(node: ast.AST, scope: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = scope
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                inner = f"{scope}.{child.name}" if scope else child.name
            if isinstance(child, ast.Attribute) and child.attr == "is_ggml":
                found.append((inner, child.lineno))
            if isinstance(child, ast.Compare):
                operands: list[ast.AST] = []
                for o in (child.left, *child.comparators):
                    operands += [o, *(o.elts if isinstance(o, (ast.Tuple, ast.List, ast.Set)) else [])]
                if any(is_runtime(o) for o in operands):
                    found.append((inner, child.lineno))
            visit(child, inner)

    visit(ast.parse(path.read_text()), "")
    return found


def test_no_memory_rule_branches_on_the_runtime_outside_the_rules() -> None:
    seen = set()
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).as_posix()
        if rel.startswith("runtimes/"):
            continue
        for scope, line in runtime_branches(path):
            key = (rel, scope)
            assert key in ALLOWED, (
                f"vramplan/{rel}:{line} ({scope}) branches on the runtime: ask rules_for(runtime, version) "
                "instead, or add it to ALLOWED with the reason it is not a memory rule"
            )
            seen.add(key)
    assert not set(ALLOWED) - seen, f"stale ALLOWED entries: {sorted(set(ALLOWED) - seen)}"


def test_the_seam_check_sees_a_branch(tmp_path: Path) -> None:
    path = tmp_path / "probe.py"
    path.write_text(
        "def f(rt):\n    if rt is Runtime.VLLM or rt in (Runtime.SGLANG,):\n        return rt.is_ggml\n"
    )
    assert runtime_branches(path) == [("f", 2), ("f", 2), ("f", 3)]
