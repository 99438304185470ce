"""The warm ``status``: the reports of our last write, reused while nothing they came from has changed.

Every write records a :class:`~hermes_patch.records.Snapshot` in the
target's record: the reports it proved, the sha256 of every module file they
were computed from, and a :func:`config_key` (the tool's version, the
configuration as read, and the bytes of every patch module the catalog
comes from: computed without importing a patch). ``status`` reuses
those reports when the key is the current one and every file still has
those bytes (:func:`reusable`), which costs a read and a hash of each file
instead of a parse: the same answer, since detection depends on nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from hermes_patch.records import ReportRecord, TargetRecord
from hermes_patch.core.source import sha256_hex

__all__ = ["VIEWS", "Reusable", "config_key", "reusable"]

#: The shape of the reports a snapshot keeps; snapshots of another shape are not reused
#: (2: views with ``advice``).
VIEWS = 2


def config_key(tool: str, settings: Mapping[str, object], catalog: Mapping[str, object]) -> str:
    """The sha256 (hex) of everything besides the files that decides the reports.

    Computed from the inputs, not from the loaded catalog, so that a warm
    ``status`` imports no patch: a change of any input gives another key.

    Args:
        tool: hermes-patch's version.
        settings: the configuration as read (its path, whether it exists,
            ``patch_dirs``, ``allow_version`` and every ``[patches.<id>]``
            table: enabled, parameters); values that JSON cannot hold
            (TOML dates) are hashed as their ``str``.
        catalog: what the catalog is loaded from (:func:`catalog_inputs`).
    """
    blob = json.dumps(
        {"tool": tool, "views": VIEWS, "settings": settings, "catalog": catalog},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def catalog_inputs(patch_dirs: Iterable[Path]) -> dict[str, object]:
    """Where every patch comes from, as data for :func:`config_key`.

    The sha256 of each module file of the built-in catalog and of each
    ``patch_dirs`` folder, and the ``entry_points.txt`` of every installed
    distribution that declares the patch entry point group
    (:func:`entry_point_declarations`). Reads files; imports nothing.
    """
    builtin = Path(__file__).resolve().parent / "patches"
    return {
        "builtin": _module_hashes(builtin),
        "patch_dirs": {str(d): _module_hashes(d) for d in patch_dirs},
        "entry_points": entry_point_declarations(),
    }


def _module_hashes(folder: Path) -> dict[str, str]:
    """File name to sha256 of every ``*.py`` in ``folder`` (``{}`` when it cannot be listed)."""
    out: dict[str, str] = {}
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return out
    for name in names:
        if name.endswith(".py"):
            try:
                out[name] = sha256_hex((folder / name).read_bytes())
            except OSError:
                out[name] = "unreadable"
    return out


#: The entry point group of user patches (:data:`hermes_patch.registry.ENTRY_POINT_GROUP`; not imported from
#: there: the registry imports the patch framework).
_GROUP = "hermes_patch.patches"


def entry_point_declarations() -> list[str]:
    """The ``entry_points.txt`` (with its folder) of every distribution on ``sys.path`` declaring the patch group.

    The folders' names carry the distributions' versions. It looks where
    :mod:`importlib.metadata` looks (``*.dist-info``, ``*.egg-info``, an
    ``.egg``'s ``EGG-INFO``) without importing it (about 8 ms, a tenth of a
    warm ``status``); a ``sys.path`` entry that is a file (a zip) is read
    through :mod:`importlib.metadata` instead. The registry loads entry
    points only when this finds a declaration.
    """
    out: list[str] = []
    for entry in sys.path:
        folder = entry or "."
        try:
            names = sorted(os.listdir(folder))
        except NotADirectoryError:
            from importlib.metadata import entry_points

            for ep in entry_points(group=_GROUP):
                dist = f" from {ep.dist.name} {ep.dist.version}" if ep.dist is not None else ""
                out.append(f"{ep.name} = {ep.value}{dist}")
            continue
        except OSError:
            continue
        egg = folder.lower().endswith(".egg")
        for name in names:
            low = name.lower()
            if low.endswith((".dist-info", ".egg-info")) or (egg and low == "egg-info"):
                try:
                    text = Path(folder, name, "entry_points.txt").read_text("utf-8", errors="replace")
                except OSError:
                    continue
                if _GROUP in text:
                    out.append(f"{os.path.join(folder, name)}\n{text}")
                    out.extend(_entry_point_sources(text))
    return out


def _entry_point_sources(text: str) -> list[str]:
    """For each patch module an ``entry_points.txt`` names: the sha256 of the ``*.py`` files of its folder.

    Found along ``sys.path`` without importing (an editable install's source
    folder is on it). A module not found there (an import hook) gets a fresh
    random value, so a snapshot is never reused on its behalf: editing such a
    module in place must not leave ``status`` stale (helper-22).
    """
    out: list[str] = []
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[]").strip()
        elif section == _GROUP and "=" in line:
            module = line.split("=", 1)[1].split(":", 1)[0].strip()
            parts = module.split(".")
            found = None
            for entry in sys.path:
                base = Path(entry or ".", *parts)
                for candidate in (base.with_name(base.name + ".py"), base / "__init__.py"):
                    if candidate.is_file():
                        found = candidate.parent
                        break
                if found is not None:
                    break
            hashes = json.dumps(_module_hashes(found), sort_keys=True) if found is not None else os.urandom(16).hex()
            out.append(f"{module} {hashes}")
    return out


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
