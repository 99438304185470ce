"""The core: detect, plan, prove. Text in, outcomes out; no writes, no environment.

The fast path (default) hands libcst only the top-level statements a patch
edits, found with the standard ``ast`` module, and splices the results back
by line; ``HERMES_PATCH_NO_FAST_PATH=1`` (or ``fast=False``) parses whole
modules with libcst instead (the shell reads that variable and passes
``fast``). Both must give identical bytes; the test suite checks that on
every real release.

A refusal (a drifted or unknown-shape patch, a parameter that does not fit)
is an outcome, :class:`Refusal`, not an exception; exceptions are for input
we cannot read and for a failed proof (a bug).

Every plan is proven before the shell may write it (:func:`prove`): the
result compiles, detects as applied, a second run changes nothing, and
removing our blocks gives back the original bytes.
"""

from __future__ import annotations

import ast
import json
import textwrap
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Literal, Mapping

if TYPE_CHECKING:
    import libcst

from packaging.version import InvalidVersion, Version

from hermes_patch.core.messages import NOTHING_CHANGED, UPGRADE, report_bug
from hermes_patch.core.errors import ConfigError, RefusedError, TargetError, VerificationError
from hermes_patch.core.edits import BadParams, Change, Edit, NotNeeded, Unrecognized, place, render
from hermes_patch.core.patch import AnyPatch, Block, Check, Detection, Site, State, remove_blocks
from hermes_patch.core.source import Source, first_line, sha256_hex
from hermes_patch.core.workspace import Workspace

__all__ = [
    "PatchReport",
    "Plan",
    "detect_all",
    "plan_apply",
    "plan_revert",
    "prove",
    "Refusal",
    "blocks_of",
    "owned_statements",
    "statement_drift",
]


@dataclass(frozen=True)
class Refusal:
    """An expected "no" from :func:`plan_apply` or :func:`plan_revert`; nothing may be written.

    Attributes:
        kind: ``"config"`` (a selected patch's parameters do not fit this
            release) or ``"refused"`` (a patch is drifted, of unknown shape,
            or outside its version range).
        message: the one-paragraph explanation with the next command.
    """

    kind: str
    message: str

    def error(self) -> ConfigError | RefusedError:
        """The exception the CLI reports for this refusal (exit 2)."""
        return ConfigError(self.message) if self.kind == "config" else RefusedError(self.message)


@dataclass(frozen=True)
class PatchReport:
    """One patch's detection, with whether the configuration enables it."""

    patch: AnyPatch
    enabled: bool
    detection: Detection

    @property
    def id(self) -> str:
        return self.patch.ID

    @property
    def state(self) -> State:
        return self.detection.state


@dataclass(frozen=True)
class Plan:
    """Edits ready to verify and write.

    Attributes:
        before: file name to the :class:`Source` the plan starts from.
        after: file name to the new text, only for files that change.
        patch_ids: the patches the plan applies or reverts.
        expect: for apply, the state each patch must detect as afterwards
            when it is not ``applied``: a re-apply whose new configuration
            needs no edit (e.g. ``trusted_proxies`` emptied on a release that
            already has the bind rule) only removes the old blocks and must
            end ``not-needed``.
    """

    before: dict[str, Source]
    after: dict[str, str]
    patch_ids: tuple[str, ...]
    kind: Literal["apply", "revert"] = "apply"
    reports: tuple[PatchReport, ...] = field(default=())
    expect: dict[str, State] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.after

    def new_bytes(self) -> dict[str, bytes]:
        """File name to the bytes to write."""
        return {name: self.before[name].encode(text) for name, text in self.after.items()}


def _version_ok(patch: AnyPatch, version: str | None) -> str | None:
    if version is None:
        return None
    try:
        parsed = Version(version)
    except InvalidVersion:
        return f"release version {version!r} is not a PEP 440 version"
    if not patch.specifier().contains(parsed, prereleases=True):
        return f"release {version} is outside this patch's supported range {patch.VERSIONS}"
    return None


def detect_all(
    workspace: Workspace,
    patches: Iterable[tuple[AnyPatch, bool]],
    version: str | None,
    errors: dict[str, str] | None = None,
    earlier: dict[str, dict[str, object]] | None = None,
) -> list[PatchReport]:
    """Detect every patch on ``workspace``; one patch's problem never hides another's report.

    Args:
        patches: (patch, enabled) pairs, in catalog order.
        version: the release version (``"0.19.0"``), or ``None`` if unknown.
        errors: patch id to the message of a parameter error found when the
            patch was configured; that patch reports ``unknown-shape`` with
            ``config_error`` set and is not asked.

    Returns:
        One :class:`PatchReport` per patch, in the same order. A parameter
        that does not fit this release (``ConfigError`` from
        :meth:`Patch.detect`) becomes that patch's report, as above. A
        release outside the patch's :attr:`~Patch.VERSIONS` is a fact, not a
        wall: the code is still detected; a known shape keeps its state with
        ``out_of_range`` set and a note, and an unknown one says both.

    Raises:
        TargetError: see :meth:`Patch.detect`.
    """
    reports = []
    for patch, enabled in patches:
        if errors and patch.ID in errors:
            reports.append(
                PatchReport(patch, enabled, Detection(State.UNKNOWN_SHAPE, errors[patch.ID], config_error=True))
            )
            continue
        try:
            detection = detect_data(patch, workspace, (earlier or {}).get(patch.ID))
        except ConfigError as exc:  # a parameter that does not fit this release: this patch only
            detection = Detection(State.UNKNOWN_SHAPE, str(exc), config_error=True)
        out_of_range = _version_ok(patch, version)
        if out_of_range and not detection.config_error:
            if detection.state is State.UNKNOWN_SHAPE:
                detection = replace(detection, reason=f"{detection.reason}; also, {out_of_range}")
            else:
                warning = f"{out_of_range}, but the code has a shape this patch knows" + (
                    "; `hermes-patch apply --allow-version` (or `allow_version = true` in the configuration) patches it anyway"
                    if detection.state is State.PENDING
                    else ""
                )
                detection = replace(detection, out_of_range=out_of_range, notes=detection.notes + (warning,))
        reports.append(PatchReport(patch, enabled, detection))
    return reports


def _detect_one(patch: AnyPatch, workspace: Workspace) -> Detection:
    return detect_data(patch, workspace)


def checks_of(patch: AnyPatch, workspace: Workspace) -> tuple[Check, ...]:
    """The checks ``hermes-patch verify`` runs for ``patch``: :meth:`Patch.checks` of what it finds in the release as shipped."""
    found = _located(patch, workspace)
    return () if isinstance(found, Unrecognized) else patch.checks(found)


def _located(patch: AnyPatch, workspace: Workspace) -> object:
    """``patch.locate`` on the release as shipped, once per workspace and patch class (it ignores parameters).

    The result of an edit (:meth:`Workspace.with_edits`, what a proof re-detects) takes the answer of the
    workspace it was made from when its own release-as-shipped view holds the very same sources
    (identical objects: the same text, parsed once) for every file that view had read, and lacks the
    same files: ``locate()`` reads nothing else, so it would answer the same.
    """
    pristine = workspace.pristine()
    cache: dict[type, object] = pristine.__dict__.setdefault("_located", {})
    kind = type(patch)
    if kind not in cache:
        inputs: dict[type, tuple[dict[str, Source], frozenset[str]]] = pristine.__dict__.setdefault(
            "_located_inputs", {}
        )
        earlier = pristine.derived_from()
        seen = earlier.__dict__.get("_located_inputs", {}).get(kind) if earlier is not None else None
        if earlier is not None and seen is not None and _same_sources(pristine, *seen):
            cache[kind], inputs[kind] = earlier.__dict__["_located"][kind], seen
        else:
            cache[kind] = patch.locate(pristine)
            inputs[kind] = (pristine.loaded(), pristine.missing())
    return cache[kind]


def _same_sources(pristine: Workspace, sources: dict[str, Source], missing: frozenset[str]) -> bool:
    try:
        return all(pristine.source(name) is src for name, src in sources.items()) and all(
            pristine.source(name) is None for name in missing
        )
    except TargetError:  # a file this patch may not read: locate() decides, as without the shortcut
        return False


def _splice(workspace: Workspace, patch_id: str, edits: Iterable[Edit]) -> dict[str, str] | str:
    """File name to the text of ``workspace`` with ``edits`` rendered and inserted, or why an edit has no place."""
    by_file: dict[str, list[tuple[int, str]]] = {}
    for edit in edits:
        src = workspace.source(edit.at.file)
        where = place(src, edit) if src is not None else None
        if src is None or where is None:
            return f"{edit.at.describe()} in {edit.at.file}: the anchor of our {edit.what} is missing"
        by_file.setdefault(edit.at.file, []).append(
            (where.line, render(patch_id, edit, where.unit, where.indent, src.newline))
        )
    out: dict[str, str] = {}
    for name, inserts in by_file.items():
        src = workspace.source(name)
        assert src is not None
        pieces, pos = [], 0
        for line, block in sorted(inserts, key=lambda x: x[0]):
            at = src.line_starts[min(line, len(src.line_starts)) - 1]
            pieces += [src.text[pos:at], block]
            pos = at
        pieces.append(src.text[pos:])
        out[name] = "".join(pieces)
    return out


def _outcome(patch: AnyPatch, found: object) -> Change | NotNeeded | BadParams | str:
    """``patch.edits(found)``, or why it is not an outcome (a bug in the patch, reported as its state)."""
    outcome = patch.edits(found)
    if not isinstance(outcome, (Change, NotNeeded, BadParams)):
        return f"its edits() returned {str(repr(outcome))[:80]}, not a Change, NotNeeded or BadParams"
    if isinstance(outcome, Change):
        for edit in outcome.edits:
            problem = _edit_problem(edit)
            if problem:
                return f"its {edit.what} ({edit.at.describe()}) {problem}"
    return outcome


def _edit_problem(edit: Edit) -> str | None:
    """Why ``edit`` cannot be inserted as it is, else ``None``: its code must be one statement, its note one line.

    Checked before libcst sees the code, so that a patch's mistake is named
    as the patch's, not blamed on the target file (helper-22).
    """
    if "\n" in edit.note or "\r" in edit.note:
        return "has a line break in its note (the marker comment is one line)"
    code = edit.code.strip("\n")
    try:
        body = ast.parse(textwrap.dedent(code) if edit.verbatim else code).body
    except SyntaxError as exc:
        return f"is not valid Python ({exc.msg}, line {exc.lineno} of its code)"
    if len(body) != 1:
        return f"holds {len(body)} statements where an edit inserts one"
    return None


def detect_data(patch: AnyPatch, workspace: Workspace, earlier: dict[str, object] | None = None) -> Detection:
    """The state of a patch written as data (:meth:`Patch.locate` / :meth:`Patch.edits`), decided by the engine.

    ``locate`` runs on the release as shipped (every hermes-patch block
    removed). A shape ``locate`` does not know is ``unknown-shape`` with or
    without our blocks (as every patch decided before: an upstream edit
    after apply is reported as what it is, the shape, not as drift). With
    none of this patch's blocks in the files, the state is the patch's
    answer: ``not-needed`` or ``pending``. With blocks, the file (other patches' blocks removed) is compared with
    the release plus this patch's rendered edits: equal is ``applied``;
    equal to the rendering of ``earlier`` parameters (the last apply's, from
    the ledger) or of the defaults is ``pending`` (re-apply replaces it);
    anything else is ``drifted``, a hand edit we will not guess about.

    Raises:
        TargetError: a file cannot be read, or a marker is orphaned.
    """
    found = _located(patch, workspace)
    outcome = BadParams("") if isinstance(found, Unrecognized) else _outcome(patch, found)
    files = set(workspace.loaded())
    if isinstance(outcome, Change):
        files.update(e.at.file for e in outcome.edits)
    mine = blocks_of(workspace, patch.ID, sorted(f for f in files if workspace.source(f) is not None))
    if isinstance(found, Unrecognized):
        return Detection(State.UNKNOWN_SHAPE, found.reason)
    if isinstance(outcome, str):
        return Detection(
            State.UNKNOWN_SHAPE,
            f"the patch {patch.ID} is broken: {outcome}; this is a bug in the patch, not in the Hermes files",
            patch_bug=True,
        )
    if isinstance(outcome, BadParams):
        return Detection(State.UNKNOWN_SHAPE, outcome.reason, config_error=True)
    notes, advice = outcome.notes, outcome.advice
    if not mine:
        if isinstance(outcome, NotNeeded):
            return Detection(State.NOT_NEEDED, outcome.reason, notes=notes, advice=advice)
        sites = _sites(workspace, outcome.edits)
        if isinstance(sites, str):
            return Detection(State.UNKNOWN_SHAPE, sites)
        return Detection(State.PENDING, outcome.pending, sites=sites, notes=notes, advice=advice)
    view = _view(workspace, patch.ID, set(mine) | (files & set(workspace.loaded())))
    pristine = workspace.pristine()
    if isinstance(outcome, Change):
        expected = _splice(pristine, patch.ID, outcome.edits)
        if not isinstance(expected, str) and _same(view, expected, pristine):
            return Detection(State.APPLIED, outcome.applied, notes=notes, advice=advice)
    for params in ({} if earlier is None else earlier, {}):
        try:
            other = patch.with_params(dict(params))
        except ConfigError:
            continue
        if other.params == patch.params:
            continue
        before = _outcome(other, found)
        if isinstance(before, Change):
            expected = _splice(pristine, patch.ID, before.edits)
            if not isinstance(expected, str) and _same(view, expected, pristine):
                changed = [name for name in patch.params if other.params.get(name) != patch.params[name]]
                then, now = _settings(other.params, changed), _settings(patch.params, changed)
                todo = (
                    "and `hermes-patch apply` rewrites the edit"
                    if isinstance(outcome, Change)
                    else "which needs no edit: `hermes-patch apply` removes it"
                )
                return Detection(
                    State.PENDING,
                    f"applied with {then}; the configuration now has {now}, {todo}",
                    replace=True,
                    notes=notes,
                    advice=advice,
                )
    reason = _drift(workspace, patch, mine, outcome)
    if earlier is None and patch.PARAMS:
        reason += (
            "; the state dir holds no record of the last apply (a new --state-dir, or the ledger was moved), so a "
            f"block hermes-patch wrote with other parameters looks the same: `hermes-patch revert --force {patch.ID}` "
            "then `hermes-patch apply` writes it again from the configuration"
        )
    return Detection(State.DRIFTED, reason)


def _settings(params: dict[str, object], names: list[str]) -> str:
    """``hosts = ["a", "b"]``: parameters as the configuration file spells them, for reasons."""

    def toml(value: object) -> str:
        if isinstance(value, (tuple, list)):
            return "[" + ", ".join(toml(v) for v in value) + "]"
        if isinstance(value, bool):
            return "true" if value else "false"
        return json.dumps(value) if isinstance(value, (str, int, float)) else repr(value)

    return ", ".join(
        f"{name} = {toml(params.get(name))}" if params.get(name) is not None else f"{name} unset (the default)"
        for name in names
    )


def _view(workspace: Workspace, patch_id: str, files: set[str]) -> dict[str, str]:
    """Text of ``files`` with every block but ``patch_id``'s removed."""
    out = {}
    for name in files:
        src = workspace.source(name)
        if src is None:
            continue
        others = [b for b in workspace.blocks(name) if b.patch_id != patch_id]
        out[name] = remove_blocks(src.text, src.line_starts, others) if others else src.text
    return out


def _same(view: dict[str, str], expected: dict[str, str], pristine: Workspace) -> bool:
    for name, text in view.items():
        want = expected.get(name)
        if want is None:
            src = pristine.source(name)
            want = src.text if src is not None else None
        if text != want:
            return False
    return all(name in view for name in expected)


def _drift(workspace: Workspace, patch: AnyPatch, mine: dict[str, list[Block]], outcome: object) -> str:
    """Why our blocks are not what the patch writes (for ``drifted``): the first block that differs."""
    edits = outcome.edits if isinstance(outcome, Change) else ()
    count = sum(len(b) for b in mine.values())
    if count != len(edits):
        return (
            f"{count} {patch.ID} block(s) found where the current configuration writes {len(edits)}; "
            "they were edited or added after hermes-patch wrote them"
        )
    pristine = workspace.pristine()
    for edit in edits:
        src = pristine.source(edit.at.file)
        where = place(src, edit) if src is not None else None
        blocks = mine.get(edit.at.file, [])
        if where is None or not blocks:
            return f"our {edit.what} {edit.at.describe()} in {edit.at.file} is missing or no longer has its anchor"
        text = render(patch.ID, edit, where.unit, where.indent, src.newline)  # type: ignore[union-attr]
        raw = workspace.source(edit.at.file)
        assert raw is not None
        if not any(raw.lines(b.first, b.last) == text for b in blocks):
            line = blocks[0].marker
            return (
                f"our {edit.what} {edit.at.describe()} (near line {line} of {edit.at.file}) differs from what "
                "hermes-patch writes there now: it was edited after hermes-patch wrote it, the code it is made from "
                "changed, or it no longer sits where it belongs"
            )
    return "our blocks no longer sit where the patch puts them (the code around them was edited)"


def _sites(workspace: Workspace, edits: Iterable[Edit]) -> tuple[Site, ...] | str:
    """The top-level statements libcst edits for ``edits`` on ``workspace``, or why an anchor is missing."""
    sites = []
    for edit in edits:
        src = workspace.source(edit.at.file)
        where = place(src, edit) if src is not None else None
        if where is None:
            return f"{edit.at.describe()} in {edit.at.file}: the anchor of the {edit.what} is missing"
        sites.append(Site(edit.at.file, repr(edit), where.first, where.last))
    return tuple(sites)


def blocks_of(workspace: Workspace, patch_id: str, files: Iterable[str] | None = None) -> dict[str, list[Block]]:
    """Our marked blocks of ``patch_id`` per loaded file (files without any left out).

    Raises:
        TargetError: a marker comment is orphaned (hand-edited).
    """
    found: dict[str, list[Block]] = {}
    names = list(files) if files is not None else list(workspace.loaded())
    for name in names:
        blocks = [b for b in workspace.blocks(name) if b.patch_id == patch_id]
        if blocks:
            found[name] = blocks
    return found


def owned_statements(workspace: Workspace, patch_id: str) -> dict[str, tuple[str, int]]:
    """``file:name`` → (sha256 of the text, first line) of each top-level statement holding our blocks.

    Raises:
        TargetError: as :func:`blocks_of`.
    """
    out: dict[str, tuple[str, int]] = {}
    for name, blocks in blocks_of(workspace, patch_id).items():
        src = workspace.source(name)
        assert src is not None  # blocks_of found blocks in it
        for block in blocks:
            for stmt in src.statements_at(block.marker + 1)[:1]:
                first, last = first_line(stmt), stmt.end_lineno or stmt.lineno
                if first <= block.marker + 1 <= last:
                    label = _statement_name(stmt) or f"line{first}"
                    text = src.lines(min(first, block.first), last)
                    out[f"{name}:{label}"] = (sha256_hex(text.encode("utf-8", "surrogatepass")), first)
                    break
    return out


def _statement_name(stmt: ast.stmt) -> str | None:
    """The name a top-level statement defines or binds (``def``, ``class``, ``NAME = ...``), if any."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return stmt.name
    if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
        return stmt.targets[0].id
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
        return stmt.target.id
    return None


def statement_drift(
    workspace: Workspace, reports: Iterable[PatchReport], recorded: Mapping[str, Mapping[str, str]]
) -> list[PatchReport]:
    """``reports``, with ``drifted`` for each applied patch whose owned statements changed since they were recorded.

    The second drift check, for edits a patch's own detection cannot see (a
    hand edit elsewhere in a function that holds our block).

    Args:
        recorded: patch id to what the last write recorded for it: ``file:name``
            to the sha256 of each statement it owned (:func:`owned_statements`;
            the ledger's :attr:`~hermes_patch.records.PatchRecord.statements`).

    Raises:
        TargetError: as :func:`blocks_of`.
    """
    out = []
    for r in reports:
        if r.state is State.APPLIED and r.id in recorded:
            owned = owned_statements(workspace, r.id)
            for key, sha in sorted(recorded[r.id].items()):
                if key in owned and owned[key][0] != sha:
                    file, name = key.split(":", 1)
                    r = PatchReport(
                        r.patch,
                        r.enabled,
                        Detection(
                            State.DRIFTED,
                            f"{name} in {file} (line {owned[key][1]}) was changed after hermes-patch applied it",
                            notes=r.detection.notes,
                        ),
                    )
                    break
        out.append(r)
    return out


def _remove(workspace: Workspace, patch_ids: Iterable[str]) -> dict[str, str]:
    """Text of each loaded file with the blocks of ``patch_ids`` removed (changed files only)."""
    ids = set(patch_ids)
    out: dict[str, str] = {}
    for name, src in workspace.loaded().items():
        mine = [b for b in workspace.blocks(name) if b.patch_id in ids]
        if mine:
            out[name] = remove_blocks(src.text, src.line_starts, mine)
    return out


Job = tuple[Site, Callable[[], "libcst.CSTTransformer"]]


def _jobs(report: PatchReport, current: Workspace) -> list[Job]:
    """The (site, transformer) pairs that apply a pending patch on ``current``."""
    patch = report.patch
    from hermes_patch.core.codemod import transformer_for

    outcome = _outcome(patch, _located(patch, current))
    assert isinstance(outcome, Change)
    jobs: list[Job] = []
    for edit in outcome.edits:
        src = current.source(edit.at.file)
        where = place(src, edit) if src is not None else None
        if where is None:
            raise RefusedError(
                f"{patch.ID}: {edit.at.describe()} in {edit.at.file}: the anchor of the {edit.what} is missing"
            )
        site = Site(edit.at.file, patch.ID, where.first, where.last)

        def make(edit: Edit = edit, unit: str = where.unit) -> "libcst.CSTTransformer":
            return transformer_for(edit.at, lambda module: render(patch.ID, edit, unit, "", module.default_newline))

        jobs.append((site, make))
    return jobs


def _transform(workspace: Workspace, jobs: list[Job], fast: bool) -> dict[str, str]:
    """Run each (patch, site) transformer; return new text per changed file.

    Raises:
        TargetError: libcst cannot parse a file (or recurses too deep in it),
            naming the file; never a traceback.
    """
    import libcst as cst

    current: list[Path] = []
    try:
        return _transform_files(workspace, jobs, fast, current)
    except (RecursionError, MemoryError):
        from hermes_patch.core.source import too_deep

        raise TargetError(too_deep(current[-1] if current else workspace.package_dir)) from None
    except cst.ParserSyntaxError as exc:
        where = current[-1] if current else workspace.package_dir
        raise TargetError(
            f"{where} cannot be parsed by libcst ({str(exc).splitlines()[0]}) although Python accepts it; hermes-patch "
            "will not edit what it cannot parse. Nothing was changed. Run `hermes-patch diff` to see the planned edit, "
            "and report the file's shape."
        ) from None


def _transform_files(workspace: Workspace, jobs: list[Job], fast: bool, current: list[Path]) -> dict[str, str]:
    import libcst as cst

    by_file: dict[str, list[Job]] = {}
    for site, make in jobs:
        by_file.setdefault(site.file, []).append((site, make))
    out: dict[str, str] = {}
    for name, file_jobs in by_file.items():
        src = workspace.source(name)
        assert src is not None
        current.append(src.path)
        if not fast:
            module = cst.parse_module(src.text)
            for _, make in file_jobs:
                module = module.visit(make())
            out[name] = module.code
            continue
        # Group jobs by statement; spans of different statements never overlap.
        spans: dict[tuple[int, int], list[Job]] = {}
        for site, make in file_jobs:
            spans.setdefault((site.first, site.last), []).append((site, make))
        ordered = sorted(spans)
        for (a_first, a_last), (b_first, _) in zip(ordered, ordered[1:]):
            if b_first <= a_last:
                raise VerificationError(
                    f"{src.path}: two edits overlap at lines {a_first}-{a_last}; this is a bug in the catalog."
                )
        pieces: list[str] = []
        pos = 0
        for first, last in ordered:
            start, end = src.line_starts[first - 1], src.line_starts[last]
            module = cst.parse_module(src.text[start:end])
            for _, make in spans[(first, last)]:
                module = module.visit(make())
            pieces.append(src.text[pos:start])
            pieces.append(module.code)
            pos = end
        pieces.append(src.text[pos:])
        out[name] = "".join(pieces)
    return {name: text for name, text in out.items() if text != workspace.source(name).text}  # type: ignore[union-attr]


def plan_apply(
    workspace: Workspace,
    reports: list[PatchReport],
    only: set[str] | None = None,
    fast: bool = True,
    allow_version: bool = False,
) -> Plan | Refusal:
    """Build the edits that apply every enabled, pending patch (or those in ``only``).

    Refuses as a whole when a selected patch is ``unknown-shape`` or
    ``drifted``, or pending on a release outside its version range without
    ``allow_version``: apply is all-or-nothing. Patches not selected (``only``)
    never block.

    Returns:
        The :class:`Plan`, or a :class:`Refusal` (kind ``config``: a selected
        patch's parameters are wrong for this release; ``refused``: a
        selected patch cannot be applied safely).
    """
    selected = [r for r in reports if (r.id in only if only is not None else r.enabled)]
    misconfigured = [r for r in selected if r.detection.config_error]
    if misconfigured:
        fine = [r.id for r in selected if r not in misconfigured and r.state is State.PENDING]
        others = f" The other patches can be applied alone: `hermes-patch apply {' '.join(fine)}`." if fine else ""
        return Refusal("config", " ".join(r.detection.reason for r in misconfigured) + others)
    blocked = [
        r
        for r in selected
        if r.state in (State.UNKNOWN_SHAPE, State.DRIFTED)
        or (r.state is State.PENDING and r.detection.out_of_range and not allow_version)
    ]
    if blocked:
        fine = [r.id for r in selected if r not in blocked and r.state is State.PENDING]
        return Refusal("refused", _refusal(blocked, workspace, fine))
    pending = [r for r in selected if r.state is State.PENDING]
    before = {name: src for name, src in workspace.loaded().items()}
    if not pending:
        return Plan(before, {}, (), "apply", tuple(reports))
    current = workspace
    expect: dict[str, State] = {}
    replaced = [r.id for r in pending if r.detection.replace]
    if replaced:
        current = workspace.with_edits(_remove(workspace, replaced))
        fresh = [
            PatchReport(r.patch, r.enabled, _detect_one(r.patch, current)) if r.detection.replace else r
            for r in pending
        ]
        odd = [r for r in fresh if r.state not in (State.PENDING, State.NOT_NEEDED)]
        if odd:
            return Refusal("refused", _refusal(odd, workspace, []))
        expect = {r.id: State.NOT_NEEDED for r in fresh if r.state is State.NOT_NEEDED}
        pending = [r for r in fresh if r.state is State.PENDING]
    jobs = [job for r in pending for job in _jobs(r, current)]
    edits = _transform(current, jobs, fast)
    merged = {**{n: s.text for n, s in current.loaded().items()}, **edits}
    before = {name: workspace.source(name) for name in merged}  # type: ignore[misc]
    after = {name: text for name, text in merged.items() if text != before[name].text}
    ids = tuple(r.id for r in pending) + tuple(expect)
    return Plan(before, after, ids, "apply", tuple(reports), expect)


def plan_revert(
    workspace: Workspace, reports: list[PatchReport], only: set[str] | None = None, force: bool = False
) -> Plan | Refusal:
    """Build the edits that remove our blocks for the selected patches.

    Args:
        only: patch ids to revert; ``None`` means every patch.
        force: revert a ``drifted`` patch anyway (only our marked blocks are
            removed; the other hand edits stay).

    Returns:
        The :class:`Plan`, or a :class:`Refusal` (kind ``config``: a selected
        patch's parameters are wrong; ``refused``: a selected patch is drifted
        and ``force`` is off).
    """
    selected = [r for r in reports if only is None or r.id in only]
    misconfigured = [r for r in selected if r.detection.config_error]
    if misconfigured:
        return Refusal("config", " ".join(r.detection.reason for r in misconfigured))
    drifted = [r for r in selected if r.state is State.DRIFTED]
    if drifted and not force:
        named = " ".join(r.id for r in drifted)
        return Refusal(
            "refused",
            f"{named}: the patched code was changed by someone else after hermes-patch applied it "
            f"({'; '.join(r.detection.reason for r in drifted)}). Reverting would remove our block "
            f"but keep their change, which may not be what you want. See what it would do with "
            f"`hermes-patch revert --force --dry-run {named}`, then run `hermes-patch revert --force {named}` "
            f"to remove our marked blocks, or reinstall the release to start clean.",
        )
    ids = [r.id for r in selected if blocks_of(workspace, r.id)]
    before = {name: src for name, src in workspace.loaded().items()}
    after = _remove(workspace, ids)
    return Plan(before, after, tuple(ids), "revert", tuple(reports))


def prove(
    workspace: Workspace,
    plan: Plan,
    patches: list[tuple[AnyPatch, bool]],
    version: str | None,
    fast: bool = True,
    errors: dict[str, str] | None = None,
    earlier: dict[str, dict[str, object]] | None = None,
) -> list[PatchReport]:
    """Prove a plan before it is written; return the reports of the result.

    ``errors`` and ``earlier`` are :func:`detect_all`'s: a patch left out of
    the plan whose block was rendered from the parameters of its last apply
    stays pending on the result, as it was before.

    Checks, on the planned text: every changed file compiles; each applied
    patch now detects as ``applied`` (each reverted one as not applied) and
    every other patch keeps its state; planning the same command again
    yields no edit (idempotent); and, for apply, removing the blocks of the
    applied patches gives back exactly the bytes we started from (minus old
    blocks of re-applied patches).

    Raises:
        VerificationError: a proof failed; nothing may be written.
    """
    if plan.empty:
        return list(plan.reports)
    new_ws = workspace.with_edits(plan.after)
    for name in plan.after:
        src = new_ws.source(name)
        assert src is not None
        try:
            compile(_compiled_part(new_ws, name, plan.kind), str(src.path), "exec", dont_inherit=True)
        except (TargetError, SyntaxError, ValueError) as exc:
            raise VerificationError(_bug(plan, f"the result for {src.path} does not compile ({exc})")) from None
    new_reports = detect_all(new_ws, patches, version, errors, earlier)
    old_states = {r.id: r.state for r in plan.reports}
    for r in new_reports:
        if r.id in plan.patch_ids:
            ok = (
                r.state is plan.expect.get(r.id, State.APPLIED)
                if plan.kind == "apply"
                else r.state in (State.PENDING, State.NOT_NEEDED)
            )
        else:
            ok = r.state is old_states.get(r.id, r.state)
        if not ok:
            raise VerificationError(
                _bug(plan, f"after the edit, {r.id} detects as {r.state.value} ({r.detection.reason})")
            )
    only = set(plan.patch_ids)
    again = (
        plan_apply(new_ws, new_reports, only=only, fast=fast, allow_version=True)
        if plan.kind == "apply"
        else plan_revert(new_ws, new_reports, only=only, force=True)
    )
    if isinstance(again, Refusal) or not again.empty:
        raise VerificationError(_bug(plan, "a second run would change the file again (not idempotent)"))
    if plan.kind == "apply":
        undone = _remove(new_ws, plan.patch_ids)
        baseline = _remove(workspace, plan.patch_ids)
        for name in plan.after:
            expected = plan.before[name].encode(baseline.get(name, plan.before[name].text))
            got = plan.before[name].encode(undone.get(name, plan.after[name]))
            if got != expected:
                raise VerificationError(
                    _bug(plan, f"undoing the edit of {plan.before[name].path} would not give back the original bytes")
                )
    return new_reports


def _compiled_part(workspace: Workspace, name: str, kind: str) -> ast.Module:
    """What the compile proof compiles: for apply, the top-level statements that hold our blocks.

    The release compiled (Python imports it), and the undo proof shows that
    everything but our blocks is the release's own bytes. A top-level
    statement compiles the same whatever its neighbours are, with three
    exceptions, each handled: ``from __future__`` imports reach across
    (the release's are kept at the top, and a placeholder statement stands
    for the statements between them and ours, so a ``__future__`` import in
    a block is refused as it would be in place); a module-level ``global``
    is checked against the whole module by the symbol table (then the whole
    file is compiled); and a block at or above the ``__future__`` imports
    (the whole file too). So compiling the statements that hold a block
    proves the whole result compiles, at a small fraction of the cost of
    compiling 19,000 lines (helper-22 found the first two gaps). A revert
    compiles whole.

    Raises:
        TargetError: a marker comment of the result has no block (a bug in the catalog).
    """
    src = workspace.source(name)
    assert src is not None
    blocks = workspace.blocks(name) if kind == "apply" else []
    if not blocks:
        return src.tree
    held = list(dict.fromkeys(s for line in sorted({b.marker + 1 for b in blocks}) for s in src.statements_at(line)))
    release = workspace.pristine().source(name)
    if any(isinstance(s, ast.Global) for s in held) or (
        release is not None and any(isinstance(s, ast.Global) for s in release.tree.body)
    ):
        return src.tree
    lead: list[ast.stmt] = []  # a docstring and the __future__ imports, which must come first
    for index in range(len(src.spans)):
        stmt = src.statement(index)
        if (isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__") or (
            index == 0 and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
        ):
            lead.append(stmt)
        else:
            break
    lead_end = max((s.end_lineno or s.lineno for s in lead), default=0)
    if any(first_line(s) <= lead_end for s in held):
        return src.tree
    future = [s for s in lead if isinstance(s, ast.ImportFrom)]
    placeholder = ast.Pass(lineno=lead_end or 1, col_offset=0, end_lineno=lead_end or 1, end_col_offset=0)
    return ast.Module(body=[*future, placeholder, *held], type_ignores=[])


def _bug(plan: Plan, what: str) -> str:
    bug = report_bug(
        "the output of `hermes-patch status --json` and the release version",
        f"the patch(es) {', '.join(plan.patch_ids)}",
    )
    return f"hermes-patch refused to write: {what}. {NOTHING_CHANGED} {bug[0].upper()}{bug[1:]}."


def _refusal(blocked: list[PatchReport], workspace: Workspace, fine: list[str]) -> str:
    lines = []
    for r in blocked:
        if r.state is State.DRIFTED:
            lines.append(f"{r.id} is drifted: {r.detection.reason}")
        elif r.state is State.PENDING:
            lines.append(
                f"{r.id}: {r.detection.out_of_range}, although the code has a shape it knows; "
                f"run `hermes-patch apply --allow-version {r.id}` (or set `allow_version = true` in the configuration) to patch it anyway"
            )
        elif r.detection.patch_bug:
            lines.append(r.detection.reason)
        else:
            lines.append(
                f"{r.id} does not recognize the code in {workspace.path(workspace.entry)}: {r.detection.reason}"
            )
    others = " ".join(r.id for r in blocked)
    if all(r.detection.patch_bug for r in blocked):
        advice = "Fix the patch, or "
    elif any(r.state is State.UNKNOWN_SHAPE and not r.detection.patch_bug for r in blocked):
        advice = f"If this release is newer than hermes-patch: {UPGRADE}; meanwhile "
    elif all(r.state is State.PENDING for r in blocked):
        advice = "Otherwise "
    else:
        drifted = " ".join(r.id for r in blocked if r.state is State.DRIFTED)
        advice = f"See the hand edit with `hermes-patch revert --force --dry-run {drifted}`; to start over run `hermes-patch revert --force {drifted}` then apply, or "
    return (
        "; ".join(lines)
        + ". Nothing was written. "
        + advice
        + (f"apply the others with `hermes-patch apply {' '.join(fine)}`, or " if fine else "")
        + f"switch these off with `enabled = false` under [patches.<id>] in the configuration ({others})."
    )
