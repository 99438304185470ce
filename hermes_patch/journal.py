"""The journaled write of Hermes files, and the recovery of one a crash interrupted.

A write (``apply`` or ``revert``) replaces one or more module files of the
target package. Its steps, each a point where a crash may stop it::

    backups            the bytes before and after, in backups/<sha256>    after-backup
    pending record     the journal: each file's sha256 before and after,  after-ledger-pending
                       and the record to commit
    file writes        each file replaced atomically, only if it is       after-target-write
                       still the file that was read
    commit             the journal merged into the record                 after-ledger-commit

A crash before the pending record leaves the files as they were; after it,
the next ``apply`` or ``revert`` finds the journal (:meth:`Journal.recover`)
and completes the write from the backups. A write that fails half way (a
full disk, a file replaced meanwhile) is undone at once instead.

The git integration adds to the same ledger around the write: it is told
through :class:`Integration` and changes its part of the record as JSON.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, cast

from hermes_patch.core.errors import StateError, TargetError
from hermes_patch.fileio import Identity, atomic_write, fault_point, identity, read_bytes, stale_temp_files
from hermes_patch.ledger import KEEP_WRITES, StateDir
from hermes_patch.core.messages import forged_record
from hermes_patch.records import Commit, JournalEntry, Ledger, LedgerDoc, Pending, TargetDoc, load_ledger
from hermes_patch.core.source import sha256_hex

if TYPE_CHECKING:
    from hermes_patch.locate import Target

__all__ = ["FileWrite", "Integration", "Journal", "Written"]


@dataclass(frozen=True)
class FileWrite:
    """One module file a write replaces: its name in the package, its path, its bytes before and after.

    ``before_sha`` is the sha256 of ``before`` (known from the read, not hashed again).
    """

    name: str
    path: Path
    before: bytes
    after: bytes
    before_sha: str


@dataclass(frozen=True)
class Written:
    """What a write did: the files it replaced (in order) and how many old backups it pruned."""

    paths: tuple[Path, ...]
    pruned: int


class Integration(Protocol):
    """What a write tells an integration (git) that keeps its own part of the target's record.

    Both receive the ledger and this target's record as parsed JSON: the
    integration changes ``record`` in place and saves ``ledger`` itself
    (:meth:`~hermes_patch.ledger.StateDir.save`) when it changed.
    """

    def before_write(self, ledger: LedgerDoc, record: TargetDoc, names: list[str], kind: str) -> None:
        """Before any Hermes file is written (after the backups); may refuse by raising."""

    def after_write(self, ledger: LedgerDoc, record: TargetDoc) -> None:
        """After the commit was saved."""


class Journal:
    """Journaled writes to one target, and their recovery.

    Args:
        state: the state directory holding the ledger and the backups.
        key: the target's key in the ledger (:func:`~hermes_patch.ledger.target_key`).
        target: the target; its ``package_dir`` confines every name the
            journal holds, its ``entry`` may be a link out of it.

    Call every method holding ``state.lock(key)``.
    """

    def __init__(self, state: StateDir, key: str, target: Target) -> None:
        self.state, self.key, self.target = state, key, target

    def write(
        self,
        ledger: Ledger,
        kind: Literal["apply", "revert"],
        files: Sequence[FileWrite],
        commit: Callable[[Mapping[str, JournalEntry]], Commit],
        integration: Integration | None = None,
    ) -> Written:
        """Write ``files`` as one transaction; return what was written.

        Args:
            ledger: the ledger as read under the lock (before the write).
            kind: ``apply`` or ``revert`` (the git integration acts on ``apply`` only).
            files: the files to replace, in the order they are written.
            commit: builds the record to commit from the journal's entries
                (called once, after the backups, before the pending record is saved).
            integration: told before the first and after the last write.

        Raises:
            TargetError: a file could not be written (a full disk, replaced
                meanwhile); what was written is put back and the record restored.
            StateError: the same, but even undoing failed: the journal stays,
                and the next ``apply`` or ``revert`` completes the write.
        """
        previous = ledger.target(self.key)
        record = replace(previous, files=previous.known_files)
        journal: dict[str, JournalEntry] = {}
        shas: list[str] = []
        for f in files:
            shas += [self.state.backup(f.before), self.state.backup(f.after)]
            known = record.known_files.get(f.name)
            # A file we did not leave as it is now is a fresh release (or our first write): it is the original.
            original = known.original if known is not None and known.patched == f.before_sha else f.before_sha
            journal[f.name] = JournalEntry(f.before_sha, sha256_hex(f.after), original)
        fault_point("after-backup")
        ledger = ledger.with_target(self.key, record)
        if integration is not None:
            names, which = [f.name for f in files], kind
            ledger = self._integrate(ledger, lambda doc, rec: integration.before_write(doc, rec, names, which))
            record = ledger.target(self.key)
        pending = Pending(kind, journal, commit(journal))
        backups = (*(record.backups or ()), tuple(sorted(set(shas))))[-KEEP_WRITES:]
        ledger = ledger.with_target(self.key, replace(record, pending=pending, backups=backups))
        self.state.write(ledger)
        fault_point("after-ledger-pending")
        written: list[tuple[FileWrite, Identity | None]] = []
        try:
            for f in files:
                # Written only if the file is still the one we read (a concurrent upgrade is left alone).
                now = atomic_write(f.path, f.after, expect=identity(f.path, f.before_sha))
                written.append((f, now))
                fault_point("after-target-write")
            ledger = self._commit(ledger)
        except TargetError as exc:  # a full disk, a file replaced meanwhile: put back what was written
            raise self._roll_back(ledger.with_target(self.key, previous), written, exc) from None
        fault_point("after-ledger-commit")
        if integration is not None:
            ledger = self._integrate(ledger, integration.after_write)
        return Written(tuple(f.path for f, _ in written), self.state.prune(ledger))

    def recover(self) -> None:
        """Complete a write that a crash interrupted (roll forward), or refuse if its files moved on.

        Also removes the temporary files an interrupted atomic write left
        next to the target's files (ours by name).

        Raises:
            StateError: a journaled file is neither its bytes before nor after
                the write, or the backup to complete it is missing, or the
                journal names a file outside the package; nothing was touched.
            TargetError: a file could not be written.
        """
        for tmp in self.stale_temp_files():  # no other hermes-patch writes here while we hold the lock
            tmp.unlink(missing_ok=True)
        ledger = self.state.read()
        pending = ledger.target(self.key).pending
        if pending is None:
            return
        todo: dict[Path, tuple[bytes, Identity | None]] = {}
        for name, j in pending.files.items():
            path = self.confined(name)
            try:
                current: str | None = sha256_hex(read_bytes(path))
            except TargetError:
                current = None
            if current == j.after:
                continue
            if current != j.before:
                raise StateError(
                    f"an interrupted hermes-patch write left a journal for {path}, but the file has changed since "
                    f"(it is neither the bytes before nor after that write). Nothing was touched. Check the file, "
                    f"then remove the `pending` entry of this target from {self.state.ledger_path} and run `hermes-patch status`."
                )
            data = self.state.read_backup(j.after)
            if data is None:
                raise StateError(
                    f"the journal of an interrupted write names a backup {j.after} that is missing from {self.state.path}/backups; the file {path} is unchanged. Remove the `pending` entry from {self.state.ledger_path} and run the command again."
                )
            todo[path] = (data, identity(path, j.before))
        for path, (data, expect) in todo.items():
            atomic_write(path, data, expect=expect)
        self._commit(ledger)

    def stale_temp_files(self) -> list[Path]:
        """Temporary files an interrupted atomic write left in the package (and beside a linked entry)."""
        folders = dict.fromkeys((self.target.package_dir, self.target.file.parent))
        return [p for d in folders for p in stale_temp_files(d)]

    def confined(self, name: str) -> Path:
        """The path of module file ``name`` of the target package, refusing any that leads out of it.

        The ledger was validated on load (plain relative ``.py`` names); this
        also refuses a name whose real path leaves the package through a link,
        except the entry module itself (a symlinked ``web_server.py`` is
        followed by policy, see ``--file``).

        Raises:
            StateError: the record names a file outside the package.
        """
        package = self.target.package_dir
        path = package / name
        real = os.path.realpath(path)
        inside = real.startswith(os.path.realpath(package) + os.sep)
        if ".." in Path(name).parts or Path(name).is_absolute() or not (inside or name == self.target.entry):
            raise StateError(
                forged_record(self.state.ledger_path, f"names {name!r} for {package}, which is outside that package")
            )
        return path

    # -- steps ---------------------------------------------------------------------------------

    def _commit(self, ledger: Ledger) -> Ledger:
        """Merge the pending write into the record and save the ledger; return it."""
        ledger = ledger.with_target(self.key, ledger.target(self.key).committed())
        self.state.write(ledger)
        return ledger

    def _roll_back(
        self, ledger: Ledger, written: list[tuple[FileWrite, Identity | None]], exc: TargetError
    ) -> Exception:
        """Put back the files already replaced and save ``ledger`` (the record before the write); return the error to raise.

        When even that fails, the journal stays so that the next ``apply`` or
        ``revert`` completes the write, and the error says so.
        """
        try:
            for f, now in reversed(written):
                atomic_write(f.path, f.before, expect=now)
            self.state.write(ledger)
        except TargetError:
            return StateError(
                f"{exc} The write stopped half way and could not be undone, so its journal was kept in "
                f"{self.state.ledger_path}; once the cause is fixed, `hermes-patch apply` (or `hermes-patch revert`) completes it."
            )
        return exc

    def _integrate(self, ledger: Ledger, step: Callable[[LedgerDoc, TargetDoc], None]) -> Ledger:
        """Run an integration's ``step`` on the ledger as JSON; return the ledger with what it changed."""
        doc = cast(LedgerDoc, ledger.to_json())
        step(doc, doc["targets"][self.key])  # the record the integration changes in place
        return load_ledger(doc)
