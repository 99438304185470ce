"""State outside the Hermes tree: the ledger, backups, the lock.

Layout of the state directory (``--state-dir``, ``$HERMES_PATCH_STATE_DIR``,
else platformdirs' user state dir, ``~/.local/state/hermes-patch`` on
Linux)::

    ledger.json          versioned, sorted keys, written atomically (0600)
    backups/<sha256>     every file version we replaced or wrote (0600)
    locks/ledger.lock    one writer at a time (filelock); the ledger is shared

The ledger records, per target package: the sha256 of each file before and
after our last write, the text hash of every statement a patch owns (for
drift), the reports of that write (for the warm ``status`` fast path), and
while a write is under way a ``pending`` transaction, so that a crash at any
step can be completed by the next ``apply`` or ``revert``. Never inside the
Hermes tree: ``hermes update`` on a git install stashes every untracked file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import stat
from pathlib import Path
from typing import Iterator, cast

from hermes_patch.core.errors import StateError
from hermes_patch.fileio import atomic_write, fault_point
from hermes_patch.core.messages import RUN_AGAIN, UPGRADE, Failure, lock_held, move_ledger_aside
from hermes_patch.records import (
    LedgerDoc,
    SCHEMA,
    Ledger,
    LedgerFormatError,
    NewerSchemaError,
    dump_ledger,
    load_ledger,
)

__all__ = ["SCHEMA", "KEEP_WRITES", "StateDir", "default_state_dir"]

KEEP_WRITES = 5  # backups of the last KEEP_WRITES writes per target are kept; older ones are pruned


def default_state_dir() -> Path:
    """``$HERMES_PATCH_STATE_DIR`` or platformdirs' user state dir + ``hermes-patch``."""
    env = os.environ.get("HERMES_PATCH_STATE_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_state_dir

    return Path(user_state_dir("hermes-patch"))


def target_key(package_dir: Path) -> str:
    """The ledger key of a target: the real path of its ``hermes_cli`` folder."""
    return str(package_dir.resolve())


class StateDir:
    """The state directory of one run.

    Args:
        path: the directory (created 0700 on first write).
        tree_root: the Hermes tree; a state dir inside it is refused.

    Raises:
        StateError: the directory is inside the Hermes tree.

    Every use first checks (once) that the directory and the folders above
    it are the running user's alone (:mod:`hermes_patch.trust`): a state dir
    another user can write would let them forge records that root acts on.
    Nothing inside it is followed when it is a symlink.
    """

    def __init__(self, path: Path, tree_root: Path | None = None) -> None:
        self.given = path.expanduser()
        self.path = self.given.resolve()
        self._checked = False
        if tree_root is not None:
            root = tree_root.resolve()
            if self.path == root or root in self.path.parents:
                raise StateError(
                    f"the state directory {self.path} is inside the Hermes tree {root}; `hermes update` "
                    "would stash or delete it. Use a directory outside it (--state-dir or "
                    "HERMES_PATCH_STATE_DIR), e.g. the default ~/.local/state/hermes-patch."
                )
        self.ledger_path = self.path / "ledger.json"

    # -- files -------------------------------------------------------------

    def check(self) -> None:
        """Refuse a state dir that is not the running user's alone (once per run).

        Raises:
            StateError: owned by another user, writable by others, or a folder
                above it is; the message says what to do.
        """
        if self._checked:
            return
        from hermes_patch.trust import refusal, why_untrusted

        found = why_untrusted(self.given, owner_only=True)
        if found:
            raise StateError(
                refusal(
                    f"the state directory {self.given}",
                    (found[0], None),
                    f"Use a state directory only you can write (`--state-dir ~/.local/state/hermes-patch` is created 0700), "
                    f"or make this one yours alone (`chown -R $(id -u) {self.path} && chmod -R go-w {self.path}`).",
                )
            )
        # What is already inside: no links, ours alone (checked before anything is created there).
        for name, kind in (
            ("ledger.json", "file"),
            ("backups", "dir"),
            ("locks", "dir"),
            ("locks/ledger.lock", "file"),
        ):
            if os.path.lexists(self.path / name):
                self._own_entry(self.path / name, kind)
        self._checked = True

    def _refuse_link(self, path: Path) -> StateError:
        return StateError(
            Failure(
                f"{path} is a symlink",
                path,
                cause=f"hermes-patch never follows links inside its state directory {self.path} "
                "(one planted there could make it read or overwrite another file)",
                next_command=f"remove the link (`rm {path}`) and {RUN_AGAIN}",
            )
        )

    def _own_entry(self, path: Path, kind: str) -> None:
        """``path`` (inside the state dir) is no symlink, is a ``kind`` (``dir``/``file``), ours alone."""
        from hermes_patch.trust import _problem, owner_name

        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            raise self._refuse_link(path)
        is_kind = stat.S_ISDIR(st.st_mode) if kind == "dir" else stat.S_ISREG(st.st_mode)
        problem = _problem(path, st, above=False)
        if st.st_uid != os.geteuid():
            problem = (f"{path} is owned by {owner_name(st.st_uid)}", None)
        if not is_kind or problem:
            why = problem[0] if problem else f"{path} is not a {'folder' if kind == 'dir' else 'regular file'}"
            raise StateError(
                Failure(
                    f"{why}, inside the state directory {self.path}",
                    path,
                    cause="hermes-patch acts on what it finds there, so it must be yours alone",
                    next_command=f"move the state directory aside (`mv {self.path} {self.path}.suspect`) and check "
                    "it, or use another with --state-dir",
                )
            )

    def _ensure(self, sub: str | None = None) -> Path:
        self.check()
        d = self.path / sub if sub else self.path
        old = os.umask(0o077)
        try:
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StateError(
                f"cannot create the state directory {d}: {exc.strerror}. Pick another with --state-dir."
            ) from None
        finally:
            os.umask(old)
        if sub:
            self._own_entry(d, "dir")
        return d

    def _read(self, path: Path) -> bytes:
        """The bytes of a file in the state dir: never through a symlink, ours alone (FileNotFoundError if missing)."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise self._refuse_link(path) from None
            raise
        try:
            self._own_entry(path, "file")
            with os.fdopen(fd, "rb", closefd=False) as fh:
                return fh.read()
        finally:
            os.close(fd)

    def load(self) -> LedgerDoc:
        """The ledger as parsed JSON (``{"schema": 1, "targets": {}}`` when none exists), checked by :meth:`read`'s rules.

        For the integrations (:mod:`hermes_patch.integrations.git_filter`, :mod:`hermes_patch.integrations.auto_apply`, ...),
        which change their part of a target's record in place and :meth:`save` it.

        Raises:
            StateError: unreadable, not JSON, truncated, a record shaped unlike
                ours (the message names the field), or a newer schema.
        """
        return self._load()[0]

    def read(self) -> Ledger:
        """The ledger as typed records (an empty :class:`~hermes_patch.records.Ledger` when none exists).

        Raises:
            StateError: as :meth:`load`.
        """
        return self._load()[1]

    def _load(self) -> tuple[LedgerDoc, Ledger]:
        self.check()
        try:
            data = self._read(self.ledger_path)
        except FileNotFoundError:
            return {"schema": SCHEMA, "targets": {}}, Ledger()
        except OSError as exc:
            raise StateError(f"cannot read the ledger {self.ledger_path}: {exc.strerror}.") from None
        aside = f"{move_ledger_aside(self.ledger_path)}: our edits are found by their marker comments without it (backups stay in backups/)"
        try:
            doc = json.loads(data)
            typed = load_ledger(doc)  # checks every field the documents' types name
            return cast(LedgerDoc, doc), typed
        except NewerSchemaError as exc:
            raise StateError(
                Failure(
                    f"the ledger {self.ledger_path} was written by a newer hermes-patch (schema {exc.schema}, "
                    f"this one reads {SCHEMA})",
                    self.ledger_path,
                    outcome="",
                    next_command=f"{UPGRADE}, or point --state-dir elsewhere",
                )
            ) from None
        except LedgerFormatError as exc:
            raise StateError(
                Failure(
                    f"the ledger {self.ledger_path} is corrupted: {exc}",
                    self.ledger_path,
                    cause="hermes-patch never writes a record like this, so the file was damaged or edited",
                    outcome="Your Hermes files were not touched.",
                    next_command=aside,
                )
            ) from None
        except ValueError as exc:
            raise StateError(
                Failure(
                    f"the ledger {self.ledger_path} is corrupted or truncated ({exc})",
                    self.ledger_path,
                    outcome="Your Hermes files were not touched.",
                    next_command=aside,
                )
            ) from None

    def save(self, ledger: LedgerDoc) -> None:
        """Write parsed-JSON ``ledger`` (see :meth:`load`) atomically, sorted keys, mode 0600; sets its ``schema``."""
        ledger["schema"] = SCHEMA
        self._write_bytes((json.dumps(ledger, indent=2, sort_keys=True) + "\n").encode())

    def write(self, ledger: Ledger) -> None:
        """Write ``ledger`` atomically (mode 0600) as :func:`~hermes_patch.records.dump_ledger` renders it.

        Raises:
            StateError: the state directory cannot be created or is not ours alone.
            TargetError: the write failed (a full disk); the old ledger is intact.
        """
        self._write_bytes(dump_ledger(ledger))

    def _write_bytes(self, data: bytes) -> None:
        self._ensure()
        if os.path.lexists(self.ledger_path):
            self._own_entry(self.ledger_path, "file")
        atomic_write(self.ledger_path, data, mode=0o600, follow=False)

    def backup(self, data: bytes) -> str:
        """Store ``data`` under ``backups/<sha256>`` (once, mode 0600); return the sha256.

        An existing backup is trusted only when its bytes match its name: a
        crash of an older hermes-patch could leave one empty.
        """
        sha = hashlib.sha256(data).hexdigest()
        path = self._ensure("backups") / sha
        if self.read_backup(sha) is None:
            atomic_write(path, data, mode=0o600, follow=False)  # replaces a planted link, never writes through it
        return sha

    def read_backup(self, sha: str) -> bytes | None:
        """The stored bytes of ``sha``, or ``None`` when missing or corrupted."""
        if not re.fullmatch(r"[0-9a-f]{64}", sha):
            return None
        try:
            self._ensure("backups")
            data = self._read(self.path / "backups" / sha)
        except (OSError, StateError):
            return None
        return data if hashlib.sha256(data).hexdigest() == sha else None

    def prune(self, ledger: Ledger) -> int:
        """Remove backups no target needs any more; return how many were removed.

        Kept: the backups of each target's last :data:`KEEP_WRITES` writes
        (``backups``, newest last), the ``original`` and ``patched`` bytes of
        every file the ledger knows, and everything a ``pending`` write
        names. Call it holding :meth:`lock`; the ledger is shared by every
        target of this state dir.
        """
        keep: set[str] = set()
        for record in ledger.targets.values():
            for write in (record.backups or ())[-KEEP_WRITES:]:
                keep.update(write)
            for entry in record.known_files.values():
                keep.update((entry.original, entry.patched))
            for journal in record.pending.files.values() if record.pending else ():
                keep.update((journal.before, journal.after, journal.original))
        removed = 0
        try:
            names = [p for p in (self.path / "backups").iterdir()]
        except OSError:
            return 0
        for path in names:
            if len(path.name) == 64 and path.name not in keep:
                try:
                    path.unlink()
                    removed += 1
                except OSError:
                    continue
        return removed

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float = 120.0) -> Iterator[None]:
        """Hold the writer lock while working on target ``key``.

        One lock for the whole state dir, not one per target: every target's
        record lives in the same ledger.json, which a writer reads, changes
        and writes back, so two writers on different targets would lose one
        of the records.

        Raises:
            StateError: another hermes-patch held it for ``timeout`` seconds.
        """
        from filelock import FileLock, Timeout

        path = self._ensure("locks") / "ledger.lock"
        _create_private(path)
        self._own_entry(path, "file")
        try:
            with FileLock(str(path), timeout=timeout):
                yield
        except Timeout:
            raise StateError(lock_held(path, timeout)) from None


def _create_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist (so no window with wider bits)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.close(fd)
    except FileExistsError:
        pass


__all__ += ["target_key", "fault_point"]
