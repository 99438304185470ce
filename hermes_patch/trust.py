"""Whose files may steer hermes-patch: the policy for running as root on someone else's install.

Operators run hermes-patch with sudo, from root's systemd units and from git
hooks. Anything a *different* user can change (a Hermes tree, its git
configuration, a venv's ``.pth`` files, the state dir, the configuration, a
patch module, the hermes-patch that a stored command would run) could turn
root's run against root (issue 13: a second local user, loopback only, had
working proofs for each). The policy:

* A path is *trusted* when it and every folder above it is owned by root or
  by the running user and is not writable by anyone else (group write is
  tolerated for the owner's own primary group, which on Debian-style
  systems is a group of one; a sticky, world-writable folder such as
  ``/tmp`` is tolerated *above* a trusted entry, because others cannot
  rename what they do not own there).
* hermes-patch **refuses** (exit 2, one paragraph, nothing changed) to read,
  run or write anything that is not trusted, and names the owner and the
  command to run as them (``sudo -u OWNER hermes-patch ...``). It never drops
  privileges by itself and never turns off git's ``safe.directory``.

The full threat model, with what each check answers, is
``docs/threat-model.md``.
"""

from __future__ import annotations

import os
import shlex
import stat
import sys
from pathlib import Path

__all__ = ["why_untrusted", "why_untrusted_bytecode", "owner_name", "run_as_owner_hint", "CONTROL_CHARS"]

#: Characters that must never appear in a path stored in a command (a newline
#: starts a new shell line or systemd directive).
CONTROL_CHARS = frozenset(chr(c) for c in [*range(32), 127])


def owner_name(uid: int) -> str:
    """The user name of ``uid`` (or ``uid N`` when it has none)."""
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _group_name(gid: int) -> str:
    import grp

    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return f"gid {gid}"


_DEVNULL = os.stat(os.devnull)


def _problem(path: Path, st: os.stat_result, above: bool) -> tuple[str, int | None] | None:
    """Why one path is not trusted, and the foreign owner's uid when that is the reason."""
    me = os.geteuid()
    if st.st_uid not in (0, me):
        return f"{path} is owned by {owner_name(st.st_uid)}", st.st_uid
    if stat.S_ISLNK(st.st_mode):
        return None  # a link's own mode bits mean nothing; its folder decides who can change it
    if stat.S_ISCHR(st.st_mode) and st.st_uid == 0 and os.path.samestat(st, _DEVNULL):
        return None  # root's /dev/null: writable by all, but it reads empty (`--config /dev/null` = the defaults)
    sticky_dir = stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX
    if st.st_mode & stat.S_IWOTH and not (above and sticky_dir):
        return f"{path} is writable by every user (mode {stat.S_IMODE(st.st_mode):04o})", None
    if st.st_mode & stat.S_IWGRP and st.st_gid not in (0, os.getegid()) and not (above and sticky_dir):
        return f"{path} is writable by the group {_group_name(st.st_gid)} (mode {stat.S_IMODE(st.st_mode):04o})", None
    return None


def why_untrusted(path: Path, *, owner_only: bool = False) -> tuple[str, int | None] | None:
    """Why ``path`` could be changed by a user other than root and the running one, else ``None``.

    Checks the path itself and every folder above it, along the path as
    written (its links included) and along its real path.

    Args:
        path: a file or folder (need not exist: missing parts are skipped).
        owner_only: the path itself must be owned by the running user (not
            merely by root), as the state dir must.

    Returns:
        ``(reason, foreign_uid)``: one clause for a message (``"/x is owned
        by bob"``) and the uid of the other owner when that is the reason.
    """
    given = Path(os.path.abspath(path))
    try:
        real = Path(os.path.realpath(given))
    except OSError:
        real = given
    seen: set[Path] = set()
    for chain in ([given, *given.parents], [real, *real.parents]):
        for index, p in enumerate(chain):
            if p in seen:
                continue
            seen.add(p)
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                continue
            except OSError as exc:
                return f"{p} cannot be inspected ({exc.strerror})", None
            if index == 0 and owner_only and st.st_uid != os.geteuid():
                return f"{p} is owned by {owner_name(st.st_uid)}", (st.st_uid if st.st_uid != 0 else None)
            found = _problem(p, st, above=index > 0)
            if found:
                return found
    return None


def run_as_owner_hint(uid: int | None) -> str:
    """``sudo -u OWNER hermes-patch <the same arguments>`` for a message (or advice without a user)."""
    if uid is None:
        return ""
    args: list[str] = []
    skip = False
    for arg in sys.argv[1:]:  # root's own state dir and configuration are not the owner's (helper-22)
        if skip:
            skip = False
        elif arg in ("--state-dir", "--config"):
            skip = True
        elif not arg.startswith(("--state-dir=", "--config=")):
            args.append(arg)
    return shlex.join(["sudo", "-u", owner_name(uid), "hermes-patch", *args])


def refusal(what: str, found: tuple[str, int | None], advice: str = "") -> str:
    """The one-paragraph message for an untrusted ``what`` (``found`` from :func:`why_untrusted`).

    The text lives in :func:`hermes_patch.core.messages.untrusted`; this is its string.

    Args:
        what: what it is for people ("the Hermes install", "the state directory").
        found: the reason and the foreign owner's uid.
        advice: the next step when the reason is a write bit rather than an owner.
    """
    from hermes_patch.core.messages import untrusted

    reason, uid = found
    hint = run_as_owner_hint(uid) if uid is not None else ""
    return str(untrusted(what, reason, owner_name(os.geteuid()), hint, advice))


def why_untrusted_bytecode(folder: Path) -> tuple[str, int | None] | None:
    """Why the ``__pycache__`` of ``folder`` (the folder and each file in it) is not trusted, else ``None``.

    Python runs a cached ``.pyc`` instead of its source when the recorded
    mtime and size match, so a ``__pycache__`` another user owns lets them
    run code wherever the module is imported, however safe the ``.py`` is
    (found by a breaker run: patch_dirs and hermes-patch's own venv).
    """
    cache = folder / "__pycache__"
    try:
        entries = [cache, *sorted(cache.iterdir())]
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        return f"{cache} cannot be inspected ({exc.strerror})", None
    for entry in entries:
        try:
            st = os.lstat(entry)
        except FileNotFoundError:
            continue
        found = _problem(entry, st, above=False)
        if found:
            return found
    return None
