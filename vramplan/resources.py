"""Where the data files that ship with vramplan are: installed package data first, the checkout second.

A wheel carries `model_catalog.yaml` and `templates/` inside the package (hatchling force-include into
`vramplan/_data/`); an editable install does not expose force-included files, so the checkout's top-level
copies are the fallback.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_path(name: str) -> Path:
    """The path of a shipped data file or folder (`model_catalog.yaml`, `templates`)."""
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"vramplan data file {name!r} is missing from this installation")
