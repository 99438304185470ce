"""What a command hands to the integrations (git, hooks, systemd, restart, update, verify, check).

The integrations never see the :class:`~hermes_patch.app.App`: each takes
the narrow protocol it uses, so its needs are written down and a test can
pass any object that has them. :class:`~hermes_patch.app.App` has them all;
everything is computed on first use there, so a command that never reaches
the configuration (``hook uninstall``) does not read it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from hermes_patch.records import LedgerDoc, TargetDoc
    from hermes_patch.results import StatusResult, WriteResult
    from hermes_patch.config import Config
    from hermes_patch.ledger import StateDir
    from hermes_patch.locate import Target
    from hermes_patch.core.patch import AnyPatch
    from hermes_patch.core.workspace import Workspace

__all__ = ["Context", "Catalog", "Inspection", "Session"]


class Context(Protocol):
    """The target, its ledger record and lock in the state dir, and the configuration file.

    What git, the hooks, systemd drop-ins, the session token file and the
    restart advice need.
    """

    @property
    def target(self) -> Target: ...

    @property
    def state(self) -> StateDir: ...

    @property
    def key(self) -> str:
        """The target's key in the ledger."""
        ...

    @property
    def config(self) -> Config: ...

    def record(self, ledger: LedgerDoc | None = None) -> TargetDoc:
        """The target's ledger record (a JSON object; empty when there is none)."""
        ...


class Catalog(Protocol):
    """The patches of this run, with what the configuration says about each (``check`` reads code with them)."""

    @property
    def target(self) -> Target: ...

    @property
    def patches(self) -> list[tuple[AnyPatch, bool]]:
        """(patch, enabled) in catalog order."""
        ...

    @property
    def param_errors(self) -> dict[str, str]:
        """Patch id to the message of its parameter error (filled by :attr:`patches`)."""
        ...

    @property
    def config(self) -> Config: ...


class Inspection(Catalog, Protocol):
    """A catalog that also reads the installed target: what ``verify`` needs."""

    def status(self) -> StatusResult: ...

    def workspace(self) -> Workspace: ...


class Session(Context, Catalog, Protocol):
    """Everything ``hermes-patch update`` drives: the writes, the status, a fresh start after the release changed."""

    def status(self) -> StatusResult: ...

    def apply(self) -> WriteResult: ...

    def revert(self) -> WriteResult: ...

    def fresh(self) -> Session:
        """The same options with nothing cached (after ``hermes update`` changed the release)."""
        ...

    def record_auto_refusal(self, source: str, message: str) -> None: ...
