"""The thin I/O shell: read bytes, write them atomically, keep mode and owner.

Writes follow the classic recipe: a temporary file in the same directory,
``fsync``, ``os.replace`` over the target, ``fsync`` of the directory. A
crash at any point leaves either the old bytes or the new bytes at the path,
and a failed write (``ENOSPC``...) removes its temporary file.

Test hooks (see :func:`fault_point`): ``HERMES_PATCH_FAULT=<step>[:N]``
makes the process kill itself with SIGKILL right before the N-th ``<step>``,
and ``...:N:enospc`` makes that write fail with ENOSPC instead (``...:N:stop``:
stop with SIGSTOP until a SIGCONT, so a test can replace a file), so tests can
prove what a crash or a full disk at each step leaves behind without
sleeping; ``HERMES_PATCH_FAULT_LOG=<file>`` appends every step reached to
``<file>``, so they can enumerate the steps instead of listing them.
"""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hermes_patch.core.errors import TargetError
from hermes_patch.core.messages import (
    RUN_AS_OWNER,
    Failure,
    remove_others_write,
    restore_from_release,
    target_is_a_directory,
    target_missing,
)

if TYPE_CHECKING:
    from hermes_patch.core.workspace import Workspace

__all__ = [
    "read_bytes",
    "atomic_write",
    "fault_point",
    "check_writable",
    "stale_temp_files",
    "Identity",
    "identity",
    "ChangedError",
]

TEMP_SUFFIX = ".hermes-patch.tmp"


def fault_point(step: str) -> None:
    """Test hook: log ``step``, then die with SIGKILL (or fail with ENOSPC) if told to here.

    ``HERMES_PATCH_FAULT`` is ``step``, ``step:N`` (the N-th time the step is
    reached, 1-based) or ``step:N:enospc`` (raise ``OSError(ENOSPC)``; only
    meaningful for the steps inside :func:`atomic_write`).
    ``HERMES_PATCH_FAULT_LOG`` names a file that gets one line per step
    reached. Used only by the crash tests; both unset means no effect.
    """
    log = os.environ.get("HERMES_PATCH_FAULT_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(step + "\n")
    wanted = os.environ.get("HERMES_PATCH_FAULT")
    if not wanted:
        return
    name, _, rest = wanted.partition(":")
    nth, _, action = rest.partition(":")
    if name != step:
        return
    count = _fault_counts.get(step, 0) + 1
    _fault_counts[step] = count
    if count == int(nth or 1):
        if action == "enospc":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if action == "stop":  # the tests change files while we are stopped, then SIGCONT
            os.kill(os.getpid(), signal.SIGSTOP)
            return
        os.kill(os.getpid(), signal.SIGKILL)


_fault_counts: dict[str, int] = {}


def stale_temp_files(directory: Path) -> list[Path]:
    """Temporary files that a killed :func:`atomic_write` left in ``directory``."""
    try:
        return sorted(directory.glob(f".*{TEMP_SUFFIX}"))
    except OSError:
        return []


@dataclass(frozen=True)
class Identity:
    """Which file a path named when we read it: its real path, device, inode and sha256.

    :func:`atomic_write` compares it with the file at the path right before
    its rename, so a file replaced meanwhile (a concurrent upgrade, a swap
    for a symlink) is never overwritten.
    """

    real: str
    dev: int
    ino: int
    sha256: str


_READ: dict[str, tuple[str, int, int]] = {}


def identity(path: Path, sha256: str) -> Identity | None:
    """The :class:`Identity` of ``path`` as :func:`read_bytes` last read it (with its known ``sha256``)."""
    seen = _READ.get(os.path.abspath(path))
    return Identity(seen[0], seen[1], seen[2], sha256) if seen else None


def read_bytes(path: Path) -> bytes:
    """Return the bytes of the regular file at ``path`` (symlinks followed) and remember its identity.

    The link is resolved first and the real file opened with ``O_NOFOLLOW``,
    so what was read is exactly the file :func:`identity` describes.

    Raises:
        TargetError: missing, a directory, or unreadable.
    """
    try:
        real = os.path.realpath(path)
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise IsADirectoryError(errno.EISDIR, "Is a directory")
            with os.fdopen(fd, "rb", closefd=False) as fh:
                data = fh.read()
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise TargetError(target_missing(path)) from None
    except IsADirectoryError:
        raise TargetError(target_is_a_directory(path)) from None
    except PermissionError:
        raise TargetError(
            Failure(f"{path} cannot be read (permission denied)", path, outcome="", next_command=RUN_AS_OWNER)
        ) from None
    except OSError as exc:
        raise TargetError(
            f"{path} cannot be read ({exc.strerror}); it changed while hermes-patch read it, or is not a regular file. Check it, then run `hermes-patch status`."
        ) from None
    _READ[os.path.abspath(path)] = (real, st.st_dev, st.st_ino)
    return data


class ChangedError(TargetError):
    """The file at the path is no longer the one we read (replaced, or swapped for a link)."""


def check_writable(path: Path) -> str | None:
    """Return why ``path`` cannot be replaced atomically, or ``None`` if it can.

    The directory must be writable (the temporary file and the rename live
    there) and must not sit on a read-only filesystem (a Nix store, a
    read-only bind mount).
    """
    directory = path.parent
    try:
        st = os.statvfs(directory)
        if st.f_flag & os.ST_RDONLY:
            return f"{directory} is on a read-only filesystem"
    except OSError as exc:
        return f"{directory} cannot be inspected ({exc.strerror})"
    if not os.access(directory, os.W_OK):
        return f"{directory} is not writable by this user"
    if path.exists() and not os.access(path, os.W_OK) and os.geteuid() != 0:
        return f"{path} is not writable by this user"
    return None


def atomic_write(
    path: Path, data: bytes, mode: int = 0o644, *, follow: bool = True, expect: Identity | None = None
) -> Identity:
    """Replace the file at ``path`` with ``data`` atomically.

    Args:
        follow: a symlink at ``path`` is followed and kept (the file it
            points to is replaced); ``False`` replaces the link itself (the
            state dir, where links are never followed).
        expect: the file as it was read (:func:`identity`). It is written
            where it was read (its real path), and right before the rename
            the entry there must still be that file (same device and inode,
            no symlink, same sha256): otherwise nothing is renamed and
            :class:`ChangedError` is raised, leaving the newcomer alone.

    Permission bits, and where allowed the owner, of the old file are kept;
    a new file gets ``mode``. The folder is opened once and every step
    (temporary file, checks, rename) is relative to it, so a folder swapped
    for a link meanwhile cannot redirect the write. Until the rename nothing
    exists at ``path`` that was not there before.

    Returns:
        The :class:`Identity` of the new file.

    Raises:
        TargetError: the directory is read-only, the disk is full, or any
            other OS error; ChangedError as above. The original file is
            untouched and no temporary file is left behind.
    """
    if expect is not None:
        real = expect.real
    else:
        real = os.path.realpath(path) if follow else os.path.abspath(path)
    directory, name = os.path.split(real)
    tmp_name: str | None = None
    dfd = -1
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            old = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            old = None
        if expect is not None:
            _check_same(path, dfd, name, expect, hash_it=False)
        uid = gid = -1
        if old is not None and stat.S_ISREG(old.st_mode):
            mode, uid, gid = stat.S_IMODE(old.st_mode), old.st_uid, old.st_gid
        for _ in range(100):
            candidate = f".{name}.{os.urandom(4).hex()}{TEMP_SUFFIX}"
            try:
                fd = os.open(
                    candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd
                )
            except FileExistsError:
                continue
            tmp_name = candidate
            break
        else:  # pragma: no cover
            raise OSError(errno.EEXIST, "no free temporary file name")
        try:
            fault_point("temp-write")
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fchmod(fd, mode)
            if uid != -1 and (uid != os.geteuid() or gid != os.getegid()):
                try:
                    os.fchown(fd, uid, gid)
                except PermissionError:
                    pass
            fault_point("fsync")
            os.fsync(fd)
            st = os.fstat(fd)
        finally:
            os.close(fd)
        fault_point("rename")
        if expect is not None:
            _check_same(path, dfd, name, expect, hash_it=True)
        os.replace(tmp_name, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        tmp_name = None
        try:
            os.fsync(dfd)
        except OSError:
            pass
        return Identity(real, st.st_dev, st.st_ino, hashlib.sha256(data).hexdigest())
    except ChangedError:
        raise
    except OSError as exc:
        reason = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise TargetError(
            f"could not write {real}: {reason}. The file was left exactly as it was; "
            "free space or fix permissions, then run the same command again (`hermes-patch status` shows where things stand)."
        ) from None
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name, dir_fd=dfd)
            except OSError:
                pass
        if dfd != -1:
            os.close(dfd)


def _check_same(path: Path, dfd: int, name: str, expect: Identity, hash_it: bool) -> None:
    """Raise :class:`ChangedError` unless ``name`` in ``dfd`` is still the file ``expect`` describes."""
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        same = stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) == (expect.dev, expect.ino)
        if same and hash_it:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            try:
                digest = hashlib.sha256()
                while chunk := os.read(fd, 1 << 20):
                    digest.update(chunk)
                same = (os.fstat(fd).st_ino == expect.ino) and digest.hexdigest() == expect.sha256
            finally:
                os.close(fd)
    except OSError:
        same = False
    if not same:
        raise ChangedError(
            f"{path} changed while hermes-patch was writing it (replaced by another program, e.g. an upgrade running "
            "at the same time, or swapped for a link); hermes-patch left the new file alone and wrote nothing there. "
            "Run `hermes-patch status` to see where things stand, then `hermes-patch apply` again."
        )


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class DiskFiles:
    """The module files of an installed package, read from the disk (:class:`hermes_patch.core.workspace.Files`).

    ``read`` goes through :func:`read_bytes` (the real file, opened with
    ``O_NOFOLLOW``, its identity remembered for the write); a module other
    than the entry that is not a regular file is missing. ``names`` lists
    ``*.py`` two levels deep, skipping ``__pycache__``, hidden folders and
    symbolic links to folders.
    """

    def __init__(self, package_dir: Path, entry: str = "web_server.py") -> None:
        self.package_dir = package_dir
        self.entry = entry

    def read(self, name: str) -> bytes | None:
        path = self.package_dir / name
        if name != self.entry:
            if not path.is_file():
                return None
            _guard_module(path, self.package_dir)
        return read_bytes(path)

    def names(self) -> list[str]:
        found = []
        for path in sorted(self.package_dir.glob("*.py")) + sorted(self.package_dir.glob("*/*.py")):
            rel = path.relative_to(self.package_dir)
            if any(part.startswith((".", "__pycache__")) for part in rel.parts[:-1]) or (
                len(rel.parts) > 1 and path.parent.is_symlink()
            ):
                continue
            if path.is_file():
                found.append(rel.as_posix())
        return found


def _guard_module(path: Path, package_dir: Path) -> None:
    """Refuse a module other than the entry that another user could change, or a link out of the package.

    The entry (``web_server.py``) and the package folder are checked before
    anything runs (:func:`hermes_patch.locate.guard_target`); a sibling
    module a patch reads (``dashboard_auth/public_paths.py``, ``__init__.py``
    for the version) steers detection too, so it is held to the same rule
    (helper-22: as root, a planted link made ``status`` read ``/etc/shadow``).

    Raises:
        RefusedError: naming the owner or the write bit, and what to run.
        TargetError: the module is a link to a file outside the package.
    """
    from hermes_patch.core.errors import RefusedError
    from hermes_patch.trust import refusal, why_untrusted

    real = Path(os.path.realpath(path))
    if not real.is_relative_to(os.path.realpath(package_dir)):
        raise TargetError(
            Failure(
                f"{path} is a link to {real}, outside the Hermes package",
                path,
                cause="hermes-patch reads only the package's own modules; no Hermes release ships such a link",
                next_command=restore_from_release(path=path),
            )
        )
    found = why_untrusted(path)
    if found:
        raise RefusedError(
            refusal(f"the Hermes module {path}", found, f"{remove_others_write(found[0].split(' is ')[0])}")
        )


def on_disk(package_dir: Path, entry: str = "web_server.py") -> Workspace:
    """A :class:`~hermes_patch.core.workspace.Workspace` of the package folder ``package_dir``, read from the disk.

    The core never reads the disk itself; this is the shell's way to give it
    an install's files (tests and scripts use it too).
    """
    from hermes_patch.core.workspace import Workspace

    return Workspace(package_dir, entry, files=DiskFiles(package_dir, entry))
