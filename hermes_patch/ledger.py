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
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

from hermes_patch.errors import StateError
from hermes_patch.fileio import atomic_write, fault_point

__all__ = ["SCHEMA", "KEEP_WRITES", "StateDir", "default_state_dir"]

SCHEMA = 1
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
    """

    def __init__(self, path: Path, tree_root: Path | None = None) -> None:
        self.path = path.expanduser().resolve()
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

    def _ensure(self, sub: str | None = None) -> Path:
        d = self.path / sub if sub else self.path
        old = os.umask(0o077)
        try:
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StateError(f"cannot create the state directory {d}: {exc.strerror}. Pick another with --state-dir.") from None
        finally:
            os.umask(old)
        return d

    def load(self) -> dict[str, Any]:
        """The ledger as a dict (``{"schema": 1, "targets": {}}`` when none exists).

        Raises:
            StateError: unreadable, not JSON, truncated, or a newer schema.
        """
        try:
            data = self.ledger_path.read_bytes()
        except FileNotFoundError:
            return {"schema": SCHEMA, "targets": {}}
        except OSError as exc:
            raise StateError(f"cannot read the ledger {self.ledger_path}: {exc.strerror}.") from None
        try:
            ledger = json.loads(data)
            if not isinstance(ledger, dict) or not isinstance(ledger.get("targets"), dict) or not isinstance(ledger.get("schema"), int):
                raise ValueError("not a ledger object")
            if ledger["schema"] <= SCHEMA:
                for key, record in ledger["targets"].items():
                    if not _fits(record, _RECORD, optional=True):
                        raise ValueError(f"the record of {key} is not shaped like a schema-{SCHEMA} record")
        except ValueError as exc:
            raise StateError(
                f"the ledger {self.ledger_path} is corrupted or truncated ({exc}). Your Hermes files were not "
                f"touched. Move it aside (`mv {self.ledger_path} {self.ledger_path}.bad`) and run "
                "`hermes-patch status`: our edits are found by their marker comments without it "
                "(backups stay in backups/)."
            ) from None
        if ledger["schema"] > SCHEMA:
            raise StateError(
                f"the ledger {self.ledger_path} was written by a newer hermes-patch (schema {ledger['schema']}, "
                f"this one reads {SCHEMA}). Upgrade hermes-patch (`pip install -U hermes-patch`), or point "
                "--state-dir elsewhere."
            )
        return ledger

    def save(self, ledger: dict[str, Any]) -> None:
        """Write the ledger atomically, sorted keys, mode 0600."""
        self._ensure()
        ledger["schema"] = SCHEMA
        data = (json.dumps(ledger, indent=2, sort_keys=True) + "\n").encode()
        atomic_write(self.ledger_path, data, mode=0o600)

    def backup(self, data: bytes) -> str:
        """Store ``data`` under ``backups/<sha256>`` (once, mode 0600); return the sha256.

        An existing backup is trusted only when its bytes match its name: a
        crash of an older hermes-patch could leave one empty.
        """
        sha = hashlib.sha256(data).hexdigest()
        path = self._ensure("backups") / sha
        if self.read_backup(sha) is None:
            atomic_write(path, data, mode=0o600)
        return sha

    def read_backup(self, sha: str) -> bytes | None:
        """The stored bytes of ``sha``, or ``None`` when missing or corrupted."""
        try:
            data = (self.path / "backups" / sha).read_bytes()
        except OSError:
            return None
        return data if hashlib.sha256(data).hexdigest() == sha else None

    def prune(self, ledger: dict[str, Any]) -> int:
        """Remove backups no target needs any more; return how many were removed.

        Kept: the backups of each target's last :data:`KEEP_WRITES` writes
        (``backups``, newest last), the ``original`` and ``patched`` bytes of
        every file the ledger knows, and everything a ``pending`` write
        names. Call it holding :meth:`lock`; the ledger is shared by every
        target of this state dir.
        """
        keep: set[str] = set()
        for record in ledger.get("targets", {}).values():
            for write in record.get("backups", [])[-KEEP_WRITES:]:
                keep.update(write)
            for entry in record.get("files", {}).values():
                keep.update(v for k, v in entry.items() if k in ("original", "patched"))
            for entry in record.get("pending", {}).get("files", {}).values():
                keep.update(entry.values())
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
        try:
            with FileLock(str(path), timeout=timeout):
                yield
        except Timeout:
            raise StateError(f"another hermes-patch has held the lock {path} for {timeout:.0f} s; wait for it to finish and run the command again.") from None


# The shape of one target's record, as app.App writes it: a dict spec lists
# required keys ("*" maps any key to one spec), a tuple lists allowed types.
_COMMITTED = {
    "version": (str, type(None)),
    "files": {"*": {"original": str, "patched": str}},
    "patches": {"*": {"params": dict, "statements": {"*": str}}},
    "snapshot": {"config_key": str, "inputs": {"*": str}, "reports": [{"id": str, "state": str, "reason": str, "enabled": bool, "notes": [str]}]},
}
_RECORD = {**_COMMITTED, "backups": [[str]], "pending": {"kind": str, "files": {"*": {"before": str, "after": str, "original": str}}, "commit": _COMMITTED}}


def _fits(value: Any, spec: Any, optional: bool = False) -> bool:
    """Whether parsed JSON ``value`` has the shape ``spec`` (``optional``: keys of a dict spec may be absent)."""
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            return False
        if "*" in spec:
            return all(isinstance(k, str) and _fits(v, spec["*"]) for k, v in value.items())
        return all((key in value and _fits(value[key], sub)) or (optional and key not in value) for key, sub in spec.items())
    if isinstance(spec, list):
        return isinstance(value, list) and all(_fits(v, spec[0]) for v in value)
    return isinstance(value, spec)


def _create_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist (so no window with wider bits)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
    except FileExistsError:
        pass


__all__ += ["target_key", "fault_point"]
