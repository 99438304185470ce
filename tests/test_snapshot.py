"""The warm ``status``: a snapshot is reused exactly while its key and every file it covers are unchanged."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from hermes_patch.records import Commit, JournalEntry, Pending, ReportRecord, Snapshot, TargetRecord
from hermes_patch.snapshot import catalog_inputs, config_key, entry_point_declarations, reusable

REPORT = ReportRecord("public-action-status", "applied", "our block is in place", True, (), (), False)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def package(tmp_path: Path) -> Path:
    (tmp_path / "web_server.py").write_bytes(b"A = 1\n")
    (tmp_path / "ws_policy.py").write_bytes(b"B = 2\n")
    return tmp_path


def _record(**inputs: bytes) -> TargetRecord:
    snap = Snapshot("key", {f"{name}.py": _sha(data) for name, data in inputs.items()}, (REPORT,))
    return TargetRecord(snapshot=snap)


def test_a_snapshot_of_these_bytes_is_reused(package: Path):
    warm = reusable(_record(web_server=b"A = 1\n", ws_policy=b"B = 2\n"), lambda: "key", package, "web_server.py")
    assert warm is not None
    assert warm.reports == (REPORT,) and warm.entry_sha256 == _sha(b"A = 1\n")
    assert warm.files == {"web_server.py": b"A = 1\n", "ws_policy.py": b"B = 2\n"}


def _pending(record: TargetRecord) -> TargetRecord:
    assert record.snapshot is not None
    journal = {"web_server.py": JournalEntry(_sha(b"A = 1\n"), _sha(b"A = 10\n"), _sha(b"A = 1\n"))}
    return replace(record, pending=Pending("apply", journal, Commit(None, {}, {}, record.snapshot)))


# name: what changes, given the record and the package; returns the key of this run and the record
CHANGES = {
    "another configuration": lambda record, package: ("other key", record),
    "a file changed": lambda record, package: (
        (package / "ws_policy.py").write_bytes(b"B = 3\n") and "key",
        record,
    ),
    "a file removed": lambda record, package: ((package / "ws_policy.py").unlink() or "key", record),
    "a write pending": lambda record, package: ("key", _pending(record)),
    "no snapshot": lambda record, package: ("key", TargetRecord()),
}


@pytest.mark.parametrize("case", list(CHANGES))
def test_a_snapshot_is_not_reused_when_anything_it_came_from_changed(case, package: Path):
    record = _record(web_server=b"A = 1\n", ws_policy=b"B = 2\n")
    key, record = CHANGES[case](record, package)
    assert reusable(record, lambda: key, package, "web_server.py") is None


def test_a_snapshot_without_the_entry_is_not_reused(package: Path):
    assert reusable(_record(ws_policy=b"B = 2\n"), lambda: "key", package, "web_server.py") is None


SETTINGS = {
    "path": "/c.toml",
    "exists": True,
    "patch_dirs": [],
    "allow_version": False,
    "patches": {"p": {"hosts": ["a"]}},
}
CATALOG = {"builtin": {"p.py": "1" * 64}, "patch_dirs": {}, "entry_points": []}


def _changed(tree: dict, path: tuple[str, ...], value: object) -> dict:
    out = dict(tree)
    if len(path) == 1:
        out[path[0]] = value
    else:
        out[path[0]] = _changed(out[path[0]], path[1:], value)
    return out


def test_the_key_changes_with_every_input():
    base = config_key("0.1.0", SETTINGS, CATALOG)
    assert base == config_key("0.1.0", dict(SETTINGS), dict(CATALOG))
    others = [
        config_key("0.1.1", SETTINGS, CATALOG),
        config_key("0.1.0", _changed(SETTINGS, ("path",), "/d.toml"), CATALOG),
        config_key("0.1.0", _changed(SETTINGS, ("exists",), False), CATALOG),
        config_key("0.1.0", _changed(SETTINGS, ("allow_version",), True), CATALOG),
        config_key("0.1.0", _changed(SETTINGS, ("patches", "p"), {"hosts": ["b"]}), CATALOG),
        config_key("0.1.0", _changed(SETTINGS, ("patches", "p"), {"hosts": ["a"], "enabled": False}), CATALOG),
        config_key("0.1.0", SETTINGS, _changed(CATALOG, ("builtin", "p.py"), "2" * 64)),
        config_key("0.1.0", SETTINGS, _changed(CATALOG, ("patch_dirs",), {"/x": {}})),
        config_key("0.1.0", SETTINGS, _changed(CATALOG, ("entry_points",), ["x-1.0.dist-info"])),
    ]
    assert len({base, *others}) == 1 + len(others)


def test_the_catalog_inputs_are_the_bytes_of_every_patch_module(tmp_path: Path):
    """A user patch edited in place (same name, same folder) gives another key: its bytes are hashed."""
    (tmp_path / "mine.py").write_text("X = 1\n")
    first = catalog_inputs([tmp_path])
    assert first["patch_dirs"] == {str(tmp_path): {"mine.py": _sha(b"X = 1\n")}}
    assert "stable_session_token.py" in first["builtin"]  # type: ignore[operator]
    (tmp_path / "mine.py").write_text("X = 2\n")
    assert catalog_inputs([tmp_path]) != first


def test_an_installed_entry_point_declaration_changes_the_catalog_inputs(tmp_path: Path, monkeypatch):
    dist = tmp_path / "their_patches-1.0.dist-info"
    dist.mkdir()
    (dist / "entry_points.txt").write_text("[console_scripts]\nx = y:z\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = entry_point_declarations()
    (dist / "entry_points.txt").write_text("[hermes_patch.patches]\nmine = their_patches:Mine\n")
    after = entry_point_declarations()
    assert len(after) == len(before) + 2  # the declaration, and the module's bytes (or a fresh value: not found)
    assert [a for a in after if "their_patches-1.0.dist-info" in a and "mine = their_patches:Mine" in a]
    assert entry_point_declarations() != after  # their_patches is nowhere on sys.path: never reused


def test_an_entry_point_module_edited_in_place_changes_the_catalog_inputs(tmp_path: Path, monkeypatch):
    """helper-22: an editable install's patch module was edited and a warm `status` kept the old reports."""
    dist = tmp_path / "their_patches-1.0.dist-info"
    dist.mkdir()
    (dist / "entry_points.txt").write_text("[hermes_patch.patches]\nmine = their_patches.mod:Mine\n")
    (tmp_path / "their_patches").mkdir()
    (tmp_path / "their_patches" / "__init__.py").write_text("")
    (tmp_path / "their_patches" / "mod.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    first = entry_point_declarations()
    assert entry_point_declarations() == first
    (tmp_path / "their_patches" / "mod.py").write_text("X = 2\n")
    assert entry_point_declarations() != first


def test_without_a_snapshot_the_key_is_never_computed(package: Path):
    """The key reads the configuration: a run that cannot reuse anything must not fail on it first."""

    def key() -> str:
        raise AssertionError("the key was computed")

    assert reusable(TargetRecord(), key, package, "web_server.py") is None


def test_the_declarations_are_found_where_importlib_metadata_finds_entry_points(monkeypatch):
    """The registry skips importlib.metadata when there is no declaration: both must see the same ones."""
    from importlib.metadata import entry_points

    from hermes_patch.registry import ENTRY_POINT_GROUP

    plugins = Path(__file__).parent / "plugins"
    assert not [a for a in entry_point_declarations() if str(plugins) in a]
    monkeypatch.syspath_prepend(str(plugins))
    found = [a for a in entry_point_declarations() if str(plugins) in a]
    assert len(found) == 1 and "hermes_patch_example-0.1.0.dist-info" in found[0]
    assert {ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)} <= {
        line.split("=", 1)[1].strip() for a in entry_point_declarations() for line in a.splitlines() if "=" in line
    }
