"""What the commands report: typed results shared by the shell and the integrations.

``status`` (:class:`StatusResult`, one :class:`ReportView` per patch) and
``apply``/``revert`` (:class:`WriteResult`, :class:`FileChange`). The
integrations (``check``, ``update``, the git filter) build and read these
too, so they live here rather than in :mod:`hermes_patch.app`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from hermes_patch.config import Config
    from hermes_patch.core.engine import PatchReport
    from hermes_patch.core.patch import State
    from hermes_patch.integrations.incoming import Incoming
    from hermes_patch.locate import Target
    from hermes_patch.records import JSONObject, ReportRecord

__all__ = ["FileChange", "ReportView", "StatusResult", "WriteResult", "view"]


@dataclass(frozen=True)
class ReportView:
    """A patch report as ``status`` shows it (also rebuilt from the ledger)."""

    id: str
    state: State
    reason: str
    enabled: bool
    notes: tuple[str, ...] = ()
    config_error: bool = False
    advice: tuple[str, ...] = ()

    def to_json(self) -> JSONObject:
        return {
            "id": self.id,
            "state": self.state.value,
            "reason": self.reason,
            "enabled": self.enabled,
            "notes": list(self.notes),
            "advice": list(self.advice),
        }

    def record(self) -> ReportRecord:
        """This view as a snapshot keeps it (:class:`~hermes_patch.records.ReportRecord`)."""
        from hermes_patch.records import ReportRecord

        return ReportRecord(
            self.id,
            self.state.value,
            self.reason,
            self.enabled,
            tuple(self.notes),
            tuple(self.advice),
            self.config_error,
        )


@dataclass(frozen=True)
class StatusResult:
    """What ``status`` reports: the target, one view per patch, warnings and advice.

    ``notes`` are warnings (an interrupted write, a dashboard running old
    code: something to act on; ``--strict`` counts them), ``advice`` is
    information (no proxy setting configured yet).
    """

    target: Target | Incoming
    sha256: str
    reports: tuple[ReportView, ...]
    notes: tuple[str, ...] = ()
    warm: bool = False
    advice: tuple[str, ...] = ()
    config: Config | None = None

    @property
    def warnings(self) -> bool:
        """Whether anything asks for action: a target warning or a warning of an enabled patch (``--strict``)."""
        return bool(self.notes) or any(r.notes for r in self.reports if r.enabled)

    @property
    def config_errors(self) -> list[str]:
        """The messages of enabled patches whose parameters are wrong (each a located paragraph)."""
        return [r.reason for r in self.reports if r.enabled and r.config_error]

    @property
    def exit_code(self) -> int:
        """0 all applied/not-needed, 1 any pending/drifted, 2 any unknown-shape (enabled patches)."""
        from hermes_patch.core.patch import State

        states = {r.state for r in self.reports if r.enabled}
        if State.UNKNOWN_SHAPE in states:
            return 2
        if states & {State.PENDING, State.DRIFTED}:
            return 1
        return 0


@dataclass(frozen=True)
class FileChange:
    """One file a write changes: its path and the sha256 of its bytes before and after."""

    path: Path
    before: str
    after: str


@dataclass(frozen=True)
class WriteResult:
    """What ``apply``/``revert`` did: the ids changed, the diff, the files written.

    ``before`` and ``after`` are every patch's report before the command and
    after it (predicted and proven for a dry run); ``files`` the files that
    change, with their sha256 before and after (see :mod:`hermes_patch.report`).
    ``make_diff`` returns the unified diff; :attr:`diff` calls it on first
    use only, because difflib over a 19k-line file costs about a third of a
    parse and a plain ``apply`` never prints it.
    """

    patch_ids: tuple[str, ...]
    make_diff: Callable[[], str] = field(repr=False, compare=False)
    written: tuple[Path, ...] = ()
    dry_run: bool = False
    notes: tuple[str, ...] = field(default=())
    before: tuple[ReportView, ...] = ()
    after: tuple[ReportView, ...] = ()
    files: tuple[FileChange, ...] = ()
    pruned: int = 0

    @cached_property
    def diff(self) -> str:
        """The unified diff of the write (``""`` when nothing changes)."""
        return self.make_diff()


def view(report: PatchReport) -> ReportView:
    """The view of an engine report (:class:`~hermes_patch.core.engine.PatchReport`) that ``status`` shows."""
    d = report.detection
    return ReportView(report.id, d.state, d.reason, report.enabled, d.notes, d.config_error, d.advice)
