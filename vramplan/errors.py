"""The one error family of vramplan.

Every error a user can cause or meet derives from `VramplanError`; the CLI turns it into one line on
stderr and an exit code (2: the input is wrong, 1: something outside failed at run time).
"""

from __future__ import annotations


class VramplanError(Exception):
    """Base of every error vramplan reports to a user."""

    exit_code = 2


class UnknownModelError(VramplanError):
    """A model, quantization or alias that the catalog does not know."""


class CatalogError(VramplanError):
    """A malformed catalog file or entry."""


class PlanError(VramplanError):
    """A request the estimator cannot plan: bad context, parallelism, runtime or dtype."""


class HardwareError(VramplanError):
    """An unknown GPU name or an impossible machine."""


class SourceError(VramplanError):
    """A model source (GGUF file, Hugging Face repo, log file) that cannot be read."""


class RenderError(VramplanError):
    """A deployment bundle that cannot be rendered or written."""


class LaunchError(VramplanError):
    """A launch that failed at run time (server down, missing binary, command failed)."""

    exit_code = 1
