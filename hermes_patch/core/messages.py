"""The message catalogue: every failure as one paragraph, and advice written once.

A failure shown to people answers, in this order: what went wrong and where
(the headline, naming the path), why it matters or what likely caused it,
what happened to their files, the exact next command, and the facts behind
it (a patch id, the supported range, the installed version). :class:`Failure`
holds those parts and renders them as the single paragraph the command line
prints after ``error:``; ``str(TargetError(failure))`` is that paragraph, so a
failure can be raised as it is.

Advice that several failures give ("restore the file from the release", "move
the ledger aside", "nothing was changed", the lock and trust refusals) lives
here once, as constants and small functions, so it reads the same everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, TypeVar

__all__ = [
    "Failure",
    "NOTHING_CHANGED",
    "NOTHING_WRITTEN",
    "STATUS",
    "run",
    "reinstall_commands",
    "Restore",
    "restore_from_release",
    "for_target",
    "Install",
    "move_ledger_aside",
    "forged_record",
    "lock_held",
    "target_missing",
    "target_is_a_directory",
    "FIND_BY_PYTHON",
    "orphaned_marker",
    "untrusted",
    "UPGRADE",
    "RUN_AGAIN",
    "RUN_AS_OWNER",
    "report_bug",
    "remove_others_write",
]

#: What happened to the user's files when a command refused before writing.
NOTHING_CHANGED = "Nothing was changed."
#: The same, for refusals of a write (a proof failed, a dry run).
NOTHING_WRITTEN = "Nothing was written."
#: The command that shows where things stand after a fix.
STATUS = "hermes-patch status"
#: How to get a hermes-patch that reads newer state or knows newer releases.
UPGRADE = "Upgrade hermes-patch (`pip install -U hermes-patch`)"
#: How to let the interpreter Hermes runs with say where Hermes is.
FIND_BY_PYTHON = "`hermes-patch status --python /path/to/venv/bin/python`"
#: The way past a file the running user may not read or write (not a trust refusal: nobody else could change it).
RUN_AS_OWNER = "run hermes-patch as the user who owns the Hermes install"
#: The next step once the cause is gone, when the command itself is the one to repeat.
RUN_AGAIN = "run the command again"


def _sentence(text: str, *, capital: bool = True) -> str:
    text = text.strip()
    if capital and text[:1].islower():
        text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


@dataclass(frozen=True)
class Failure:
    """One failure, in the parts a reader needs; ``str()`` is the paragraph.

    Attributes:
        headline: what went wrong, as a clause that names the path
            (``"/x/web_server.py is empty"``); lower case is fine, it follows
            ``error:``. When ``path`` is set and the headline does not name it,
            the paragraph starts with ``"<path>: "``.
        path: the file or folder the failure is about (``None`` for none).
        cause: why it matters or what likely caused it: clauses that follow
            the headline after a semicolon.
        next_command: what to do now, with the exact command in backticks
            (``"run `hermes-patch status`"``), or a :class:`Restore`; its own
            sentence.
        facts: name/value pairs shown after the headline in parentheses
            (``(("patch", "public-action-status"), ("installed", "0.19.0"))``).
        outcome: what happened to the files (:data:`NOTHING_CHANGED` by
            default; ``""`` to leave it out when it is not a refusal).

    The paragraph reads ``headline (facts); cause. Outcome. Next command.``
    """

    headline: str
    path: Path | str | None = None
    cause: str = ""
    next_command: str | Restore = ""
    facts: tuple[tuple[str, str], ...] = ()
    outcome: str = NOTHING_CHANGED

    def __str__(self) -> str:
        head = self.headline.strip()
        if self.path is not None and str(self.path) not in head:
            head = f"{self.path}: {head}"
        if self.facts:
            head = head.rstrip(".") + " (" + ", ".join(f"{name} {value}" for name, value in self.facts) + ")"
        if self.cause.strip():
            head = head.rstrip(".") + "; " + self.cause.strip()
        rest = [_sentence(p) for p in (self.outcome, str(self.next_command)) if p.strip()]
        return " ".join([_sentence(head, capital=False), *rest])

    def for_install(self, version: str | None, method: str | None, python: Path | str | None = None) -> Failure:
        """This failure with its :class:`Restore` advice written for the install (itself without one).

        Args:
            version: the installed release, if known.
            method: the install method (:func:`hermes_patch.locate.install_method`).
            python: the interpreter Hermes runs with, if known.
        """
        if not isinstance(self.next_command, Restore):
            return self
        restore = replace(self.next_command, version=version, method=method, python=python)
        return replace(self, next_command=restore)


def run(command: str) -> str:
    """``run `COMMAND``` (for the end of a next step: ``f"fix it, then {run(STATUS)}"``)."""
    return f"run `{command}`"


def reinstall_commands(
    version: str | None = None,
    method: str | None = None,
    path: Path | str | None = None,
    python: Path | str | None = None,
) -> str:
    """The commands that put back the release's own files, for the install ``method``.

    Args:
        version: the installed release (``"0.19.0"``); ``<version>`` when unknown.
        method: the install method from :func:`hermes_patch.locate.install_method`
            (``git``, ``pip``, ``uv``, ``uv-tool``, ``pipx``, ...); ``None`` (or a
            method without its own command) gives the two commands that cover
            git and pip installs.
        path: the file to restore; a git install restores it from the checkout
            (``hermes update`` would stash a local change and put it back).
        python: the interpreter Hermes runs with, when known: pip and uv
            then install into its environment, not whichever ``pip`` is first
            on ``PATH``.

    Returns:
        Backticked commands for a sentence, e.g. ``"`hermes update`, or `pip
        install --force-reinstall --no-deps hermes-agent==<version>`"``.
    """
    pin = f"hermes-agent=={version or '<version>'}"
    if method == "git":
        where = Path(path) if path is not None else None
        return f"`git -C {where.parent} checkout -- {where.name}`" if where else "`git checkout -- hermes_cli`"
    pip = f"{python} -m pip" if python else "pip"
    uv = f"uv pip install --python {python}" if python else "uv pip install"
    by_method = {
        "pip": f"`{pip} install --force-reinstall --no-deps {pin}`",
        "uv": f"`{uv} --reinstall --no-deps {pin}`",
        "uv-tool": f"`uv tool install --reinstall {pin}`",
        "pipx": f"`pipx install --force {pin}`",
    }
    return by_method.get(method or "", f"`hermes update`, or `pip install --force-reinstall --no-deps {pin}`")


@dataclass(frozen=True)
class Restore:
    """The next step "restore the file from the release, then run ``hermes-patch status``".

    A value rather than a string so that whoever knows the install can name
    its own command: :meth:`Failure.for_install` fills in ``version`` and
    ``method`` once the target is known.

    Attributes:
        what: what to restore, for people (``"the file"``, ``"the Hermes files"``).
        then: the command to run afterwards (``""`` for none).
        path: the file to restore, when there is one.
        version: the installed release, when known (see :func:`reinstall_commands`).
        method: the install method, when known.
        python: the interpreter Hermes runs with, when known.
        instead: another way out, offered first (``"fix it"``).
    """

    what: str = "the file"
    then: str = STATUS
    path: Path | str | None = None
    version: str | None = None
    method: str | None = None
    python: Path | str | None = None
    instead: str = ""

    def __str__(self) -> str:
        text = f"restore {self.what} from the release ({reinstall_commands(self.version, self.method, self.path, self.python)})"
        text = f"{self.instead}, or {text}" if self.instead else text
        return f"{text}, then {run(self.then)}" if self.then else text


def restore_from_release(
    version: str | None = None,
    method: str | None = None,
    *,
    what: str = "the file",
    then: str = STATUS,
    path: Path | str | None = None,
    instead: str = "",
) -> Restore:
    """The next step for a file hermes-patch cannot work with: put the release's file back, then look again.

    ``str()`` of the result reads ``"restore the file from the release
    (`hermes update`, or ...), then run `hermes-patch status`"``; see
    :class:`Restore` for the arguments.
    """
    return Restore(what=what, then=then, path=path, version=version, method=method, instead=instead)


class Install(Protocol):
    """What :func:`for_target` reads of a located target (:class:`hermes_patch.locate.Target`)."""

    @property
    def version(self) -> str | None: ...
    @property
    def install_method(self) -> str: ...
    @property
    def interpreter(self) -> Path | None: ...


_E = TypeVar("_E", bound=BaseException)


def for_target(exc: _E, target: Install | None) -> _E:
    """``exc`` again, its :class:`Restore` advice written for ``target``'s install (``exc`` itself otherwise).

    An error raised with a :class:`Failure` keeps its parts in ``exc.args[0]``;
    code deep in the core does not know how Hermes was installed, the command
    line does, so it rewrites the advice on the way out.
    """
    failure = exc.args[0] if len(exc.args) == 1 else None
    if target is None or not isinstance(failure, Failure):
        return exc
    written = failure.for_install(target.version, target.install_method, target.interpreter)
    if written is failure:
        return exc
    new = type(exc)(written)
    new.__dict__.update(exc.__dict__)
    return new


def report_bug(attach: str, culprit: str = "") -> str:
    """``"this is a bug[ in CULPRIT]; please report it with ATTACH"``: the next step when hermes-patch itself is wrong.

    Args:
        attach: what the report needs (``"the traceback printed on stderr"``).
        culprit: whose bug, when known (``"the patch(es) trusted-hosts"``).
    """
    return f"this is a bug{f' in {culprit}' if culprit else ''}; please report it with {attach}"


def remove_others_write(path: Path | str) -> str:
    """``"remove the write permission of others (`chmod go-w PATH`)"``: for a file or folder others could change."""
    return f"remove the write permission of others (`chmod go-w {path}`)"


def move_ledger_aside(ledger: Path | str, then: str = STATUS) -> str:
    """``"move the ledger aside (`mv L L.bad`) and run `THEN`"``: the way out of a ledger that cannot be used.

    Our edits are found by their marker comments without the ledger, and the
    backups stay where they are, so setting it aside loses nothing needed.
    """
    return f"move the ledger aside (`mv {ledger} {ledger}.bad`) and {run(then)}"


def forged_record(ledger: Path | str, names: str, then: str = STATUS) -> Failure:
    """A ledger record naming something hermes-patch never writes (a forged or damaged ledger).

    Args:
        ledger: the ledger file.
        names: what the record says, as a clause (``"names 'x' for /pkg, which
            is outside that package"``).
        then: the command to run once the ledger is aside.
    """
    return Failure(
        headline=f"the ledger {ledger} {names}",
        path=ledger,
        cause="a record hermes-patch wrote never does, so it was forged or damaged",
        next_command=move_ledger_aside(ledger, then),
    )


def target_missing(path: Path | str) -> Failure:
    """The file named as the target (``--file``, or a link's end) does not exist."""
    return Failure(
        f"{path} does not exist",
        path,
        outcome="",
        next_command="check the path, or let hermes-patch find the install by itself: `hermes-patch status` "
        "(or `--python /path/to/venv/bin/python`)",
    )


def target_is_a_directory(path: Path | str) -> Failure:
    """A folder was named where the target file belongs (``--file hermes_cli``)."""
    return Failure(
        f"{path} is a directory",
        path,
        cause="--file takes the file hermes_cli/web_server.py",
        outcome="",
        next_command=f"for a checkout or a site-packages directory use `hermes-patch status --root {path}`",
    )


def orphaned_marker(path: Path | str, problem: str) -> Failure:
    """A ``# hermes-patch:`` marker comment that no block of ours follows (``problem`` from ``find_blocks``)."""
    return Failure(
        f"{path}: {problem}",
        path,
        cause="hermes-patch will not guess",
        next_command=restore_from_release(path=path, instead="delete that comment line if it is not ours"),
    )


def lock_held(lock: Path | str, timeout: float) -> Failure:
    """Another hermes-patch held the writer lock for ``timeout`` seconds."""
    return Failure(
        headline=f"another hermes-patch has held the lock {lock} for {timeout:.0f} s",
        path=lock,
        next_command=f"wait for it to finish and {RUN_AGAIN}",
        outcome="",
    )


def untrusted(what: str, reason: str, me: str, run_as_owner: str = "", advice: str = "") -> Failure:
    """Refuse ``what`` because another user could change it (the reason from :func:`hermes_patch.trust.why_untrusted`).

    Args:
        what: what it is for people (``"the Hermes install"``, ``"the state directory /x"``).
        reason: a clause naming the path and why (``"/x is owned by alice"``).
        me: the name of the user running hermes-patch.
        run_as_owner: the same command as the owner (``sudo -u alice hermes-patch ...``) when
            another user owns it; the next command then.
        advice: the next step when the reason is a write bit rather than an owner.
    """
    return Failure(
        headline=f"{reason}, so {what} is not under {me}'s sole control",
        cause=(
            f"hermes-patch running as {me} will not let another user's files steer it (their git configuration, "
            "an interpreter's .pth files, a file swapped for a symlink, a forged record could each run code or "
            f"write files as {me})"
        ),
        next_command=f"run it as that user: `{run_as_owner}`" if run_as_owner else advice,
    )
