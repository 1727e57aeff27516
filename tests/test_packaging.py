"""Both kinds of install find the catalog and templates: the wheel carries them inside the package
(hatchling force-include into vramplan/_data), an editable install falls back to the checkout."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROBE = "from vramplan.resources import data_path; print(data_path('model_catalog.yaml')); print(data_path('templates'))"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    return next(out.glob("vramplan-*.whl"))


def test_wheel_carries_catalog_and_templates(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "vramplan/_data/model_catalog.yaml" in names
    assert any(n.startswith("vramplan/_data/templates/") for n in names)
    assert "vramplan/py.typed" in names


def test_installed_wheel_resolves_its_own_data(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == [str(site / "vramplan/_data/model_catalog.yaml"), str(site / "vramplan/_data/templates")]
    listing = subprocess.run(
        [sys.executable, "-m", "vramplan", "catalog", "--json"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
    )
    assert listing.returncode == 0, listing.stderr
    assert '"deepseek-r1-0528"' in listing.stdout


def test_checkout_resolves_top_level_data() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == [str(ROOT / "model_catalog.yaml"), str(ROOT / "templates")]
