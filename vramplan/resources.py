"""Where the data files that ship with vramplan are: installed package data first, the checkout second.

A wheel carries `model_catalog.yaml`, `gpus.yaml` and `templates/` inside the package (hatchling
force-include into `vramplan/_data/`); an editable install does not expose force-included files, so
the checkout's top-level copies are the fallback. (os.path rather than pathlib: this is on
`vramplan estimate`'s start-up path, which pathlib's import would slow by a few milliseconds.)
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

_PACKAGE = os.path.dirname(os.path.realpath(__file__))


def data_file(name: str) -> str:
    """The path of a shipped data file or folder (`model_catalog.yaml`, `gpus.yaml`, `templates`)."""
    for candidate in (os.path.join(_PACKAGE, "_data", name), os.path.join(os.path.dirname(_PACKAGE), name)):
        if os.path.exists(candidate):
            return candidate
    raise FileNotFoundError(f"vramplan data file {name!r} is missing from this installation")


def data_path(name: str) -> Path:
    """`data_file(name)` as a Path."""
    from pathlib import Path

    return Path(data_file(name))
