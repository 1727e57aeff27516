"""A bundle records what it wrote, and `--force` replaces a bundle instead of adding to it.

Before the record, `deploy --force` into a folder kept every file the new bundle did not write: a k8s
bundle redeployed across two nodes left the single-node `deployment.yaml` (and `pvc.yaml`) beside the
new `leaderworkerset.yaml`, and the printed `kubectl apply -f DIR` started both. Now:

- the folder holds `.vramplan-bundle` (JSON: each file's SHA-256, the vramplan version, the command);
- with --force, the files the record names that the new bundle does not write are removed, but only
  while they hold what was written; one changed since stops the write (one line naming it);
- without --force such stale files stop the write like a clash: nothing is overwritten or lost;
- files the record does not name (the user's) are never touched.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Callable
from hashlib import sha256
from pathlib import Path

import pytest
import yaml
from click.testing import Result

from vramplan import __version__
from vramplan.deploy.render import RenderedFile
from vramplan.deploy.writer import BUNDLE_RECORD, WriteError, read_record, write_files
from vramplan.errors import RenderError

SINGLE = ["deploy", "r1", "--target", "k8s", "--gpu", "h200:8"]
MULTI = ["deploy", "r1", "--target", "k8s", "--gpu", "h100:8", "--nodes", "2"]


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def record(folder: Path) -> dict[str, object]:
    doc: dict[str, object] = json.loads((folder / BUNDLE_RECORD).read_text())
    return doc


# --------------------------------------------------------------------------- through the CLI


def test_the_record_names_every_file_with_its_hash(run: Callable[..., Result], tmp_path: Path) -> None:
    out = tmp_path / "my bundle"
    res = run(*SINGLE, "--out", str(out))
    assert res.exit_code == 0, res.output
    doc = record(out)
    assert doc["vramplan"] == __version__ and doc["target"] == "k8s" and doc["format"] == 1
    assert shlex.split(str(doc["command"])) == ["vramplan", *SINGLE, "--out", str(out)]
    files = doc["files"]
    assert isinstance(files, dict)
    assert list(files) == ["pvc.yaml", "deployment.yaml", "service.yaml", "networkpolicy.yaml", "README.md"]
    for name, digest in files.items():
        assert sha256((out / name).read_bytes()).hexdigest() == digest
    # `kubectl apply -f DIR` reads every .json, .yaml and .yml file of the folder, hidden ones too
    assert Path(BUNDLE_RECORD).suffix not in (".json", ".yaml", ".yml")
    assert "wrote 5 files" in res.output  # the record is not one of the bundle's files


def test_the_record_keeps_the_options_given_and_the_catalog(
    run: Callable[..., Result], tmp_path: Path
) -> None:
    cat = tmp_path / "mine.yaml"
    cat.write_text("version: 1\nvariants: []\n")
    out = tmp_path / "b"
    res = run(
        "--catalog", str(cat), "deploy", "r1-1.5b", "-t", "ollama", "--gpu", "l4", "-o", str(out), "--json"
    )
    assert res.exit_code == 0, res.output
    assert shlex.split(str(record(out)["command"])) == [
        "vramplan",
        "--catalog",
        str(cat),
        "deploy",
        "r1-1.5b",
        "--target",
        "ollama",
        "--gpu",
        "l4",
        "--out",
        str(out),
        "--json",
    ]


def test_force_replaces_a_bundle_that_becomes_multi_node(run: Callable[..., Result], tmp_path: Path) -> None:
    out = tmp_path / "b"
    assert run(*SINGLE, "--out", str(out)).exit_code == 0
    (out / "notes.txt").write_text("the user's own file\n")
    res = run(*MULTI, "--out", str(out), "--force")
    assert res.exit_code == 0, res.output
    assert names(out) == [
        BUNDLE_RECORD,
        "README.md",
        "leaderworkerset.yaml",
        "networkpolicy.yaml",
        "notes.txt",
        "pvc.yaml",
        "service.yaml",
    ]
    assert (out / "notes.txt").read_text() == "the user's own file\n"
    assert (
        "removed deployment.yaml of the bundle written there before (whatever was started from it keeps "
        "running until you stop it)"
    ) in " ".join(res.output.split())  # the line wraps at the console's width
    # the multi-node bundle shares one ReadWriteMany model cache (pvc.yaml), rewritten in place
    assert list(read_record(out)) == [
        "pvc.yaml",
        "leaderworkerset.yaml",
        "service.yaml",
        "networkpolicy.yaml",
        "README.md",
    ]


def test_force_json_names_the_removed_files(run: Callable[..., Result], tmp_path: Path) -> None:
    out = tmp_path / "b"
    assert run(*SINGLE, "--out", str(out)).exit_code == 0
    res = run(*MULTI, "--out", str(out), "--force", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["removed"] == [str(out / "deployment.yaml")]
    res = run(*MULTI, "--out", str(out), "--json")  # the same bundle again: nothing to remove
    assert res.exit_code == 0, res.output
    assert "removed" not in json.loads(res.stdout)


def test_without_force_nothing_is_overwritten_or_removed(run: Callable[..., Result], tmp_path: Path) -> None:
    out = tmp_path / "b"
    assert run(*SINGLE, "--out", str(out)).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    res = run(*MULTI, "--out", str(out))
    assert res.exit_code == 2
    assert res.stderr.splitlines() == [
        f"Error: {out} already holds other versions of pvc.yaml, service.yaml, networkpolicy.yaml, "
        "README.md and deployment.yaml from an earlier bundle, which this one does not write; use --force "
        "to replace that bundle"
    ]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_stale_file_changed_since_stops_even_force(run: Callable[..., Result], tmp_path: Path) -> None:
    out = tmp_path / "b"
    assert run(*SINGLE, "--out", str(out)).exit_code == 0
    dep = out / "deployment.yaml"
    dep.write_text(dep.read_text() + "# tuned by hand\n")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    res = run(*MULTI, "--out", str(out), "--force")
    assert res.exit_code == 2
    assert res.stderr.splitlines() == [
        f"Error: {out} holds deployment.yaml from an earlier bundle, which this one does not write, "
        f"changed since vramplan wrote it; move it out of {out} (or delete it) and run again"
    ]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing written, nothing removed
    dep.unlink()  # as the line says
    res = run(*MULTI, "--out", str(out), "--force")
    assert res.exit_code == 0, res.output
    assert names(out) == [
        BUNDLE_RECORD,
        "README.md",
        "leaderworkerset.yaml",
        "networkpolicy.yaml",
        "pvc.yaml",
        "service.yaml",
    ]


def test_another_target_into_the_same_folder_replaces_the_bundle(
    run: Callable[..., Result], tmp_path: Path
) -> None:
    out = tmp_path / "b"
    assert run("deploy", "r1-32b", "--target", "vllm", "--gpu", "h100:2", "--out", str(out)).exit_code == 0
    res = run("deploy", "r1-32b", "--target", "k8s", "--gpu", "h100:2", "--out", str(out), "--force")
    assert res.exit_code == 0, res.output
    assert names(out) == [
        BUNDLE_RECORD,
        "README.md",
        "deployment.yaml",
        "networkpolicy.yaml",
        "pvc.yaml",
        "service.yaml",
    ]
    assert record(out)["target"] == "k8s"


def test_a_bundle_without_a_record_keeps_todays_rule(run: Callable[..., Result], tmp_path: Path) -> None:
    """A folder an older vramplan wrote has no record: --force overwrites, and removes nothing."""
    out = tmp_path / "b"
    assert run(*SINGLE, "--out", str(out)).exit_code == 0
    (out / BUNDLE_RECORD).unlink()
    res = run(*MULTI, "--out", str(out), "--force")
    assert res.exit_code == 0, res.output
    assert "deployment.yaml" in names(out) and "removed" not in res.output


# --------------------------------------------------------------------------- what the files hold


@pytest.mark.parametrize(
    ("args", "modelfile"),
    [
        (["deploy", "r1-1.5b", "--target", "ollama", "--gpu", "l4"], "Modelfile"),
        (["deploy", "r1-0528-qwen3-8b", "--target", "ollama", "--gpu", "l4"], "Modelfile"),
        (["deploy", "r1-1.5b", "--target", "k8s", "--runtime", "ollama", "--gpu", "l4"], "configmap.yaml"),
    ],
)
def test_modelfiles_carry_deepseeks_recommended_sampling(
    run: Callable[..., Result], tmp_path: Path, args: list[str], modelfile: str
) -> None:
    """The DeepSeek-R1 model card: temperature 0.6 (0.5-0.7), top-p 0.95, for the whole R1 series."""
    out = tmp_path / "b"
    res = run(*args, "--out", str(out))
    assert res.exit_code == 0, res.output
    text = (out / modelfile).read_text()
    if modelfile.endswith(".yaml"):
        text = yaml.safe_load(text)["data"]["Modelfile"]
    params = [ln.split()[1:] for ln in text.splitlines() if ln.startswith("PARAMETER ")]
    assert ["temperature", "0.6"] in params and ["top_p", "0.95"] in params
    assert params[0][0] == "num_ctx"


# --------------------------------------------------------------------------- docs/deploy.md

DOC = Path(__file__).resolve().parent.parent / "docs" / "deploy.md"
REFERENCE_PLANS = [
    ["deepseek-r1-distill-qwen-1.5b", "--gpu", "l4"],
    ["deepseek-r1-distill-qwen-32b", "--gpu", "h100-80gb:2"],
    ["deepseek-r1", "--gpu", "h200:8"],
    ["deepseek-r1", "--gpu", "h100-80gb:8", "--nodes", "2"],
]


def serve_values(run: Callable[..., Result], tmp_path: Path) -> dict[str, set[str]]:
    """flag -> the values the reference plans' serve.sh files give it."""
    values: dict[str, set[str]] = {}
    for i, plan in enumerate(REFERENCE_PLANS):
        out = tmp_path / f"plan{i}"
        assert run("deploy", *plan, "--target", "vllm", "--out", str(out)).exit_code == 0
        text = (out / "serve.sh").read_text().replace("\\\n", " ")
        line = next(ln for ln in text.splitlines() if ln.lstrip().startswith("exec vllm serve"))
        words = shlex.split(line)
        for flag, value in zip(words, [*words[1:], ""], strict=True):
            if flag.startswith("--") and not value.startswith("--"):
                values.setdefault(flag, set()).add(value)
    return values


def test_deploy_doc_quotes_only_values_the_bundles_write(run: Callable[..., Result], tmp_path: Path) -> None:
    """Before: the doc said `--gpu-memory-utilization` was 0.90 where every bundle wrote 0.92. A value
    the table of docs/deploy.md quotes for a vLLM flag, as `(N)`, is one a reference bundle writes;
    the generated table of every value (docs/generate.py) is checked by tests/test_docs.py."""
    values = serve_values(run, tmp_path)
    rows = [ln for ln in DOC.read_text().splitlines() if ln.startswith("| `--")]
    assert rows, "docs/deploy.md has no table of where each number comes from"
    for row in rows:
        named, said = row.split(" | ")[0], " | ".join(row.split(" | ")[1:])
        flags = re.findall(r"`(--[a-z-]+)`", named)
        written = set().union(*(values.get(f, set()) for f in flags))
        for number in re.findall(r"\((\d+(?:\.\d+)?)\)", said):
            assert number in written, (
                f"docs/deploy.md says {number} for {', '.join(flags)}; bundles write {sorted(written)}"
            )
    assert values["--gpu-memory-utilization"] and values["--max-num-seqs"]  # the parse found them


# --------------------------------------------------------------------------- the writer itself


def files(**texts: str) -> list[RenderedFile]:
    return [RenderedFile(name.replace("_", "."), text) for name, text in texts.items()]


def test_writer_removes_only_what_it_recorded(tmp_path: Path) -> None:
    out = tmp_path / "b"
    first = write_files(out, files(a_txt="a\n", b_txt="b\n"))
    assert first.removed == [] and names(out) == [BUNDLE_RECORD, "a.txt", "b.txt"]
    (out / "c.txt").write_text("the user's\n")
    with pytest.raises(RenderError, match=r"b\.txt from an earlier bundle, which this one does not write"):
        write_files(out, files(a_txt="a\n"))
    assert names(out) == [BUNDLE_RECORD, "a.txt", "b.txt", "c.txt"]
    second = write_files(out, files(a_txt="a\n"), force=True)
    assert second.removed == [out / "b.txt"] and second.files == [out / "a.txt"]
    assert names(out) == [BUNDLE_RECORD, "a.txt", "c.txt"]


def test_a_forged_record_cannot_reach_outside_the_folder(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    out = tmp_path / "b"
    out.mkdir()
    digest = sha256(b"keep me\n").hexdigest()
    doc = {"files": {"../victim.txt": digest, str(victim): digest, BUNDLE_RECORD: digest}}
    (out / BUNDLE_RECORD).write_text(json.dumps(doc))
    assert read_record(out) == {}
    written = write_files(out, files(a_txt="a\n"), force=True)
    assert written.removed == [] and victim.read_text() == "keep me\n"


def test_an_unreadable_record_is_replaced_and_removes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "b"
    out.mkdir()
    (out / "old.txt").write_text("x\n")
    (out / BUNDLE_RECORD).write_text("not json")
    written = write_files(out, files(a_txt="a\n"), command=["vramplan", "deploy", "x"], version="9")
    assert written.removed == [] and "old.txt" in names(out)
    assert list(read_record(out)) == ["a.txt"] and record(out)["command"] == "vramplan deploy x"


def test_a_failed_removal_is_retried_by_the_next_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The record is replaced only after the stale files are gone, so a rerun still knows them."""
    out = tmp_path / "b"
    write_files(out, files(a_txt="a\n", b_txt="b\n"))
    real_unlink = Path.unlink

    def refuse(self: Path, missing_ok: bool = False) -> None:
        if self.name == "b.txt":
            raise PermissionError(13, "Permission denied", str(self))
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", refuse)
    with pytest.raises(WriteError, match=r"^cannot remove .*b\.txt: Permission denied$"):
        write_files(out, files(a_txt="a\n"), force=True)
    assert list(read_record(out)) == ["a.txt", "b.txt"]
    monkeypatch.setattr(Path, "unlink", real_unlink)
    assert write_files(out, files(a_txt="a\n"), force=True).removed == [out / "b.txt"]


def test_the_same_bundle_twice_rewrites_nothing(tmp_path: Path) -> None:
    out = tmp_path / "b"
    write_files(out, files(a_txt="a\n"), version="1", command=["vramplan"])
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    inode = (out / BUNDLE_RECORD).stat().st_ino
    write_files(out, files(a_txt="a\n"), version="1", command=["vramplan"])
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps
    assert (out / BUNDLE_RECORD).stat().st_ino == inode
    assert not os.access(out / BUNDLE_RECORD, os.X_OK)
