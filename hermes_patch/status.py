"""``status``: the result with every note gathered, and its JSON document.

Warnings (``notes``) are conditions to act on and count for ``--strict``:
an interrupted write, git seeing our edits, a dashboard still running the
code from before the last write (:mod:`hermes_patch.integrations.restart`), a sensitive
action made public, a suffix in ``hosts``. Advice never counts: no proxy
setting configured yet, a release that offers upstream's
``dashboard.public_url`` route. The JSON layout is ``docs/status-schema.json``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from hermes_patch.context import Context

if TYPE_CHECKING:
    from hermes_patch.results import StatusResult

__all__ = ["build_status", "status_document", "STATUS_SCHEMA"]

STATUS_SCHEMA = 1


class Observed(Context, Protocol):
    """A context that can also detect every patch (``status`` on the installed target)."""

    def status(self) -> StatusResult: ...


def build_status(app: Observed) -> StatusResult:
    """``app.status()`` plus the git notes and the running-dashboard warnings."""
    from hermes_patch.integrations.git_filter import with_status_notes
    from hermes_patch.integrations.restart import stale_note

    from hermes_patch.core.patch import State

    result = with_status_notes(app, app.status())
    stale = stale_note(app, apply_first=any(r.enabled and r.state is State.PENDING for r in result.reports))
    return replace(result, notes=result.notes + tuple(stale)) if stale else result


def status_document(result: StatusResult, exit_code: int) -> dict[str, Any]:
    """The ``status --json`` document (schema 1, see ``docs/status-schema.json``)."""
    t = result.target
    config = result.config
    return {
        "schema": STATUS_SCHEMA,
        "target": {
            "file": str(t.file),
            "version": t.version,
            "install_method": t.install_method,
            "sha256": result.sha256,
            "writable": t.writable,
            "found_by": t.found_by,
        },
        "config": {
            "path": str(config.path) if config is not None else None,
            "exists": bool(config is not None and config.exists),
        },
        "patches": [r.to_json() for r in result.reports],
        "notes": list(result.notes),
        "advice": list(result.advice),
        "exit_code": exit_code,
    }
