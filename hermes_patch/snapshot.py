"""The warm ``status``: the reports of our last write, reused while nothing they came from has changed.

Every write records a :class:`~hermes_patch.records.Snapshot` in the
target's record: the reports it proved, the sha256 of every module file they
were computed from, and a :func:`config_key` (the tool's version, each
patch's source, whether it is enabled and its parameters). ``status`` reuses
those reports when the key is the current one and every file still has
those bytes (:func:`reusable`), which costs a read and a hash of each file
instead of a parse: the same answer, since detection depends on nothing else.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from hermes_patch.records import ReportRecord, TargetRecord
from hermes_patch.source import sha256_hex

__all__ = ["VIEWS", "Reusable", "config_key", "reusable"]

#: The shape of the reports a snapshot keeps; snapshots of another shape are not reused
#: (2: views with ``advice``).
VIEWS = 2


def config_key(
    tool: str,
    patches: Iterable[tuple[str, str, bool, Mapping[str, object]]],
    errors: Mapping[str, str],
) -> str:
    """The sha256 (hex) of everything besides the files that decides the reports.

    Args:
        tool: hermes-patch's version.
        patches: per catalog patch, in catalog order: its id, its source
            (where it was loaded from), whether it is enabled, its parameters
            (tuples are hashed as lists, as they are recorded).
        errors: patch id to the message of its parameter error.
    """
    blob = json.dumps(
        {
            "tool": tool,
            "views": VIEWS,
            "patches": [
                [pid, source, enabled, {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}]
                for pid, source, enabled, params in patches
            ],
            "errors": dict(errors),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class Reusable:
    """A snapshot that still holds: its reports, the entry module's sha256, and the bytes of every file read."""

    reports: tuple[ReportRecord, ...]
    entry_sha256: str
    files: Mapping[str, bytes]


def reusable(record: TargetRecord, key: Callable[[], str], package_dir: Path, entry: str) -> Reusable | None:
    """The snapshot of ``record`` when it still holds for the files in ``package_dir``, else ``None``.

    It holds when it was taken under ``key()`` (:func:`config_key` of this
    run; called only when there is a snapshot, since it reads the
    configuration and its errors belong to the runs that need it), no write
    is pending, it covers the ``entry`` module, and every file it covers has
    the bytes it had. An unreadable file means the snapshot does not hold.

    Raises:
        whatever ``key()`` raises.
    """
    snap = record.snapshot
    if snap is None or snap.config_key != key() or record.pending is not None or entry not in snap.inputs:
        return None
    files: dict[str, bytes] = {}
    for name, sha in snap.inputs.items():
        try:
            data = (package_dir / name).read_bytes()
        except OSError:
            return None
        if sha256_hex(data) != sha:
            return None
        files[name] = data
    return Reusable(snap.reports, snap.inputs[entry], files)
