"""Git installs: keep our edits invisible to git with a clean filter registered while it is needed.

On a git install ``hermes update`` runs ``git status --porcelain``; when it
shows anything, ``git stash push --include-untracked``; then ``git pull
--ff-only``; then ``git stash apply`` (dropping the stash when that worked),
or, on a conflict, ``git reset --hard HEAD`` with the stash left behind; a
non-interactive run may leave the stash parked (REAL_TARGETS.md; 0.19.0's
``_stash_local_changes_if_needed`` / ``_restore_stashed_changes``,
hermes-agent#11623, #52040). A patched ``web_server.py`` that git sees as
modified therefore goes through that stash and can end up conflicted, parked
or lost (:mod:`hermes_patch.integrations.git_stash` finds such stashes).

So git must not see our edits. For every file we patch, a *clean filter*
is registered in the checkout's own ``.git/info/attributes``
(``/hermes_cli/web_server.py filter=hermes-patch``) and ``.git/config``
(``filter.hermes-patch.clean``, not ``required``: if hermes-patch disappears
git falls back to the raw bytes). The filter
(:func:`hermes_patch.integrations.git_clean.clean`) removes our marked blocks, so the
content git hashes is upstream's blob: ``git status`` is clean, no stash is
made for our edits, and ``git pull --ff-only`` replaces the file when
upstream changed it (a post-merge hook, see :mod:`hermes_patch.integrations.git_hooks`,
then re-applies). After every write git's stat cache is refreshed
(:mod:`hermes_patch.integrations.git_index`).

The filter is registered while our blocks are in a file or a git hook is
installed, and removed (exactly what was added) otherwise. What was added is
recorded in the ledger under ``integrations.git-filter``.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from hermes_patch.context import Context
from hermes_patch.core.errors import RefusedError
from hermes_patch.integrations.git_clean import MARKER
from hermes_patch.integrations.git_repo import git, git_path, rel_path, repo_root
from hermes_patch.core.patch import State, find_blocks, remove_blocks
from hermes_patch.integrations.stored_command import self_command, stored_command

if TYPE_CHECKING:
    from hermes_patch.records import LedgerDoc, TargetDoc
    from hermes_patch.integrations.installed import FilterEntry, Integrations
    from hermes_patch.results import StatusResult
    from hermes_patch.core.workspace import Workspace

__all__ = [
    "FILTER",
    "FilterState",
    "filter_command",
    "filter_state",
    "prepare_write",
    "finish_write",
    "sync",
    "status_notes",
    "with_status_notes",
]

FILTER = "hermes-patch"
_ATTR_HEADER = "# hermes-patch: clean filter for the files it patches (`hermes-patch revert` or `hermes-patch hook uninstall` removes these lines)"


def filter_command(exe: list[str] | None = None) -> str:
    """The ``filter.hermes-patch.clean`` value: run our filter, or ``cat`` when hermes-patch is gone.

    ``exec`` matters: once our filter has read stdin, a fallback must not
    run (it would hand git empty content).
    """
    exe = exe or self_command()
    quoted = " ".join(shlex.quote(a) for a in [*exe, "git-clean-filter"])
    return f"test -x {shlex.quote(exe[0])} && exec {quoted} || exec cat"


@dataclass(frozen=True)
class FilterState:
    """What is registered now (for ``status`` and ``hook show``).

    Attributes:
        config: git's config file of the checkout.
        value: ``filter.hermes-patch.clean`` there, or ``None``.
        attributes: ``.git/info/attributes``.
        lines: our ``/<path> filter=hermes-patch`` lines in it.
    """

    config: Path
    value: str | None
    attributes: Path
    lines: tuple[str, ...]

    def paths(self) -> list[str]:
        """The files the attribute lines name, relative to the checkout, sorted."""
        return sorted(line.split()[0].lstrip("/") for line in self.lines)


def filter_state(root: Path) -> FilterState:
    """What is registered now: the config value and our attribute lines."""
    value = _current(root)
    attributes = git_path(root, "info/attributes")
    try:
        lines = attributes.read_text("utf-8").splitlines()
    except OSError:
        lines = []
    ours = tuple(line for line in lines if line.endswith(f" filter={FILTER}"))
    return FilterState(git_path(root, "config"), value, attributes, ours)


def _current(root: Path) -> str | None:
    return git(root, "config", "--get", f"filter.{FILTER}.clean", check=False).stdout.strip() or None


def _integrations(record: TargetDoc) -> Integrations:
    return record.setdefault("integrations", {})


def _attr_block(paths: list[str]) -> str:
    return "".join([_ATTR_HEADER + "\n", *(f"/{p} filter={FILTER}\n" for p in sorted(paths))])


def _note_facts(root: Path, entry: FilterEntry) -> None:
    """Record, before the first registration, what :func:`_unregister` must remove.

    A ``filter.hermes-patch.clean`` value that is not ours is refused rather
    than recorded and put back later: a command kept in the ledger would be
    a command a forged ledger could plant in git's configuration (issue 13).

    Raises:
        RefusedError: the filter name is taken by someone else's command.
    """
    current = _current(root)
    # A value naming our own filter (an older install path) is ours, not the user's.
    if current is not None and "git-clean-filter" not in current:
        raise RefusedError(
            f"git's filter.{FILTER}.clean in {root} is already set to {current!r}, which hermes-patch did not write; "
            f"it will not replace or record another command. Nothing was changed. Remove it (`git -C {root} config "
            f"--remove-section filter.{FILTER}`) and run `hermes-patch apply` again."
        )
    entry["previous"] = None
    if "created" not in entry:
        entry["created"] = not git_path(root, "info/attributes").exists()


def _register(root: Path, entry: FilterEntry, paths: list[str]) -> None:
    """Write the config value and our attributes block for ``paths`` (after :func:`_note_facts` was saved)."""
    from hermes_patch.fileio import atomic_write

    command = filter_command(stored_command(f"git's filter.{FILTER}.clean of {root}"))
    if _current(root) != command:
        git(root, "config", f"filter.{FILTER}.clean", command)
    entry["command"] = command
    attributes = _attributes(root)
    try:
        before: str | None = attributes.read_text("utf-8")
    except FileNotFoundError:
        before = None
    text = before or ""
    old_block = entry.get("appended")
    if old_block and text.endswith(old_block):
        text = text[: len(text) - len(old_block)]
    elif old_block:
        text = _strip_lines(text, old_block)
    appended = ("\n" if text and not text.endswith("\n") else "") + _attr_block(paths)
    entry["appended"] = appended
    entry["paths"] = sorted(paths)
    if text + appended != before:
        attributes.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(attributes, (text + appended).encode("utf-8"), follow=False)


def _attributes(root: Path) -> Path:
    """``.git/info/attributes``, refusing a symlink there (we would write through it)."""
    attributes = git_path(root, "info/attributes")
    if attributes.is_symlink():
        raise RefusedError(
            f"{attributes} is a symlink; hermes-patch will not write git attributes through a link (it could "
            f"point at any file). Nothing was changed. Replace it with a regular file (`cp --remove-destination "
            f'"$(readlink -f {attributes})" {attributes}`) and run `hermes-patch apply` again.'
        )
    return attributes


def _strip_lines(text: str, block: str) -> str:
    """``text`` without the lines of ``block`` (when the user appended after our block)."""
    ours = set(block.strip("\n").splitlines())
    return "".join(line for line in text.splitlines(keepends=True) if line.rstrip("\r\n") not in ours)


def _unregister(root: Path, entry: FilterEntry) -> None:
    """Remove exactly what :func:`_register` added.

    A recorded ``previous`` value is never written back (records are not
    trusted to hold commands); a value that is not our filter is left alone.
    """
    current = _current(root)
    if current is not None and "git-clean-filter" in current:
        git(root, "config", "--remove-section", f"filter.{FILTER}")
    attributes = _attributes(root)
    try:
        text = attributes.read_text("utf-8")
    except FileNotFoundError:
        return
    block = entry.get("appended") or _attr_block(entry.get("paths", []))
    text = text[: len(text) - len(block)] if text.endswith(block) else _strip_lines(text, block)
    if not text and entry.get("created"):
        attributes.unlink()
    else:
        from hermes_patch.fileio import atomic_write

        atomic_write(attributes, text.encode("utf-8"), follow=False)


def _registered(root: Path, entry: FilterEntry) -> bool:
    state = filter_state(root)
    return state.value == filter_command() and state.paths() == entry.get("paths")


# -- around the writes of apply and revert ---------------------------------------------------


def prepare_write(ctx: Context, ledger: LedgerDoc, record: TargetDoc, names: list[str], kind: str) -> None:
    """Before ``apply`` writes ``names`` (files of the target package) on a git install: register the filter.

    The ledger is saved first, so what we add to ``.git`` is always on record.

    Raises:
        TargetError: git refused; nothing has been written to the Hermes files yet.
    """
    root = repo_root(ctx.target)
    if root is None or kind != "apply":
        return
    entry = _integrations(record).setdefault("git-filter", {})
    paths = sorted(set(entry.get("paths", [])) | {rel_path(root, ctx.target.package_dir / n) for n in names})
    if entry.get("paths") == paths and _registered(root, entry):
        return
    stored_command(f"git's filter.{FILTER}.clean of {root}")  # refuse before anything is recorded
    entry["paths"] = paths
    _note_facts(root, entry)
    ctx.state.save(ledger)
    _register(root, entry, paths)
    ctx.state.save(ledger)


def finish_write(ctx: Context, ledger: LedgerDoc, record: TargetDoc, written: Workspace | None = None) -> None:
    """After a write on a git install: refresh git's stat cache; drop the filter when nothing needs it.

    Args:
        written: the workspace holding the text just written; its parsed
            trees spare a second parse when the cleaned bytes are computed.
    """
    root = repo_root(ctx.target)
    if root is None:
        return
    cleaned = {}
    for name, src in written.loaded().items() if written is not None else ():
        blocks = find_blocks(src) if MARKER in src.data else []
        if not isinstance(blocks, str):
            cleaned[rel_path(root, ctx.target.package_dir / name)] = (
                src.data,
                src.encode(remove_blocks(src.text, src.line_starts, blocks)),
            )
    if _settle(root, record, cleaned):
        ctx.state.save(ledger)


def sync(ctx: Context) -> None:
    """Make a git install consistent without writing Hermes files: filter wanted ⇔ registered; index fresh.

    Run by ``apply`` and ``revert`` (also when they had nothing to write, e.g.
    on a checkout patched by hand or by an older hermes-patch) and by
    ``hook install``/``uninstall``.
    """
    root = repo_root(ctx.target)
    if root is None:
        return
    with ctx.state.lock(ctx.key):
        ledger = ctx.state.load()
        record = ledger["targets"].get(ctx.key, {})
        integ: Integrations = record.get("integrations", {})
        entry = integ.get("git-filter")
        patched = _files_with_blocks(root, ctx.target.package_dir)
        if patched or integ.get("git-hooks"):
            recorded = entry.get("paths", []) if entry is not None else []
            paths = sorted(set(recorded) | set(patched) | {rel_path(root, ctx.target.file)})
            if entry is None or entry.get("paths") != paths or not _registered(root, entry):
                stored_command(f"git's filter.{FILTER}.clean of {root}")
                record = ledger["targets"].setdefault(ctx.key, record)
                entry = _integrations(record).setdefault("git-filter", {})
                entry["paths"] = paths
                _note_facts(root, entry)
                ctx.state.save(ledger)
                _register(root, entry, paths)
                ctx.state.save(ledger)
        if _settle(root, record):
            ctx.state.save(ledger)


def _files_with_blocks(root: Path, package_dir: Path) -> list[str]:
    out = []
    for path in sorted(package_dir.glob("*.py")):
        try:
            if MARKER in path.read_bytes():
                out.append(rel_path(root, path))
        except OSError:
            continue
    return out


def _settle(root: Path, record: TargetDoc, cleaned: dict[str, tuple[bytes, bytes]] | None = None) -> bool:
    """Refresh the index for our filtered files; unregister when no block and no hook is left. True if the record changed."""
    integ: Integrations = record.get("integrations", {})
    entry = integ.get("git-filter")
    if not entry:
        return False
    paths = entry.get("paths", [])
    datas = {}
    for rel in paths:
        try:
            datas[rel] = (root / rel).read_bytes()
        except OSError:
            continue
    from hermes_patch.integrations.git_index import refresh_index  # here: status never refreshes git's index

    refresh_index(root, datas, cleaned)
    if any(MARKER in d for d in datas.values()) or integ.get("git-hooks"):
        return False
    _unregister(root, entry)
    del integ["git-filter"]
    return True


# -- status ---------------------------------------------------------------------------------


def status_notes(ctx: Context, applied: bool) -> list[str]:
    """Notes for ``status`` on a git install: our stashes left by updates; our edits visible to git.

    Args:
        applied: whether any patch is applied or drifted (our blocks are in the files).
    """
    from hermes_patch.integrations.git_stash import our_stashes

    root = repo_root(ctx.target)
    if root is None:
        return []
    notes = [
        f"{s.selector} ({s.subject}) holds only hermes-patch's own edits of {', '.join(s.paths)}, left by an earlier update; "
        "`hermes-patch apply --drop-our-stash` drops it"
        for s in our_stashes(root, ctx.target.package_dir.name)
    ]
    if applied:
        state = filter_state(root)
        rel = rel_path(root, ctx.target.file)
        if state.value is None or f"/{rel} filter={FILTER}" not in state.lines:
            notes.append(
                f"git sees our edits of {rel} as local changes, so `hermes update` would stash them; "
                "`hermes-patch apply` registers the git clean filter that hides them"
            )
    return notes


def with_status_notes(ctx: Context, status: StatusResult) -> StatusResult:
    """``status`` with :func:`status_notes` added."""
    applied = any(r.state in (State.APPLIED, State.DRIFTED) for r in status.reports)
    notes = status_notes(ctx, applied)
    return replace(status, notes=status.notes + tuple(notes)) if notes else status
