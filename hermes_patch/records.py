"""The ledger's records: typed, loaded from parsed JSON and dumped back.

``ledger.json`` (schema 1) is a JSON object::

    {"schema": 1, "targets": {"<real path of hermes_cli>": <TargetRecord>}}

and each target's record holds, all keys optional:

``files``
    ``{module name: {"original": sha256, "patched": sha256}}``: the file as
    the release shipped it and as our last write left it (:class:`FileHashes`).
``version``
    the Hermes release of our last write (a string, or ``null`` when unknown).
``patches``
    ``{patch id: {"params": {...}, "statements": {"file:name": sha256}}}``:
    what each applied patch was rendered from and the text hash of every
    statement it owns, for drift (:class:`PatchRecord`).
``snapshot``
    the reports of our last write and the hashes of the files they were
    computed from, for the warm ``status`` (:class:`Snapshot`).
``backups``
    the backups of the last writes, newest last (lists of sha256).
``pending``
    the journal of a write under way (:class:`Pending`).
``auto_refusal``
    the last automatic ``apply`` that refused (:class:`AutoRefusal`).
``integrations``
    what the git filter, the git hooks, the systemd drop-ins and the session
    token file installed, kept here as JSON: their shapes are
    :class:`hermes_patch.integrations.installed.Integrations`, and each integration checks
    its own record before acting on it.

:func:`load_ledger` turns parsed JSON into these frozen records and, when
the JSON is not shaped like a record we write, raises
:class:`LedgerFormatError` naming the field (``targets['/x/hermes_cli']
.files['web_server.py'].patched: expected a sha256 hex string``).
:func:`dump_ledger` is its inverse: ``dump_ledger(load_ledger(doc))`` is
``doc`` for every ledger hermes-patch writes, so the bytes on disk do not
depend on which of the two a writer used. Keys of a target record (or of
the ledger) that this version does not know are kept as they were; inside a
record, every key is known, and an unknown one is refused.

Pure: no files, no environment.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Final, Literal, TypeAlias, TypedDict, TypeVar, cast

if TYPE_CHECKING:
    from hermes_patch.integrations.installed import Integrations

__all__ = [
    "ABSENT",
    "JSON",
    "LedgerDoc",
    "TargetDoc",
    "SCHEMA",
    "Absent",
    "AutoRefusal",
    "Commit",
    "FileHashes",
    "JournalEntry",
    "Ledger",
    "LedgerFormatError",
    "NewerSchemaError",
    "PatchRecord",
    "Pending",
    "ReportRecord",
    "Snapshot",
    "TargetRecord",
    "dump_ledger",
    "is_module_name",
    "is_sha256",
    "load_ledger",
]

SCHEMA: Final = 1

#: A parsed JSON value.
JSON: TypeAlias = "None | bool | int | float | str | list[JSON] | dict[str, JSON]"
JSONObject: TypeAlias = "dict[str, JSON]"

# A module file of the hermes_cli package as records name it: relative, no `..`, a .py file.
MODULE_NAME: Final = re.compile(r"(?:[A-Za-z0-9_][A-Za-z0-9_.-]*/)*[A-Za-z0-9_][A-Za-z0-9_.-]*\.py")
_SHA256: Final = re.compile(r"[0-9a-f]{64}")


class TargetDoc(TypedDict, total=False):
    """A target's record as parsed JSON, the form the integrations change in place (:meth:`StateDir.load`).

    Their own part, ``integrations``, is typed
    (:class:`~hermes_patch.integrations.installed.Integrations`); the other
    keys belong to the typed records (:class:`TargetRecord`) and stay JSON here.
    """

    files: JSON
    version: JSON
    patches: JSON
    snapshot: JSON
    backups: JSON
    pending: JSON
    auto_refusal: JSON
    integrations: Integrations


class LedgerDoc(TypedDict):
    """The whole ledger as parsed JSON: ``{"schema": 1, "targets": {key: TargetDoc}}``."""

    schema: int
    targets: dict[str, TargetDoc]


def is_module_name(name: str) -> bool:
    """Whether ``name`` can name a module file of the package in a record (relative, ``.py``, no ``..``)."""
    return bool(MODULE_NAME.fullmatch(name)) and ".." not in name.split("/")


def is_sha256(value: str) -> bool:
    """Whether ``value`` is a sha256 as records hold it (64 lowercase hex digits)."""
    return bool(_SHA256.fullmatch(value))


class Absent(enum.Enum):
    """A key the JSON object does not have, where JSON ``null`` is a value of its own."""

    ABSENT = "absent"


ABSENT: Final = Absent.ABSENT


class LedgerFormatError(ValueError):
    """Parsed JSON that is not shaped like a ledger hermes-patch writes.

    The message is ``<where>: <problem>``, e.g. ``targets['/x/hermes_cli']
    .files['web_server.py'].patched: expected a sha256 hex string, got the
    string 'abc'``.

    Attributes:
        where: the field, as a path from the ledger's top (``targets['/x'].files``);
            ``""`` for the whole document.
        problem: what is wrong with it.
    """

    def __init__(self, where: str, problem: str) -> None:
        self.where, self.problem = where, problem
        super().__init__(f"{where or 'the document'}: {problem}")

    @classmethod
    def expected(cls, where: str, what: str, got: object) -> LedgerFormatError:
        """``where`` holds ``got`` where ``what`` belongs."""
        return cls(where, f"expected {what}, got {_describe(got)}")


class NewerSchemaError(ValueError):
    """A ledger of a later schema than :data:`SCHEMA` (written by a newer hermes-patch).

    Attributes:
        schema: the schema the ledger declares.
    """

    def __init__(self, schema: int) -> None:
        self.schema = schema
        super().__init__(f"schema {schema}, this hermes-patch reads {SCHEMA}")


# -- the records ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileHashes:
    """One module file in a target's ``files``: its sha256 as the release shipped it and after our last write."""

    original: str
    patched: str

    def to_json(self) -> JSONObject:
        """The record as JSON."""
        return {"original": self.original, "patched": self.patched}


@dataclass(frozen=True)
class PatchRecord:
    """An applied patch: the parameters it was rendered from, the sha256 of each statement it owns.

    ``statements`` maps ``file:name`` (``web_server.py:_PUBLIC_API_PATHS``)
    to the sha256 of that top-level statement's text after our write; a
    different hash later means the statement was edited by hand (drifted).
    """

    params: Mapping[str, JSON]
    statements: Mapping[str, str]

    def to_json(self) -> JSONObject:
        """The record as JSON."""
        return {"params": dict(self.params), "statements": dict(self.statements)}


@dataclass(frozen=True)
class ReportRecord:
    """A patch report as the snapshot keeps it (a :class:`~hermes_patch.app.ReportView` with its config flag).

    ``advice`` and ``config_error`` are ``None`` when the record lacks them
    (snapshots of an older hermes-patch, which are never reused).
    """

    id: str
    state: str
    reason: str
    enabled: bool
    notes: tuple[str, ...]
    advice: tuple[str, ...] | None = None
    config_error: bool | None = None

    def to_json(self) -> JSONObject:
        """The record as JSON."""
        out: JSONObject = {
            "id": self.id,
            "state": self.state,
            "reason": self.reason,
            "enabled": self.enabled,
            "notes": list(self.notes),
        }
        if self.advice is not None:
            out["advice"] = list(self.advice)
        if self.config_error is not None:
            out["config_error"] = self.config_error
        return out


@dataclass(frozen=True)
class Snapshot:
    """The reports of our last write and what they were computed from (the warm ``status``).

    Reused while ``config_key`` (a hash of the tool, the catalog and the
    parameters) is the current one and every file in ``inputs`` (module name
    to sha256) still has those bytes.
    """

    config_key: str
    inputs: Mapping[str, str]
    reports: tuple[ReportRecord, ...]

    def to_json(self) -> JSONObject:
        """The record as JSON."""
        return {
            "config_key": self.config_key,
            "inputs": dict(self.inputs),
            "reports": [r.to_json() for r in self.reports],
        }


@dataclass(frozen=True)
class Commit:
    """What a write records once its files are written: merged into the target's record on commit."""

    version: str | None
    files: Mapping[str, FileHashes]
    patches: Mapping[str, PatchRecord]
    snapshot: Snapshot

    def to_json(self) -> JSONObject:
        """The record as JSON."""
        return {
            "version": self.version,
            "files": {name: h.to_json() for name, h in self.files.items()},
            "patches": {pid: p.to_json() for pid, p in self.patches.items()},
            "snapshot": self.snapshot.to_json(),
        }


@dataclass(frozen=True)
class JournalEntry:
    """One file of a write under way: its sha256 before and after, and as the release shipped it."""

    before: str
    after: str
    original: str

    def to_json(self) -> JSONObject:
        """The record as JSON."""
        return {"before": self.before, "after": self.after, "original": self.original}


@dataclass(frozen=True)
class Pending:
    """The journal of a write under way (see :mod:`hermes_patch.journal`).

    Saved before the first Hermes file is replaced and removed by the commit
    that follows the last; found by the next ``apply`` or ``revert``, which
    completes the write.
    """

    kind: Literal["apply", "revert"]
    files: Mapping[str, JournalEntry]
    commit: Commit

    def to_json(self) -> JSONObject:
        """The record as JSON."""
        return {
            "kind": self.kind,
            "files": {name: j.to_json() for name, j in self.files.items()},
            "commit": self.commit.to_json(),
        }


@dataclass(frozen=True)
class AutoRefusal:
    """An automatic ``apply`` (a git hook, a systemd unit, ``update``) that refused, kept until an ``apply`` succeeds."""

    when: str
    source: str
    message: str
    version: str | None

    def to_json(self) -> JSONObject:
        """The record as JSON."""
        return {"when": self.when, "source": self.source, "message": self.message, "version": self.version}


@dataclass(frozen=True)
class TargetRecord:
    """Everything the ledger keeps about one target package. ``None`` (or :data:`ABSENT`): the key is absent.

    ``version`` is :data:`ABSENT` until the first write commits, then the
    release's version or ``None`` (JSON ``null``) when it is unknown.
    ``extra`` holds keys this version does not know, written back unchanged.
    """

    files: Mapping[str, FileHashes] | None = None
    version: str | None | Absent = ABSENT
    patches: Mapping[str, PatchRecord] | None = None
    snapshot: Snapshot | None = None
    backups: tuple[tuple[str, ...], ...] | None = None
    pending: Pending | None = None
    auto_refusal: AutoRefusal | None = None
    integrations: Mapping[str, JSON] | None = None
    extra: Mapping[str, JSON] = field(default_factory=dict)

    @property
    def known_files(self) -> Mapping[str, FileHashes]:
        """``files``, empty when absent."""
        return self.files if self.files is not None else {}

    @property
    def known_version(self) -> str | None:
        """The release of our last write, ``None`` when unknown or never written."""
        return None if self.version is ABSENT else self.version

    def committed(self) -> TargetRecord:
        """This record once its pending write is committed: the journal gone, its :class:`Commit` merged in.

        Raises:
            ValueError: there is no pending write.
        """
        if self.pending is None:
            raise ValueError("no pending write to commit")
        commit = self.pending.commit
        return replace(
            self,
            pending=None,
            files={**self.known_files, **commit.files},
            version=commit.version,
            patches=commit.patches,
            snapshot=commit.snapshot,
        )

    def to_json(self) -> JSONObject:
        """The record as JSON (absent fields stay absent; unknown keys are kept)."""
        out: JSONObject = dict(self.extra)
        if self.files is not None:
            out["files"] = {name: h.to_json() for name, h in self.files.items()}
        if self.version is not ABSENT:
            out["version"] = self.version
        if self.patches is not None:
            out["patches"] = {pid: p.to_json() for pid, p in self.patches.items()}
        if self.snapshot is not None:
            out["snapshot"] = self.snapshot.to_json()
        if self.backups is not None:
            out["backups"] = [list(write) for write in self.backups]
        if self.pending is not None:
            out["pending"] = self.pending.to_json()
        if self.auto_refusal is not None:
            out["auto_refusal"] = self.auto_refusal.to_json()
        if self.integrations is not None:
            out["integrations"] = dict(self.integrations)
        return out


@dataclass(frozen=True)
class Ledger:
    """The whole ledger: one :class:`TargetRecord` per target, keyed by the real path of its ``hermes_cli``."""

    targets: Mapping[str, TargetRecord] = field(default_factory=dict)
    extra: Mapping[str, JSON] = field(default_factory=dict)

    def target(self, key: str) -> TargetRecord:
        """The record of ``key``; an empty one when the ledger has none."""
        return self.targets.get(key) or TargetRecord()

    def with_target(self, key: str, record: TargetRecord) -> Ledger:
        """A ledger with ``record`` as the record of ``key``."""
        return replace(self, targets={**self.targets, key: record})

    def to_json(self) -> JSONObject:
        """The ledger as JSON, with ``schema`` set to :data:`SCHEMA`."""
        return {
            **self.extra,
            "schema": SCHEMA,
            "targets": {key: record.to_json() for key, record in self.targets.items()},
        }


# -- the loader ---------------------------------------------------------------------------------


def load_ledger(doc: object) -> Ledger:
    """The :class:`Ledger` of parsed JSON ``doc`` (what ``json.loads`` returned).

    Raises:
        LedgerFormatError: ``doc`` is not shaped like a ledger we write (the
            message names the field and what it should hold).
        NewerSchemaError: ``doc`` declares a schema after :data:`SCHEMA`
            (its records are not checked).
    """
    top = _closed(cast(JSON, doc), "", ("schema", "targets"), open_=True)
    targets = _object(top["targets"], "targets")
    schema = top["schema"]
    if not isinstance(schema, int):
        raise LedgerFormatError.expected("schema", "an integer", schema)
    if schema > SCHEMA:
        raise NewerSchemaError(schema)
    extra = {k: v for k, v in top.items() if k not in ("schema", "targets")}
    return Ledger({key: _target(value, f"targets[{_key(key)}]") for key, value in targets.items()}, extra)


def dump_ledger(ledger: Ledger) -> bytes:
    """The bytes of ``ledger.json`` for ``ledger``: indented JSON with sorted keys and a final newline."""
    import json

    return (json.dumps(ledger.to_json(), indent=2, sort_keys=True) + "\n").encode()


_TARGET_KEYS: Final = ("files", "version", "patches", "snapshot", "backups", "pending", "auto_refusal", "integrations")


def _target(value: JSON, where: str) -> TargetRecord:
    obj = _object(value, where)
    version = _maybe(obj, "version", where, _version)
    return TargetRecord(
        files=_maybe(obj, "files", where, _files),
        version=version if "version" in obj else ABSENT,
        patches=_maybe(obj, "patches", where, _patches),
        snapshot=_maybe(obj, "snapshot", where, _snapshot),
        backups=_maybe(obj, "backups", where, _backups),
        pending=_maybe(obj, "pending", where, _pending),
        auto_refusal=_maybe(obj, "auto_refusal", where, _auto_refusal),
        integrations=_maybe(obj, "integrations", where, _object),
        extra={k: v for k, v in obj.items() if k not in _TARGET_KEYS},
    )


def _files(value: JSON, where: str) -> dict[str, FileHashes]:
    return {
        name: FileHashes(*_fields(entry, f"{where}[{_key(name)}]", ("original", "patched"), _sha256))
        for name, entry in _module_table(value, where).items()
    }


def _patches(value: JSON, where: str) -> dict[str, PatchRecord]:
    out = {}
    for pid, entry in _object(value, where).items():
        at = f"{where}[{_key(pid)}]"
        obj = _closed(entry, at, ("params", "statements"))
        statements = _object(obj["statements"], f"{at}.statements")
        out[pid] = PatchRecord(
            _object(obj["params"], f"{at}.params"),
            {key: _str(v, f"{at}.statements[{_key(key)}]") for key, v in statements.items()},
        )
    return out


def _snapshot(value: JSON, where: str) -> Snapshot:
    obj = _closed(value, where, ("config_key", "inputs", "reports"))
    inputs = {
        name: _sha256(sha, f"{where}.inputs[{_key(name)}]")
        for name, sha in _module_table(obj["inputs"], f"{where}.inputs").items()
    }
    reports = tuple(
        _report(r, f"{where}.reports[{i}]") for i, r in enumerate(_list(obj["reports"], f"{where}.reports"))
    )
    return Snapshot(_str(obj["config_key"], f"{where}.config_key"), inputs, reports)


def _report(value: JSON, where: str) -> ReportRecord:
    obj = _closed(value, where, ("id", "state", "reason", "enabled", "notes"), optional=("advice", "config_error"))
    advice = obj.get("advice", ABSENT)
    config_error = obj.get("config_error", ABSENT)
    return ReportRecord(
        _str(obj["id"], f"{where}.id"),
        _str(obj["state"], f"{where}.state"),
        _str(obj["reason"], f"{where}.reason"),
        _bool(obj["enabled"], f"{where}.enabled"),
        _strings(obj["notes"], f"{where}.notes"),
        None if advice is ABSENT else _strings(advice, f"{where}.advice"),
        None if config_error is ABSENT else _bool(config_error, f"{where}.config_error"),
    )


def _backups(value: JSON, where: str) -> tuple[tuple[str, ...], ...]:
    return tuple(
        tuple(_sha256(sha, f"{where}[{i}][{j}]") for j, sha in enumerate(_list(write, f"{where}[{i}]")))
        for i, write in enumerate(_list(value, where))
    )


def _pending(value: JSON, where: str) -> Pending:
    obj = _closed(value, where, ("kind", "files", "commit"))
    kind = obj["kind"]
    if kind not in ("apply", "revert"):
        raise LedgerFormatError.expected(f"{where}.kind", '"apply" or "revert"', kind)
    files = {
        name: JournalEntry(*_fields(entry, f"{where}.files[{_key(name)}]", ("before", "after", "original"), _sha256))
        for name, entry in _module_table(obj["files"], f"{where}.files").items()
    }
    return Pending(cast(Literal["apply", "revert"], kind), files, _commit(obj["commit"], f"{where}.commit"))


def _commit(value: JSON, where: str) -> Commit:
    obj = _closed(value, where, ("version", "files", "patches", "snapshot"))
    return Commit(
        _version(obj["version"], f"{where}.version"),
        _files(obj["files"], f"{where}.files"),
        _patches(obj["patches"], f"{where}.patches"),
        _snapshot(obj["snapshot"], f"{where}.snapshot"),
    )


def _auto_refusal(value: JSON, where: str) -> AutoRefusal:
    obj = _closed(value, where, ("when", "source", "message", "version"))
    return AutoRefusal(
        _str(obj["when"], f"{where}.when"),
        _str(obj["source"], f"{where}.source"),
        _str(obj["message"], f"{where}.message"),
        _version(obj["version"], f"{where}.version"),
    )


# -- field checks -------------------------------------------------------------------------------


_T = TypeVar("_T")


def _maybe(obj: JSONObject, key: str, where: str, parse: Callable[[JSON, str], _T]) -> _T | None:
    return parse(obj[key], _at(where, key)) if key in obj else None


def _object(value: JSON, where: str) -> JSONObject:
    if not isinstance(value, dict):
        raise LedgerFormatError.expected(where, "an object", value)
    return value


def _closed(
    value: JSON, where: str, required: tuple[str, ...], optional: tuple[str, ...] = (), open_: bool = False
) -> JSONObject:
    """``value`` as an object with every key of ``required``, and (unless ``open_``) no key outside ``required + optional``."""
    obj = _object(value, where)
    for key in required:
        if key not in obj:
            raise LedgerFormatError(_at(where, key), "missing")
    for key in () if open_ else obj:
        if key not in required and key not in optional:
            known = ", ".join(required + optional)
            raise LedgerFormatError(
                where, f"holds the key {_key(key)}, which a record hermes-patch writes never has ({known})"
            )
    return obj


def _fields(value: JSON, where: str, keys: tuple[str, ...], check: Callable[[JSON, str], str]) -> list[str]:
    obj = _closed(value, where, keys)
    return [check(obj[key], _at(where, key)) for key in keys]


def _module_table(value: JSON, where: str) -> JSONObject:
    """``value`` as an object keyed by module names of the package (confinement: no ``..``, no absolute path)."""
    obj = _object(value, where)
    for name in obj:
        if not is_module_name(name):
            raise LedgerFormatError(
                f"{where}[{_key(name)}]", "expected a module file of the package (a relative .py path without '..')"
            )
    return obj


def _list(value: JSON, where: str) -> list[JSON]:
    if not isinstance(value, list):
        raise LedgerFormatError.expected(where, "a list", value)
    return value


def _str(value: JSON, where: str) -> str:
    if not isinstance(value, str):
        raise LedgerFormatError.expected(where, "a string", value)
    return value


def _strings(value: JSON, where: str) -> tuple[str, ...]:
    return tuple(_str(v, f"{where}[{i}]") for i, v in enumerate(_list(value, where)))


def _version(value: JSON, where: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise LedgerFormatError.expected(where, "a release version string or null", value)
    return value


def _bool(value: JSON, where: str) -> bool:
    if not isinstance(value, bool):
        raise LedgerFormatError.expected(where, "true or false", value)
    return value


def _sha256(value: JSON, where: str) -> str:
    if not isinstance(value, str) or not is_sha256(value):
        raise LedgerFormatError.expected(where, "a sha256 hex string", value)
    return value


def _at(where: str, key: str) -> str:
    """The path of field ``key`` of the object at ``where``."""
    return f"{where}.{key}" if where else key


def _key(key: str) -> str:
    """A key as the path shows it: quoted, escaped, and cut when long (it may come from anyone)."""
    text = repr(key)
    return text if len(text) <= 80 else text[:60] + "…" + text[-16:]


def _describe(value: object) -> str:
    """What a bad value is, briefly: its JSON type, and a short escaped form for a scalar."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {_key(value)}"
    return f"the number {value!r}" if isinstance(value, (int, float)) else type(value).__name__
