"""Git installs: keep our edits invisible to git, and find stashes of them.

On a git install ``hermes update`` runs ``git status --porcelain``; when it
shows anything, ``git stash push --include-untracked``; then ``git pull
--ff-only``; then ``git stash apply`` (dropping the stash when that worked),
or, on a conflict, ``git reset --hard HEAD`` with the stash left behind; a
non-interactive run may leave the stash parked (REAL_TARGETS.md; 0.19.0's
``_stash_local_changes_if_needed`` / ``_restore_stashed_changes``,
hermes-agent#11623, #52040). A patched ``web_server.py`` that git sees as
modified therefore goes through that stash and can end up conflicted, parked
or lost.

So git must not see our edits. For every file we patch, a *clean filter*
is registered in the checkout's own ``.git/info/attributes``
(``/hermes_cli/web_server.py filter=hermes-patch``) and ``.git/config``
(``filter.hermes-patch.clean``, not ``required``: if hermes-patch disappears
git falls back to the raw bytes). The filter (:func:`clean`) removes our
marked blocks, so the content git hashes is upstream's blob: ``git status``
is clean, no stash is made for our edits, and ``git pull --ff-only``
replaces the file when upstream changed it (a post-merge hook, see
:mod:`hermes_patch.hooks`, then re-applies).

Git's stat cache needs one more step: an index entry whose recorded size
differs from the file's is taken as modified *without* re-hashing, so after
every write we run ``git update-index -- <file>`` (only when the cleaned
content equals the index blob, so a user's own edits are never staged by
us), which re-hashes through the filter and records the new size.

The filter is registered while our blocks are in a file or a git hook is
installed, and removed (exactly what was added) otherwise. What was added is
recorded in the ledger under ``integrations.git-filter``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hermes_patch.errors import TargetError
from hermes_patch.patch import MARKER_PREFIX, find_blocks, remove_blocks

__all__ = [
    "FILTER",
    "clean",
    "self_command",
    "repo_root",
    "git",
    "prepare_write",
    "finish_write",
    "sync",
    "filter_state",
    "OurStash",
    "our_stashes",
    "drop_stashes",
    "status_notes",
    "with_status_notes",
]

FILTER = "hermes-patch"
_MARKER = MARKER_PREFIX.encode()
_ATTR_HEADER = "# hermes-patch: clean filter for the files it patches (`hermes-patch revert` or `hermes-patch hook uninstall` removes these lines)"
# Variables a git hook inherits that would point our own git calls elsewhere.
_GIT_ENV = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_PREFIX",
    "GIT_COMMON_DIR",
)


# -- the filter itself -------------------------------------------------------------


def clean(data: bytes) -> bytes:
    """``data`` (a Python file's bytes) without our marked blocks.

    Returns ``data`` unchanged when it holds no marker, does not decode or
    parse, or has an orphaned marker: a filter must never fail or guess.
    The result is byte-exact upstream text because every edit is an
    insertion of whole lines (:func:`hermes_patch.patch.remove_blocks`).
    """
    if _MARKER not in data:
        return data
    from hermes_patch.source import Source

    try:
        src = Source.from_bytes(data, Path("<git clean filter>"))
        blocks = find_blocks(src)
        if isinstance(blocks, str) or not blocks:
            return data
        return src.encode(remove_blocks(src.text, src.line_starts, blocks))
    except Exception:  # noqa: BLE001 - any failure means "leave it to git as it is"
        return data


def self_command() -> list[str]:
    """How to run this hermes-patch from a hook: the script next to our interpreter, else ``python -m hermes_patch``.

    The script of the running environment (not ``argv[0]``) keeps the text
    written into hooks the same however the command was typed, so a second
    ``hook install`` writes identical bytes.
    """
    script = Path(sys.executable).parent / "hermes-patch"
    if script.is_file():
        return [str(script)]
    argv0 = Path(sys.argv[0])
    if argv0.name == "hermes-patch" and argv0.is_file():
        return [os.path.abspath(argv0)]
    return [sys.executable, "-m", "hermes_patch"]


def command_problem(exe: list[str] | None = None) -> tuple[str, int | None] | None:
    """Why ``exe`` (default :func:`self_command`) must not be stored in a command that runs later, else ``None``.

    Git runs the clean filter and the hooks, systemd the drop-in, as root or
    as the unit's user, long after this run: the script, its interpreter,
    the environment it imports hermes-patch from and every folder above
    them must be changeable only by root or the running user
    (:mod:`hermes_patch.trust`), and no argument may hold a control
    character (a newline would start a new shell line or systemd directive).
    """
    from hermes_patch import trust

    exe = exe or self_command()
    for arg in exe:
        if set(arg) & trust.CONTROL_CHARS:
            return f"{arg!r} contains a newline or another control character", None
    import sysconfig

    import hermes_patch

    own = Path(hermes_patch.__file__).parent
    for path in (Path(exe[0]), Path(sys.executable), own, Path(sysconfig.get_paths()["purelib"])):
        found = trust.why_untrusted(path)
        if found:
            return found
    for package in (own, *sorted(p for p in own.iterdir() if p.is_dir() and p.name != "__pycache__")):
        found = trust.why_untrusted_bytecode(package)  # a forged .pyc runs as whoever runs the stored command
        if found:
            return found
    return None


def stored_command(where: str) -> list[str]:
    """:func:`self_command`, refused when it is not safe to store (see :func:`command_problem`).

    Raises:
        RefusedError: naming the path, why, and what to do; nothing was changed.
    """
    exe = self_command()
    found = command_problem(exe)
    if found:
        from hermes_patch.errors import RefusedError
        from hermes_patch.trust import owner_name

        me = owner_name(os.geteuid())
        raise RefusedError(
            f"hermes-patch would store the command {exe[0]} in {where}, but {found[0]}: that command runs later as "
            f"{me} (or the unit's user), so whoever can change it would own a lasting way in. Nothing was changed. "
            "Run a hermes-patch installed where only root or that user can change it, e.g. "
            "`python3 -m venv /opt/hermes-patch && /opt/hermes-patch/bin/pip install hermes-patch`, then "
            "`/opt/hermes-patch/bin/hermes-patch hook install`."
        )
    return exe


def filter_command(exe: list[str] | None = None) -> str:
    """The ``filter.hermes-patch.clean`` value: run our filter, or ``cat`` when hermes-patch is gone.

    ``exec`` matters: once our filter has read stdin, a fallback must not
    run (it would hand git empty content).
    """
    exe = exe or self_command()
    quoted = " ".join(shlex.quote(a) for a in [*exe, "git-clean-filter"])
    return f"test -x {shlex.quote(exe[0])} && exec {quoted} || exec cat"


# -- running git ---------------------------------------------------------------------


def repo_root(target: Any) -> Path | None:
    """The checkout of a git install (when git is on PATH), else ``None``."""
    if getattr(target, "install_method", None) != "git" or target.root is None or shutil.which("git") is None:
        return None
    return Path(target.root)


def git(root: Path, *args: str, check: bool = True, text: bool = True) -> subprocess.CompletedProcess:
    """Run ``git -C root ARGS`` with the hook's repository variables removed.

    git's ``safe.directory`` protection stays on: a checkout owned by another
    user is refused before git runs (:func:`hermes_patch.locate.guard_target`),
    and git itself refuses one we missed.

    Raises:
        TargetError: git failed and ``check`` is true (its last stderr line is quoted).
    """
    env = {k: v for k, v in os.environ.items() if k not in _GIT_ENV}
    env.setdefault("LC_ALL", "C")
    cmd = ["git", "-C", str(root), *args]
    proc = subprocess.run(cmd, capture_output=True, text=text, env=env, check=False)
    if check and proc.returncode != 0:
        err = proc.stderr if text else proc.stderr.decode("utf-8", "replace")
        last = err.strip().splitlines()[-1] if err.strip() else f"exit {proc.returncode}"
        raise TargetError(
            f"`git {' '.join(args)}` failed in {root}: {last}. Nothing else was changed; fix the repository (try `git -C {root} status`) and run the command again."
        )
    return proc


def git_path(root: Path, name: str) -> Path:
    """``git rev-parse --git-path NAME`` as an absolute path (follows worktrees and core.hooksPath)."""
    out = git(root, "rev-parse", "--git-path", name).stdout.strip()
    path = Path(out)
    return path if path.is_absolute() else (root / path)


def _rel(root: Path, path: Path) -> str:
    return path.resolve().relative_to(root.resolve()).as_posix()


def _blob_oid(data: bytes, length: int) -> str:
    algo = hashlib.sha256 if length == 64 else hashlib.sha1
    return algo(b"blob %d\0" % len(data) + data).hexdigest()


# -- the filter registration -----------------------------------------------------------


def _integrations(record: dict[str, Any]) -> dict[str, Any]:
    return record.setdefault("integrations", {})


def filter_state(root: Path) -> dict[str, Any]:
    """What is registered now: the config value and our attribute lines (for ``status`` and ``hook show``)."""
    value = git(root, "config", "--get", f"filter.{FILTER}.clean", check=False).stdout.strip() or None
    attributes = git_path(root, "info/attributes")
    try:
        lines = attributes.read_text("utf-8").splitlines()
    except OSError:
        lines = []
    ours = [line for line in lines if line.endswith(f" filter={FILTER}")]
    return {"config": git_path(root, "config"), "value": value, "attributes": attributes, "lines": ours}


def _attr_block(paths: list[str]) -> str:
    return "".join([_ATTR_HEADER + "\n", *(f"/{p} filter={FILTER}\n" for p in sorted(paths))])


def _note_facts(root: Path, entry: dict[str, Any]) -> None:
    """Record, before the first registration, what :func:`_unregister` must remove.

    A ``filter.hermes-patch.clean`` value that is not ours is refused rather
    than recorded and put back later: a command kept in the ledger would be
    a command a forged ledger could plant in git's configuration (issue 13).

    Raises:
        RefusedError: the filter name is taken by someone else's command.
    """
    current = git(root, "config", "--get", f"filter.{FILTER}.clean", check=False).stdout.strip() or None
    # A value naming our own filter (an older install path) is ours, not the user's.
    if current is not None and "git-clean-filter" not in current:
        from hermes_patch.errors import RefusedError

        raise RefusedError(
            f"git's filter.{FILTER}.clean in {root} is already set to {current!r}, which hermes-patch did not write; "
            f"it will not replace or record another command. Nothing was changed. Remove it (`git -C {root} config "
            f"--remove-section filter.{FILTER}`) and run `hermes-patch apply` again."
        )
    entry["previous"] = None
    if "created" not in entry:
        entry["created"] = not git_path(root, "info/attributes").exists()


def _register(root: Path, entry: dict[str, Any], paths: list[str]) -> None:
    """Write the config value and our attributes block for ``paths`` (after :func:`_note_facts` was saved)."""
    from hermes_patch.fileio import atomic_write

    command = filter_command(stored_command(f"git's filter.{FILTER}.clean of {root}"))
    current = git(root, "config", "--get", f"filter.{FILTER}.clean", check=False).stdout.strip() or None
    if current != command:
        git(root, "config", f"filter.{FILTER}.clean", command)
    entry["command"] = command
    attributes = _attributes(root)
    try:
        before = attributes.read_text("utf-8")
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
        from hermes_patch.errors import RefusedError

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


def _unregister(root: Path, entry: dict[str, Any]) -> None:
    """Remove exactly what :func:`_register` added.

    A recorded ``previous`` value is never written back (records are not
    trusted to hold commands); a value that is not our filter is left alone.
    """
    current = git(root, "config", "--get", f"filter.{FILTER}.clean", check=False).stdout.strip() or None
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


# -- hooks into App writes -------------------------------------------------------------------


def prepare_write(app: Any, ledger: dict[str, Any], record: dict[str, Any], names: list[str], kind: str) -> None:
    """Before ``apply`` writes ``names`` (files of the target package) on a git install: register the filter.

    The ledger is saved first, so what we add to ``.git`` is always on record.

    Raises:
        TargetError: git refused; nothing has been written to the Hermes files yet.
    """
    root = repo_root(app.target)
    if root is None or kind != "apply":
        return
    entry = _integrations(record).setdefault("git-filter", {})
    paths = sorted(set(entry.get("paths", [])) | {_rel(root, app.target.package_dir / n) for n in names})
    if entry.get("paths") == paths and _registered(root, entry):
        return
    stored_command(f"git's filter.{FILTER}.clean of {root}")  # refuse before anything is recorded
    entry["paths"] = paths
    _note_facts(root, entry)
    app.state.save(ledger)
    _register(root, entry, paths)
    app.state.save(ledger)


def _registered(root: Path, entry: dict[str, Any]) -> bool:
    state = filter_state(root)
    return state["value"] == filter_command() and sorted(
        line.split()[0].lstrip("/") for line in state["lines"]
    ) == entry.get("paths")


def finish_write(app: Any, ledger: dict[str, Any], record: dict[str, Any], written: Any = None) -> None:
    """After a write on a git install: refresh git's stat cache; drop the filter when nothing needs it.

    Args:
        written: the :class:`~hermes_patch.workspace.Workspace` holding the
            text just written; its parsed trees spare a second parse when the
            cleaned bytes are computed.
    """
    root = repo_root(app.target)
    if root is None:
        return
    cleaned = {}
    for name, src in written.loaded().items() if written is not None else ():
        blocks = find_blocks(src) if _MARKER in src.data else []
        if not isinstance(blocks, str):
            cleaned[_rel(root, app.target.package_dir / name)] = (
                src.data,
                src.encode(remove_blocks(src.text, src.line_starts, blocks)),
            )
    if _settle(root, record, cleaned):
        app.state.save(ledger)


def sync(app: Any) -> None:
    """Make a git install consistent without writing Hermes files: filter wanted ⇔ registered; index fresh.

    Run by ``apply`` and ``revert`` (also when they had nothing to write, e.g.
    on a checkout patched by hand or by an older hermes-patch) and by
    ``hook install``/``uninstall``.
    """
    root = repo_root(app.target)
    if root is None:
        return
    with app.state.lock(app.key):
        ledger = app.state.load()
        record = ledger["targets"].get(app.key, {})
        integ = record.get("integrations", {})
        entry = integ.get("git-filter")
        patched = _files_with_blocks(root, app.target.package_dir)
        if patched or integ.get("git-hooks"):
            paths = sorted(set((entry or {}).get("paths", [])) | set(patched) | {_rel(root, app.target.file)})
            if entry is None or entry.get("paths") != paths or not _registered(root, entry):
                stored_command(f"git's filter.{FILTER}.clean of {root}")
                record = ledger["targets"].setdefault(app.key, record)
                entry = _integrations(record).setdefault("git-filter", {})
                entry["paths"] = paths
                _note_facts(root, entry)
                app.state.save(ledger)
                _register(root, entry, paths)
                app.state.save(ledger)
        if _settle(root, record):
            app.state.save(ledger)


def _files_with_blocks(root: Path, package_dir: Path) -> list[str]:
    out = []
    for path in sorted(package_dir.glob("*.py")):
        try:
            if _MARKER in path.read_bytes():
                out.append(_rel(root, path))
        except OSError:
            continue
    return out


def _settle(root: Path, record: dict[str, Any], cleaned: dict[str, tuple[bytes, bytes]] | None = None) -> bool:
    """Refresh the index for our filtered files; unregister when no block and no hook is left. True if the record changed."""
    integ = record.get("integrations", {})
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
    refresh_index(root, datas, cleaned)
    if any(_MARKER in d for d in datas.values()) or integ.get("git-hooks"):
        return False
    _unregister(root, entry)
    del integ["git-filter"]
    return True


def refresh_index(
    root: Path, datas: dict[str, bytes], cleaned: dict[str, tuple[bytes, bytes]] | None = None
) -> list[str]:
    """``git update-index`` the files whose cleaned bytes equal their index blob; return those paths.

    Args:
        datas: relative path to the file's bytes as read now.
        cleaned: relative path to (bytes, those bytes cleaned), computed
            already; used only while the bytes are still the same.

    A file whose cleaned content differs (the user's own edit) is left alone,
    so nothing of theirs gets staged.
    """
    known = cleaned or {}
    if not datas:
        return []
    index = _index_entries(root, list(datas))
    todo = []
    for rel, data in datas.items():
        entry = index.get(rel)
        if entry is None or entry["stage"] != "0" or _stat_matches(root / rel, entry):
            continue  # untracked, conflicted, or git's stat cache already describes this file
        pair = known.get(rel)
        cleaned_data = pair[1] if pair is not None and pair[0] == data else clean(data)
        if _blob_oid(cleaned_data, len(entry["oid"])) == entry["oid"]:
            todo.append(rel)
    if todo:
        git(root, "update-index", "-q", "--", *todo, check=False)
    return todo


def _index_entries(root: Path, rels: list[str]) -> dict[str, dict[str, str]]:
    """Index entries of ``rels`` from ``git ls-files -s --debug``: oid, stage, mtime (``sec:nsec``), size."""
    out = git(root, "ls-files", "-s", "--debug", "--", *rels, check=False).stdout
    entries: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in out.splitlines():
        if not line.startswith((" ", "\t")):
            meta, _, path = line.partition("\t")
            _mode, oid, stage = meta.split()
            current = entries.setdefault(path, {"oid": oid, "stage": stage})
            continue
        for field in line.strip().split("\t"):
            key, _, value = field.partition(": ")
            current[key.strip()] = value.strip()
    return entries


def _stat_matches(path: Path, entry: dict[str, str]) -> bool:
    """Whether the index's recorded size and mtime are the file's (then git will not take it as modified)."""
    try:
        st = path.stat()
        sec, _, nsec = entry["mtime"].partition(":")
        size = int(entry["size"])
    except (OSError, KeyError, ValueError):
        return False
    if size != st.st_size & 0xFFFFFFFF or int(sec) != int(st.st_mtime):
        return False
    return int(nsec or 0) in (0, st.st_mtime_ns % 1_000_000_000)


# -- stashes left by earlier updates ------------------------------------------------------------


@dataclass(frozen=True)
class OurStash:
    """A stash entry whose every change is one of our marked blocks.

    Attributes:
        selector: ``stash@{N}`` at the time it was read.
        commit: the stash commit (hex).
        subject: its message (``On main: hermes-update-autostash-...``).
        paths: the files it changes, relative to the checkout.
    """

    selector: str
    commit: str
    subject: str
    paths: tuple[str, ...]


def _has_stash(root: Path) -> bool:
    gitdir = root / ".git"
    if gitdir.is_dir():
        return (gitdir / "logs" / "refs" / "stash").exists() or (gitdir / "refs" / "stash").exists()
    return True  # a worktree or submodule: ask git


def our_stashes(root: Path, package: str = "hermes_cli") -> list[OurStash]:
    """Stash entries that hold only hermes-patch's own edits.

    A stash qualifies when its untracked-files commit (if any) is empty, and every path
    it changes (in its worktree and index commits) is a modified ``.py``
    file of ``package`` whose stashed bytes hold at least one marker and,
    with our blocks removed, equal the base commit's bytes exactly. Anything
    else in it (a user's edit, an untracked file) disqualifies the entry.
    """
    if not _has_stash(root):
        return []
    out = git(root, "stash", "list", "--format=%gd%x00%H%x00%P%x00%gs", check=False).stdout
    found = []
    for line in out.splitlines():
        parts = line.split("\0")
        if len(parts) != 4:
            continue
        selector, commit, parents, subject = parts
        parents_list = parents.split()
        if len(parents_list) not in (2, 3):
            continue
        if (
            len(parents_list) == 3
            and git(root, "ls-tree", "-r", "--name-only", parents_list[2], check=False).stdout.strip()
        ):
            continue  # it holds untracked files: never ours (`--include-untracked` may add an empty third parent)
        base, index = parents_list[:2]
        paths = _only_our_blocks(root, base, [commit, index], package)
        if paths:
            found.append(OurStash(selector, commit, subject, tuple(paths)))
    return found


def _only_our_blocks(root: Path, base: str, commits: list[str], package: str) -> list[str] | None:
    seen: list[str] = []
    for commit in commits:
        diff = git(root, "diff-tree", "-r", "-z", "--no-renames", "--name-status", base, commit, check=False).stdout
        fields = [f for f in diff.split("\0") if f]
        for status, path in zip(fields[::2], fields[1::2]):
            if status != "M" or not path.startswith(package + "/") or not path.endswith(".py"):
                return None
            stashed = git(root, "cat-file", "blob", f"{commit}:{path}", check=False, text=False).stdout
            original = git(root, "cat-file", "blob", f"{base}:{path}", check=False, text=False).stdout
            if _MARKER not in stashed or clean(stashed) != original:
                return None
            if path not in seen:
                seen.append(path)
    return seen or None


def drop_stashes(root: Path, stashes: list[OurStash]) -> list[str]:
    """Drop the given stash entries (re-checking each selector still names the same commit); return the selectors dropped."""
    dropped = []
    for stash in sorted(stashes, key=lambda s: _stash_index(s.selector), reverse=True):
        current = git(root, "rev-parse", "--verify", "-q", stash.selector, check=False).stdout.strip()
        if current != stash.commit:
            continue
        git(root, "stash", "drop", "-q", stash.selector)
        dropped.append(stash.selector)
    return dropped


def _stash_index(selector: str) -> int:
    match = re.search(r"\{(\d+)\}", selector)
    return int(match.group(1)) if match else 0


def status_notes(app: Any, applied: bool) -> list[str]:
    """Notes for ``status`` on a git install: our stashes left by updates; our edits visible to git.

    Args:
        applied: whether any patch is applied or drifted (our blocks are in the files).
    """
    root = repo_root(app.target)
    if root is None:
        return []
    notes = [
        f"{s.selector} ({s.subject}) holds only hermes-patch's own edits of {', '.join(s.paths)}, left by an earlier update; "
        "`hermes-patch apply --drop-our-stash` drops it"
        for s in our_stashes(root, app.target.package_dir.name)
    ]
    if applied:
        state = filter_state(root)
        rel = _rel(root, app.target.file)
        if state["value"] is None or f"/{rel} filter={FILTER}" not in state["lines"]:
            notes.append(
                f"git sees our edits of {rel} as local changes, so `hermes update` would stash them; "
                "`hermes-patch apply` registers the git clean filter that hides them"
            )
    return notes


def with_status_notes(app: Any, status: Any) -> Any:
    """``status`` (a :class:`~hermes_patch.app.StatusResult`) with :func:`status_notes` added."""
    from dataclasses import replace

    applied = any(r.state in ("applied", "drifted") for r in status.reports)
    notes = status_notes(app, applied)
    return replace(status, notes=status.notes + tuple(notes)) if notes else status
