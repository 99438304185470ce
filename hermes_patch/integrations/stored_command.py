"""The hermes-patch command that git, hooks and systemd run later, and whether it is safe to store.

Git runs the clean filter and the hooks, systemd the drop-in, as root or
as the unit's user, long after this run: what is stored must be a command
only root or the running user can change (:mod:`hermes_patch.trust`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hermes_patch.context import Context
from hermes_patch.core.errors import RefusedError

__all__ = ["self_command", "command_problem", "stored_command", "apply_command"]


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


def apply_command(ctx: Context, where: str = "a git hook or systemd drop-in") -> list[str]:
    """``hermes-patch apply`` for this target, state dir and configuration, as an argv list.

    Raises:
        RefusedError: the hermes-patch that runs now is not safe to store
            (:func:`stored_command`), or a path holds a newline or another
            control character.
    """
    from hermes_patch.trust import CONTROL_CHARS

    t = ctx.target
    where_args = ["--root", str(t.root)] if t.root is not None else ["--file", str(t.file)]
    config = ["--config", str(ctx.config.path)] if ctx.config.exists else []
    command = [*stored_command(where), "apply", *where_args, "--state-dir", str(ctx.state.path), *config]
    for arg in command:
        if set(arg) & CONTROL_CHARS:
            raise RefusedError(
                f"the path {arg!r} contains a newline or another control character; written into {where} it could "
                "start a new shell line or systemd directive. Nothing was changed. Move it to a path without one and "
                "run `hermes-patch hook install` again."
            )
    return command
