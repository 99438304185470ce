"""Git installs: ``post-merge`` and ``post-checkout`` hooks that re-apply after git updates the checkout.

``post-merge`` runs after ``git pull`` (which ``hermes update`` and the
dashboard's Update button run), ``post-checkout`` after a branch switch
(which ``hermes update`` does when the checkout is not on its branch). Each
runs ``hermes-patch apply`` for this checkout and never changes the git
command's outcome. A hook that was already there is kept as
``<name>.pre-hermes-patch`` and run first. The clean filter
(:mod:`hermes_patch.integrations.git_filter`) stays registered while a hook is.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Callable

from hermes_patch.core.errors import RefusedError, StateError
from hermes_patch.integrations.git_repo import git, git_path
from hermes_patch.integrations.installed import (
    HookEntry,
    Installed,
    Write,
    changed_since_install,
    created_dirs_ok,
    file_state,
    missing_dirs,
    read_file,
    remove_created_dirs,
    sha,
)
from hermes_patch.integrations.stored_command import self_command

__all__ = ["GIT_HOOKS", "CHAIN_SUFFIX", "hook_script", "plan_install", "check_records", "remove", "show"]

GIT_HOOKS = ("post-merge", "post-checkout")
CHAIN_SUFFIX = ".pre-hermes-patch"
_HEADER = "# hermes-patch: {name} hook"


def hook_script(name: str, command: list[str], chained: bool) -> str:
    """The text of our git hook ``name`` running ``command``; runs ``<name>.pre-hermes-patch`` first when ``chained``."""
    args = command[command.index("apply") + 1 :]
    if "--auto" in args:  # status takes the target options only
        at = args.index("--auto")
        args = args[:at] + args[at + 2 :]
    command = [*command, "--auto", f"git-hook:{name}"] if "--auto" not in command else command
    status_cmd = " ".join(shlex.quote(a) for a in [*self_command(), "status", *args])
    cmd = " ".join(shlex.quote(a) for a in command)
    lines = [
        "#!/bin/sh",
        _HEADER.format(name=name)
        + " (installed by `hermes-patch hook install`; `hermes-patch hook uninstall` removes it)",
        "# Re-applies the dashboard patches after git updates the checkout (`hermes update`, the",
        "# dashboard's Update button); never changes the outcome of the git command.",
        "status=0",
    ]
    if chained:
        prev = f'"$(dirname "$0")/{name}{CHAIN_SUFFIX}"'
        lines += [f"if [ -x {prev} ]; then", f'    {prev} "$@"', "    status=$?", "fi"]
    message = shlex.quote(f"hermes-patch: the dashboard patches were not re-applied; see: {status_cmd}")
    run = [
        f"if [ -x {shlex.quote(command[0])} ]; then",
        f"    {cmd} </dev/null >&2 ||",
        f"        echo {message} >&2",  # one quoted word: nothing in a path is expanded
        "fi",
    ]
    if name == "post-checkout":  # $3 = 1: a branch checkout (not `git checkout -- FILE`); $1 != $2: HEAD moved
        run = ['if [ "$3" = 1 ] && [ "$1" != "$2" ]; then', *("    " + line for line in run), "fi"]
    lines += run + ["exit $status"]
    return "\n".join(lines) + "\n"


def _is_ours(data: bytes | None, name: str) -> bool:
    return data is not None and _HEADER.format(name=name).encode() in data


def _hooks_dir(root: Path) -> Path:
    hooks = git_path(root, "hooks")
    out = git(root, "rev-parse", "--git-common-dir").stdout.strip()
    common = Path(out) if Path(out).is_absolute() else root / out
    try:
        hooks.resolve().relative_to(common.resolve())
    except ValueError:
        raise RefusedError(
            f"core.hooksPath points git's hooks of {root} to {hooks}, a directory other repositories may share; "
            f"hermes-patch will not install hooks there. Nothing was changed. Add this line to your own post-merge "
            f"hook instead: {' '.join(shlex.quote(a) for a in ['hermes-patch', 'apply', '--root', str(root)])}"
        ) from None
    return hooks


def plan_install(
    root: Path, command: list[str], recorded: dict[str, HookEntry]
) -> tuple[list[Write[HookEntry]], list[tuple[Path, Path]]]:
    """The hooks to write for the checkout ``root`` and the existing hooks to keep aside (renames); nothing written.

    Args:
        command: ``hermes-patch apply ...`` for this target.
        recorded: the ``git-hooks`` entries of the ledger record.

    Raises:
        RefusedError: a hook we wrote was changed since, an existing hook
            cannot be chained, or ``core.hooksPath`` is shared.
    """
    hooks_dir = _hooks_dir(root)
    writes: list[Write[HookEntry]] = []
    moves: list[tuple[Path, Path]] = []
    for name in GIT_HOOKS:
        path = hooks_dir / name
        chain = hooks_dir / (name + CHAIN_SUFFIX)
        current = read_file(path) if path.exists() or path.is_symlink() else None
        rec = recorded.get(name)
        if current is not None and _is_ours(current, name):
            if rec and sha(current) != rec["sha256"]:
                raise RefusedError(changed_since_install(path, "install"))
            chained = chain.exists() or chain.is_symlink()
        elif current is not None or path.is_symlink():
            if chain.exists() or chain.is_symlink():
                raise RefusedError(
                    f"{path} exists and so does {chain}; hermes-patch cannot keep both. Nothing was changed. Merge them into one hook, then run `hermes-patch hook install` again."
                )
            moves.append((path, chain))
            chained = True
        else:
            chained = chain.exists() or chain.is_symlink()
        data = hook_script(name, command, chained).encode()
        entry: HookEntry = {
            "path": str(path),
            "sha256": sha(data),
            "chained": str(chain) if chained else None,
            "created_dirs": rec.get("created_dirs", missing_dirs(hooks_dir)) if rec else missing_dirs(hooks_dir),
        }
        writes.append(Write(f"git hook {name}", path, data, 0o755, name, entry))
    return writes, moves


def check_records(root: Path | None, hooks: dict[str, HookEntry], refuse: Callable[[str, object], StateError]) -> None:
    """Refuse hook records that name files ``hook install`` never writes (a forged or damaged ledger).

    A git hook record must name ``<hooks dir>/<post-merge|post-checkout>`` of
    this checkout (its chained hook ``<that>.pre-hermes-patch``); the folders
    it created must be that file's folder and those above it.

    Raises:
        StateError: from ``refuse(what, where)``; nothing was changed.
    """
    hooks_dir = git_path(root, "hooks") if root is not None and hooks else None
    for name, entry in hooks.items():
        expected = hooks_dir / name if hooks_dir is not None and name in GIT_HOOKS else None
        if expected is None or not isinstance(entry, dict) or entry.get("path") != str(expected):
            raise refuse(f"the git hook {name}", entry.get("path") if isinstance(entry, dict) else entry)
        if entry.get("chained") not in (None, str(expected) + CHAIN_SUFFIX):
            raise refuse(f"the earlier git hook of {name}", entry.get("chained"))
        if not created_dirs_ok(entry, expected.parent) or not isinstance(entry.get("sha256"), str):
            raise refuse(f"the folders created for the git hook {name}", entry.get("created_dirs"))


def remove(hooks: dict[str, HookEntry]) -> list[str]:
    """Remove the recorded hooks (checked already), putting back the hooks they ran first; one line per hook."""
    done = []
    for name, entry in sorted(hooks.items()):
        path = Path(entry["path"])
        if path.exists():
            path.unlink()
        chain = entry.get("chained")
        if chain and (Path(chain).exists() or Path(chain).is_symlink()):
            os.rename(chain, path)
            done.append(f"removed the git hook {name} and put back the earlier one: {path}")
        else:
            done.append(f"removed the git hook {name}: {path}")
        remove_created_dirs(entry)
    return done


def show(hooks: dict[str, HookEntry]) -> list[Installed]:
    """``hook show``'s lines for the recorded hooks: each file's state and the command it runs."""
    items = []
    for name, entry in sorted(hooks.items()):
        path = Path(entry["path"])
        items.append(Installed(f"git hook {name}", path, file_state(path, entry), _hook_lines(path, entry)))
    return items


def _hook_lines(path: Path, entry: HookEntry) -> tuple[str, ...]:
    data = (read_file(path) or b"").decode("utf-8", "replace")
    runs = [
        line.split(" </dev/null")[0].strip()
        for line in data.splitlines()
        if " apply " in line and not line.lstrip().startswith(("#", "echo"))
    ]
    chain = entry.get("chained")
    return tuple(runs) + ((f"runs the earlier hook first: {chain}",) if chain else ())
