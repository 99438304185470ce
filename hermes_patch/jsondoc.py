"""JSON documents on stdout: the shared error document of every ``--json`` command.

A command run with ``--json`` prints exactly one JSON document on stdout,
also when it fails: then the document is the error document below (exit 2),
validated by ``docs/error-schema.json``, and the same paragraph goes to
stderr for people. Scripts therefore always parse stdout.
"""

from __future__ import annotations

import json
from typing import Any

from hermes_patch.core.errors import HermesPatchError

__all__ = ["ERROR_SCHEMA", "error_document", "echo_document"]

ERROR_SCHEMA = 1

_KINDS = {
    "TargetError": "target",
    "ConfigError": "config",
    "StateError": "state",
    "RefusedError": "refused",
    "VerificationError": "verification",
}


def error_document(command: str, exc: HermesPatchError) -> dict[str, Any]:
    """The error document for ``exc`` raised by ``command`` (``"status"``, ``"apply"``, ...).

    Returns:
        ``{"schema": 1, "command": ..., "error": {"kind": ..., "message": ...}, "exit_code": 2}``;
        ``kind`` is one of ``target``, ``config``, ``state``, ``refused``,
        ``verification`` (the :mod:`hermes_patch.core.errors` class), ``message``
        the paragraph printed on stderr.
    """
    kind = next((_KINDS[c.__name__] for c in type(exc).__mro__ if c.__name__ in _KINDS), "error")
    return {
        "schema": ERROR_SCHEMA,
        "command": command,
        "error": {"kind": kind, "message": str(exc)},
        "exit_code": exc.exit_code,
    }


def echo_document(doc: dict[str, Any]) -> None:
    """Print ``doc`` on stdout: indented, sorted keys, one trailing newline."""
    import click

    click.echo(json.dumps(doc, indent=2, sort_keys=True))
