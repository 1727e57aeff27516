"""Write a bundle's files into its folder: atomically, and never over a different file without --force.

Every file is first written to a temporary file beside its target and then renamed over it
(`os.replace`), so a reader sees the old file or the new one, never half of one. Before anything is
written, every target is checked: one that exists with other content stops the whole write unless
`force` is given; one that exists with the same content is left as it is.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from vramplan.deploy.render import RenderedFile
from vramplan.errors import RenderError


class WriteError(RenderError):
    """The file system refused a write (permissions, a full disk): a failure at run time."""

    exit_code = 1


def _check(out: Path, files: Sequence[RenderedFile], force: bool) -> list[RenderedFile]:
    """The files that need writing; raises when one would replace a different file without force."""
    if out.exists() and not out.is_dir():
        raise RenderError(f"--out {out} exists and is not a folder")
    todo: list[RenderedFile] = []
    clash: list[str] = []
    for f in files:
        path = out / f.name
        if path.is_dir():
            raise RenderError(f"{path} is a folder; cannot write a file there")
        if path.exists() or path.is_symlink():  # a dangling link is the user's too
            try:
                same = path.read_text(encoding="utf-8") == f.text
            except (OSError, UnicodeDecodeError):
                same = False
            if same:
                if f.executable and not os.access(path, os.X_OK):
                    todo.append(f)
                continue
            if not force:
                clash.append(f.name)
                continue
        todo.append(f)
    if clash:
        names = ", ".join(clash)
        raise RenderError(f"{out} already holds other versions of {names}; use --force to overwrite them")
    return todo


def _write_one(path: Path, text: str, executable: bool) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o755 if executable else 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_files(out: Path, files: Sequence[RenderedFile], force: bool = False) -> list[Path]:
    """Write `files` into `out` (created if missing); returns every file's path, written or not."""
    todo = _check(out, files, force)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for f in todo:
            _write_one(out / f.name, f.text, f.executable)
    except OSError as exc:
        where = exc.filename or out
        raise WriteError(f"cannot write {where}: {exc.strerror or exc}") from None
    return [out / f.name for f in files]
