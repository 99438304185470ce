"""The journaled write and its recovery, in-process on a small package.

A kill at every step, through the real CLI, is test_faults.py; here each
outcome of :class:`hermes_patch.journal.Journal` is asserted directly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hermes_patch.core.errors import StateError, TargetError
from hermes_patch.fileio import read_bytes
from hermes_patch.journal import FileWrite, Journal
from hermes_patch.ledger import StateDir, target_key
from hermes_patch.locate import Target
from hermes_patch.records import Commit, FileHashes, JournalEntry, Pending, Snapshot


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    package = tmp_path / "sp" / "hermes_cli"
    package.mkdir(parents=True)
    (package / "web_server.py").write_bytes(b"A = 1\n")
    (package / "ws_policy.py").write_bytes(b"B = 2\n")
    (tmp_path / "state").mkdir(mode=0o700)
    target = Target(package / "web_server.py", package, "0.15.0", "pip", tmp_path / "sp", None, "--root")
    return Journal(StateDir(tmp_path / "state"), target_key(package), target)


def _changes(journal: Journal, **after: bytes) -> list[FileWrite]:
    out = []
    for name, data in after.items():
        path = journal.target.package_dir / f"{name}.py"
        before = read_bytes(path)
        out.append(FileWrite(f"{name}.py", path, before, data, _sha(before)))
    return out


def _commit(entries: Mapping[str, JournalEntry]) -> Commit:
    files = {name: FileHashes(j.original, j.after) for name, j in entries.items()}
    return Commit("0.15.0", files, {}, Snapshot("key", {name: j.after for name, j in entries.items()}, ()))


class Recorder:
    """An integration that records what it was told and adds its own part to the record."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def before_write(self, ledger: dict[str, Any], record: dict[str, Any], names: list[str], kind: str) -> None:
        self.calls.append(f"before {kind} {names}")
        record.setdefault("integrations", {})["test"] = {"names": names}

    def after_write(self, ledger: dict[str, Any], record: dict[str, Any]) -> None:
        self.calls.append(f"after {sorted(record)}")


def test_a_write_replaces_the_files_and_commits_its_record(journal: Journal):
    integration = Recorder()
    files = _changes(journal, web_server=b"A = 10\n", ws_policy=b"B = 20\n")
    done = journal.write(journal.state.read(), "apply", files, _commit, integration)
    package = journal.target.package_dir
    assert done.paths == (package / "web_server.py", package / "ws_policy.py")
    assert (package / "web_server.py").read_bytes() == b"A = 10\n"
    record = journal.state.read().target(journal.key)
    assert record.pending is None and record.version == "0.15.0"
    assert record.files == {
        "web_server.py": FileHashes(_sha(b"A = 1\n"), _sha(b"A = 10\n")),
        **{"ws_policy.py": FileHashes(_sha(b"B = 2\n"), _sha(b"B = 20\n"))},
    }
    assert record.integrations == {"test": {"names": ["web_server.py", "ws_policy.py"]}}
    assert integration.calls == [
        "before apply ['web_server.py', 'ws_policy.py']",
        "after ['backups', 'files', 'integrations', 'patches', 'snapshot', 'version']",
    ]
    for data in (b"A = 1\n", b"A = 10\n", b"B = 2\n", b"B = 20\n"):
        assert journal.state.read_backup(_sha(data)) == data


def test_a_second_write_keeps_the_release_original(journal: Journal):
    journal.write(journal.state.read(), "apply", _changes(journal, web_server=b"A = 10\n"), _commit)
    journal.write(journal.state.read(), "revert", _changes(journal, web_server=b"A = 1\n"), _commit)
    record = journal.state.read().target(journal.key)
    assert record.known_files["web_server.py"] == FileHashes(_sha(b"A = 1\n"), _sha(b"A = 1\n"))
    assert len(record.backups or ()) == 2


def test_a_file_replaced_meanwhile_undoes_the_write(journal: Journal):
    files = _changes(journal, web_server=b"A = 10\n", ws_policy=b"B = 20\n")
    (journal.target.package_dir / "ws_policy.py").write_bytes(b"B = 3  # an upgrade, meanwhile\n")
    before = journal.state.ledger_path.read_bytes() if journal.state.ledger_path.exists() else None
    with pytest.raises(TargetError):
        journal.write(journal.state.read(), "apply", files, _commit)
    assert (journal.target.package_dir / "web_server.py").read_bytes() == b"A = 1\n"
    assert (journal.target.package_dir / "ws_policy.py").read_bytes() == b"B = 3  # an upgrade, meanwhile\n"
    assert before is None and journal.state.read().target(journal.key).to_json() == {}


def _interrupted(journal: Journal, after: bytes) -> bytes:
    """A journal saved as by a write killed before it replaced web_server.py; returns the bytes before."""
    path = journal.target.package_dir / "web_server.py"
    before = path.read_bytes()
    journal.state.backup(after)
    entries = {"web_server.py": JournalEntry(_sha(before), _sha(after), _sha(before))}
    record = replace(journal.state.read().target(journal.key), pending=Pending("apply", entries, _commit(entries)))
    journal.state.write(journal.state.read().with_target(journal.key, record))
    return before


def test_recovery_completes_an_interrupted_write(journal: Journal):
    _interrupted(journal, b"A = 10\n")
    stale = journal.target.package_dir / ".web_server.py.1234.hermes-patch.tmp"
    stale.write_bytes(b"half")
    assert journal.stale_temp_files() == [stale]
    journal.recover()
    assert (journal.target.package_dir / "web_server.py").read_bytes() == b"A = 10\n"
    assert not stale.exists()
    record = journal.state.read().target(journal.key)
    assert record.pending is None and record.known_files["web_server.py"].patched == _sha(b"A = 10\n")
    journal.recover()  # nothing left to do


def test_recovery_refuses_a_file_that_moved_on(journal: Journal):
    _interrupted(journal, b"A = 10\n")
    (journal.target.package_dir / "web_server.py").write_bytes(b"A = 99  # edited since\n")
    with pytest.raises(StateError, match="neither the bytes before nor after"):
        journal.recover()
    assert journal.state.read().target(journal.key).pending is not None


def test_recovery_refuses_a_missing_backup(journal: Journal):
    _interrupted(journal, b"A = 10\n")
    (journal.state.path / "backups" / _sha(b"A = 10\n")).unlink()
    with pytest.raises(StateError, match="names a backup .* that is missing"):
        journal.recover()
    assert (journal.target.package_dir / "web_server.py").read_bytes() == b"A = 1\n"


def test_a_name_leading_out_of_the_package_through_a_link_is_refused(journal: Journal, tmp_path: Path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (journal.target.package_dir / "sub").symlink_to(outside)
    with pytest.raises(StateError, match="outside that package"):
        journal.confined("sub/x.py")
    assert journal.confined("ws_policy.py") == journal.target.package_dir / "ws_policy.py"
