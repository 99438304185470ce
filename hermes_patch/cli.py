"""The ``hermes-patch`` command line: a thin click layer over :class:`~hermes_patch.app.App`.

Exit codes: ``status`` 0 (all applied / not-needed), 1 (pending or
drifted), 2 (unknown shape or an error); ``apply``/``revert`` 0 (done or
nothing to do), 2 (refused or failed, every file unchanged), and with
``--check`` 1 when something would change (see :mod:`hermes_patch.report`); ``verify`` 0,
1 (an applied patch is not effective), 2 (an error); ``update`` 0 (done),
2 (a step failed; see :mod:`hermes_patch.integrations.update`); ``hook`` 0, or 2 when
refused (nothing changed).
"""

from __future__ import annotations

import functools
import gc
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import click

from hermes_patch import __version__
from hermes_patch.core.errors import HermesPatchError

if TYPE_CHECKING:
    import traceback

    from hermes_patch.app import App
    from hermes_patch.results import StatusResult, WriteResult

__all__ = ["main", "cli"]

JSON_SCHEMA = 1


def write_report_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--check`` and ``--json``, shared by ``apply`` and ``revert`` (docs/apply-schema.json)."""
    fn = click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print one versioned JSON document on stdout (docs/apply-schema.json; docs/error-schema.json on an error).",
    )(fn)
    return click.option(
        "--check",
        is_flag=True,
        help="Compute and prove everything, write nothing; exit 0 when nothing would change, 1 when something would, 2 on refusal.",
    )(fn)


def target_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add the target, config and state options every command accepts, and build the App."""

    @click.option("--file", "file", type=click.Path(path_type=Path), help="The web_server.py to patch.")
    @click.option(
        "--python",
        "python",
        type=click.Path(path_type=Path),
        help="An interpreter whose environment has hermes-agent installed.",
    )
    @click.option(
        "--root", "root", type=click.Path(path_type=Path), help="A Hermes git checkout or a site-packages directory."
    )
    @click.option(
        "--config",
        "config",
        type=click.Path(path_type=Path),
        help="Configuration file (TOML). Default: $HERMES_PATCH_CONFIG, else ~/.config/hermes-patch/config.toml.",
    )
    @click.option(
        "--state-dir",
        "state_dir",
        type=click.Path(path_type=Path),
        help="Where the ledger and backups live. Default: $HERMES_PATCH_STATE_DIR or ~/.local/state/hermes-patch.",
    )
    @functools.wraps(fn)
    def wrapper(
        file: Path | None,
        python: Path | None,
        root: Path | None,
        config: Path | None,
        state_dir: Path | None,
        **kwargs: Any,
    ) -> Any:
        from hermes_patch.app import App
        from hermes_patch.core.messages import for_target

        app = App(file=file, python=python, root=root, config_path=config, state_dir=state_dir)
        try:
            return fn(app, **kwargs)
        except HermesPatchError as exc:
            raise for_target(exc, vars(app).get("target")) from None  # only a target already located

    return wrapper


class _Group(click.Group):
    """Catches our error hierarchy once, prints one paragraph, exits 2.

    OS errors, a recursion too deep for the parsers and libcst's own errors
    that escaped the modules that should have named them end the same way
    (exit 2, one paragraph): a traceback exits 1, which CI reads as
    "pending" (issue 13).
    """

    def invoke(self, ctx: click.Context) -> Any:
        from hermes_patch.console import error
        from hermes_patch.core.messages import NOTHING_WRITTEN, STATUS, Failure, restore_from_release, run

        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # usage errors and --help: click's own messages and exit codes
        except SystemExit as exc:
            if _from_patch(exc) is None:
                raise  # our commands end with sys.exit(code)
            error(_unexpected(exc))  # a patch that calls sys.exit() must not decide the exit code
            ctx.exit(2)
        except HermesPatchError as exc:
            error(str(exc))
            ctx.exit(exc.exit_code)
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            error(
                str(
                    Failure(
                        f"{where}{exc.strerror or exc}",
                        cause="an operating-system error while hermes-patch worked; every write is atomic, so files "
                        "are either as they were or completely written",
                        outcome="",
                        next_command=f"fix the cause, then {run(STATUS)}",
                    )
                )
            )
            ctx.exit(2)
        except (RecursionError, MemoryError) as exc:
            error(
                str(
                    Failure(
                        f"hermes-patch ran out of {'recursion depth' if isinstance(exc, RecursionError) else 'memory'} "
                        "on an input nested deeper than its parsers allow",
                        outcome=NOTHING_WRITTEN,
                        next_command=restore_from_release(what="the Hermes files"),
                    )
                )
            )
            ctx.exit(2)
        except Exception as exc:
            if type(exc).__module__.split(".")[0] == "libcst":
                error(
                    str(
                        Failure(
                            f"libcst could not handle the target ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''})",
                            outcome=NOTHING_WRITTEN,
                            next_command=f"{run(STATUS)}, and report the file's shape",
                        )
                    )
                )
                ctx.exit(2)
            error(_unexpected(exc))
            ctx.exit(2)


def _from_patch(exc: BaseException) -> traceback.FrameSummary | None:
    """The innermost frame of ``exc``'s traceback that is in a patch module (built-in, user or entry point), if any."""
    import traceback

    from hermes_patch.core.patch import Patch

    def family(cls: type) -> list[type]:
        subclasses: list[type] = cls.__subclasses__()
        return [cls, *(c for sub in subclasses for c in family(sub))]

    files = {getattr(sys.modules.get(c.__module__), "__file__", None) for c in family(Patch)[1:]} - {None}
    return next((f for f in reversed(traceback.extract_tb(exc.__traceback__)) if f.filename in files), None)


def _unexpected(exc: BaseException) -> str:
    """The paragraph for an exception nothing expected: the patch module it came from, else our own bug.

    A patch's ``locate``, ``edits`` or ``Param`` that raises is a bug in
    that patch (often a user's, from ``patch_dirs`` or an entry point): the
    message names its file and line. Anything else is a bug in hermes-patch;
    the traceback goes to stderr for the report. Exit 2 either way, never
    the interpreter's 1, which ``status`` means as "pending" (helper-22).
    """
    import traceback

    from hermes_patch.core.messages import Failure, report_bug

    culprit = _from_patch(exc)
    what = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
    outcome = "Every write is journaled, so the files are as they were or completely written."
    if culprit is not None:
        return str(
            Failure(
                f"the patch module {culprit.filename} raised {what} (line {culprit.lineno}, in {culprit.name})",
                cause="a bug in that patch, not in the Hermes files",
                outcome=outcome,
                next_command="fix the patch, or switch it off with `enabled = false` under its [patches.<id>] "
                "(or drop its folder from patch_dirs), then run `hermes-patch status`",
            )
        )
    sys.stderr.write("".join(traceback.format_exception(exc)))
    return str(
        Failure(
            f"hermes-patch hit an internal error: {what}",
            outcome=outcome,
            next_command=report_bug("the traceback above and the output of `hermes-patch status --json`"),
        )
    )


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hermes-patch")
def cli() -> None:
    """Keep Hermes Agent's dashboard working behind reverse proxies.

    Finds the installed Hermes, applies versioned codemods to
    hermes_cli/web_server.py, proves each edit before writing it, and undoes
    it byte for byte.
    """


@cli.command("list")
@click.option(
    "--verbose",
    "-v",
    is_flag=True,
    help="Also show each patch's upstream reference (the report, release or PR behind it) and its parameters.",
)
@click.option("--config", "config", type=click.Path(path_type=Path), help="Configuration file (for patch_dirs).")
def list_cmd(verbose: bool, config: Path | None) -> None:
    """Every patch: id, supported releases (PEP 440), description."""
    from hermes_patch.app import App
    from hermes_patch.console import print_list

    app = App(config_path=config)
    rows = [(c.ID, str(c.VERSIONS), c.DESCRIPTION, c.SOURCE) for c in app.catalog]
    params = {c.ID: [(n, _default_text(p.default), p.doc) for n, p in c.PARAMS.items()] for c in app.catalog}
    upstream = {c.ID: c.UPSTREAM for c in app.catalog}
    print_list(rows, verbose, params, upstream)


def _default_text(default: Any) -> str:
    """A parameter's default for ``list -v``; ``None`` means the patch fits it to the release."""
    if default is None:
        return "(fitted to the release)"
    return json.dumps(list(default) if isinstance(default, tuple) else default)


@cli.command()
@target_options
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print a versioned JSON document on stdout (nothing else there; an error document on failure).",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Exit 1 on warnings too (a sensitive action made public, a suffix in hosts, a dashboard running old code); advice never counts.",
)
def status(app: App, as_json: bool, strict: bool) -> None:
    """Show each patch's state: applied, pending, not-needed, unknown-shape, drifted."""
    from hermes_patch import report
    from hermes_patch.status import build_status

    with report.machine_errors("status", as_json, app=app):
        result = build_status(app)
    sys.exit(_print_status(result, as_json, strict))


def _print_status(result: StatusResult, as_json: bool, strict: bool) -> int:
    """Print a status result (table, or the schema-1 JSON document); return its exit code.

    A patch whose parameters are wrong is bad input: its paragraph goes to
    stderr and the exit code is 2. ``--json`` still prints the whole
    document (that patch ``unknown-shape``, the others as detected); the
    table is left out, as for every other error. Warnings make ``--strict``
    exit 1; advice never does.
    """
    from hermes_patch.status import status_document

    code = result.exit_code
    if strict and code == 0 and result.warnings:
        code = 1
    if result.config_errors:
        if as_json:
            click.echo(json.dumps(status_document(result, 2), indent=2, sort_keys=True))
        from hermes_patch.console import error

        error(" ".join(result.config_errors))
        return 2
    if as_json:
        click.echo(json.dumps(status_document(result, code), indent=2, sort_keys=True))
    else:
        from hermes_patch.console import print_status

        print_status(result)
    return code


@cli.command()
@target_options
@click.option(
    "--ref",
    metavar="REF",
    help="A git ref of the installed checkout (after `git fetch`): origin/main, a tag, a commit.",
)
@click.option(
    "--wheel", type=click.Path(path_type=Path, dir_okay=False), help="A downloaded hermes-agent wheel (.whl)."
)
@click.option("--no-fetch", is_flag=True, help="With --ref: do not run `git fetch` first.")
@click.option("--json", "as_json", is_flag=True, help="Print the status --json document for that code on stdout.")
@click.option("--strict", is_flag=True, help="Exit non-zero on warnings too.")
def check(app: App, ref: str | None, wheel: Path | None, no_fetch: bool, as_json: bool, strict: bool) -> None:
    """Each patch's state on incoming code (a git ref, a wheel), as `status` would show it after the update.

    Reads the code without checking it out or writing anything (git's object
    store, or the wheel's zip archive). Exit codes as for `status`.
    """
    from hermes_patch.integrations.incoming import check as run_check

    sys.exit(_print_status(run_check(app, ref=ref, wheel=wheel, fetch=not no_fetch), as_json, strict))


@cli.command()
@target_options
@click.argument("ids", nargs=-1)
@click.option("--dry-run", is_flag=True, help="Print the unified diff and write nothing.")
@click.option(
    "--drop-our-stash/--keep-our-stash",
    "drop_stash",
    default=None,
    help="Git installs: drop (or keep, without asking) stash entries that hold only hermes-patch's own edits, left by an earlier `hermes update`. Default: ask on a terminal, else keep.",
)
@click.option(
    "--allow-version",
    is_flag=True,
    help="Also patch a shape a patch knows on a release outside its version range (or set allow_version = true in the configuration).",
)
@click.option(
    "--auto",
    "auto",
    metavar="SOURCE",
    hidden=True,
    help="Set by the git hooks and the systemd drop-in: a refusal is recorded for `status` and said on stderr.",
)
@write_report_options
@click.option(
    "--restart",
    is_flag=True,
    help="Restart the systemd unit(s) that run this install's dashboard after writing (exit 2 if systemctl fails; the patches stay written).",
)
def apply(
    app: App,
    ids: tuple[str, ...],
    dry_run: bool,
    drop_stash: bool | None,
    allow_version: bool,
    auto: str | None,
    check: bool,
    as_json: bool,
    restart: bool,
) -> None:
    """Apply the pending patches (all enabled ones, or IDS), then say which running dashboard to restart."""
    from hermes_patch.integrations import git_filter
    from hermes_patch import report
    from hermes_patch.console import note, print_write

    app._allow_version = app._allow_version or allow_version
    notes: list[str] = []
    restarted = True
    with report.machine_errors("apply", as_json, check, app=app):
        try:
            result = app.apply(list(ids) or None, dry_run=dry_run or check)
        except HermesPatchError as exc:
            if auto and not (dry_run or check):
                _auto_refused(app, auto, exc)
            raise
        if check:
            report.check_writable(app, result)
        if not as_json:
            print_write("apply", result, show_diff=dry_run or check)
        if not (dry_run or check):
            git_filter.sync(app)
            _offer_stash_drop(app, drop_stash, notes.append if as_json else note, interactive=not as_json)
            restarted = _after_write(app, result, restart, notes.append if as_json else None)
        if as_json:
            report.emit(report.write_document("apply", app, result, check, notes))
    sys.exit(report.write_exit_code(result, check) if restarted else 2)


def _after_write(app: App, result: WriteResult, restart: bool, sink: Callable[[str], None] | None = None) -> bool:
    """After a write: which dashboards run the old code and how to restart them (``--restart``: do it).

    Lines go to stdout, or to ``sink`` (the JSON document's notes). Returns
    False when a requested ``systemctl`` restart failed.
    """
    if not result.written and not restart:
        return True
    from hermes_patch.integrations.restart import after_write

    lines, ok = after_write(app, restart, say_none=sink is None)
    if sink is not None:
        for line in lines:
            sink(line)
    else:
        from hermes_patch.console import print_lines

        print_lines(lines)
    return ok


def _auto_refused(app: App, source: str, exc: Exception) -> None:
    """An automatic apply refused: record it for `status`, say so where the operator looks (stderr: journal, git pull)."""
    message = str(exc)
    try:
        app.record_auto_refusal(source, message)
    except HermesPatchError:  # no target, no state dir: the stderr line is all we can do
        pass
    click.echo(
        f"hermes-patch: the automatic apply from {source} refused; the dashboard runs WITHOUT the patches "
        f"until `hermes-patch apply` succeeds (`hermes-patch status` shows why).",
        err=True,
    )


def _offer_stash_drop(app: App, drop: bool | None, note: Callable[[str], None], interactive: bool = True) -> None:
    from hermes_patch.integrations.git_repo import repo_root
    from hermes_patch.integrations.git_stash import drop_stashes, our_stashes

    root = repo_root(app.target)
    if root is None:
        return
    stashes = our_stashes(root, app.target.package_dir.name)
    if not stashes:
        return
    listing = ", ".join(f"{s.selector} ({s.subject})" for s in stashes)
    if drop is None and interactive and sys.stdin.isatty() and sys.stdout.isatty():
        drop = click.confirm(
            f"{listing}: left by an earlier update, holding only hermes-patch's own edits. Drop?", default=False
        )
    if drop:
        note(f"dropped {', '.join(drop_stashes(root, stashes))}: they held only hermes-patch's own edits")
    else:
        note(
            f"{listing} holds only hermes-patch's own edits (left by an earlier update); kept. `hermes-patch apply --drop-our-stash` drops it"
        )


@cli.command()
@target_options
@click.argument("ids", nargs=-1)
def diff(app: App, ids: tuple[str, ...]) -> None:
    """Print the unified diff that `apply` would write (coloured on a terminal)."""
    from hermes_patch.console import print_diff

    print_diff(app.diff(list(ids) or None))


@cli.command()
@target_options
@click.argument("ids", nargs=-1)
@click.option("--force", is_flag=True, help="Also revert drifted patches (removes only our marked lines).")
@click.option("--dry-run", is_flag=True, help="Print the unified diff and write nothing.")
@write_report_options
@click.option(
    "--keep-session-token",
    is_flag=True,
    help="Keep the session token file `hook install --session-token` created (a full revert deletes it).",
)
@click.option(
    "--restart",
    is_flag=True,
    help="Restart the systemd unit(s) that run this install's dashboard after writing (exit 2 if systemctl fails).",
)
def revert(
    app: App,
    ids: tuple[str, ...],
    force: bool,
    dry_run: bool,
    check: bool,
    as_json: bool,
    keep_session_token: bool,
    restart: bool,
) -> None:
    """Undo our edits (all patches, or IDS); byte-identical when nothing else changed."""
    from hermes_patch import report
    from hermes_patch.console import print_write

    notes: list[str] = []
    restarted = True
    with report.machine_errors("revert", as_json, check, app=app):
        result = app.revert(list(ids) or None, force=force, dry_run=dry_run or check)
        if check:
            report.check_writable(app, result)
        if not as_json:
            print_write("revert", result, show_diff=dry_run or check)
        if not (dry_run or check):
            from hermes_patch.integrations import git_filter

            git_filter.sync(app)
            if not ids:
                from hermes_patch.integrations.session_token import forget

                for line in forget(app, keep_session_token):
                    click.echo(line, err=as_json)  # stdout holds only the JSON document with --json
            restarted = _after_write(app, result, restart, notes.append if as_json else None)
        if as_json:
            report.emit(report.write_document("revert", app, result, check, notes))
    sys.exit(report.write_exit_code(result, check) if restarted else 2)


@cli.command()
@target_options
@click.option(
    "--url", metavar="URL", help="The dashboard's public URL, as typed in the browser (https://hermes.example.com)."
)
@click.option(
    "--proxy-address",
    "proxy_addresses",
    metavar="ADDR",
    multiple=True,
    help="The proxy's address as the dashboard sees it, when the proxy runs on another host (an IP or a CIDR; repeatable).",
)
@click.option("--yes", "-y", is_flag=True, help="Write without asking (on a terminal).")
@click.option("--dry-run", is_flag=True, help="Show the configuration change and the resulting states; write nothing.")
def setup(app: App, url: str | None, proxy_addresses: tuple[str, ...], yes: bool, dry_run: bool) -> None:
    """Write the proxy settings (hosts, origins, trusted_proxies) from the dashboard's public URL.

    Asks on a terminal; scripts pass --url (and --proxy-address). Adds to the
    configuration file (every other key and comment kept), validates it as
    `status` will read it, shows the resulting states and what `apply`
    would write, then writes the file atomically, owner-only.
    """
    from hermes_patch.setup import run_setup

    sys.exit(run_setup(app, url, list(proxy_addresses), yes, dry_run))


@cli.command(context_settings={"ignore_unknown_options": True})
@target_options
@click.option(
    "--go-on",
    is_flag=True,
    help="Update even when the check of the incoming code says the dashboard would end up unpatched.",
)
@click.option(
    "--allow-version", is_flag=True, help="Re-apply known shapes on a release outside a patch's version range."
)
@click.argument("hermes_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- HERMES_ARGS...]")
def update(app: App, hermes_args: tuple[str, ...], go_on: bool, allow_version: bool) -> None:
    """Check the incoming code, revert our edits, run `hermes update` (with HERMES_ARGS), re-apply, show status.

    On a git install the incoming code (the checkout's upstream branch, after
    `git fetch`) is checked first; when a patch could not be applied to it the
    update stops before Hermes is touched, unless --go-on. Exit 0 when done, 2
    when stopped, when `hermes update` failed or the patches could not be
    re-applied (the message says which; no file is left half-patched).
    """
    from hermes_patch.console import error, print_status, step
    from hermes_patch.integrations.update import run_update

    app._allow_version = app._allow_version or allow_version
    outcome = run_update(app, hermes_args, step, error, go_on=go_on)
    if outcome.status is not None:
        print_status(outcome.status)
    sys.exit(outcome.exit_code)


@cli.group()
def hook() -> None:
    """Re-apply the patches after every update, by themselves (git hooks, systemd drop-in)."""


@hook.command("install")
@target_options
@click.option(
    "--systemd-unit",
    "unit",
    metavar="NAME",
    help="Also add an ExecStartPre= drop-in to this unit (the one that runs `hermes dashboard`).",
)
@click.option(
    "--user/--system",
    "user_scope",
    default=True,
    help="The unit is a user unit (default, ~/.config/systemd/user) or a system unit (/etc/systemd/system).",
)
@click.option(
    "--unit-dir", type=click.Path(path_type=Path), help="Write the drop-in below this unit directory instead."
)
@click.option(
    "--session-token",
    is_flag=True,
    help="Keep the dashboard's session token stable across restarts: an owner-only token file in the Hermes home, loaded by the drop-in (EnvironmentFile=).",
)
@click.option(
    "--hermes-home",
    type=click.Path(path_type=Path),
    help="The HERMES_HOME the dashboard runs with (for --session-token). Default: $HERMES_HOME, else ~/.hermes.",
)
def hook_install(
    app: App, unit: str | None, user_scope: bool, unit_dir: Path | None, session_token: bool, hermes_home: Path | None
) -> None:
    """Install what fits: git clean filter + post-merge/post-checkout hooks (git installs), systemd drop-in (--systemd-unit), session token file (--session-token)."""
    from hermes_patch.integrations import auto_apply
    from hermes_patch.console import print_lines

    token = None
    if session_token:
        from hermes_patch.integrations.session_token import default_path

        token = default_path(hermes_home)
    print_lines(auto_apply.install(app, unit, "user" if user_scope else "system", unit_dir, token))


@hook.command("uninstall")
@target_options
@click.option(
    "--keep-session-token",
    is_flag=True,
    help="Keep the session token file (deleted by default when hermes-patch created it).",
)
def hook_uninstall(app: App, keep_session_token: bool) -> None:
    """Remove exactly what `hook install` added (an earlier hook of yours is put back)."""
    from hermes_patch.integrations import auto_apply
    from hermes_patch.console import print_lines

    print_lines(auto_apply.uninstall(app, keep_session_token))


@hook.command("show")
@target_options
def hook_show(app: App) -> None:
    """Print what is installed for this target, where, and whether it is still as installed."""
    from hermes_patch.integrations import auto_apply
    from hermes_patch.console import print_installed

    print_installed(auto_apply.show(app), app.target)


@cli.command("git-clean-filter", hidden=True)
def git_clean_filter() -> None:
    """Git's clean filter (registered by apply on git installs): stdin without our marked blocks, on stdout."""
    from hermes_patch.integrations.git_clean import clean

    sys.stdout.buffer.write(clean(sys.stdin.buffer.read()))
    sys.stdout.buffer.flush()


@cli.command()
@click.option(
    "--proxy",
    "proxies",
    multiple=True,
    metavar="ADDRESS",
    help="Your reverse proxy's address as the dashboard sees it (repeatable); adds a topology check.",
)
@click.option(
    "--public-host",
    "public_host",
    metavar="NAME",
    help="The name browsers use to reach the proxy, sent as Host and Origin in the topology check.",
)
@target_options
def verify(app: App, proxies: tuple[str, ...], public_host: str | None) -> None:
    """Check, with Hermes's own interpreter and server, that each applied patch has its effect.

    Starts the release's own server (uvicorn with that release's settings)
    in a subprocess of that interpreter (from --python or the launcher),
    on a free port of a loopback address with a throw-away HERMES_HOME, and
    sends real HTTP requests and WebSocket handshakes as the configured
    proxies deliver them. With --proxy (and --public-host) it also checks
    your own topology. Prints effective, not effective or cannot verify per
    patch; exit 1 names the request that failed. Writes nothing.
    """
    from hermes_patch.console import print_verify
    from hermes_patch.integrations.verify import Topology, verify_patches

    topology = Topology.parse(proxies, public_host) if proxies or public_host else None
    result = verify_patches(app, topology)
    print_verify(result)
    sys.exit(result.exit_code)


def main() -> None:
    """Entry point of the ``hermes-patch`` script."""
    # One command is one short process whose big objects (the ast of a whole
    # module, libcst trees) hold no reference cycles and are freed by
    # reference counting. The cyclic collector would only re-scan them each
    # time it runs: 20-40% of a parse of the 19k-line release, and more than
    # linear as the file grows. mypy tunes its collector for the same reason.
    gc.disable()
    try:
        cli(prog_name="hermes-patch")
    except SystemExit as exc:
        _exit_now(exc)


def _exit_now(exc: SystemExit) -> None:
    """End the process with ``exc``'s status without freeing every object one by one.

    Freeing the ast of the 19k-line release at interpreter shutdown costs
    about a tenth of a parse, for nothing: the process ends (mypy's
    ``util.hard_exit`` skips the same work). The ``atexit`` handlers still
    run and the standard streams are flushed; when flushing fails (a closed
    pipe) or the status is a message, the interpreter exits as usual.
    """
    import atexit
    import os

    if exc.code is not None and not isinstance(exc.code, int):
        raise exc
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        raise exc from None
    os._exit(exc.code or 0)
