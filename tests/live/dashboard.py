"""``hermes dashboard`` from a release venv, in its own process group, with a throw-away HERMES_HOME."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Mapping, Optional, Sequence

from .clients import http_get
from .processes import check_loopback, free_port, hostport, kill_group, wait_for
from .venvs import installed_version

__all__ = ["Dashboard", "DashboardStartError", "dashboard_flags"]


class DashboardStartError(RuntimeError):
    """The dashboard exited or never became ready; the message holds its log."""


def _version_tuple(version: str) -> tuple[int, ...]:
    """``"0.19.0"`` → ``(0, 19, 0)``; stops at the first non-numeric part."""
    parts = []
    for piece in version.split("."):
        match = re.match(r"\d+", piece)
        if not match:
            break
        parts.append(int(match.group()))
    return tuple(parts)


def dashboard_flags(version: str) -> list[str]:
    """Return the release-specific flags for ``hermes dashboard``.

    Up to 0.18: ``--insecure --tui`` (``--tui`` turns on embedded chat, and
    with it ``/api/events``; ``--insecure`` permits non-loopback binds).
    0.19 and later: none (embedded chat is on by default, ``--insecure``
    is a no-op and non-loopback binds turn on the OAuth gate).
    """
    if _version_tuple(version) >= (0, 19):
        return []
    return ["--insecure", "--tui"]


_TOKEN_RE = re.compile(rb'window\.__HERMES_SESSION_TOKEN__\s*=\s*"([^"]+)"')


class Dashboard:
    """Run ``hermes dashboard`` from a venv until the ``with`` block ends.

    Inputs: ``venv`` (from :func:`hermes_venv`), ``host`` (a 127.x address
    to bind), ``port`` (``None`` picks a free one), ``flags`` (``None`` uses
    :func:`dashboard_flags` for the installed version), ``extra_args``,
    ``env`` (added to a cleaned environment), ``timeout`` (seconds to wait
    for readiness).

    On entry it starts ``hermes dashboard --host H --port P --no-open
    --skip-build <flags>`` in its own process group, with a fresh temporary
    ``HERMES_HOME`` and no inherited ``HERMES_*`` variables, then polls
    ``GET /`` until the served index.html carries the session token.

    Attributes once entered: ``host``, ``port``, ``base_url``, ``token``,
    ``version``, ``home`` (the HERMES_HOME, e.g. for its ``logs/``),
    ``log_path``, ``proc``; :meth:`log` returns the dashboard's output,
    also after exit.

    On exit, or on any failure while starting, the whole process group is
    killed and the temporary home removed.  A failed start raises
    :class:`DashboardStartError` containing the dashboard's output.
    """

    def __init__(
        self,
        venv: Path,
        *,
        host: str = "127.0.0.1",
        port: Optional[int] = None,
        flags: Optional[Sequence[str]] = None,
        extra_args: Sequence[str] = (),
        env: Optional[Mapping[str, str]] = None,
        timeout: float = 90.0,
    ) -> None:
        check_loopback(host)
        self.venv = Path(venv)
        self.host = host
        self.port = port
        self.version = installed_version(self.venv)
        self.flags = list(dashboard_flags(self.version) if flags is None else flags)
        self.extra_args = list(extra_args)
        self.extra_env = dict(env or {})
        self.timeout = timeout
        self.token: Optional[str] = None
        self.proc: Optional[subprocess.Popen] = None
        self._tmp: Optional[tempfile.TemporaryDirectory] = None
        self.home: Optional[Path] = None
        self.log_path: Optional[Path] = None
        self._final_log = ""

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` of the running dashboard."""
        return f"http://{hostport(self.host, self.port)}"

    def command(self) -> list[str]:
        """The argv used to start the dashboard."""
        return [
            str(self.venv / "bin" / "hermes"),
            "dashboard",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--no-open",
            "--skip-build",
            *self.flags,
            *self.extra_args,
        ]

    def log(self) -> str:
        """Everything the dashboard wrote to stdout/stderr (kept after exit too)."""
        if self.log_path is None or not self.log_path.exists():
            return self._final_log
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def hermes_log(self, name: str = "agent.log") -> str:
        """Text of ``HERMES_HOME/logs/<name>`` ("" while it does not exist).

        0.19 logs why it refused a WebSocket there (e.g. ``pty refused:
        peer_not_loopback peer=127.0.0.5``): the close code never reaches
        the client, which only sees HTTP 403.
        """
        path = self.home / "logs" / name if self.home else None
        if path is None or not path.is_file():
            return ""
        return path.read_text(encoding="utf-8", errors="replace")

    def wait_for_hermes_log(self, needle: str, name: str = "agent.log", timeout: float = 5.0) -> str:
        """Poll ``hermes_log(name)`` until a line contains ``needle``; return that line.

        Raises :class:`TimeoutError` (with the log's tail) if none shows up.
        """
        found: list[str] = []

        def seen() -> bool:
            found[:] = [line for line in self.hermes_log(name).splitlines() if needle in line]
            return bool(found)

        try:
            wait_for(seen, timeout, f"{needle!r} in {name}")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n--- {name} ---\n{self.hermes_log(name)[-4000:]}") from None
        return found[0]

    def __enter__(self) -> "Dashboard":
        self._tmp = tempfile.TemporaryDirectory(prefix="hermes-live-")
        tmp = Path(self._tmp.name)
        self.home = tmp / "hermes-home"
        self.home.mkdir()
        self.log_path = tmp / "dashboard.log"
        try:
            self._start()
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop()

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HERMES_")}
        env.update(
            HERMES_HOME=str(self.home),
            PATH=f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            VIRTUAL_ENV=str(self.venv),
            PYTHONUNBUFFERED="1",
            NO_COLOR="1",
        )
        env.pop("PYTHONPATH", None)
        env.update(self.extra_env)
        return env

    def _start(self) -> None:
        fixed_port = self.port is not None
        for attempt in range(3):
            if not fixed_port:
                self.port = free_port(self.host)
            with open(self.log_path, "ab") as log:
                log.write(f"$ {' '.join(self.command())}\n".encode())
                log.flush()
                self.proc = subprocess.Popen(
                    self.command(),
                    cwd=self.home,
                    env=self._environment(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            try:
                wait_for(self._ready, self.timeout, f"hermes {self.version} dashboard", alive=self._exited)
                return
            except (RuntimeError, TimeoutError) as exc:
                lost_port_race = "address already in use" in self.log().lower()
                kill_group(self.proc)
                if lost_port_race and not fixed_port and attempt < 2:
                    continue
                raise DashboardStartError(
                    f"{exc}\ncommand: {' '.join(self.command())}\n--- dashboard output ---\n{self.log()[-20000:]}"
                ) from None

    def _exited(self) -> Optional[str]:
        code = self.proc.poll()
        return None if code is None else f"exited with code {code} before it was ready"

    def _ready(self) -> bool:
        try:
            status, body = http_get(self.base_url + "/", timeout=2.0)
        except OSError:
            return False
        if status != 200:
            return False
        match = _TOKEN_RE.search(body)
        if not match:
            return False
        self.token = match.group(1).decode("ascii")
        return True

    def _stop(self) -> None:
        if self.proc is not None:
            kill_group(self.proc)
        if self._tmp is not None:
            self._final_log = self.log()
            with contextlib.suppress(OSError):
                self._tmp.cleanup()
            self._tmp = None
