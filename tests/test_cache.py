"""The parsed-YAML cache: a hit skips PyYAML, a changed text or a damaged entry is parsed again, and a
cache that cannot be written changes nothing."""

from __future__ import annotations

import marshal
from pathlib import Path

import pytest

from vramplan import cache
from vramplan.catalog import builtin_catalog_path, parse_catalog
from vramplan.errors import CatalogError


def entries(home: Path) -> list[Path]:
    return sorted((home / "yaml").glob("*.marshal"))


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("VRAMPLAN_HOME", str(h))
    return h


def test_second_load_comes_from_the_cache(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = Path(builtin_catalog_path()).read_text()
    first, _ = parse_catalog(text, "catalog.yaml")
    assert len(entries(home)) == 1

    def no_yaml(text: str) -> object:
        raise AssertionError("parsed again although the cache holds this text")

    monkeypatch.setattr(cache, "_parse", no_yaml)
    second, _ = parse_catalog(text, "catalog.yaml")
    assert second == first


def test_changed_text_is_parsed_again(home: Path) -> None:
    assert cache.load_yaml("a: 1\n") == {"a": 1}
    assert cache.load_yaml("a: 2\n") == {"a": 2}
    assert len(entries(home)) == 2


def test_damaged_entry_is_parsed_again(home: Path) -> None:
    assert cache.load_yaml("a: [1, 2]\n") == {"a": [1, 2]}
    (entry,) = entries(home)
    entry.write_bytes(b"\x00garbage")
    assert cache.load_yaml("a: [1, 2]\n") == {"a": [1, 2]}


def test_unwritable_home_is_ignored(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("VRAMPLAN_HOME", str(blocker))
    assert cache.load_yaml("b: true\n") == {"b": True}


def test_yaml_errors_are_not_cached_and_keep_their_line(home: Path) -> None:
    with pytest.raises(CatalogError, match=r"bad\.yaml: line 3: not valid YAML"):
        parse_catalog("variants:\n  - [unclosed\n", "bad.yaml")
    assert entries(home) == []


def test_entry_of_another_text_is_never_used(home: Path) -> None:
    """The file name only finds an entry (a CRC-32 can collide); the text stored in it decides."""
    assert cache.load_yaml("a: 1\n") == {"a": 1}
    (entry,) = entries(home)
    entry.write_bytes(marshal.dumps(("a: 2\n", {"a": 2})))
    assert cache.load_yaml("a: 1\n") == {"a": 1}
