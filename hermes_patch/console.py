"""Human output with rich; plain text when stdout is not a terminal.

rich is imported only here and only when a command prints for people, so
``status --json`` never pays for it. Diagnostics go to stderr.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from hermes_patch.results import StatusResult, WriteResult
    from hermes_patch.integrations.incoming import Incoming
    from hermes_patch.integrations.installed import Installed
    from hermes_patch.locate import Target
    from hermes_patch.core.patch import State
    from hermes_patch.integrations.verify import VerifyResult

__all__ = [
    "print_status",
    "print_list",
    "print_diff",
    "print_write",
    "print_verify",
    "print_lines",
    "print_installed",
    "note",
    "step",
    "error",
]

#: The colour of each ``verify`` outcome (:class:`~hermes_patch.integrations.verify.Verdict`).
_OUTCOME_STYLE = {
    "not-needed": "cyan",
    "effective": "green",
    "not effective": "red",
    "cannot verify": "yellow",
    "not applied": "yellow",
}


def _state_style(state: State) -> str:
    """The colour of a detection state in the ``status`` table."""
    from hermes_patch.core.patch import State

    return {
        State.APPLIED: "green",
        State.NOT_NEEDED: "cyan",
        State.PENDING: "yellow",
        State.DRIFTED: "magenta",
        State.UNKNOWN_SHAPE: "red",
    }[state]


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def error(message: str) -> None:
    """Print one error paragraph to stderr (``error: ...``).

    Plain text, without importing rich, when stderr is not a terminal: a
    ``status --json`` in CI that hits an error stays free of rich.
    """
    if not sys.stderr.isatty():
        sys.stderr.write(f"error: {message}\n")
        sys.stderr.flush()
        return
    console = _console(stderr=True)
    console.print(f"[bold red]error:[/] {_escape(message)}")


def note(message: str) -> None:
    """One ``note: ...`` line on stdout."""
    _console().print(f"[yellow]note:[/] {_escape(message)}")


def step(message: str) -> None:
    """One progress line of a multi-step command (``update``)."""
    _console().print(f"[bold]{_escape(message)}[/]")


def print_lines(lines: list[str]) -> None:
    """Plain lines, one per thing done."""
    console = _console()
    for line in lines:
        console.print(_escape(line))


def print_installed(items: list[Installed], target: Target) -> None:
    """``hook show``: each installed piece, its file, its state, and what it holds."""
    console = _console()
    if not [i for i in items if i.kind != "command path"]:
        console.print(
            f"nothing installed for {_escape(str(target.file))}; `hermes-patch hook install` installs what fits"
        )
    for item in items:
        style = "green" if item.state in ("installed", "trusted") else "red"
        console.print(f"{_escape(item.kind)}: {_escape(str(item.path))} [{style}]({item.state})[/]")
        for line in item.lines:
            console.print(f"    {_escape(line)}")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def describe_target(target: Target | Incoming) -> str:
    """One line: release, install method, writable, how found."""
    parts = [
        f"release {target.version or 'unknown'}",
        f"install {target.install_method}",
        "writable" if target.writable else f"read-only ({target.read_only})",
        f"found by {target.found_by}",
    ]
    if target.symlink is not None:
        parts.append(f"via symlink {target.symlink}")
    return " · ".join(parts)


def print_status(result: StatusResult) -> None:
    """The ``status`` table: target lines, one row per patch, a summary line."""
    console = _console()
    console.print(f"[bold]target[/] {_escape(str(result.target.file))}")
    console.print(f"       {_escape(describe_target(result.target))}")
    config = result.config
    if config is not None:
        console.print(
            f"[bold]config[/] {_escape(str(config.path)) if config.exists else 'none: defaults (' + _escape(str(config.path)) + ' does not exist)'}"
        )
    width = max((len(r.id) for r in result.reports), default=0)
    for r in result.reports:
        state = f"[{_state_style(r.state)}]{r.state.value:<13}[/]"
        off = "" if r.enabled else " [dim](disabled)[/]"
        console.print(f"{r.id:<{width}}  {state}  {_escape(r.reason)}{off}")
        for note in r.notes:
            console.print(f"{'':<{width}}  [yellow]{'warning':<13}[/]  {_escape(note)}")
        for advice in r.advice:
            console.print(f"{'':<{width}}  [cyan]{'note':<13}[/]  {_escape(advice)}")
    for note in result.notes:
        console.print(f"[yellow]warning:[/] {_escape(note)}")
    for advice in result.advice:
        console.print(f"[cyan]note:[/] {_escape(advice)}")
    console.print(_summary(result))


def _summary(result: StatusResult) -> str:
    from hermes_patch.core.patch import State

    enabled = [r for r in result.reports if r.enabled]
    counts: dict[State, int] = {}
    for r in enabled:
        counts[r.state] = counts.get(r.state, 0) + 1
    text = ", ".join(f"{counts[s]} {s.value}" for s in sorted(counts, key=lambda s: s.value)) or "no enabled patches"
    code = result.exit_code
    if code == 0:
        if result.warnings:  # `--strict` fails on them: say so on the line people read last
            return f"[green]ok[/]: {text}; [yellow]see the warning(s) above[/] (`--strict` exits 1 on them)"
        return f"[green]ok[/]: {text}"
    if code == 1:
        hint = "run `hermes-patch apply`" if State.PENDING in counts else ""
        if State.DRIFTED in counts:
            hint += (
                "; " if hint else ""
            ) + "drifted code changed after we patched it: see `hermes-patch diff` and `hermes-patch revert --help`"
        return f"[yellow]action needed[/]: {text}; {hint}"
    return f"[red]attention[/]: {text}; see the reasons above"


def print_list(
    rows: list[tuple[str, str, str, str]],
    verbose: bool = False,
    params: dict[str, list[tuple[str, str, str]]] | None = None,
    upstream: dict[str, str] | None = None,
) -> None:
    """``list``: ``id  versions  description (source)`` sorted by id; source is ``builtin``, a folder or an entry point.

    With ``verbose``, under each patch: ``upstream: <UPSTREAM>`` (the reports,
    releases or PRs the rule answers, from the class attribute) when
    ``upstream`` has the id, then one ``name = default  # doc`` line per
    parameter from ``params``.
    """
    console = _console()
    width = max((len(r[0]) for r in rows), default=0)
    vwidth = max((len(r[1]) for r in rows), default=0)
    for pid, versions, desc, source in sorted(rows):
        extra = f"  [dim]({_escape(source)})[/]"
        console.print(f"{pid:<{width}}  {versions:<{vwidth}}  {_escape(desc)}{extra}")
        if verbose and upstream and upstream.get(pid):
            console.print(f"{'':<{width}}    [dim]upstream: {_escape(upstream[pid])}[/]")
        if verbose and params:
            for name, default, doc in params.get(pid, []):
                console.print(f"{'':<{width}}    [dim]{name} = {_escape(default)}  # {_escape(doc)}[/]")


def print_diff(diff: str) -> None:
    """A unified diff: coloured on a terminal, verbatim otherwise."""
    if not diff:
        return
    if not sys.stdout.isatty():
        sys.stdout.write(diff)
        sys.stdout.flush()
        return
    from rich.syntax import Syntax

    _console().print(Syntax(diff, "diff", theme="ansi_dark", background_color="default"))


def print_write(verb: str, result: WriteResult, show_diff: bool = False) -> None:
    """One line per patch written, then a summary line."""
    console = _console()
    for note in result.notes:
        console.print(f"[yellow]note:[/] {_escape(note)}")
    if show_diff:
        print_diff(result.diff)
    if not result.patch_ids:
        console.print(f"nothing to {verb}")
        return
    if result.dry_run:
        console.print(f"dry run: would {verb} {', '.join(result.patch_ids)}; nothing was written")
        return
    files = ", ".join(str(p) for p in result.written)
    past = {"apply": "applied", "revert": "reverted"}[verb]
    console.print(f"[green]{past}[/] {', '.join(result.patch_ids)} → {_escape(files)}")
    if result.pruned:
        from hermes_patch.ledger import KEEP_WRITES

        console.print(
            f"pruned {result.pruned} old backup(s): the backups of the last {KEEP_WRITES} writes per target are kept"
        )


def print_verify(result: VerifyResult) -> None:
    """``verify``: the target and interpreter, then ``<id>  <outcome>[: reason]`` per patch."""
    console = _console()
    console.print(f"[bold]target[/] {_escape(str(result.target.file))}")
    interp = str(result.interpreter) if result.interpreter else "none known (pass --python)"
    console.print(f"       interpreter {_escape(interp)}")
    width = max((len(v.id) for v in result.verdicts), default=0)
    for v in result.verdicts:
        style = _OUTCOME_STYLE.get(v.outcome, "")
        head = f"[{style}]{v.outcome}[/]" if style else v.outcome
        console.print(f"{v.id:<{width}}  {head}{': ' + _escape(v.reason) if v.reason else ''}")
