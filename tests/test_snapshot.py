"""The warm ``status``: a snapshot is reused exactly while its key and every file it covers are unchanged."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from hermes_patch.records import Commit, JournalEntry, Pending, ReportRecord, Snapshot, TargetRecord
from hermes_patch.snapshot import config_key, reusable

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


def test_the_key_changes_with_every_input_and_hashes_tuples_as_lists():
    base = config_key("0.1.0", [("p", "builtin", True, {"hosts": ("a",)})], {})
    assert base == config_key("0.1.0", [("p", "builtin", True, {"hosts": ["a"]})], {})
    others = [
        config_key("0.1.1", [("p", "builtin", True, {"hosts": ("a",)})], {}),
        config_key("0.1.0", [("p", "/x/p.py", True, {"hosts": ("a",)})], {}),
        config_key("0.1.0", [("p", "builtin", False, {"hosts": ("a",)})], {}),
        config_key("0.1.0", [("p", "builtin", True, {"hosts": ("b",)})], {}),
        config_key("0.1.0", [("p", "builtin", True, {"hosts": ("a",)})], {"p": "bad"}),
    ]
    assert len({base, *others}) == 6


def test_without_a_snapshot_the_key_is_never_computed(package: Path):
    """The key reads the configuration: a run that cannot reuse anything must not fail on it first."""

    def key() -> str:
        raise AssertionError("the key was computed")

    assert reusable(TargetRecord(), key, package, "web_server.py") is None
