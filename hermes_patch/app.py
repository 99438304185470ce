"""The application object: one per command, built by the CLI's root group.

It ties the pure engine to the outside world: it locates the target, reads
the configuration and the catalog, consults the ledger (drift, interrupted
writes, the warm ``status`` fast path), and performs writes as a journaled
transaction under a lock. Commands in :mod:`hermes_patch.cli` stay thin.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from hermes_patch import __version__
from hermes_patch.core.errors import ConfigError, HermesPatchError, RefusedError
from hermes_patch.core.source import sha256_hex
from hermes_patch.results import FileChange, ReportView, StatusResult, WriteResult, view

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from hermes_patch.config import Config
    from hermes_patch.core.engine import PatchReport, Plan, Refusal
    from hermes_patch.journal import Journal
    from hermes_patch.ledger import StateDir
    from hermes_patch.locate import Target
    from hermes_patch.core.patch import AnyPatch
    from hermes_patch.records import Commit, JournalEntry, Ledger, LedgerDoc, ReportRecord, TargetDoc, TargetRecord
    from hermes_patch.core.workspace import Workspace

__all__ = ["App"]


class App:
    """Everything one command needs, computed on first use.

    Args:
        file, python, root: target selection (see :func:`hermes_patch.locate.locate`).
        config_path: ``--config`` or ``None`` for the default location.
        state_dir: ``--state-dir`` or ``None`` for ``$HERMES_PATCH_STATE_DIR`` / the default.
    """

    def __init__(
        self,
        file: Path | None = None,
        python: Path | None = None,
        root: Path | None = None,
        config_path: Path | None = None,
        state_dir: Path | None = None,
        allow_version: bool = False,
    ) -> None:
        self._file, self._python, self._root = file, python, root
        self._config_path = config_path
        self._state_dir = state_dir
        self.pruned = 0  # backups the last write pruned
        self._allow_version = allow_version

    def fresh(self) -> "App":
        """A new App with the same options and nothing cached (after ``hermes update`` changed the release)."""
        return App(self._file, self._python, self._root, self._config_path, self._state_dir, self._allow_version)

    def with_config(self, config: Config) -> "App":
        """A new App with the same options that uses ``config`` (a :class:`~hermes_patch.config.Config`) instead of reading one."""
        app = self.fresh()
        app.__dict__["config"] = config
        return app

    # -- inputs --------------------------------------------------------------

    @cached_property
    def config(self) -> Config:
        from hermes_patch.config import load_config

        return load_config(self._config_path)

    @cached_property
    def catalog(self) -> list[type[AnyPatch]]:
        from hermes_patch.config import check_ids
        from hermes_patch.registry import discover

        classes = discover(list(self.config.patch_dirs))
        check_ids(self.config, [c.ID for c in classes])
        return classes

    @cached_property
    def patches(self) -> list[tuple[AnyPatch, bool]]:
        """(patch instance, enabled) in catalog order.

        A patch whose parameters are wrong is built with its defaults and
        its error (naming the file) is kept in :attr:`param_errors`: it then
        reports ``unknown-shape`` (a configuration error) on its own, and the
        other patches are detected and applied as usual.
        """
        out: list[tuple[AnyPatch, bool]] = []
        errors: dict[str, str] = {}
        for cls in self.catalog:
            try:
                patch = cls(self.config.params(cls.ID))
            except ConfigError as exc:
                errors[cls.ID] = str(self.config.error(str(exc)))
                patch = cls.__new__(cls)
                patch.params = {name: param.default for name, param in cls.PARAMS.items()}
            out.append((patch, self.config.enabled(cls.ID)))
        self.param_errors = errors
        return out

    #: patch id to the message of its parameter error (filled by :attr:`patches`).
    param_errors: dict[str, str] = {}

    @property
    def allow_version(self) -> bool:
        """Patch known shapes on releases outside a patch's range: ``--allow-version`` or ``allow_version = true``."""
        return self._allow_version or self.config.allow_version

    @cached_property
    def target(self) -> Target:
        from hermes_patch.locate import guard_target, locate

        given = self._file or self._python or self._root
        target = locate(self._file, self._python, self._root, None if given else self.config.python)
        guard_target(target)  # root on another user's tree: refuse before git or the interpreter run
        return target

    @cached_property
    def state(self) -> StateDir:
        from hermes_patch.ledger import StateDir, default_state_dir

        return StateDir(self._state_dir or default_state_dir(), tree_root=self.target.tree_root)

    @cached_property
    def key(self) -> str:
        from hermes_patch.ledger import target_key

        return target_key(self.target.package_dir)

    def workspace(self) -> Workspace:
        from hermes_patch.core.workspace import Workspace

        from hermes_patch.fileio import DiskFiles

        package = self.target.package_dir
        return Workspace(package, entry=self.target.entry, files=DiskFiles(package, self.target.entry))

    @cached_property
    def config_key(self) -> str:
        """Hash of everything besides the files that decides the reports (:func:`hermes_patch.snapshot.config_key`)."""
        from hermes_patch.snapshot import catalog_inputs, config_key

        config = self.config
        catalog = catalog_inputs(config.patch_dirs)
        if config.patch_dirs or catalog["entry_points"]:
            self.catalog  # noqa: B018 - user patches: their trust checks and import errors refuse as before
        settings = {
            "path": str(config.path),
            "exists": config.exists,
            "patch_dirs": [str(d) for d in config.patch_dirs],
            "allow_version": config.allow_version,
            "patches": config.patches,
        }
        return config_key(__version__, settings, catalog)

    def record(self, ledger: LedgerDoc | None = None) -> TargetDoc:
        """This target's ledger record as parsed JSON (``{}`` when none), for the integrations (git, hooks, restart).

        Raises:
            StateError: the ledger is unreadable or damaged (see :meth:`~hermes_patch.ledger.StateDir.load`).
        """
        ledger = ledger if ledger is not None else self.state.load()
        return ledger["targets"].get(self.key, {})

    @cached_property
    def journal(self) -> Journal:
        """Journaled writes to this target and their recovery."""
        from hermes_patch.journal import Journal

        return Journal(self.state, self.key, self.target)

    # -- detection -----------------------------------------------------------

    def detect(self, ws: Workspace, record: TargetRecord) -> list[PatchReport]:
        """Reports for ``ws``, with ``drifted`` for applied patches whose owned statements changed."""
        from hermes_patch.core.engine import PatchReport, detect_all, statement_drift

        reports = detect_all(ws, self.patches, self.target.version, self.param_errors, _earlier(record))
        reports = [
            PatchReport(r.patch, r.enabled, replace(r.detection, reason=str(self.config.error(r.detection.reason))))
            if r.detection.config_error and r.id not in self.param_errors
            else r
            for r in reports
        ]
        return statement_drift(ws, reports, {pid: rec.statements for pid, rec in (record.patches or {}).items()})

    def status(self) -> StatusResult:
        """Detect every patch; use the ledger's snapshot when nothing changed since our last write.

        Raises:
            TargetError, StateError, ConfigError: no target, a damaged ledger, a bad configuration.
        """
        from hermes_patch.snapshot import reusable

        target = self.target
        record = self.state.read().target(self.key)
        notes = list(self._record_notes(record))
        warm = reusable(record, lambda: self.config_key, target.package_dir, target.entry)
        views = _snapshot_views(warm.reports) if warm is not None else None
        if warm is not None and views is not None:
            notes.extend(self._foreign_note(dict(warm.files), known={v.id for v in views}))
            return StatusResult(
                target,
                warm.entry_sha256,
                views,
                tuple(notes),
                warm=True,
                advice=self._config_advice() + tuple(self._gate_note(_gated_from(views, record, self.config))),
                config=self.config,
            )
        ws = self.workspace()
        src = ws.entry_source()
        reports = self.detect(ws, record)
        notes.extend(self._replaced_note(record, src.sha256, reports))
        notes.extend(self._foreign_note({name: s.data for name, s in ws.loaded().items()}))
        return StatusResult(
            target,
            src.sha256,
            tuple(view(r) for r in reports),
            tuple(notes),
            advice=self._config_advice() + tuple(self._gate_note()),
            config=self.config,
        )

    def _config_advice(self) -> tuple[str, ...]:
        """Advice when no proxy setting (hosts, origins, trusted_proxies) is configured: point at ``setup``."""
        from hermes_patch.setup import PROXY_SETTINGS, proxy_settings_configured

        if proxy_settings_configured(self.config):
            return ()
        where = str(self.config.path) if self.config.exists else f"none: defaults ({self.config.path} does not exist)"
        names = ", ".join(f"{key} ([patches.{pid}])" for pid, key in PROXY_SETTINGS)
        return (
            f"no proxy setting is configured ({names} are empty; configuration {where}). A dashboard that a browser "
            "reaches through a reverse proxy by a public name needs them: `hermes-patch setup --url https://your.proxy.name` "
            "writes them",
        )

    def _gate_note(self, opened: list[str] | None = None) -> list[str]:
        """Advice when trusted-hosts or cors-origins is configured: the proxy is then the only gate.

        Advice, not a warning: it holds for as long as hosts are configured,
        whatever the operator does, so it must not fail ``status --strict``
        (the README's CI recipe passes with hosts set).

        On the bind these patches serve (loopback, or any bind without
        upstream's OAuth/basic-auth gate) the dashboard embeds its session
        token in the page it serves, so whoever the proxy lets through holds
        the token and the whole dashboard (docs/threat-model.md).
        """
        if opened is None:
            opened = [
                f"{p.ID} ({', '.join(p.params[key])})"
                for p, enabled in self.patches
                for key in _GATED.get(p.ID, "").split() or []
                if enabled and p.params.get(key)
            ]
        if not opened:
            return []
        return [
            f"{' and '.join(opened)} let requests through your reverse proxy reach a dashboard without upstream's auth gate: "
            "anyone the proxy lets through can read the session token from the page and gets the whole dashboard "
            "(configuration, keys, actions); make the proxy authenticate (SSO, basic auth, tailnet ACLs) or use upstream's "
            "auth gate where the release has one (docs/threat-model.md)"
        ]

    def _foreign_note(self, files: dict[str, bytes], known: set[str] | None = None) -> list[str]:
        """A note for marker comments of patches the catalog does not have (a user patch no longer configured).

        ``known``: the catalog's ids (default: :attr:`patches`; a warm ``status`` has them from the snapshot).
        """
        import re

        if known is None:
            known = {p.ID for p, _ in self.patches}
        found: dict[str, set[str]] = {}
        for name, data in files.items():
            if b"# hermes-patch: " not in data:
                continue
            marker = re.compile(rb"[ \t]*# hermes-patch: ([a-z0-9][a-z0-9-]*)")
            at = data.find(b"# hermes-patch: ")
            while at != -1:  # only lines holding the prefix are matched (a regex over 19k lines costs 10 ms)
                match = marker.match(data, data.rfind(b"\n", 0, at) + 1)
                if match:
                    pid = match.group(1).decode()
                    if pid not in known:
                        found.setdefault(pid, set()).add(name)
                at = data.find(b"# hermes-patch: ", at + 1)
        return [
            f"{', '.join(sorted(files_))} {'holds' if len(files_) == 1 else 'hold'} blocks of the patch {pid}, which is not in the catalog of this "
            f"run (a user patch from another configuration?); run hermes-patch with that configuration to "
            f"revert it"
            for pid, files_ in sorted(found.items())
        ]

    def record_auto_refusal(self, source: str, message: str) -> None:
        """Remember that an automatic ``apply`` (``source``: a git hook, a systemd unit, ``update``) refused.

        Kept in this target's ledger record until an ``apply`` succeeds;
        ``status`` shows it as a note. Best effort: when even the state
        directory cannot be written, the caller's stderr line is all there is.
        """
        import datetime

        from hermes_patch.records import AutoRefusal

        try:
            with self.state.lock(self.key):
                ledger = self.state.read()
                when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
                refusal = AutoRefusal(when, source, message, self.target.version)
                self.state.write(ledger.with_target(self.key, replace(ledger.target(self.key), auto_refusal=refusal)))
        except HermesPatchError:
            pass

    def _clear_auto_refusal(self) -> None:
        """Forget a recorded automatic refusal (an apply succeeded); call with the lock held."""
        ledger = self.state.read()
        record = ledger.targets.get(self.key)
        if record is not None and record.auto_refusal is not None:
            self.state.write(ledger.with_target(self.key, replace(record, auto_refusal=None)))

    def _record_notes(self, record: TargetRecord) -> list[str]:
        notes = []
        refusal = record.auto_refusal
        if refusal:
            notes.append(
                f"the last automatic apply ({refusal.when}, from {refusal.source}) refused: "
                f"{refusal.message} The dashboard runs without these patches until `hermes-patch apply` succeeds."
            )
        if record.pending:
            notes.append(
                f"an interrupted {record.pending.kind} was found in the ledger; "
                "`hermes-patch apply` or `hermes-patch revert` completes it"
            )
        if self.target.read_only:
            notes.append(f"read-only: {self.target.read_only}")
        for tmp in self.journal.stale_temp_files():
            notes.append(
                f"{tmp} is a temporary file left by an interrupted hermes-patch write; `hermes-patch apply` or `hermes-patch revert` removes it"
            )
        return notes

    def _replaced_note(self, record: TargetRecord, sha: str, reports: Sequence[PatchReport]) -> list[str]:
        from hermes_patch.core.patch import State

        entry = record.known_files.get(self.target.entry)
        if not entry or entry.patched == sha:
            return []
        if any(r.state in (State.APPLIED, State.DRIFTED) for r in reports):
            return []
        old = record.known_version
        return [
            f"{self.target.entry} was replaced since hermes-patch last wrote it"
            + (f" (release {old} → {self.target.version})" if old and old != self.target.version else "")
            + "; the old backup will not be restored over it"
        ]

    # -- writes --------------------------------------------------------------

    def _guard_writable(self) -> None:
        t = self.target
        if t.read_only:
            managed = {"nix": "NixOS", "homebrew": "Homebrew"}.get(t.install_method)
            from hermes_patch.core.messages import RUN_AS_OWNER, Failure

            raise RefusedError(
                Failure(
                    f"cannot write {t.file}: {t.read_only}",
                    t.file,
                    cause=f"this is a {managed}-managed install; change it through {managed} instead"
                    if managed
                    else "",
                    next_command=f"{RUN_AS_OWNER}, or use `hermes-patch diff` to see the edit",
                )
            )

    def apply(self, ids: list[str] | None = None, dry_run: bool = False) -> WriteResult:
        """Apply pending patches (all enabled, or ``ids``). See the README for the proofs run first."""
        from hermes_patch.core.engine import plan_apply

        self._check_ids(ids)
        if dry_run:
            ws = self.workspace()
            record = self.state.read().target(self.key)
            reports = self.detect(ws, record)
            plan = self._planned(plan_apply(ws, reports, set(ids) if ids else None, self.fast, self.allow_version))
            new_reports = self._prove(ws, plan, record)
            notes = tuple(self._replaced_note(record, ws.entry_source().sha256, reports))
            return self._result(plan, reports, new_reports, dry_run=True, notes=notes)
        self._guard_writable()
        with self.state.lock(self.key):
            self.journal.recover()
            ws = self.workspace()
            ledger = self.state.read()
            record = ledger.target(self.key)
            reports = self.detect(ws, record)
            plan = self._planned(plan_apply(ws, reports, set(ids) if ids else None, self.fast, self.allow_version))
            new_reports = self._prove(ws, plan, record)
            notes = tuple(
                self._replaced_note(record, ws.entry_source().sha256, reports)
            )  # before _write updates the record
            if plan.empty:
                self._clear_auto_refusal()
                return self._result(plan, reports, new_reports, notes=notes)
            written = self._write(ws, plan, new_reports, ledger)
            self._clear_auto_refusal()
            return self._result(plan, reports, new_reports, written, notes=notes)

    def revert(self, ids: list[str] | None = None, force: bool = False, dry_run: bool = False) -> WriteResult:
        """Remove our blocks (all patches, or ``ids``); refuses drifted patches unless ``force``."""
        from hermes_patch.core.engine import plan_revert

        self._check_ids(ids)
        if not dry_run:
            self._guard_writable()
        lock: AbstractContextManager[None] = self.state.lock(self.key) if not dry_run else nullcontext()
        with lock:
            if not dry_run:
                self.journal.recover()
            ws = self.workspace()
            ledger = self.state.read()
            record = ledger.target(self.key)
            reports = self.detect(ws, record)
            plan = self._planned(plan_revert(ws, reports, only=set(ids) if ids else None, force=force))
            new_reports = self._prove(ws, plan, record)
            notes = tuple(self._replaced_note(record, ws.entry_source().sha256, reports))
            if plan.empty or dry_run:
                return self._result(plan, reports, new_reports, dry_run=dry_run, notes=notes)
            written = self._write(ws, plan, new_reports, ledger)
            return self._result(plan, reports, new_reports, written, notes=notes)

    def _result(
        self,
        plan: Plan,
        reports: Sequence[PatchReport],
        new_reports: Sequence[PatchReport],
        written: tuple[Path, ...] = (),
        dry_run: bool = False,
        notes: tuple[str, ...] = (),
    ) -> WriteResult:
        """The :class:`WriteResult` of ``plan``: reports before/after and each changed file's hashes."""
        files = tuple(
            FileChange(plan.before[n].path, plan.before[n].sha256, sha256_hex(data))
            for n, data in sorted(plan.new_bytes().items())
        )
        return WriteResult(
            plan.patch_ids if not plan.empty else (),
            lambda: self._diff(plan),
            written,
            dry_run,
            notes,
            tuple(view(r) for r in reports),
            tuple(view(r) for r in new_reports),
            files,
            pruned=self.pruned if written else 0,
        )

    def diff(self, ids: list[str] | None = None) -> str:
        """The unified diff ``apply`` would write (empty when nothing is pending)."""
        return self.apply(ids, dry_run=True).diff

    def _check_ids(self, ids: list[str] | None) -> None:
        if not ids:
            return
        known = {p.ID for p, _ in self.patches}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise RefusedError(
                f"no patch has the id {', '.join(unknown)}. Known ids: {', '.join(sorted(known))} (`hermes-patch list`)."
            )

    @property
    def fast(self) -> bool:
        """The engine's fast path (libcst on the edited statements only); ``HERMES_PATCH_NO_FAST_PATH=1`` turns it off."""
        return not os.environ.get("HERMES_PATCH_NO_FAST_PATH")

    @staticmethod
    def _planned(plan: Plan | Refusal) -> Plan:
        """``plan``, or the exception of the engine's :class:`~hermes_patch.core.engine.Refusal`."""
        from hermes_patch.core.engine import Refusal

        if isinstance(plan, Refusal):
            raise plan.error()
        return plan

    def _prove(self, ws: Workspace, plan: Plan, record: TargetRecord) -> list[PatchReport]:
        from hermes_patch.core.engine import prove

        return prove(
            ws, plan, self.patches, self.target.version, self.fast, errors=self.param_errors, earlier=_earlier(record)
        )

    def _diff(self, plan: Plan) -> str:
        import difflib

        out: list[str] = []
        for name, new in sorted(plan.after.items()):
            old = plan.before[name].text
            path = str(plan.before[name].path)
            out.extend(
                difflib.unified_diff(
                    old.splitlines(keepends=True),
                    new.splitlines(keepends=True),
                    f"a{path}" if path.startswith("/") else f"a/{path}",
                    f"b{path}" if path.startswith("/") else f"b/{path}",
                )
            )
        return "".join(
            line if line.endswith(("\n", "\r")) else line + "\n\\ No newline at end of file\n" for line in out
        )

    def _write(self, ws: Workspace, plan: Plan, new_reports: Sequence[PatchReport], ledger: Ledger) -> tuple[Path, ...]:
        """Write ``plan`` as a journaled transaction (:meth:`hermes_patch.journal.Journal.write`); sets :attr:`pruned`."""
        from hermes_patch.journal import FileWrite

        new_ws = ws.with_edits(plan.after)
        files = [
            FileWrite(name, plan.before[name].path, plan.before[name].data, data, plan.before[name].sha256)
            for name, data in plan.new_bytes().items()
        ]
        done = self.journal.write(
            ledger,
            plan.kind,
            files,
            lambda journal: self._commit_record(new_ws, new_reports, journal, ledger.target(self.key)),
            _GitWrite(self, new_ws),
        )
        self.pruned = done.pruned
        return done.paths

    def _commit_record(
        self,
        new_ws: Workspace,
        new_reports: Sequence[PatchReport],
        journal: Mapping[str, JournalEntry],
        before: TargetRecord,
    ) -> Commit:
        """What a write of ``new_ws`` records: the files' hashes, each applied patch, the snapshot for ``status``.

        A patch left out of the write whose block is still the one its last
        apply rendered (pending, to be re-applied with new parameters) keeps
        its record from ``before``, so the next command still knows the block
        is ours.
        """
        from hermes_patch.core.engine import owned_statements
        from hermes_patch.core.patch import State
        from hermes_patch.records import Commit, FileHashes, PatchRecord, Snapshot

        patches = {
            r.id: PatchRecord(
                {k: list(v) if isinstance(v, tuple) else v for k, v in r.patch.params.items()},
                {k: v[0] for k, v in owned_statements(new_ws, r.id).items()},
            )
            for r in new_reports
            if r.state is State.APPLIED
        }
        kept = before.patches or {}
        patches.update(
            {
                r.id: kept[r.id]
                for r in new_reports
                if r.state is State.PENDING and r.detection.replace and r.id in kept and r.id not in patches
            }
        )
        reports = tuple(view(r).record() for r in new_reports)
        return Commit(
            self.target.version,
            {name: FileHashes(j.original, j.after) for name, j in journal.items()},
            patches,
            Snapshot(self.config_key, {name: src.sha256 for name, src in new_ws.loaded().items()}, reports),
        )


class _GitWrite:
    """The git integration's part in a write (:class:`hermes_patch.journal.Integration`)."""

    def __init__(self, app: App, written: Workspace) -> None:
        self.app, self.written = app, written

    def before_write(self, ledger: LedgerDoc, record: TargetDoc, names: list[str], kind: str) -> None:
        from hermes_patch.integrations import git_filter

        git_filter.prepare_write(self.app, ledger, record, names, kind)  # git installs: hide our edits from git first

    def after_write(self, ledger: LedgerDoc, record: TargetDoc) -> None:
        from hermes_patch.integrations import git_filter

        git_filter.finish_write(self.app, ledger, record, self.written)


def _earlier(record: TargetRecord) -> dict[str, dict[str, object]]:
    """The parameters each patch was last applied with (the ledger's), so a block rendered from them is ours."""
    return {pid: dict(rec.params) for pid, rec in (record.patches or {}).items()}


#: The patches whose parameter opens the dashboard to the proxy (the gate advice), and that parameter.
_GATED = {"trusted-hosts": "hosts", "cors-origins": "origins"}


def _gated_from(views: tuple[ReportView, ...], record: TargetRecord, config: Config) -> list[str] | None:
    """The gate advice's patches from a reused snapshot, without loading the catalog; ``None`` when it cannot tell.

    A patch with nothing configured for its parameter has none (a missing
    or empty value parses to the empty default, a wrong one is replaced by
    it). Otherwise the normalized value is the one the write that took the
    snapshot recorded for the applied patch (same key, same configuration);
    a patch not applied was not recorded, and the catalog answers.
    """
    from hermes_patch.core.patch import State

    opened = []
    for shown in views:
        key = _GATED.get(shown.id)
        if key is None or not shown.enabled or not config.params(shown.id).get(key):
            continue
        recorded = (record.patches or {}).get(shown.id)
        values = recorded.params.get(key) if recorded is not None and shown.state is State.APPLIED else None
        if not isinstance(values, (list, tuple)):
            return None
        if values:
            opened.append(f"{shown.id} ({', '.join(str(v) for v in values)})")
    return opened


def _snapshot_views(reports: tuple[ReportRecord, ...]) -> tuple[ReportView, ...] | None:
    """The views a snapshot recorded, or ``None`` when one names a state this release does not know."""
    from hermes_patch.core.patch import State

    try:
        return tuple(
            ReportView(r.id, State(r.state), r.reason, r.enabled, r.notes, bool(r.config_error), tuple(r.advice or ()))
            for r in reports
        )
    except ValueError:
        return None
