"""Stashes that earlier ``hermes update`` runs left holding only our own edits, and dropping them.

Before the clean filter (:mod:`hermes_patch.integrations.git_filter`) hid our edits,
``hermes update`` stashed a patched ``web_server.py`` and could leave the
stash parked (hermes-agent#11623, #52040). Such an entry is found here
only when everything in it is one of our marked blocks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from hermes_patch.integrations.git_clean import MARKER, clean
from hermes_patch.integrations.git_repo import git

__all__ = ["OurStash", "our_stashes", "drop_stashes"]


@dataclass(frozen=True)
class OurStash:
    """A stash entry whose every change is one of our marked blocks.

    Attributes:
        selector: ``stash@{N}`` at the time it was read.
        commit: the stash commit (hex).
        subject: its message (``On main: hermes-update-autostash-...``).
        paths: the files it changes, relative to the checkout.
    """

    selector: str
    commit: str
    subject: str
    paths: tuple[str, ...]


def _has_stash(root: Path) -> bool:
    gitdir = root / ".git"
    if gitdir.is_dir():
        return (gitdir / "logs" / "refs" / "stash").exists() or (gitdir / "refs" / "stash").exists()
    return True  # a worktree or submodule: ask git


def our_stashes(root: Path, package: str = "hermes_cli") -> list[OurStash]:
    """Stash entries that hold only hermes-patch's own edits.

    A stash qualifies when its untracked-files commit (if any) is empty, and every path
    it changes (in its worktree and index commits) is a modified ``.py``
    file of ``package`` whose stashed bytes hold at least one marker and,
    with our blocks removed, equal the base commit's bytes exactly. Anything
    else in it (a user's edit, an untracked file) disqualifies the entry.
    """
    if not _has_stash(root):
        return []
    out = git(root, "stash", "list", "--format=%gd%x00%H%x00%P%x00%gs", check=False).stdout
    found = []
    for line in out.splitlines():
        parts = line.split("\0")
        if len(parts) != 4:
            continue
        selector, commit, parents, subject = parts
        parents_list = parents.split()
        if len(parents_list) not in (2, 3):
            continue
        if (
            len(parents_list) == 3
            and git(root, "ls-tree", "-r", "--name-only", parents_list[2], check=False).stdout.strip()
        ):
            continue  # it holds untracked files: never ours (`--include-untracked` may add an empty third parent)
        base, index = parents_list[:2]
        paths = _only_our_blocks(root, base, [commit, index], package)
        if paths:
            found.append(OurStash(selector, commit, subject, tuple(paths)))
    return found


def _only_our_blocks(root: Path, base: str, commits: list[str], package: str) -> list[str] | None:
    seen: list[str] = []
    for commit in commits:
        diff = git(root, "diff-tree", "-r", "-z", "--no-renames", "--name-status", base, commit, check=False).stdout
        fields = [f for f in diff.split("\0") if f]
        for status, path in zip(fields[::2], fields[1::2]):
            if status != "M" or not path.startswith(package + "/") or not path.endswith(".py"):
                return None
            stashed = git(root, "cat-file", "blob", f"{commit}:{path}", check=False, text=False).stdout
            original = git(root, "cat-file", "blob", f"{base}:{path}", check=False, text=False).stdout
            if MARKER not in stashed or clean(stashed) != original:
                return None
            if path not in seen:
                seen.append(path)
    return seen or None


def drop_stashes(root: Path, stashes: list[OurStash]) -> list[str]:
    """Drop the given stash entries (re-checking each selector still names the same commit); return the selectors dropped."""
    dropped = []
    for stash in sorted(stashes, key=lambda s: _stash_index(s.selector), reverse=True):
        current = git(root, "rev-parse", "--verify", "-q", stash.selector, check=False).stdout.strip()
        if current != stash.commit:
            continue
        git(root, "stash", "drop", "-q", stash.selector)
        dropped.append(stash.selector)
    return dropped


def _stash_index(selector: str) -> int:
    match = re.search(r"\{(\d+)\}", selector)
    return int(match.group(1)) if match else 0
