"""``hermes-patch hook install | uninstall | show``: re-apply after every update, by itself.

What fits which setup:

* git install (the installer's default): the clean filter of
  :mod:`hermes_patch.integrations.git_filter` (git never sees our edits, so ``hermes
  update`` never stashes them) and the ``post-merge``/``post-checkout``
  hooks of :mod:`hermes_patch.integrations.git_hooks`;
* any install run by systemd: a drop-in (:mod:`hermes_patch.integrations.systemd`) whose
  ``ExecStartPre=-hermes-patch apply ...`` re-applies before every start of
  the unit that runs ``hermes dashboard``; for pip, uv and pipx installs
  this and ``hermes-patch update`` are the integration;
* ``--session-token``: the owner-only file that keeps the dashboard's
  session token across restarts (:mod:`hermes_patch.integrations.session_token`).

Installing twice writes the same bytes; uninstall removes exactly what
install added (a chained hook is renamed back, directories we created are
removed when empty). What was installed is recorded in the ledger (state
dir), never inside the Hermes tree.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from hermes_patch.integrations import git_filter, git_hooks, systemd
from hermes_patch.context import Context
from hermes_patch.core.errors import RefusedError, StateError
from hermes_patch.integrations.git_repo import git_path, repo_root
from hermes_patch.integrations.installed import (
    DropinEntry,
    HookEntry,
    Installed,
    Integrations,
    Write,
    changed_since_install,
    file_state,
    read_file,
    sha,
    write_file,
)
from hermes_patch.integrations.stored_command import apply_command, command_problem, self_command

if TYPE_CHECKING:
    from hermes_patch.integrations.session_token import TokenFile

__all__ = ["Installed", "install", "uninstall", "show"]

#: Builds the error for a ledger record naming a file install never writes: (what, where) → error.
Refuse = Callable[[str, object], StateError]


def install(
    ctx: Context,
    unit: str | None = None,
    scope: str = "user",
    unit_directory: Path | None = None,
    session_token: Path | None = None,
) -> list[str]:
    """Install what fits the target; return one line per thing done (for people).

    Args:
        unit: ``--systemd-unit``: also write a drop-in for this unit.
        session_token: ``--session-token``: keep the dashboard's session token
            in this owner-only file (created when missing, see
            :mod:`hermes_patch.integrations.session_token`); the drop-in loads it.
        scope: ``user`` or ``system`` (which systemd manager owns the unit).
        unit_directory: ``--unit-dir``: write the drop-in below this folder.

    Raises:
        RefusedError: nothing fits (a pip install without ``--systemd-unit``),
            a file we would write was changed since we installed it, a hook
            cannot be chained, or ``core.hooksPath`` is shared. Checked
            before anything is written.
        TargetError: git failed (see :func:`hermes_patch.integrations.git_repo.git`).
    """
    target = ctx.target
    root = repo_root(target)
    token = _prepare_token(session_token)
    if root is None and unit is None and token is None:
        how = "a git checkout" if target.install_method == "git" else f"a {target.install_method} install"
        raise RefusedError(
            f"{target.file} is {how}: there is no git hook to install"
            + (" (git is not on PATH)" if target.install_method == "git" else "")
            + ". For this install the integration is a systemd drop-in for the unit that runs `hermes dashboard` "
            "(`hermes-patch hook install --systemd-unit NAME --user`, or --system), and updating with "
            "`hermes-patch update` instead of `hermes update`. Nothing was changed."
        )
    if unit is not None:
        systemd.check_unit_exists(systemd.unit_name(unit), scope, unit_directory)
    command = apply_command(ctx, "a systemd drop-in" if root is None else "git hooks")
    done: list[str] = []
    with ctx.state.lock(ctx.key):
        ledger = ctx.state.load()
        record = ledger["targets"].setdefault(ctx.key, {})
        integ: Integrations = record.setdefault("integrations", {})
        hook_writes: list[Write[HookEntry]] = []
        moves: list[tuple[Path, Path]] = []
        if root is not None:
            hook_writes, moves = git_hooks.plan_install(root, command, integ.get("git-hooks", {}))
        dropin = None
        if unit is not None:
            env_file = token.path if token else None
            dropin = systemd.plan_dropin(unit, scope, unit_directory, command, env_file, integ.get("systemd", {}))
        # Record first, then write: the ledger always knows what we touched.
        if token is not None and token.created:
            integ["session-token"] = {"path": str(token.path), "sha256": token.sha256}
        for hook in hook_writes:
            integ.setdefault("git-hooks", {})[hook.name] = hook.entry
        if dropin is not None:
            integ.setdefault("systemd", {})[dropin.name] = dropin.entry
        writes: list[Write[HookEntry] | Write[DropinEntry]] = [*hook_writes, *([dropin] if dropin else [])]
        ctx.state.save(ledger)
        for src, dst in moves:
            os.rename(src, dst)
            done.append(f"kept the existing {src.name} hook as {dst.name}; ours runs it first")
        if token is not None:
            done.append(_create_token(token))
        for w in writes:
            w.path.parent.mkdir(parents=True, exist_ok=True)
            before = read_file(w.path)
            write_file(w.path, w.data, w.mode)
            done.append(f"{w.kind}: {w.path}" + (" (unchanged)" if before == w.data else ""))
    if root is not None:
        git_filter.sync(ctx)
        done.append(f"git clean filter: {git_path(root, 'info/attributes')} and {git_path(root, 'config')}")
    if unit is not None:
        done.append(systemd.reload(scope))
    return done


def uninstall(ctx: Context, keep_session_token: bool = False) -> list[str]:
    """Remove exactly what :func:`install` added for this target; return one line per thing done.

    The session token file is deleted too when hermes-patch created it and
    it is unchanged, unless ``keep_session_token``.

    Raises:
        RefusedError: a file we installed was changed since (checked for all
            before anything is removed).
        StateError: the ledger records a file ``hook install`` never writes.
    """
    from hermes_patch.integrations.session_token import forget

    done: list[str] = []
    scopes: set[str] = set()
    with ctx.state.lock(ctx.key):
        ledger = ctx.state.load()
        record = ledger["targets"].get(ctx.key, {})
        integ: Integrations = record.get("integrations", {})
        hooks = integ.get("git-hooks", {})
        dropins = integ.get("systemd", {})
        if not hooks and not dropins and not integ.get("session-token"):
            return ["nothing to uninstall: no hook is recorded for this target (`hermes-patch hook show`)"]
        refuse = _refuse_record(ctx)
        git_hooks.check_records(repo_root(ctx.target), hooks, refuse)
        systemd.check_records(dropins, refuse)
        items = [(Path(e["path"]), e) for e in hooks.values()] + [(Path(p), e) for p, e in dropins.items()]
        for path, entry in items:
            current = read_file(path)
            if current is not None and sha(current) != entry["sha256"]:
                raise RefusedError(changed_since_install(path, "remove it"))
        done += git_hooks.remove(hooks)
        removed, scopes = systemd.remove(dropins)
        done += removed
        integ.pop("git-hooks", None)
        integ.pop("systemd", None)
        ctx.state.save(ledger)
    done += forget(ctx, keep_session_token, release=True)
    if hooks:
        git_filter.sync(ctx)
        root = repo_root(ctx.target)
        if root is not None:
            kept = git_filter.filter_state(root).value is not None
            done.append(
                "git clean filter: kept while our edits are in the files (`hermes-patch revert` removes it)"
                if kept
                else "git clean filter: removed"
            )
    for scope in sorted(scopes):
        done.append(systemd.reload(scope))
    return done


def _refuse_record(ctx: Context) -> Refuse:
    """The refusal for a record naming a file ``hook install`` never writes (a forged or damaged ledger)."""

    def refuse(what: str, where: object) -> StateError:
        from hermes_patch.core.messages import forged_record

        return StateError(
            forged_record(
                ctx.state.ledger_path,
                f"records {what} at {where!r}, which is not a file `hermes-patch hook install` writes for this target",
                then="hermes-patch hook show",
            )
        )

    return refuse


def show(ctx: Context) -> list[Installed]:
    """What is installed for this target, from the ledger, checked against the files."""
    integ: Integrations = ctx.record().get("integrations", {})
    items: list[Installed] = []
    root = repo_root(ctx.target)
    filt = integ.get("git-filter")
    if filt and root is not None:
        state = git_filter.filter_state(root)
        ok = state.value == filt.get("command") and state.paths() == filt.get("paths")
        shown = "installed" if ok else "changed since install"
        items.append(
            Installed("git clean filter", state.config, shown, (f"filter.{git_filter.FILTER}.clean = {state.value}",))
        )
        items.append(Installed("git attributes", state.attributes, shown, state.lines))
    items += git_hooks.show(integ.get("git-hooks", {}))
    items += systemd.show(integ.get("systemd", {}))
    token = integ.get("session-token")
    if token:
        path = Path(token["path"])
        items.append(
            Installed(
                "session token file (owner-only; its content is never shown)",
                path,
                file_state(path, token),
                ("HERMES_DASHBOARD_SESSION_TOKEN for the dashboard",),
            )
        )
    exe = self_command()
    found = command_problem(exe)
    if found:
        items.append(
            Installed(
                "command path",
                Path(exe[0]),
                "refused",
                (f"{found[0]}; `hook install` (and apply on a git install) will not store it",),
            )
        )
    else:
        items.append(
            Installed(
                "command path",
                Path(exe[0]),
                "trusted",
                (
                    "owned by root or the running user, not group- or world-writable: safe to store in hooks, the git filter and drop-ins",
                ),
            )
        )
    return items


def _prepare_token(path: Path | None) -> TokenFile | None:
    """Check the session token file before anything is written (None when not asked for)."""
    if path is None:
        return None
    from hermes_patch.integrations import session_token

    return session_token.prepare(path)


def _create_token(token: TokenFile) -> str:
    from hermes_patch.integrations import session_token

    if not token.created:
        return f"session token file: {token.path} (kept; the dashboard keeps its token)"
    session_token.create(token)
    return (
        f"session token file: {token.path} (new, owner-only; systemd loads it with EnvironmentFile=, "
        f"other supervisors with `set -a; . {token.path}; set +a` before `hermes dashboard`)"
    )
