"""The ``hermes-patch`` command line: a thin click layer over :class:`~hermes_patch.app.App`.

Exit codes: ``status`` 0 (all applied / not-needed), 1 (pending or
drifted), 2 (unknown shape or an error); ``apply``/``revert`` 0 (done or
nothing to do), 2 (refused or failed, every file unchanged); ``verify`` 0,
1 (an applied patch is not effective), 2 (an error).
"""

from __future__ import annotations

import functools
import gc
import json
import sys
from pathlib import Path
from typing import Any, Callable

import click

from hermes_patch import __version__
from hermes_patch.errors import HermesPatchError

__all__ = ["main", "cli"]

JSON_SCHEMA = 1


def target_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add the target, config and state options every command accepts, and build the App."""

    @click.option("--file", "file", type=click.Path(path_type=Path), help="The web_server.py to patch.")
    @click.option("--python", "python", type=click.Path(path_type=Path), help="An interpreter whose environment has hermes-agent installed.")
    @click.option("--root", "root", type=click.Path(path_type=Path), help="A Hermes git checkout or a site-packages directory.")
    @click.option("--config", "config", type=click.Path(path_type=Path), help="Configuration file (TOML). Default: ~/.config/hermes-patch/config.toml or $HERMES_PATCH_CONFIG.")
    @click.option("--state-dir", "state_dir", type=click.Path(path_type=Path), help="Where the ledger and backups live. Default: $HERMES_PATCH_STATE_DIR or ~/.local/state/hermes-patch.")
    @functools.wraps(fn)
    def wrapper(file, python, root, config, state_dir, **kwargs):
        from hermes_patch.app import App

        app = App(file=file, python=python, root=root, config_path=config, state_dir=state_dir)
        return fn(app, **kwargs)

    return wrapper


class _Group(click.Group):
    """Catches our error hierarchy once, prints one paragraph, exits 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HermesPatchError as exc:
            from hermes_patch.console import error

            error(str(exc))
            ctx.exit(exc.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hermes-patch")
def cli() -> None:
    """Keep Hermes Agent's dashboard working behind reverse proxies.

    Finds the installed Hermes, applies versioned codemods to
    hermes_cli/web_server.py, proves each edit before writing it, and undoes
    it byte for byte.
    """


@cli.command("list")
@click.option("--verbose", "-v", is_flag=True, help="Also show each patch's parameters.")
@click.option("--config", "config", type=click.Path(path_type=Path), help="Configuration file (for patch_dirs).")
def list_cmd(verbose: bool, config: Path | None) -> None:
    """Every patch: id, supported releases (PEP 440), description."""
    from hermes_patch.app import App
    from hermes_patch.console import print_list

    app = App(config_path=config)
    rows = [(c.ID, str(c.VERSIONS), c.DESCRIPTION, c.SOURCE) for c in app.catalog]
    params = {c.ID: [(n, json.dumps(list(p.default) if isinstance(p.default, tuple) else p.default), p.doc) for n, p in c.PARAMS.items()] for c in app.catalog}
    print_list(rows, verbose, params)


@cli.command()
@target_options
@click.option("--json", "as_json", is_flag=True, help="Print a versioned JSON document on stdout (nothing else there).")
@click.option("--strict", is_flag=True, help="Exit non-zero on warnings too (sensitive actions, notes).")
def status(app, as_json: bool, strict: bool) -> None:
    """Show each patch's state: applied, pending, not-needed, unknown-shape, drifted."""
    result = app.status()
    code = result.exit_code
    if strict and code == 0 and (result.notes or any(r.notes for r in result.reports if r.enabled)):
        code = 1
    if as_json:
        t = result.target
        doc = {
            "schema": JSON_SCHEMA,
            "target": {
                "file": str(t.file),
                "version": t.version,
                "install_method": t.install_method,
                "sha256": result.sha256,
                "writable": t.writable,
                "found_by": t.found_by,
            },
            "patches": [r.to_json() for r in result.reports],
            "notes": list(result.notes),
            "exit_code": code,
        }
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    else:
        from hermes_patch.console import print_status

        print_status(result)
    sys.exit(code)


@cli.command()
@target_options
@click.argument("ids", nargs=-1)
@click.option("--dry-run", is_flag=True, help="Print the unified diff and write nothing.")
def apply(app, ids: tuple[str, ...], dry_run: bool) -> None:
    """Apply the pending patches (all enabled ones, or IDS)."""
    from hermes_patch.console import print_write

    result = app.apply(list(ids) or None, dry_run=dry_run)
    print_write("apply", result, show_diff=dry_run)


@cli.command()
@target_options
@click.argument("ids", nargs=-1)
def diff(app, ids: tuple[str, ...]) -> None:
    """Print the unified diff that `apply` would write (coloured on a terminal)."""
    from hermes_patch.console import print_diff

    print_diff(app.diff(list(ids) or None))


@cli.command()
@target_options
@click.argument("ids", nargs=-1)
@click.option("--force", is_flag=True, help="Also revert drifted patches (removes only our marked lines).")
@click.option("--dry-run", is_flag=True, help="Print the unified diff and write nothing.")
def revert(app, ids: tuple[str, ...], force: bool, dry_run: bool) -> None:
    """Undo our edits (all patches, or IDS); byte-identical when nothing else changed."""
    from hermes_patch.console import print_write

    result = app.revert(list(ids) or None, force=force, dry_run=dry_run)
    print_write("revert", result, show_diff=dry_run)


@cli.command()
@target_options
def verify(app) -> None:
    """Check, inside Hermes's own interpreter, that each applied patch has its effect.

    Imports the patched dashboard in a subprocess of that interpreter (from
    --python or the launcher) and drives its routes and WebSocket checks.
    Prints effective, not effective or cannot verify per patch; writes nothing.
    """
    from hermes_patch.console import print_verify
    from hermes_patch.verify import verify_patches

    result = verify_patches(app)
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
    cli(prog_name="hermes-patch")
