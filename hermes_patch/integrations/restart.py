"""Which running dashboards use this install, and how to restart them.

A running ``hermes dashboard`` imported ``hermes_cli/web_server.py`` when it
started and keeps serving that code: an ``apply`` or ``revert`` (or a
``hermes update``) takes effect only after a restart. This module finds the
dashboards of *this* install by reading ``/proc`` (Linux):

* a process whose arguments are a ``hermes`` launcher (or ``-m hermes_cli.main``)
  followed by ``dashboard``, and whose interpreter lives in the ``bin/`` of
  the environment that holds the target (the venv around the
  ``site-packages``, the ``venv/`` or ``.venv/`` of a git checkout, or the
  interpreter the target was found by);
* the systemd unit it runs in, from ``/proc/<pid>/cgroup``
  (``.../hermes-dashboard.service``; ``user@UID.service`` above it means a
  user unit), unless hermes-patch itself runs in that unit (an
  ``ExecStartPre=``, a CI job that started both), plus the units
  ``hook install --systemd-unit`` recorded;
* its start time (``/proc/<pid>/stat`` field 22, ticks after boot, on the
  boot-time clock), compared with the last write of the patched files.

Nothing here changes a process; :func:`restart_units` runs ``systemctl``
only when asked (``apply --restart``).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from hermes_patch.context import Context

if TYPE_CHECKING:
    from hermes_patch.integrations.installed import Integrations
    from hermes_patch.locate import Target

__all__ = [
    "Dashboard",
    "Unit",
    "find_dashboards",
    "unit_of_cgroup",
    "last_written",
    "stale_dashboards",
    "after_write",
    "restart_units",
    "stale_note",
]

PROC = Path("/proc")
_SLACK = 0.05  # seconds: start times are in clock ticks (10 ms)


@dataclass(frozen=True)
class Unit:
    """A systemd service: ``name`` (``hermes-dashboard.service``), ``scope`` (``user`` or ``system``), ``uid`` of a user manager."""

    name: str
    scope: str
    uid: int | None = None

    def command(self, verb: str = "restart") -> list[str]:
        """The ``systemctl`` command that ``verb``-s this unit from the current user."""
        cmd = ["systemctl"]
        if self.scope == "user":
            cmd.append("--user")
            if self.uid is not None and self.uid != os.getuid():
                import pwd

                try:
                    cmd += ["--machine", f"{pwd.getpwuid(self.uid).pw_name}@"]
                except KeyError:
                    pass
        return [*cmd, verb, self.name]


@dataclass(frozen=True)
class Dashboard:
    """One running ``hermes dashboard`` of this install.

    Attributes:
        pid: the process id.
        argv: its arguments (``/proc/<pid>/cmdline``).
        started: when it started (seconds since the epoch).
        unit: the systemd unit it runs in, or ``None``.
    """

    pid: int
    argv: tuple[str, ...]
    started: float
    unit: Unit | None

    def describe(self) -> str:
        """``pid 1234 (`hermes dashboard --port 9119`, started 05:01:02)``."""
        args = list(self.argv)
        at = _launcher_index(args)
        shown = ["hermes", *args[at + 1 :]] if at is not None and not args[at].startswith("-") else args
        from datetime import datetime

        when = datetime.fromtimestamp(self.started).strftime("%Y-%m-%d %H:%M:%S")
        return f"pid {self.pid} (`{' '.join(shown)}`, started {when})"


def unit_of_cgroup(text: str) -> Unit | None:
    """The systemd service named by a ``/proc/<pid>/cgroup`` text, or ``None``.

    ``0::/user.slice/user-1000.slice/user@1000.service/app.slice/hermes.service``
    is the user unit ``hermes.service`` of uid 1000;
    ``0::/system.slice/hermes.service`` the system unit. A session scope
    (``session-3.scope``), a container (``/docker/...``) or ``/`` is no unit.
    """
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3 or (parts[0] != "0" and parts[1] != "name=systemd"):
            continue
        comps = [c for c in parts[2].split("/") if c]
        uid = None
        for c in comps:
            if c.startswith("user@") and c.endswith(".service") and c[5:-8].isdigit():
                uid = int(c[5:-8])
        services = [c for c in comps if c.endswith(".service") and not (c.startswith("user@") and c[5:-8].isdigit())]
        if services:
            return Unit(services[-1], "user" if uid is not None else "system", uid)
    return None


def _launcher_index(argv: list[str]) -> int | None:
    """Index of the ``hermes`` launcher or of ``-m`` (before ``hermes_cli.main``) in ``argv``, or ``None``."""
    for i, arg in enumerate(argv[:4]):
        if arg == "-m" and i + 1 < len(argv) and argv[i + 1] in ("hermes_cli.main", "hermes_cli"):
            return i + 1
        if i > 0 and Path(arg).name == "hermes":
            return i
    return None


def _bin_dirs(target: Target) -> set[Path]:
    """The ``bin/`` folders whose interpreter imports this target's ``hermes_cli``."""
    dirs: list[Path] = []
    if target.interpreter is not None:
        dirs.append(Path(target.interpreter).parent)
    for parent in Path(target.package_dir).parents:
        if (parent / "pyvenv.cfg").is_file():
            dirs.append(parent / "bin")
            break
    if target.root is not None:
        dirs += [
            Path(target.root) / name / "bin"
            for name in ("venv", ".venv")
            if (Path(target.root) / name / "pyvenv.cfg").is_file()
        ]
    out = set()
    for d in dirs:
        try:
            out.add(d.resolve())
        except OSError:
            continue
    return out


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _started(stat: bytes) -> float | None:
    """Start time (epoch seconds) from ``/proc/<pid>/stat``: field 22 is ticks since boot."""
    try:
        fields = stat[stat.rindex(b")") + 2 :].split()
        ticks = int(fields[19])
    except (ValueError, IndexError):
        return None
    since_boot = ticks / os.sysconf("SC_CLK_TCK")
    return time.time() - (time.clock_gettime(time.CLOCK_BOOTTIME) - since_boot)


def find_dashboards(target: Target, proc: Path = PROC) -> list[Dashboard]:
    """The running ``hermes dashboard`` processes of ``target``'s install (empty where there is no ``/proc``)."""
    bins = _bin_dirs(target)
    launcher = Path(target.launcher).resolve() if target.launcher else None
    if not bins and launcher is None:
        return []
    try:
        pids = [int(p.name) for p in proc.iterdir() if p.name.isdigit()]
    except OSError:
        return []
    own = _read(proc / "self" / "cgroup")
    own_unit = unit_of_cgroup(own.decode("utf-8", "replace")) if own else None
    found: dict[int, tuple[Dashboard, int]] = {}
    for pid in pids:
        raw = _read(proc / str(pid) / "cmdline")
        if not raw or b"dashboard" not in raw:
            continue
        argv = [a.decode("utf-8", "surrogateescape") for a in raw.rstrip(b"\0").split(b"\0")]
        at = _launcher_index(argv)
        if at is None or "dashboard" not in argv[at + 1 :]:
            continue
        ours = False
        if os.sep in argv[0]:
            try:
                ours = Path(argv[0]).parent.resolve() in bins
            except OSError:
                ours = False
        if not ours and launcher is not None and not argv[at].startswith("-"):
            try:
                ours = Path(argv[at]).resolve() == launcher
            except OSError:
                ours = False
        if not ours:
            continue
        stat = _read(proc / str(pid) / "stat")
        started = _started(stat) if stat else None
        if stat is None or started is None:
            continue
        try:
            ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        except (ValueError, IndexError):
            ppid = 0
        cgroup = _read(proc / str(pid) / "cgroup")
        unit = unit_of_cgroup(cgroup.decode("utf-8", "replace")) if cgroup else None
        if unit is not None and unit == own_unit:
            # hermes-patch runs in the same unit (its ExecStartPre=, a CI job that started both): not the
            # dashboard's own service, and restarting it would restart us.
            unit = None
        found[pid] = (Dashboard(pid, tuple(argv), started, unit), ppid)
    # A dashboard's own children (a server it forked) are the same dashboard.
    return [d for pid, (d, ppid) in sorted(found.items()) if ppid not in found]


def last_written(app: Context) -> float | None:
    """The latest modification time of the target's files that hermes-patch writes (``web_server.py`` and recorded siblings)."""
    files = app.record().get("files")  # checked by the ledger's loader: module name -> hashes
    names = {app.target.entry, *(files if isinstance(files, dict) else ())}
    times = []
    for name in names:
        try:
            times.append((app.target.package_dir / name).stat().st_mtime)
        except OSError:
            continue
    return max(times) if times else None


def stale_dashboards(app: Context, dashboards: Iterable[Dashboard]) -> list[Dashboard]:
    """The dashboards that started before the target's files were last written (they run the old code)."""
    written = last_written(app)
    if written is None:
        return []
    return [d for d in dashboards if d.started < written - _SLACK]


def recorded_units(app: Context) -> list[Unit]:
    """The units ``hook install --systemd-unit`` recorded for this target (they run its dashboard)."""
    units = []
    integ: Integrations = app.record().get("integrations", {})
    for entry in integ.get("systemd", {}).values():
        name = entry.get("unit", "")
        units.append(Unit(name if name.endswith(".service") else f"{name}.service", entry.get("scope", "user")))
    return units


def _shell(cmd: list[str]) -> str:
    import shlex

    return " ".join(shlex.quote(c) for c in cmd)


def stale_note(app: Context, apply_first: bool = False) -> list[str]:
    """``status`` warnings: each dashboard of this install that started before the files were last written.

    Args:
        apply_first: patches are pending (an update replaced the file): the
            dashboard still runs the patched code, and a restart now would
            serve the unpatched release, so the advice is to apply first.
    """
    try:
        stale = stale_dashboards(app, find_dashboards(app.target))
    except OSError:
        return []
    then = "run `hermes-patch apply` first (patches are pending), then restart it" if apply_first else "restart it"
    return [
        f"the running dashboard {d.describe()} started before {app.target.entry} was last written, so it still serves the "
        f"code from before; {then}: {_how(d)}"
        for d in stale
    ]


def _how(d: Dashboard) -> str:
    if d.unit is not None:
        return f"`{_shell(d.unit.command())}`"
    return f"it is not run by a systemd unit: stop it (`kill {d.pid}`) and start it again with the same command"


@dataclass(frozen=True)
class Plan:
    """What to restart after a write: stale dashboards and the units to restart (running ones first)."""

    stale: tuple[Dashboard, ...]
    units: tuple[tuple[Unit, str], ...]  # (unit, "restart" or "try-restart")


def plan(app: Context) -> Plan:
    """The dashboards running old code, and the systemd units that restart them (plus units ``hook install`` recorded)."""
    stale = stale_dashboards(app, find_dashboards(app.target))
    units: dict[tuple[str, str, int | None], tuple[Unit, str]] = {}
    for d in stale:
        if d.unit is not None:
            units.setdefault((d.unit.name, d.unit.scope, d.unit.uid), (d.unit, "restart"))
    for u in recorded_units(app):
        if not any(k[0] == u.name and k[1] == u.scope for k in units):
            units[(u.name, u.scope, u.uid)] = (u, "try-restart")
    return Plan(tuple(stale), tuple(units.values()))


def after_write(app: Context, restart: bool, say_none: bool = True) -> tuple[list[str], bool]:
    """Lines for people after ``apply``/``revert`` wrote files; with ``restart``, restart the units.

    ``say_none``: also say so when no dashboard of this install runs (the
    human output; ``--json`` documents carry only what needs a restart).

    Returns:
        (lines, ok): ``ok`` is False when a ``systemctl`` restart failed.
    """
    p = plan(app)
    lines: list[str] = []
    ok = True
    if restart:
        done, ok = restart_units([u for u in p.units])
        lines += done
    unit_names = {u.name for u, _ in p.units} if restart else set()
    for d in p.stale:
        if d.unit is not None and d.unit.name in unit_names:
            continue
        lines.append(f"restart: the dashboard {d.describe()} still serves the code from before this write; {_how(d)}")
    if not restart:
        for u, verb in p.units:
            if verb == "try-restart":
                lines.append(
                    f"restart: the unit {u.name} runs this install's dashboard (hook install); if it runs, `{_shell(u.command('try-restart'))}`"
                )
        if p.stale and any(d.unit is not None for d in p.stale):
            lines.append("`--restart` restarts the systemd units for you")
    if not p.stale and not p.units and say_none:
        lines.append(
            "restart: no running dashboard of this install was found here; one started from now on serves the new code "
            "(a dashboard in a container or on another machine must be restarted there)"
        )
    return lines, ok


def restart_units(units: list[tuple[Unit, str]]) -> tuple[list[str], bool]:
    """Run ``systemctl [--user] restart|try-restart UNIT`` for each; return lines for people and whether all succeeded."""
    lines: list[str] = []
    ok = True
    if units and shutil.which("systemctl") is None:
        for u, verb in units:
            lines.append(
                f"restart: systemctl is not on PATH here; run `{_shell(u.command(verb))}` where systemd manages {u.name}"
            )
        return lines, False
    import subprocess

    for u, verb in units:
        cmd = u.command(verb)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            lines.append(f"restart: `{_shell(cmd)}` failed ({exc}); run it yourself")
            ok = False
            continue
        if proc.returncode != 0:
            why = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
            lines.append(f"restart: `{_shell(cmd)}` failed ({why}); run it yourself")
            ok = False
        else:
            lines.append(f"restarted {u.name} (`{_shell(cmd)}`)")
    return lines, ok
