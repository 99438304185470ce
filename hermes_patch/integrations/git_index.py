"""Git's stat cache: after a write, re-hash our filtered files so git sees them as unchanged.

An index entry whose recorded size differs from the file's is taken as
modified *without* re-hashing, so after every write we run ``git
update-index -- <file>`` (only when the cleaned content equals the index
blob, so a user's own edits are never staged by us), which re-hashes
through the clean filter and records the new size.
"""

from __future__ import annotations

from pathlib import Path

from hermes_patch.integrations.git_clean import clean
from hermes_patch.integrations.git_repo import blob_oid, git

__all__ = ["refresh_index"]


def refresh_index(
    root: Path, datas: dict[str, bytes], cleaned: dict[str, tuple[bytes, bytes]] | None = None
) -> list[str]:
    """``git update-index`` the files whose cleaned bytes equal their index blob; return those paths.

    Args:
        datas: relative path to the file's bytes as read now.
        cleaned: relative path to (bytes, those bytes cleaned), computed
            already; used only while the bytes are still the same.

    A file whose cleaned content differs (the user's own edit) is left alone,
    so nothing of theirs gets staged.
    """
    known = cleaned or {}
    if not datas:
        return []
    index = _index_entries(root, list(datas))
    todo = []
    for rel, data in datas.items():
        entry = index.get(rel)
        if entry is None or entry["stage"] != "0" or _stat_matches(root / rel, entry):
            continue  # untracked, conflicted, or git's stat cache already describes this file
        pair = known.get(rel)
        cleaned_data = pair[1] if pair is not None and pair[0] == data else clean(data)
        if blob_oid(cleaned_data, len(entry["oid"])) == entry["oid"]:
            todo.append(rel)
    if todo:
        git(root, "update-index", "-q", "--", *todo, check=False)
    return todo


def _index_entries(root: Path, rels: list[str]) -> dict[str, dict[str, str]]:
    """Index entries of ``rels`` from ``git ls-files -s --debug``: oid, stage, mtime (``sec:nsec``), size."""
    out = git(root, "ls-files", "-s", "--debug", "--", *rels, check=False).stdout
    entries: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in out.splitlines():
        if not line.startswith((" ", "\t")):
            meta, _, path = line.partition("\t")
            _mode, oid, stage = meta.split()
            current = entries.setdefault(path, {"oid": oid, "stage": stage})
            continue
        for field in line.strip().split("\t"):
            key, _, value = field.partition(": ")
            current[key.strip()] = value.strip()
    return entries


def _stat_matches(path: Path, entry: dict[str, str]) -> bool:
    """Whether the index's recorded size and mtime are the file's (then git will not take it as modified)."""
    try:
        st = path.stat()
        sec, _, nsec = entry["mtime"].partition(":")
        size = int(entry["size"])
    except (OSError, KeyError, ValueError):
        return False
    if size != st.st_size & 0xFFFFFFFF or int(sec) != int(st.st_mtime):
        return False
    return int(nsec or 0) in (0, st.st_mtime_ns % 1_000_000_000)
