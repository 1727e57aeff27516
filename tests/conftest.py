"""Shared fixtures: a hermetic environment, a pinned terminal, a fixed machine, a CLI runner."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from vramplan import hardware
from vramplan.catalog import Catalog, load_catalog
from vramplan.cli import cli

GiB = 1 << 30

# What the probe answers in tests unless a test says otherwise: a machine without GPUs.
NO_GPU_MACHINE = hardware.Machine(
    gpus=(), host_memory_bytes=64 * GiB, cpu_cores=16, notes=("no NVIDIA GPU found",)
)


@pytest.fixture(autouse=True)
def hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test reads the user's home, a real GPU or the network; rich draws the same everywhere."""
    for var in ("VRAMPLAN_CATALOG", "VRAMPLAN_DEBUG", "FORCE_COLOR", "HF_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TERM", "dumb")
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("VRAMPLAN_TESTING", "1")
    monkeypatch.setenv("VRAMPLAN_HOME", str(tmp_path / "vramplan-home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:9")
    monkeypatch.setattr(hardware, "probe", lambda: NO_GPU_MACHINE)
    yield


@pytest.fixture
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture
def run() -> Callable[..., Result]:
    """Invoke the CLI in-process: run("estimate", "r1-7b", "--json")."""

    def invoke(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)

    return invoke
