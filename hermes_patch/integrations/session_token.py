"""The owner-only file that keeps the dashboard's session token stable across restarts.

Every dashboard process of 0.13.0-0.15.2 draws a fresh session token (0.16.0+
too, unless ``HERMES_DASHBOARD_SESSION_TOKEN`` is set), so a page opened
before a restart holds a token the new process refuses. ``hermes-patch hook
install --session-token`` keeps one token in
``$HERMES_HOME/dashboard-session-token.env``::

    # hermes-patch: session token of the Hermes dashboard (...)
    HERMES_DASHBOARD_SESSION_TOKEN=<43 url-safe characters>

a file systemd reads with ``EnvironmentFile=`` (the drop-in adds that line)
and a shell supervisor with ``set -a; . FILE; set +a``. 0.16.0+ read the
variable themselves; 0.13-0.15 read it once ``stable-session-token`` is
applied.

Rules: the file is created owner-only (0600) with ``O_EXCL|O_NOFOLLOW``
through a temporary file and a hard link, so it is never half-written and
never follows a link someone planted; an existing file is reused only when
it is a regular file owned by us, not readable or writable by anyone else,
and holds exactly one well-formed token line. The token is never printed
and never written to the ledger (only the file's path and a sha256 of its
bytes, which tells "ours, unchanged" apart without revealing the token).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from hermes_patch.core.errors import RefusedError
from hermes_patch.core.messages import RUN_AGAIN, Failure, remove_others_write

if TYPE_CHECKING:
    from hermes_patch.context import Context
    from hermes_patch.integrations.installed import Integrations

__all__ = ["ENV", "FILE_NAME", "TokenFile", "default_path", "prepare", "create", "inspect", "remove", "forget"]

ENV = "HERMES_DASHBOARD_SESSION_TOKEN"
FILE_NAME = "dashboard-session-token.env"
_LINE_RE = re.compile(rf"^{ENV}=[A-Za-z0-9_-]{{32,256}}$")
_HEADER = (
    "# hermes-patch: session token of the Hermes dashboard (kept across restarts; owner-only).\n"
    "# Loaded by the systemd drop-in (EnvironmentFile=) or `set -a; . THIS_FILE; set +a`.\n"
    "# `hermes-patch revert` or `hermes-patch hook uninstall` deletes it; delete it yourself to draw a new token.\n"
)


@dataclass(frozen=True)
class TokenFile:
    """What :func:`ensure` found or made.

    Attributes:
        path: the file.
        created: True when hermes-patch makes it now (it is then ours to delete).
        sha256: sha256 of the file's bytes (safe to store: the token is 256 random bits).
        data: the bytes to write when ``created``.
    """

    path: Path
    created: bool
    sha256: str
    data: bytes = field(default=b"", repr=False)


def default_path(hermes_home: Path | None = None) -> Path:
    """``<hermes_home>/dashboard-session-token.env``; the home defaults to ``$HERMES_HOME``, else ``~/.hermes``."""
    home = hermes_home or Path(os.environ.get("HERMES_HOME") or Path.home() / ".hermes")
    return home.expanduser().absolute() / FILE_NAME


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def inspect(path: Path) -> str | None:
    """Why ``path`` cannot be used as our token file, or None when it can (or does not exist)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link (a token file is never read through a link)"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if st.st_uid != os.geteuid():
        return f"belongs to uid {st.st_uid}, not to the user running hermes-patch (uid {os.geteuid()})"
    if st.st_mode & 0o077:
        return f"is readable or writable by others (mode {stat.S_IMODE(st.st_mode):04o}; it must be 0600)"
    try:
        lines = [line for line in path.read_text(encoding="ascii").splitlines() if line and not line.startswith("#")]
    except (OSError, UnicodeDecodeError):
        return "does not hold a token line"
    if len(lines) != 1 or not _LINE_RE.match(lines[0]):
        return f"does not hold exactly one line {ENV}=<url-safe token>"
    return None


def prepare(path: Path) -> TokenFile:
    """Check ``path``: the existing token file to reuse, or the bytes of a new one (nothing written).

    Raises:
        RefusedError: the folder is missing or writable by others, or an
            existing file fails :func:`inspect`. Nothing is written then.
    """
    folder = path.parent
    try:
        fst = os.stat(folder)
    except OSError:
        raise RefusedError(
            Failure(
                f"{folder} does not exist, so the session token file {path.name} cannot be kept there",
                folder,
                next_command="pass the dashboard's Hermes home with --hermes-home DIR (the HERMES_HOME the dashboard "
                "runs with)",
            )
        ) from None
    if os.path.realpath(folder) != os.path.abspath(folder):
        raise RefusedError(
            Failure(
                f"{folder} goes through a symbolic link (to {os.path.realpath(folder)})",
                folder,
                cause="whoever controls that link decides where the session token file (and the drop-in's "
                "EnvironmentFile=) really is",
                next_command=f"pass the real folder with --hermes-home, then {RUN_AGAIN}",
            )
        )
    from hermes_patch.trust import refusal, why_untrusted

    found = why_untrusted(folder)
    if found:
        # The drop-in loads this file into the unit's environment: a folder
        # another user controls would let them inject LD_PRELOAD and the like.
        raise RefusedError(refusal(f"the folder of the session token file {folder}", found))
    if fst.st_mode & 0o022 and not fst.st_mode & stat.S_ISVTX:
        raise RefusedError(
            Failure(
                f"{folder} is writable by other users (mode {stat.S_IMODE(fst.st_mode):04o})",
                folder,
                cause="a session token kept there could be replaced",
                next_command=f"{remove_others_write(folder)}, then {RUN_AGAIN}",
            )
        )
    problem = inspect(path)
    if problem:
        raise RefusedError(
            Failure(
                f"{path} {problem}",
                path,
                cause="hermes-patch will not use it as the dashboard's session token file",
                next_command=f"delete or fix it, then {RUN_AGAIN}",
            )
        )
    if path.exists():
        return TokenFile(path, False, _sha(path.read_bytes()))
    data = (_HEADER + f"{ENV}={secrets.token_urlsafe(32)}\n").encode("ascii")
    return TokenFile(path, True, _sha(data), data)


def create(token: TokenFile) -> None:
    """Write a file :func:`prepare` planned: owner-only from its first byte, never over an existing name.

    Raises:
        RefusedError: the name appeared meanwhile.
    """
    path, folder, data = token.path, token.path.parent, token.data
    tmp = folder / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if someone created the name meanwhile: never clobbers
    except FileExistsError:
        raise RefusedError(
            Failure(f"{path} appeared while hermes-patch was creating it", path, next_command=RUN_AGAIN)
        ) from None
    finally:
        os.unlink(tmp)
    dfd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def remove(path: Path, sha256: str) -> str:
    """Delete the token file we created when it is unchanged; return one line for people.

    The path comes from the ledger, so it is confined before anything is
    deleted: an absolute path named ``FILE_NAME``, a regular file (not a
    symlink) owned by the running user with the recorded sha256. Anything
    else is kept and said so (a forged record never deletes another file).
    """
    if not path.is_absolute() or path.name != FILE_NAME:
        return f"session token file {path}: not a file hermes-patch creates ({FILE_NAME}), kept"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return f"session token file {path}: already gone"
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or _sha(path.read_bytes()) != sha256:
        return f"session token file {path}: changed since hermes-patch created it, kept (delete it yourself if it is no longer used)"
    path.unlink()
    return f"removed the session token file {path}"


def forget(ctx: Context, keep: bool, release: bool = False) -> list[str]:
    """Delete the session token file hermes-patch created for this target (unless ``keep``); one line per thing done.

    Called by ``hook uninstall`` (``release``: a kept file is yours from
    then on, no later command deletes it) and by a full ``revert`` (a kept
    file stays recorded, for the drop-in that still loads it). A file
    changed since it was created, or one hermes-patch did not create, is
    kept.
    """
    if not ctx.record().get("integrations", {}).get("session-token"):
        return []  # the common case: nothing recorded, nothing to lock or write
    with ctx.state.lock(ctx.key):
        ledger = ctx.state.load()
        integ: Integrations = ledger["targets"].get(ctx.key, {}).get("integrations", {})
        token = integ.get("session-token")
        if not token:
            return []
        if keep:
            if release:
                integ.pop("session-token", None)
                ctx.state.save(ledger)
            return [f"session token file {token['path']}: kept (--keep-session-token)"]
        line = remove(Path(token["path"]), token["sha256"])
        integ.pop("session-token", None)
        ctx.state.save(ledger)
    return [line]
