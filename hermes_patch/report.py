"""The machine contract of the commands that can write: ``apply`` and ``revert``.

``--json`` prints one versioned document on stdout and nothing else there
(``docs/apply-schema.json``); an error prints the error document instead
(``docs/error-schema.json``, :mod:`hermes_patch.jsondoc`), shared by every
command that has ``--json``.
``--check`` computes and proves everything a real run would, writes nothing,
and exits 0 when nothing would change, 1 when something would, 2 on a
refusal, so that "would change" is never confused with "failed". The exit
codes follow Ansible's and Puppet's check modes, where "changes pending" is
a result and not an error.

Configuration management (the Ansible module in ``ansible_collections/``,
a container's start script) reads these documents; people read the
one-paragraph messages they carry.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from hermes_patch.core.errors import HermesPatchError

if TYPE_CHECKING:
    from hermes_patch.app import App
    from hermes_patch.results import WriteResult

__all__ = ["SCHEMA", "write_document", "error_document", "machine_errors", "check_writable", "write_exit_code", "emit"]

#: Version of the documents' layout; bumped when a field is removed or changes meaning.
SCHEMA = 1


def error_document(command: str, exc: BaseException) -> dict[str, Any]:
    """The error document of ``command`` for ``exc`` (:func:`hermes_patch.jsondoc.error_document`).

    An exception outside our hierarchy (a bug) gets kind ``error`` and a
    paragraph saying so; the traceback goes to stderr.
    """
    from hermes_patch.jsondoc import error_document as document

    if not isinstance(exc, HermesPatchError):
        from hermes_patch.core.messages import Failure, report_bug

        exc = HermesPatchError(
            Failure(
                f"hermes-patch stopped on an unexpected {type(exc).__name__}: {exc}",
                outcome="Nothing was written unless the ledger says so (`hermes-patch status`).",
                next_command=report_bug("the traceback printed on stderr"),
            )
        )
    return document(command, exc)


def emit(doc: dict[str, Any]) -> None:
    """Print a document on stdout (:func:`hermes_patch.jsondoc.echo_document`)."""
    from hermes_patch.jsondoc import echo_document

    echo_document(doc)


@contextlib.contextmanager
def machine_errors(command: str, as_json: bool, check: bool = False, app: App | None = None) -> Iterator[None]:
    """Turn errors inside the block into the machine contract.

    With ``as_json``, a :class:`HermesPatchError` prints its error document on
    stdout, its paragraph on stderr, and exits 2; without it the error goes on
    to the CLI's one-paragraph handler. With ``as_json`` or ``check``, any
    other exception is also exit 2 (the traceback on stderr): a crash must
    not exit 1, which ``--check`` uses for "would change".

    With ``app``, an error's "restore from the release" advice names the
    located install's own command (:func:`hermes_patch.core.messages.for_target`).
    """
    try:
        yield
    except HermesPatchError as exc:
        if not as_json:
            raise
        from hermes_patch.core.messages import for_target

        _fail(command, for_target(exc, vars(app).get("target") if app is not None else None), as_json)
    except Exception as exc:  # noqa: BLE001 - the contract: every failure is exit 2
        if not (as_json or check):
            raise
        import traceback

        traceback.print_exc(file=sys.stderr)
        _fail(command, exc, as_json)


def _fail(command: str, exc: BaseException, as_json: bool) -> None:
    """The paragraph on stderr, the error document on stdout (with ``as_json``), exit 2."""
    from hermes_patch.console import error

    doc = error_document(command, exc)
    error(doc["error"]["message"])
    if as_json:
        emit(doc)
    sys.exit(2)


def check_writable(app: App, result: WriteResult) -> None:
    """For ``--check``: refuse (as the real run would) when files would change but the target is read-only.

    Raises:
        RefusedError: the real command would be refused.
    """
    if result.files:
        app._guard_writable()


def write_exit_code(result: WriteResult, check: bool) -> int:
    """0 done (or nothing to do); with ``check``, 1 when something would change."""
    return 1 if check and result.files else 0


def write_document(
    command: str, app: App, result: WriteResult, check: bool, notes: list[str] | tuple[str, ...] = ()
) -> dict[str, Any]:
    """The ``apply --json`` / ``revert --json`` document (``docs/apply-schema.json``).

    Args:
        command: ``apply`` or ``revert``.
        app: the application the command ran with (its target).
        result: the command's result.
        check: whether this was ``--check`` (nothing written; ``changed`` is
            "would change").
        notes: notes gathered while the command ran (git stash, filter).

    Returns:
        The document: ``changed``, the target, every changed file with its
        sha256 before and after, each patch's state and reason before and
        after, the unified diff, notes and the exit code.
    """
    t = app.target
    changed_ids = set(result.patch_ids) if result.files else set()
    before = {r.id: r for r in result.before}
    patches = []
    for r in result.after:
        b = before.get(r.id, r)
        patches.append(
            {
                "id": r.id,
                "enabled": r.enabled,
                "changed": r.id in changed_ids,
                "before": {"state": b.state.value, "reason": b.reason},
                "after": {"state": r.state.value, "reason": r.reason},
                "notes": list(r.notes),
            }
        )
    written = {str(p) for p in result.written}
    entry = next((f for f in result.files if f.path == t.package_dir / t.entry or f.path == t.file), None)
    return {
        "schema": SCHEMA,
        "command": command,
        "check": check,
        "changed": bool(result.files),
        "target": {
            "file": str(t.file),
            "version": t.version,
            "install_method": t.install_method,
            "sha256": entry.before if entry else _sha(t.file),
            "writable": t.writable,
            "found_by": t.found_by,
        },
        "files": [
            {"path": str(f.path), "sha256_before": f.before, "sha256_after": f.after, "written": str(f.path) in written}
            for f in result.files
        ],
        "patches": patches,
        "diff": result.diff,
        "notes": [*result.notes, *notes],
        "exit_code": write_exit_code(result, check),
    }


def _sha(path: Path) -> str:
    from hermes_patch.core.source import sha256_hex

    with open(path, "rb") as fh:
        return sha256_hex(fh.read())
