"""``hermes-patch hook install | uninstall | show``: re-apply after every update, by itself.

What fits which setup:

* git install (the installer's default): the clean filter of
  :mod:`hermes_patch.gitint` (git never sees our edits, so ``hermes update``
  never stashes them) and two git hooks in the checkout's hooks directory:
  ``post-merge`` (after ``git pull``, which ``hermes update`` and the
  dashboard's Update button run) and ``post-checkout`` (after a branch
  switch, which ``hermes update`` does when the checkout is not on its
  branch). Each runs ``hermes-patch apply`` for this checkout and never
  changes the git command's outcome. A hook that was already there is kept
  as ``<name>.pre-hermes-patch`` and run first.
* any install run by systemd: a drop-in
  ``<unit>.service.d/hermes-patch.conf`` with
  ``ExecStartPre=-hermes-patch apply ...``, so every (re)start of the unit
  that runs ``hermes dashboard`` re-applies first (``-``: a refusal never
  keeps the dashboard from starting). For pip, uv and pipx installs this
  and ``hermes-patch update`` are the integration.

Installing twice writes the same bytes; uninstall removes exactly what
install added (a chained hook is renamed back, directories we created are
removed when empty). What was installed is recorded in the ledger (state
dir), never inside the Hermes tree.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hermes_patch import gitint
from hermes_patch.errors import RefusedError
from hermes_patch.fileio import atomic_write

__all__ = [
    "Installed",
    "apply_command",
    "install",
    "uninstall",
    "show",
    "hook_script",
    "dropin_text",
    "unit_dir",
    "GIT_HOOKS",
]

GIT_HOOKS = ("post-merge", "post-checkout")
CHAIN_SUFFIX = ".pre-hermes-patch"
DROPIN = "hermes-patch.conf"
_HEADER = "# hermes-patch: {name} hook"
_UNIT_RE = re.compile(r"^[A-Za-z0-9:_.@\\-]+$")


@dataclass(frozen=True)
class Installed:
    """One installed piece, as ``hook show`` prints it.

    Attributes:
        kind: ``git clean filter``, ``git hook post-merge``, ``systemd drop-in``...
        path: the file it lives in.
        state: ``installed``, ``missing`` or ``changed since install``.
        lines: what it holds that matters (the command it runs, the entries).
    """

    kind: str
    path: Path
    state: str
    lines: tuple[str, ...] = ()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def apply_command(app: Any, where: str = "a git hook or systemd drop-in") -> list[str]:
    """``hermes-patch apply`` for this target, state dir and configuration, as an argv list.

    Raises:
        RefusedError: the hermes-patch that runs now is not safe to store
            (:func:`hermes_patch.gitint.stored_command`), or a path holds a
            newline or another control character.
    """
    from hermes_patch.trust import CONTROL_CHARS

    t = app.target
    where_args = ["--root", str(t.root)] if t.root is not None else ["--file", str(t.file)]
    config = ["--config", str(app.config.path)] if app.config.exists else []
    command = [*gitint.stored_command(where), "apply", *where_args, "--state-dir", str(app.state.path), *config]
    for arg in command:
        if set(arg) & CONTROL_CHARS:
            raise RefusedError(
                f"the path {arg!r} contains a newline or another control character; written into {where} it could "
                "start a new shell line or systemd directive. Nothing was changed. Move it to a path without one and "
                "run `hermes-patch hook install` again."
            )
    return command


# -- git hooks ---------------------------------------------------------------------------------


def hook_script(name: str, command: list[str], chained: bool) -> str:
    """The text of our git hook ``name`` running ``command``; runs ``<name>.pre-hermes-patch`` first when ``chained``."""
    args = command[command.index("apply") + 1 :]
    if "--auto" in args:  # status takes the target options only
        at = args.index("--auto")
        args = args[:at] + args[at + 2 :]
    command = [*command, "--auto", f"git-hook:{name}"] if "--auto" not in command else command
    status_cmd = " ".join(shlex.quote(a) for a in [*gitint.self_command(), "status", *args])
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
    hooks = gitint.git_path(root, "hooks")
    out = gitint.git(root, "rev-parse", "--git-common-dir").stdout.strip()
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


# -- systemd drop-ins ---------------------------------------------------------------------------


def _unit_name(unit: str) -> str:
    name = unit[: -len(".service")] if unit.endswith(".service") else unit
    if not name or not _UNIT_RE.match(name):
        raise RefusedError(
            f"{unit!r} is not a systemd unit name. Pass the name of the unit that runs `hermes dashboard`, e.g. --systemd-unit hermes-dashboard (see `systemctl --user list-units 'hermes*'`)."
        )
    return name


def unit_search_path(scope: str, override: Path | None = None) -> list[Path]:
    """Where systemd looks for unit files (systemd.unit(5), "Unit File Load Path"), ``--unit-dir`` first."""
    env = os.environ.get
    home = Path.home()
    dirs = [override.expanduser().absolute()] if override is not None else []
    if scope == "system":
        return dirs + [
            Path(p)
            for p in (
                "/etc/systemd/system.control",
                "/run/systemd/system.control",
                "/run/systemd/transient",
                "/etc/systemd/system",
                "/run/systemd/system",
                "/usr/local/lib/systemd/system",
                "/usr/lib/systemd/system",
                "/lib/systemd/system",
            )
        ]
    config = Path(env("XDG_CONFIG_HOME") or home / ".config").expanduser()
    data = Path(env("XDG_DATA_HOME") or home / ".local/share").expanduser()
    runtime = env("XDG_RUNTIME_DIR")
    dirs += [config / "systemd/user.control", config / "systemd/user"]
    dirs += [Path(d) / "systemd/user" for d in (env("XDG_CONFIG_DIRS") or "/etc/xdg").split(":") if d]
    dirs += [Path("/etc/systemd/user")]
    if runtime:
        dirs += [
            Path(runtime) / "systemd/user.control",
            Path(runtime) / "systemd/transient",
            Path(runtime) / "systemd/user",
        ]
    dirs += [Path("/run/systemd/user"), data / "systemd/user"]
    dirs += [Path(d) / "systemd/user" for d in (env("XDG_DATA_DIRS") or "/usr/local/share:/usr/share").split(":") if d]
    return dirs + [Path("/usr/local/lib/systemd/user"), Path("/usr/lib/systemd/user"), Path("/lib/systemd/user")]


def check_unit_exists(name: str, scope: str, override: Path | None = None) -> None:
    """Refuse a unit that systemd would not find (a misspelt ``--systemd-unit``): its drop-in would never run.

    Looks for ``<name>.service`` (and the template ``<prefix>@.service`` of an
    instance) in the unit load path; where systemd runs, also asks
    ``systemctl show -p LoadState`` (a generated or linked unit).

    Raises:
        RefusedError: no such unit; names the folders searched and the command that lists units.
    """
    files = [f"{name}.service"]
    if "@" in name:
        files.append(name.split("@", 1)[0] + "@.service")
    path = unit_search_path(scope, override)
    if any((d / f).exists() for d in path for f in files):
        return
    flag = "--user" if scope == "user" else "--system"
    if Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
        try:
            out = subprocess.run(
                ["systemctl", flag, "show", "-p", "LoadState", "--value", f"{name}.service"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            if out.returncode == 0 and out.stdout.strip() == "loaded":
                return
        except (OSError, subprocess.TimeoutExpired):
            pass
    other = "--system" if scope == "user" else "--user"
    shown = (
        ", ".join(str(d) for d in path[:4]) + f" and {len(path) - 4} more"
        if len(path) > 4
        else ", ".join(str(d) for d in path)
    )
    raise RefusedError(
        f"there is no {scope} unit {name}.service (looked in {shown}), so a drop-in for it would never run. Nothing was changed. "
        f"Check the name: `systemctl {flag} list-unit-files 'hermes*'` lists the units; a {'system' if scope == 'user' else 'user'} unit needs {other}; "
        "create the unit first, then run `hermes-patch hook install --systemd-unit NAME` again."
    )


def unit_dir(scope: str, override: Path | None = None) -> Path:
    """Where unit drop-ins go: ``--unit-dir``, else ``$XDG_CONFIG_HOME/systemd/user`` (``--user``) or ``/etc/systemd/system``."""
    if override is not None:
        return override.expanduser().absolute()
    if scope == "system":
        return Path("/etc/systemd/system")
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config").expanduser() / "systemd" / "user"


def _systemd_quote(arg: str) -> str:
    arg = arg.replace("%", "%%").replace("$", "$$")
    if re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dropin_text(unit: str, scope: str, command: list[str], env_file: Path | None = None) -> str:
    """The drop-in file for ``unit`` (``ExecStartPre=-`` so a refusal never blocks the start).

    ``env_file``: the session token file (:mod:`hermes_patch.session_token`),
    loaded with ``EnvironmentFile=-`` (``-``: a missing file is no error, the
    dashboard then draws its own token). systemd reads it before each
    command it starts, as root, so the file can stay owner-only.
    """
    lines = [
        f"# hermes-patch: re-applies the dashboard patches before every start of {unit}.service",
        f"# (installed by `hermes-patch hook install --systemd-unit {unit} --{scope}"
        + (" --session-token" if env_file else "")
        + "`; `hermes-patch hook uninstall` removes it)",
        "[Service]",
        "ExecStartPre=-" + " ".join(_systemd_quote(a) for a in command),
    ]
    if env_file is not None:
        lines.append("EnvironmentFile=-" + _systemd_quote(str(env_file)))
    return "\n".join(lines) + "\n"


def _reload(scope: str) -> str:
    cmd = ["systemctl", "--user", "daemon-reload"] if scope == "user" else ["systemctl", "daemon-reload"]
    shown = " ".join(cmd)
    if shutil.which("systemctl") is None:
        return f"systemctl is not on PATH here; run `{shown}` on the machine that runs the unit"
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`{shown}` could not run ({exc}); run it yourself"
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()
        return f"`{shown}` failed ({last[-1] if last else proc.returncode}); run it yourself where systemd manages the unit"
    return f"ran `{shown}`"


# -- install / uninstall / show ---------------------------------------------------------------


def _write_file(path: Path, data: bytes, mode: int) -> None:
    if not path.is_symlink() and _read(path) == data and (path.stat().st_mode & 0o777) == mode:
        return
    atomic_write(path, data, mode, follow=False)  # a link there is replaced, never written through
    os.chmod(path, mode)


def install(
    app: Any,
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
            :mod:`hermes_patch.session_token`); the drop-in loads it.
        scope: ``user`` or ``system`` (which systemd manager owns the unit).
        unit_directory: ``--unit-dir``: write the drop-in below this folder.

    Raises:
        RefusedError: nothing fits (a pip install without ``--systemd-unit``),
            a file we would write was changed since we installed it, a hook
            cannot be chained, or ``core.hooksPath`` is shared. Checked
            before anything is written.
        TargetError: git failed (see :func:`hermes_patch.gitint.git`).
    """
    target = app.target
    root = gitint.repo_root(target)
    token = session_token_prepare(session_token)
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
        check_unit_exists(_unit_name(unit), scope, unit_directory)
    command = apply_command(app, "a systemd drop-in" if root is None else "git hooks")
    done: list[str] = []
    with app.state.lock(app.key):
        ledger = app.state.load()
        record = ledger["targets"].setdefault(app.key, {})
        integ = record.setdefault("integrations", {})
        writes: list[tuple[str, Path, bytes, int, dict[str, Any]]] = []
        moves: list[tuple[Path, Path]] = []
        if root is not None:
            hooks_dir = _hooks_dir(root)
            recorded = integ.get("git-hooks", {})
            for name in GIT_HOOKS:
                path = hooks_dir / name
                chain = hooks_dir / (name + CHAIN_SUFFIX)
                current = _read(path) if path.exists() or path.is_symlink() else None
                rec = recorded.get(name)
                if _is_ours(current, name):
                    if rec and _sha(current) != rec["sha256"]:  # type: ignore[arg-type]
                        raise RefusedError(_changed(path, "install"))
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
                entry = {
                    "path": str(path),
                    "sha256": _sha(data),
                    "chained": str(chain) if chained else None,
                    "created_dirs": (rec or {}).get("created_dirs", _missing_dirs(hooks_dir)),
                }
                writes.append((f"git hook {name}", path, data, 0o755, entry))
        if unit is not None:
            name = _unit_name(unit)
            directory = unit_dir(scope, unit_directory) / f"{name}.service.d"
            path = directory / DROPIN
            data = dropin_text(
                name, scope, [*command, "--auto", f"systemd:{name}.service"], token.path if token else None
            ).encode()
            rec = integ.get("systemd", {}).get(str(path))
            current = _read(path)
            if current is not None and current != data and (rec is None or _sha(current) != rec["sha256"]):
                raise RefusedError(
                    _changed(path, "install")
                    if rec
                    else f"{path} exists and was not written by hermes-patch; nothing was changed. Move it aside, or merge its lines into your own drop-in."
                )
            entry = {
                "unit": name,
                "scope": scope,
                "sha256": _sha(data),
                "created_dirs": (rec or {}).get("created_dirs", _missing_dirs(directory)),
            }
            writes.append(("systemd drop-in", path, data, 0o644, entry))
        # Record first, then write: the ledger always knows what we touched.
        if token is not None and token.created:
            integ["session-token"] = {"path": str(token.path), "sha256": token.sha256}
        for kind, path, _data, _mode, entry in writes:
            if kind.startswith("git hook"):
                integ.setdefault("git-hooks", {})[kind.split()[-1]] = entry
            else:
                integ.setdefault("systemd", {})[str(path)] = entry
        app.state.save(ledger)
        for src, dst in moves:
            os.rename(src, dst)
            done.append(f"kept the existing {src.name} hook as {dst.name}; ours runs it first")
        if token is not None:
            done.append(session_token_create(token))
        for kind, path, data, mode, _entry in writes:
            path.parent.mkdir(parents=True, exist_ok=True)
            before = _read(path)
            _write_file(path, data, mode)
            done.append(f"{kind}: {path}" + (" (unchanged)" if before == data else ""))
    if root is not None:
        gitint.sync(app)
        done.append(
            f"git clean filter: {gitint.git_path(root, 'info/attributes')} and {gitint.git_path(root, 'config')}"
        )
    if unit is not None:
        done.append(_reload(scope))
    return done


def _changed(path: Path, verb: str) -> str:
    return (
        f"{path} was changed since `hermes-patch hook install` wrote it; hermes-patch will not {verb} over someone's edit. "
        f"Nothing was changed. Compare it with `hermes-patch hook show`, then move it aside and run the command again."
    )


def uninstall(app: Any, keep_session_token: bool = False) -> list[str]:
    """Remove exactly what :func:`install` added for this target; return one line per thing done.

    The session token file is deleted too when hermes-patch created it and
    it is unchanged, unless ``keep_session_token``.

    Raises:
        RefusedError: a file we installed was changed since (checked for all
            before anything is removed).
    """
    done: list[str] = []
    scopes: set[str] = set()
    only_token = False
    with app.state.lock(app.key):
        ledger = app.state.load()
        record = ledger["targets"].get(app.key, {})
        integ = record.get("integrations", {})
        hooks = integ.get("git-hooks", {})
        dropins = integ.get("systemd", {})
        if not hooks and not dropins:
            only_token = bool(integ.get("session-token"))
            if not only_token:
                return ["nothing to uninstall: no hook is recorded for this target (`hermes-patch hook show`)"]
        _check_records(app, hooks, dropins)
        items = [(Path(e["path"]), e) for e in hooks.values()] + [(Path(p), e) for p, e in dropins.items()]
        for path, entry in items:
            current = _read(path)
            if current is not None and _sha(current) != entry["sha256"]:
                raise RefusedError(_changed(path, "remove it"))
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
            _rmdir_if_created(entry)
        for p, entry in sorted(dropins.items()):
            path = Path(p)
            if path.exists():
                path.unlink()
            done.append(f"removed the systemd drop-in {path}")
            _rmdir_if_created(entry)
            scopes.add(entry["scope"])
        integ.pop("git-hooks", None)
        integ.pop("systemd", None)
        app.state.save(ledger)
    done += forget_session_token(app, keep_session_token, release=True)
    if hooks:
        gitint.sync(app)
        root = gitint.repo_root(app.target)
        if root is not None:
            kept = gitint.filter_state(root)["value"] is not None
            done.append(
                "git clean filter: kept while our edits are in the files (`hermes-patch revert` removes it)"
                if kept
                else "git clean filter: removed"
            )
    for scope in sorted(scopes):
        done.append(_reload(scope))
    return done


def _check_records(app: Any, hooks: dict[str, Any], dropins: dict[str, Any]) -> None:
    """Refuse records that name files ``hook install`` never writes (a forged or damaged ledger).

    A git hook record must name ``<hooks dir>/<post-merge|post-checkout>`` of
    this checkout (its chained hook ``<that>.pre-hermes-patch``); a drop-in
    record ``<dir>/<unit>.service.d/hermes-patch.conf``; the folders they
    created must be that file's folder and those above it.

    Raises:
        StateError: naming the ledger and the record; nothing was changed.
    """
    from hermes_patch.errors import StateError

    root = gitint.repo_root(app.target)
    hooks_dir = gitint.git_path(root, "hooks") if root is not None and hooks else None

    def refuse(what: str, where: Any) -> StateError:
        from hermes_patch.messages import forged_record

        return StateError(
            forged_record(
                app.state.ledger_path,
                f"records {what} at {where!r}, which is not a file `hermes-patch hook install` writes for this target",
                then="hermes-patch hook show",
            )
        )

    def ancestors_ok(entry: dict[str, Any], folder: Path) -> bool:
        allowed = {str(d) for d in [folder, *folder.parents][:-1]}
        dirs = entry.get("created_dirs", [])
        return isinstance(dirs, list) and all(isinstance(d, str) and d in allowed for d in dirs)

    for name, entry in hooks.items():
        expected = hooks_dir / name if hooks_dir is not None and name in GIT_HOOKS else None
        if expected is None or not isinstance(entry, dict) or entry.get("path") != str(expected):
            raise refuse(f"the git hook {name}", entry.get("path") if isinstance(entry, dict) else entry)
        if entry.get("chained") not in (None, str(expected) + CHAIN_SUFFIX):
            raise refuse(f"the earlier git hook of {name}", entry.get("chained"))
        if not ancestors_ok(entry, expected.parent) or not isinstance(entry.get("sha256"), str):
            raise refuse(f"the folders created for the git hook {name}", entry.get("created_dirs"))
    for p, entry in dropins.items():
        path = Path(p)
        unit = entry.get("unit") if isinstance(entry, dict) else None
        if (
            not isinstance(unit, str)
            or not _UNIT_RE.match(unit)
            or not path.is_absolute()
            or path.name != DROPIN
            or path.parent.name != f"{unit}.service.d"
            or entry.get("scope") not in ("user", "system")
            or ".." in path.parts
            or not isinstance(entry.get("sha256"), str)
        ):
            raise refuse("a systemd drop-in", p)
        if not ancestors_ok(entry, path.parent):
            raise refuse("the folders created for a systemd drop-in", entry.get("created_dirs"))


def _missing_dirs(directory: Path) -> list[str]:
    """The folders from ``directory`` up that do not exist yet (deepest first): what install creates."""
    missing = []
    while not directory.exists() and directory != directory.parent:
        missing.append(str(directory))
        directory = directory.parent
    return missing


def _rmdir_if_created(entry: dict[str, Any]) -> None:
    for directory in entry.get("created_dirs", []):
        try:
            Path(directory).rmdir()
        except OSError:
            return  # not empty: something else lives there now, and in its parents


def show(app: Any) -> list[Installed]:
    """What is installed for this target, from the ledger, checked against the files."""
    record = app.record()
    integ = record.get("integrations", {})
    items: list[Installed] = []
    root = gitint.repo_root(app.target)
    filt = integ.get("git-filter")
    if filt and root is not None:
        state = gitint.filter_state(root)
        ok = state["value"] == filt.get("command") and sorted(
            line.split()[0].lstrip("/") for line in state["lines"]
        ) == filt.get("paths")
        items.append(
            Installed(
                "git clean filter",
                state["config"],
                "installed" if ok else "changed since install",
                (f"filter.{gitint.FILTER}.clean = {state['value']}",),
            )
        )
        items.append(
            Installed(
                "git attributes",
                state["attributes"],
                "installed" if ok else "changed since install",
                tuple(state["lines"]),
            )
        )
    for name, entry in sorted(integ.get("git-hooks", {}).items()):
        path = Path(entry["path"])
        items.append(Installed(f"git hook {name}", path, _state(path, entry), _hook_lines(path, entry)))
    for p, entry in sorted(integ.get("systemd", {}).items()):
        path = Path(p)
        data = _read(path) or b""
        lines = tuple(
            line
            for line in data.decode("utf-8", "replace").splitlines()
            if line.startswith(("ExecStartPre=", "EnvironmentFile="))
        )
        items.append(
            Installed(
                f"systemd drop-in ({entry['scope']} unit {entry['unit']}.service)", path, _state(path, entry), lines
            )
        )
    token = integ.get("session-token")
    if token:
        path = Path(token["path"])
        items.append(
            Installed(
                "session token file (owner-only; its content is never shown)",
                path,
                _state(path, token),
                ("HERMES_DASHBOARD_SESSION_TOKEN for the dashboard",),
            )
        )
    exe = gitint.self_command()
    found = gitint.command_problem(exe)
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


def _state(path: Path, entry: dict[str, Any]) -> str:
    data = _read(path)
    if data is None:
        return "missing"
    return "installed" if _sha(data) == entry["sha256"] else "changed since install"


def _hook_lines(path: Path, entry: dict[str, Any]) -> tuple[str, ...]:
    data = (_read(path) or b"").decode("utf-8", "replace")
    runs = [
        line.split(" </dev/null")[0].strip()
        for line in data.splitlines()
        if " apply " in line and not line.lstrip().startswith(("#", "echo"))
    ]
    chain = entry.get("chained")
    return tuple(runs) + ((f"runs the earlier hook first: {chain}",) if chain else ())


# -- the session token file ----------------------------------------------------------------------


def session_token_prepare(path: Path | None):
    """Check the session token file before anything is written (None when not asked for)."""
    if path is None:
        return None
    from hermes_patch import session_token

    return session_token.prepare(path)


def session_token_create(token: Any) -> str:
    from hermes_patch import session_token

    if not token.created:
        return f"session token file: {token.path} (kept; the dashboard keeps its token)"
    session_token.create(token)
    return (
        f"session token file: {token.path} (new, owner-only; systemd loads it with EnvironmentFile=, "
        f"other supervisors with `set -a; . {token.path}; set +a` before `hermes dashboard`)"
    )


def forget_session_token(app: Any, keep: bool, release: bool = False) -> list[str]:
    """Delete the session token file hermes-patch created for this target (unless ``keep``); one line per thing done.

    Called by ``hook uninstall`` (``release``: a kept file is yours from
    then on, no later command deletes it) and by a full ``revert`` (a kept
    file stays recorded, for the drop-in that still loads it). A file
    changed since it was created, or one hermes-patch did not create, is
    kept.
    """
    from hermes_patch import session_token

    if not app.record().get("integrations", {}).get("session-token"):
        return []  # the common case: nothing recorded, nothing to lock or write
    with app.state.lock(app.key):
        ledger = app.state.load()
        integ = ledger["targets"].get(app.key, {}).get("integrations", {})
        token = integ.get("session-token")
        if not token:
            return []
        if keep:
            if release:
                integ.pop("session-token", None)
                app.state.save(ledger)
            return [f"session token file {token['path']}: kept (--keep-session-token)"]
        line = session_token.remove(Path(token["path"]), token["sha256"])
        integ.pop("session-token", None)
        app.state.save(ledger)
    return [line]
