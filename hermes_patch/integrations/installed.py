"""Files ``hook install`` writes outside the Hermes tree: recorded first, written the same twice, removed exactly.

Shared by the git hooks (:mod:`hermes_patch.integrations.git_hooks`) and the systemd
drop-ins (:mod:`hermes_patch.integrations.systemd`); the command that installs them is
:mod:`hermes_patch.integrations.auto_apply`. The ledger keeps what was installed under a
target record's ``integrations`` (:class:`Integrations`, parsed JSON).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypedDict, TypeVar

from hermes_patch.fileio import atomic_write

__all__ = [
    "FilterEntry",
    "HookEntry",
    "DropinEntry",
    "TokenEntry",
    "Integrations",
    "Installed",
    "Write",
    "read_file",
    "sha",
    "write_file",
    "changed_since_install",
    "missing_dirs",
    "remove_created_dirs",
    "created_dirs_ok",
    "file_state",
]


class FilterEntry(TypedDict, total=False):
    """``integrations.git-filter``: what :mod:`hermes_patch.integrations.git_filter` added to ``.git``."""

    paths: list[str]  # the filtered files, relative to the checkout
    previous: None  # a value of the filter found before ours: never recorded (issue 13)
    created: bool  # whether we created .git/info/attributes
    command: str  # filter.hermes-patch.clean as we set it
    appended: str  # the block we appended to .git/info/attributes


class HookEntry(TypedDict):
    """``integrations.git-hooks.<name>``: a hook :mod:`hermes_patch.integrations.git_hooks` wrote."""

    path: str
    sha256: str
    chained: str | None  # the earlier hook, kept as <name>.pre-hermes-patch
    created_dirs: list[str]  # folders install created, deepest first


class DropinEntry(TypedDict):
    """``integrations.systemd.<path>``: a drop-in :mod:`hermes_patch.integrations.systemd` wrote."""

    unit: str
    scope: str  # user or system
    sha256: str
    created_dirs: list[str]


class TokenEntry(TypedDict):
    """``integrations.session-token``: the session token file hermes-patch created (never its content)."""

    path: str
    sha256: str


#: A target record's ``integrations``: everything installed for it outside the Hermes files.
Integrations = TypedDict(
    "Integrations",
    {
        "git-filter": FilterEntry,
        "git-hooks": dict[str, HookEntry],
        "systemd": dict[str, DropinEntry],
        "session-token": TokenEntry,
    },
    total=False,
)

#: The ledger entry of a file :class:`Write` writes.
E = TypeVar("E", HookEntry, DropinEntry)


@dataclass(frozen=True)
class Installed:
    """One installed piece, as ``hook show`` prints it.

    Attributes:
        kind: ``git clean filter``, ``git hook post-merge``, ``systemd drop-in``...
        path: the file it lives in.
        state: ``installed``, ``missing`` or ``changed since install``.
        lines: what it holds that matters (the command it runs, the entries).
    """

    kind: str
    path: Path
    state: str
    lines: tuple[str, ...] = ()


@dataclass(frozen=True)
class Write(Generic[E]):
    """A file ``hook install`` will write, and its ledger entry (recorded before the write).

    Attributes:
        kind: for people: ``git hook post-merge``, ``systemd drop-in``.
        path: the file.
        data: its bytes.
        mode: its permission bits.
        name: the entry's key in its section of ``integrations`` (the hook's
            name, the drop-in's path).
        entry: the ledger entry.
    """

    kind: str
    path: Path
    data: bytes
    mode: int
    name: str
    entry: E


def sha(data: bytes) -> str:
    """The sha256 (hex) recorded for a file's bytes."""
    return hashlib.sha256(data).hexdigest()


def read_file(path: Path) -> bytes | None:
    """The file's bytes, or ``None`` when it cannot be read."""
    try:
        return path.read_bytes()
    except OSError:
        return None


def write_file(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` with ``mode`` unless the file holds exactly that already; a link there is replaced."""
    if not path.is_symlink() and read_file(path) == data and (path.stat().st_mode & 0o777) == mode:
        return
    atomic_write(path, data, mode, follow=False)  # a link there is replaced, never written through
    os.chmod(path, mode)


def changed_since_install(path: Path, verb: str) -> str:
    """The refusal for a file someone edited after ``hook install`` wrote it."""
    return (
        f"{path} was changed since `hermes-patch hook install` wrote it; hermes-patch will not {verb} over someone's edit. "
        f"Nothing was changed. Compare it with `hermes-patch hook show`, then move it aside and run the command again."
    )


def missing_dirs(directory: Path) -> list[str]:
    """The folders from ``directory`` up that do not exist yet (deepest first): what install creates."""
    missing = []
    while not directory.exists() and directory != directory.parent:
        missing.append(str(directory))
        directory = directory.parent
    return missing


def remove_created_dirs(entry: HookEntry | DropinEntry) -> None:
    """Remove the folders install created for ``entry`` (deepest first), stopping at one that is not empty."""
    for directory in entry.get("created_dirs", []):
        try:
            Path(directory).rmdir()
        except OSError:
            return  # not empty: something else lives there now, and in its parents


def created_dirs_ok(entry: HookEntry | DropinEntry, folder: Path) -> bool:
    """Whether the entry's ``created_dirs`` are ``folder`` and folders above it (what install records)."""
    allowed = {str(d) for d in [folder, *folder.parents][:-1]}
    dirs = entry.get("created_dirs", [])
    return isinstance(dirs, list) and all(isinstance(d, str) and d in allowed for d in dirs)


def file_state(path: Path, entry: HookEntry | DropinEntry | TokenEntry) -> str:
    """``missing``, ``installed`` (the recorded sha256) or ``changed since install``."""
    data = read_file(path)
    if data is None:
        return "missing"
    return "installed" if sha(data) == entry["sha256"] else "changed since install"
