"""Write a bundle's files into its folder: atomically, never over a different file without --force, and
with a record of what was written, so that a new bundle replaces the old one instead of joining it.

Every file is first written to a temporary file beside its target and then renamed over it
(`os.replace`), so a reader sees the old file or the new one, never half of one. Before anything is
written, every target is checked: one that exists with other content stops the whole write unless
`force` is given; one that exists with the same content is left as it is.

The bundle record (`.vramplan-bundle`, JSON) names each file written and its SHA-256, the vramplan
version and the command. When the folder holds the record of an earlier bundle, the files it names
that the new bundle does not write are stale (a single-node `deployment.yaml` beside a new
`leaderworkerset.yaml` would both start on `kubectl apply -f DIR`): without `force` they stop the write
like a clash; with `force` they are removed once the new files are in place, but only while they hold
exactly what was recorded. One that was changed since stops the write (it is the user's now: they
move or delete it). Files the record does not name are never touched. The record has no `.json`,
`.yaml` or `.yml` suffix because `kubectl apply -f DIR` reads every file with one of those
(k8s.io/cli-runtime `resource.FileExtensions`), hidden or not.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vramplan.deploy.render import RenderedFile
from vramplan.errors import RenderError

BUNDLE_RECORD = ".vramplan-bundle"
RECORD_FORMAT = 1


class WriteError(RenderError):
    """The file system refused a write (permissions, a full disk): a failure at run time."""

    exit_code = 1


@dataclass(frozen=True)
class Written:
    files: list[Path]  # every file of the bundle, in its order, written or already the same
    removed: list[Path] = field(default_factory=list)  # the earlier bundle's files it no longer writes


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def record_text(files: Sequence[RenderedFile], version: str, command: Sequence[str], target: str) -> str:
    doc = {
        "about": "what `vramplan deploy` wrote into this folder; a later `vramplan deploy --force` into it "
        "removes the files named here that it does not write, unless they were changed since",
        "format": RECORD_FORMAT,
        "vramplan": version,
        "target": target,
        "command": shlex.join(command),  # as a shell would take it back
        "files": {f.name: sha256(f.text) for f in files},
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _safe_name(name: object) -> bool:
    """A name a record may hold: a path inside the folder (no absolute path, no '..')."""
    if not isinstance(name, str) or not name or name == BUNDLE_RECORD:
        return False
    path = Path(name)
    return not path.is_absolute() and ".." not in path.parts and "\\" not in name


def read_record(out: Path) -> dict[str, str]:
    """The files (name -> SHA-256) the earlier bundle in `out` recorded; empty when there is no
    readable record (none, an older vramplan's bundle, a link, or not vramplan's JSON)."""
    path = out / BUNDLE_RECORD
    if path.is_symlink() or not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, dict):
        return {}
    return {k: v for k, v in files.items() if _safe_name(k) and isinstance(v, str)}


def _holds(path: Path, digest: str) -> bool:
    """`path` is a plain file whose content has this SHA-256."""
    if path.is_symlink() or not path.is_file():
        return False
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() == digest
    except OSError:
        return False


def _check(out: Path, files: Sequence[RenderedFile], force: bool) -> tuple[list[RenderedFile], list[Path]]:
    """The files that need writing and the stale files to remove; raises when one would replace a
    different file without force, or when a stale file was changed since it was written."""
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
    new = {f.name for f in files}
    stale: list[str] = []
    changed: list[str] = []
    for name, digest in read_record(out).items():
        path = out / name
        if name in new or not (path.exists() or path.is_symlink()):
            continue
        (stale if _holds(path, digest) else changed).append(name)
    if changed:
        names, it = ", ".join(changed), "it" if len(changed) == 1 else "them"
        raise RenderError(
            f"{out} holds {names} from an earlier bundle, which this one does not write, changed since "
            f"vramplan wrote {it}; move {it} out of {out} (or delete {it}) and run again"
        )
    if clash or (stale and not force):
        held = []
        if clash:
            held.append(f"other versions of {', '.join(clash)}")
        if stale:
            held.append(f"{', '.join(stale)} from an earlier bundle, which this one does not write")
        what = "replace that bundle" if stale else "overwrite them"
        raise RenderError(f"{out} already holds {' and '.join(held)}; use --force to {what}")
    return todo, [out / name for name in stale]


def _write_one(path: Path, text: str, executable: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
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


def write_files(
    out: Path,
    files: Sequence[RenderedFile],
    force: bool = False,
    *,
    version: str = "",
    command: Sequence[str] = (),
    target: str = "",
) -> Written:
    """Write `files` into `out` (created if missing), remove the earlier bundle's files this one does
    not write (with `force`), and record what the folder now holds.

    The order keeps a crash harmless: the new files first, then the stale ones go, then the record;
    until the record is replaced, the earlier one still names every file a rerun may remove."""
    todo, stale = _check(out, files, force)
    record = record_text(files, version, command, target)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for f in todo:
            _write_one(out / f.name, f.text, f.executable)
    except OSError as exc:
        raise WriteError(f"cannot write {exc.filename or out}: {exc.strerror or exc}") from None
    for path in stale:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise WriteError(f"cannot remove {path}: {exc.strerror or exc}") from None
    try:
        path = out / BUNDLE_RECORD
        try:
            same = not path.is_symlink() and path.read_text(encoding="utf-8") == record
        except (OSError, UnicodeDecodeError):
            same = False
        if not same:
            _write_one(path, record, False)
    except OSError as exc:
        raise WriteError(f"cannot write {exc.filename or out}: {exc.strerror or exc}") from None
    return Written([out / f.name for f in files], stale)
