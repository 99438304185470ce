"""Running git in the checkout of a git install, with a hook's repository variables removed."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Literal, overload

from hermes_patch.core.errors import TargetError

if TYPE_CHECKING:
    import subprocess

    from hermes_patch.locate import Target

__all__ = ["GIT_ENV", "repo_root", "git", "git_path", "rel_path", "blob_oid"]

#: Variables a git hook inherits that would point our own git calls elsewhere.
GIT_ENV = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_PREFIX",
    "GIT_COMMON_DIR",
)


def repo_root(target: Target) -> Path | None:
    """The checkout of a git install (when git is on PATH), else ``None``."""
    if target.install_method != "git" or target.root is None or shutil.which("git") is None:
        return None
    return Path(target.root)


def git_env() -> dict[str, str]:
    """This process's environment without :data:`GIT_ENV`."""
    return {k: v for k, v in os.environ.items() if k not in GIT_ENV}


@overload
def git(root: Path, *args: str, check: bool = ..., text: Literal[True] = ...) -> subprocess.CompletedProcess[str]: ...
@overload
def git(root: Path, *args: str, check: bool = ..., text: Literal[False]) -> subprocess.CompletedProcess[bytes]: ...
def git(
    root: Path, *args: str, check: bool = True, text: bool = True
) -> subprocess.CompletedProcess[str] | subprocess.CompletedProcess[bytes]:
    """Run ``git -C root ARGS`` with the hook's repository variables removed.

    git's ``safe.directory`` protection stays on: a checkout owned by another
    user is refused before git runs (:func:`hermes_patch.locate.guard_target`),
    and git itself refuses one we missed.

    Raises:
        TargetError: git failed and ``check`` is true (its last stderr line is quoted).
    """
    env = git_env()
    env.setdefault("LC_ALL", "C")
    cmd = ["git", "-C", str(root), *args]
    import subprocess

    proc = subprocess.run(cmd, capture_output=True, text=text, env=env, check=False)
    if check and proc.returncode != 0:
        err = proc.stderr if text else proc.stderr.decode("utf-8", "replace")
        last = err.strip().splitlines()[-1] if err.strip() else f"exit {proc.returncode}"
        raise TargetError(
            f"`git {' '.join(args)}` failed in {root}: {last}. Nothing else was changed; fix the repository (try `git -C {root} status`) and run the command again."
        )
    return proc


def git_path(root: Path, name: str) -> Path:
    """``git rev-parse --git-path NAME`` as an absolute path (follows worktrees and core.hooksPath)."""
    out = git(root, "rev-parse", "--git-path", name).stdout.strip()
    path = Path(out)
    return path if path.is_absolute() else (root / path)


def rel_path(root: Path, path: Path) -> str:
    """``path`` relative to the checkout, as git names it."""
    return path.resolve().relative_to(root.resolve()).as_posix()


def blob_oid(data: bytes, length: int) -> str:
    """The object id git gives ``data`` as a blob (sha256 when the ids are 64 digits long, else sha1)."""
    algo = hashlib.sha256 if length == 64 else hashlib.sha1
    return algo(b"blob %d\0" % len(data) + data).hexdigest()
