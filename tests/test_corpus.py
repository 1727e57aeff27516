"""The corpus of real, published startup logs (tests/fixtures/logs/real/): every entry of every
index.yaml is well formed, every log carries its header, and `vramplan check` reads every log into a
comparison (or one line naming what to add). Accuracy against the tolerances is the benchmark's job
(benchmarks/corpus.py, docs/accuracy.md), not a test's."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from vramplan.catalog import load_catalog
from vramplan.hardware import parse_gpu
from vramplan.runtimes import Runtime

ROOT = Path(__file__).resolve().parent.parent
HEADER_FIELDS = ("source", "runtime", "gpu", "model", "settings", "inferred")


def _corpus_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vramplan_corpus", ROOT / "benchmarks" / "corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


corpus = _corpus_module()
ENTRIES = corpus.load_entries()
IDS = [e.name for e in ENTRIES]


def test_the_corpus_is_not_empty_and_spans_every_runtime() -> None:
    assert {e.runtime for e in ENTRIES} == {"vllm", "sglang", "llama.cpp", "ollama"}
    files = {p for p in (ROOT / "tests/fixtures/logs/real").glob("*/*.log")}
    assert files == {e.path for e in ENTRIES}, "every real log has exactly one index entry"


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_each_log_has_its_header(entry: Any) -> None:
    text = entry.path.read_text(encoding="utf-8", errors="replace")
    header: dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(r"# (\w+): (.*)", line)
        if not m:
            break
        header.setdefault(m[1], m[2].strip())
    assert tuple(header)[: len(HEADER_FIELDS)] == HEADER_FIELDS, sorted(header)
    assert all(header[k] for k in HEADER_FIELDS)
    assert header["source"].startswith("https://")
    # the URL the index names, then optionally which post of the thread, in words
    assert header["source"].split()[0] == entry.source


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_each_index_entry_names_what_exists(entry: Any) -> None:
    assert Runtime(entry.runtime)
    assert load_catalog().get(entry.model).id == entry.model
    if entry.gpu is not None:
        parse_gpu(entry.gpu)
    corpus._options(entry.args)


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_check_reads_each_log(entry: Any) -> None:
    outcome = corpus.run_entry(entry)
    if outcome.failure is not None:  # one clear line naming what to add, never a traceback
        assert "\n" not in outcome.failure and outcome.failure.strip()
    else:
        assert outcome.rows, "a comparison has at least one part"
