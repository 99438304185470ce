"""The thin I/O shell: read bytes, write them atomically, keep mode and owner.

Writes follow the classic recipe: a temporary file in the same directory,
``fsync``, ``os.replace`` over the target, ``fsync`` of the directory. A
crash at any point leaves either the old bytes or the new bytes at the path,
and a failed write (``ENOSPC``...) removes its temporary file.

Test hooks (see :func:`fault_point`): ``HERMES_PATCH_FAULT=<step>[:N]``
makes the process kill itself with SIGKILL right before the N-th ``<step>``,
and ``...:N:enospc`` makes that write fail with ENOSPC instead, so tests can
prove what a crash or a full disk at each step leaves behind without
sleeping; ``HERMES_PATCH_FAULT_LOG=<file>`` appends every step reached to
``<file>``, so they can enumerate the steps instead of listing them.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import tempfile
from pathlib import Path

from hermes_patch.errors import TargetError

__all__ = ["read_bytes", "atomic_write", "fault_point", "check_writable", "stale_temp_files"]

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
        os.kill(os.getpid(), signal.SIGKILL)


_fault_counts: dict[str, int] = {}


def stale_temp_files(directory: Path) -> list[Path]:
    """Temporary files that a killed :func:`atomic_write` left in ``directory``."""
    try:
        return sorted(directory.glob(f".*{TEMP_SUFFIX}"))
    except OSError:
        return []


def read_bytes(path: Path) -> bytes:
    """Return the bytes of the regular file at ``path`` (symlinks followed).

    Raises:
        TargetError: missing, a directory, or unreadable.
    """
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TargetError(
            f"{path} does not exist. Check the path, or let hermes-patch find the "
            "install by itself: `hermes-patch status` (or `--python "
            "/path/to/venv/bin/python`)."
        ) from None
    except IsADirectoryError:
        raise TargetError(
            f"{path} is a directory. --file takes the file "
            "hermes_cli/web_server.py; for a checkout or a site-packages "
            f"directory use `hermes-patch status --root {path}`."
        ) from None
    except PermissionError:
        raise TargetError(
            f"{path} cannot be read (permission denied). Run hermes-patch as the "
            "user who owns the Hermes install."
        ) from None


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


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace the file at ``path`` with ``data`` atomically.

    A symlink at ``path`` is followed and kept: the file it points to is
    replaced. Its permission bits, and where allowed its owner, are kept; a
    new file gets ``mode``. Until the rename, nothing exists at ``path``
    that was not there before (the temporary file has its own name).

    Raises:
        TargetError: the directory is read-only, the disk is full, or any
            other OS error; the original file is untouched and no temporary
            file is left behind.
    """
    path = Path(os.path.realpath(path))
    directory = path.parent
    try:
        old = os.stat(path)
        mode, uid, gid = stat.S_IMODE(old.st_mode), old.st_uid, old.st_gid
    except FileNotFoundError:
        uid, gid = -1, -1
    tmp_name: str | None = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=directory)
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
        finally:
            os.close(fd)
        fault_point("rename")
        os.replace(tmp_name, path)
        tmp_name = None
        _fsync_dir(directory)
    except OSError as exc:
        reason = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise TargetError(
            f"could not write {path}: {reason}. The file was left exactly as it was; "
            "free space or fix permissions, then run the same command again (`hermes-patch status` shows where things stand)."
        ) from None
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass


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
