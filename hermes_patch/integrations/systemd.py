"""Any install run by systemd: a drop-in that re-applies before every start of the dashboard's unit.

``<unit>.service.d/hermes-patch.conf`` holds ``ExecStartPre=-hermes-patch
apply ...``, so every (re)start of the unit that runs ``hermes dashboard``
re-applies first (``-``: a refusal never keeps the dashboard from
starting). For pip, uv and pipx installs this and ``hermes-patch update``
are the integration.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Callable

from hermes_patch.core.errors import RefusedError, StateError
from hermes_patch.integrations.installed import (
    DropinEntry,
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

__all__ = [
    "DROPIN",
    "unit_name",
    "unit_search_path",
    "check_unit_exists",
    "unit_dir",
    "dropin_text",
    "plan_dropin",
    "check_records",
    "remove",
    "show",
    "reload",
]

DROPIN = "hermes-patch.conf"
_UNIT_RE = re.compile(r"^[A-Za-z0-9:_.@\\-]+$")


def unit_name(unit: str) -> str:
    """``unit`` without ``.service``.

    Raises:
        RefusedError: not a systemd unit name.
    """
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

    ``env_file``: the session token file (:mod:`hermes_patch.integrations.session_token`),
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


def plan_dropin(
    unit: str,
    scope: str,
    unit_directory: Path | None,
    command: list[str],
    env_file: Path | None,
    recorded: dict[str, DropinEntry],
) -> Write[DropinEntry]:
    """The drop-in to write for ``unit``; nothing written.

    Args:
        command: ``hermes-patch apply ...`` for this target.
        env_file: the session token file the drop-in loads, if any.
        recorded: the ``systemd`` entries of the ledger record.

    Raises:
        RefusedError: the file exists and is not ours, or was changed since we wrote it.
    """
    name = unit_name(unit)
    directory = unit_dir(scope, unit_directory) / f"{name}.service.d"
    path = directory / DROPIN
    data = dropin_text(name, scope, [*command, "--auto", f"systemd:{name}.service"], env_file).encode()
    rec = recorded.get(str(path))
    current = read_file(path)
    if current is not None and current != data and (rec is None or sha(current) != rec["sha256"]):
        raise RefusedError(
            changed_since_install(path, "install")
            if rec
            else f"{path} exists and was not written by hermes-patch; nothing was changed. Move it aside, or merge its lines into your own drop-in."
        )
    entry: DropinEntry = {
        "unit": name,
        "scope": scope,
        "sha256": sha(data),
        "created_dirs": rec.get("created_dirs", missing_dirs(directory)) if rec else missing_dirs(directory),
    }
    return Write("systemd drop-in", path, data, 0o644, str(path), entry)


def check_records(dropins: dict[str, DropinEntry], refuse: Callable[[str, object], StateError]) -> None:
    """Refuse drop-in records that name files ``hook install`` never writes (a forged or damaged ledger).

    A drop-in record must name ``<dir>/<unit>.service.d/hermes-patch.conf``;
    the folders it created must be that file's folder and those above it.

    Raises:
        StateError: from ``refuse(what, where)``; nothing was changed.
    """
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
        if not created_dirs_ok(entry, path.parent):
            raise refuse("the folders created for a systemd drop-in", entry.get("created_dirs"))


def remove(dropins: dict[str, DropinEntry]) -> tuple[list[str], set[str]]:
    """Remove the recorded drop-ins (checked already); one line per drop-in, and the scopes to reload."""
    done = []
    scopes = set()
    for p, entry in sorted(dropins.items()):
        path = Path(p)
        if path.exists():
            path.unlink()
        done.append(f"removed the systemd drop-in {path}")
        remove_created_dirs(entry)
        scopes.add(entry["scope"])
    return done, scopes


def show(dropins: dict[str, DropinEntry]) -> list[Installed]:
    """``hook show``'s lines for the recorded drop-ins: each file's state, its command and environment file."""
    items = []
    for p, entry in sorted(dropins.items()):
        path = Path(p)
        data = read_file(path) or b""
        lines = tuple(
            line
            for line in data.decode("utf-8", "replace").splitlines()
            if line.startswith(("ExecStartPre=", "EnvironmentFile="))
        )
        items.append(
            Installed(
                f"systemd drop-in ({entry['scope']} unit {entry['unit']}.service)", path, file_state(path, entry), lines
            )
        )
    return items


def reload(scope: str) -> str:
    """Run ``systemctl [--user] daemon-reload``; one line for people saying what happened or what to run."""
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
