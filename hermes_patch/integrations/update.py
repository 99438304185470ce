"""``hermes-patch update``: the safe way to run ``hermes update`` from a terminal.

Four steps, each of which either completes or changes nothing:

1. revert our edits (so the checkout or site-packages holds upstream's
   bytes and ``hermes update`` has nothing of ours to stash or overwrite);
   a refusal (drift) stops here, before Hermes is touched;
2. run ``hermes update`` with the caller's arguments: ``<launcher> update``
   when the target was found through the ``hermes`` launcher, else
   ``<interpreter> -m hermes_cli.main update``;
3. re-apply onto whatever release is installed now, also when step 2
   failed (a failed update may have replaced the file or not);
4. show ``status``.

The lock is not held while ``hermes update`` runs: a post-merge hook
(:mod:`hermes_patch.integrations.git_hooks`) may re-apply in the middle, and step 3 then has
nothing left to do.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from hermes_patch.integrations import git_filter
from hermes_patch.context import Session
from hermes_patch.core.errors import HermesPatchError, TargetError
from hermes_patch.integrations.git_repo import git, repo_root
from hermes_patch.core.patch import State

if TYPE_CHECKING:
    from hermes_patch.results import StatusResult
    from hermes_patch.locate import Target

__all__ = ["UpdateOutcome", "hermes_update_command", "run_update"]


def _interpreter(target: Target) -> Path | None:
    if target.interpreter is not None:
        return Path(target.interpreter)
    root = target.root
    if root is None:
        return None
    if target.install_method == "git":  # the installer's venv inside the checkout
        candidates = [root / "venv/bin/python", root / ".venv/bin/python"]
    else:  # <prefix>/lib/pythonX.Y/site-packages -> <prefix>/bin/python
        candidates = [root.parent.parent.parent / "bin/python"]
    return next((c for c in candidates if c.exists()), None)


def hermes_update_command(target: Target, args: Sequence[str] = ()) -> list[str]:
    """The argv that runs ``hermes update ARGS`` for ``target``.

    Raises:
        TargetError: neither a launcher nor an interpreter is known for the target.
    """
    if target.launcher is not None:
        return [str(target.launcher), "update", *args]
    interp = _interpreter(target)
    if interp is not None:
        return [str(interp), "-m", "hermes_cli.main", "update", *args]
    raise TargetError(
        f"hermes-patch does not know how to run `hermes update` for {target.file} (found by {target.found_by}: "
        "no `hermes` launcher and no interpreter). Nothing was changed. Name the interpreter Hermes runs with: "
        "`hermes-patch update --python /path/to/venv/bin/python`."
    )


@dataclass(frozen=True)
class UpdateOutcome:
    """What ``run_update`` did.

    Attributes:
        exit_code: 0 done; 2 when ``hermes update`` failed or the re-apply
            was refused; else the final status's code.
        status: the final status, or ``None`` when even ``status`` failed.
    """

    exit_code: int
    status: StatusResult | None


def run_update(
    app: Session,
    hermes_args: Sequence[str],
    say: Callable[[str], None],
    error: Callable[[str], None],
    go_on: bool = False,
) -> UpdateOutcome:
    """Revert, run ``hermes update``, re-apply, and return the final status.

    Args:
        app: the command's session; after step 2 a fresh one is built
            (:meth:`~hermes_patch.context.Session.fresh`), since the release changed.
        hermes_args: passed to ``hermes update`` unchanged.
        say, error: print a progress line / an error paragraph.
        go_on: run ``hermes update`` even when the check of the incoming
            code (step 0) says the dashboard would end up unpatched.

    Raises:
        HermesPatchError: step 1 failed; nothing was changed and ``hermes
            update`` did not run.
    """
    command = hermes_update_command(app.target, hermes_args)
    before = app.target.version
    if not precheck(app, say, error, go_on):
        return UpdateOutcome(2, None)
    say(f"→ reverting hermes-patch's edits of {app.target.file} (release {before})")
    try:
        reverted = app.revert()
        git_filter.sync(app)
    except HermesPatchError as exc:
        raise type(exc)(f"hermes-patch update stopped before running `hermes update`: {exc}") from None
    say("  reverted " + ", ".join(reverted.patch_ids) if reverted.patch_ids else "  nothing to revert")
    say("→ running: " + " ".join(command))
    failed = False
    try:
        rc = subprocess.run(command, check=False).returncode
    except OSError as exc:
        rc, failed = 127, True
        error(
            f"could not run `{' '.join(command)}`: {exc.strerror}. Re-applying the patches onto the release that is installed now."
        )
    if rc != 0 and not failed:
        failed = True
        error(f"`hermes update` failed (exit {rc}). Re-applying the patches onto the release that is installed now.")
    app = app.fresh()
    say(
        f"→ re-applying onto release {app.target.version}"
        + (f" (was {before})" if app.target.version != before else "")
    )
    try:
        applied = app.apply()
        git_filter.sync(app)
        say("  applied " + ", ".join(applied.patch_ids) if applied.patch_ids else "  nothing to apply")
    except HermesPatchError as exc:
        error(
            f"the patches were NOT re-applied onto release {app.target.version}: {exc} "
            "The dashboard runs unpatched until this is fixed; `hermes-patch status` shows why."
        )
        app.record_auto_refusal("hermes-patch update", str(exc))
        failed = True
    try:
        status = app.status()
        status = git_filter.with_status_notes(app, status)
    except HermesPatchError as exc:
        error(str(exc))
        return UpdateOutcome(2, None)
    return UpdateOutcome(2 if failed else status.exit_code, status)


#: States of an enabled patch after which the dashboard would run unpatched.
_UNPATCHABLE = (State.UNKNOWN_SHAPE, State.DRIFTED)


def precheck(app: Session, say: Callable[[str], None], error: Callable[[str], None], go_on: bool = False) -> bool:
    """Step 0: on a git install, check the code ``hermes update`` will bring before Hermes is touched.

    Reads the upstream branch of the checkout (``@{upstream}``, else
    ``origin/main``) after a ``git fetch`` with :func:`hermes_patch.integrations.incoming.check`
    and says whether the patches will come back. Returns ``False`` (stop)
    when an enabled patch would be ``unknown-shape`` or ``drifted`` there and
    ``go_on`` is off. Other installs, and a check that cannot run (offline),
    only say so and go on.
    """
    from hermes_patch.integrations.incoming import check, upstream_ref

    target = app.target
    root = repo_root(target)
    if root is None:
        say(
            f"→ {target.install_method} install: the incoming release cannot be read before the update "
            "(`hermes-patch check --wheel FILE` checks a downloaded one)"
        )
        return True
    ref = upstream_ref(root)
    if ref is None:
        probe = git(root, "rev-parse", "--verify", "--quiet", "origin/main^{commit}", check=False)
        ref = "origin/main" if probe.returncode == 0 else None
    if ref is None:
        say("→ the checkout follows no upstream branch; skipping the check of the incoming code")
        return True
    say(f"→ checking the incoming code ({ref}) before updating")
    try:
        result = check(app, ref=ref)
    except HermesPatchError as exc:
        error(f"could not check the incoming code: {exc} Going on with the update.")
        return True
    enabled = [r for r in result.reports if r.enabled]
    say(
        f"  {result.target.found_by}, release {result.target.version or 'unknown'}: "
        + ", ".join(f"{r.id} {r.state.value}" for r in enabled)
    )
    bad = [r for r in enabled if r.state in _UNPATCHABLE]
    if not bad:
        say("  the patches will come back after the update")
        return True
    why = "; ".join(f"{r.id}: {r.reason}" for r in bad)
    if go_on:
        error(
            f"after this update the dashboard will run WITHOUT {', '.join(r.id for r in bad)} ({why}). Going on, as asked (--go-on)."
        )
        return True
    from hermes_patch.core.messages import NOTHING_CHANGED, UPGRADE

    error(
        f"hermes-patch update stopped before running `hermes update`: on the incoming code ({ref}) "
        f"{', '.join(r.id for r in bad)} cannot be applied ({why}), so the dashboard would end up unpatched. "
        f"{NOTHING_CHANGED} {UPGRADE}, switch the patch off "
        "(`enabled = false` under [patches.<id>]), or update anyway with `hermes-patch update --go-on`."
    )
    return False
