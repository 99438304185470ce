"""Git's clean filter: a file's bytes without our marked blocks (pure, bytes in and bytes out).

Git runs it (``hermes-patch git-clean-filter``) on every ``git status`` and
``git add`` of the files we patch, so the content git hashes is upstream's
blob; :mod:`hermes_patch.integrations.git_filter` registers it. It imports nothing
heavy: it is a process git starts often.
"""

from __future__ import annotations

from pathlib import Path

from hermes_patch.core.patch import MARKER_PREFIX, find_blocks, remove_blocks

__all__ = ["MARKER", "clean"]

#: The marker's bytes: a file without them holds no block of ours.
MARKER = MARKER_PREFIX.encode()


def clean(data: bytes) -> bytes:
    """``data`` (a Python file's bytes) without our marked blocks.

    Returns ``data`` unchanged when it holds no marker, does not decode or
    parse, or has an orphaned marker: a filter must never fail or guess.
    The result is byte-exact upstream text because every edit is an
    insertion of whole lines (:func:`hermes_patch.core.patch.remove_blocks`).
    """
    if MARKER not in data:
        return data
    from hermes_patch.core.source import Source

    try:
        src = Source.from_bytes(data, Path("<git clean filter>"))
        blocks = find_blocks(src)
        if isinstance(blocks, str) or not blocks:
            return data
        return src.encode(remove_blocks(src.text, src.line_starts, blocks))
    except Exception:  # noqa: BLE001 - any failure means "leave it to git as it is"
        return data
