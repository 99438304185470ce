"""A dashboard under a supervisor that restarts it, for the Update-button tests.

``hermes update`` ends by stopping the running dashboard (0.14.0
``hermes_cli/main.py``, ``_kill_stale_dashboard_processes``, on git
installs); systemd (``Restart=``), s6 or a shell loop then starts a new
process, which draws a new session token and has no handle on the action
that just ran. :class:`SupervisedDashboard` reproduces that on loopback:

- ``supervisor.sh``, a POSIX shell loop, starts ``hermes dashboard`` again
  whenever it exits (until a stop file appears). Each start runs in a
  subshell that loads ``$HERMES_HOME/dashboard-session-token.env`` (written
  by ``hermes-patch hook install --session-token``) and ``extra.env`` with
  ``set -a; . FILE; set +a``: exactly what the docs tell operators of shell
  supervisors, and what systemd's ``EnvironmentFile=`` does.
- ``sitecustomize.py`` (on the dashboard's ``PYTHONPATH``, so the action
  inherits it) adds, at the end of ``python -m hermes_cli.main update``,
  the step ``hermes update`` runs last on a git install: upstream's own
  ``_kill_stale_dashboard_processes()``. Its process scan (``ps -A``
  matching "hermes dashboard") would also stop other tests' dashboards on
  this machine, so ``_find_stale_dashboard_pids`` is aimed at this
  supervisor's dashboard only (its pid file); the kill itself (SIGTERM,
  wait up to 3 s, SIGKILL, the printed lines) is upstream's. On a pip
  install upstream's ``hermes update`` does not stop the dashboard (0.14.0
  and 0.19.0 ``_cmd_update_pip``), which is why the step is added.
  This machine is a container, where 0.19.0 hides the Update button for pip
  installs (``hermes_constants.is_container``); with
  ``HERMES_PATCH_TEST_NOT_A_CONTAINER=1`` the dashboard is told it is not,
  as on an ordinary host.
- The update is the real ``hermes update`` of the installed release, on
  its pip-install path: ``pip install --upgrade hermes-agent`` with
  ``PIP_NO_INDEX=1`` and an empty ``PIP_FIND_LINKS`` folder finds nothing
  newer and exits 0, offline. Every proxy variable points at a closed
  loopback port, so 0.19.0's attempt to fetch uv with curl fails at once
  without leaving the machine. ``fail_update()`` adds ``PIP_CONSTRAINT``
  naming a missing file: pip exits 1 and ``hermes update`` exits 1.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

from .clients import http_get
from .processes import free_port, kill_group, wait_for
from .venvs import installed_version

__all__ = ["SupervisedDashboard", "SITECUSTOMIZE", "SUPERVISOR_SH"]

SUPERVISOR_SH = r"""#!/bin/sh
# Restart `hermes dashboard` whenever it exits, like systemd's Restart=always.
# Usage: supervisor.sh WORKDIR COMMAND...
dir=$1; shift
while [ ! -e "$dir/stop" ]; do
    (
        set -a
        [ -f "$HERMES_HOME/dashboard-session-token.env" ] && . "$HERMES_HOME/dashboard-session-token.env"
        [ -f "$dir/extra.env" ] && . "$dir/extra.env"
        set +a
        exec "$@"
    ) &
    pid=$!
    echo "$pid" > "$dir/dashboard.pid.tmp" && mv "$dir/dashboard.pid.tmp" "$dir/dashboard.pid"
    echo "$pid" >> "$dir/starts"
    wait "$pid"
    sleep 0.2
done
"""

SITECUSTOMIZE = r'''"""Test scaffolding (tests/live/supervisor.py): see that module's docstring."""
import atexit
import os
import sys

if os.environ.get("HERMES_PATCH_TEST_NOT_A_CONTAINER") == "1":
    try:
        import hermes_constants
        if hasattr(hermes_constants, "_container_detected"):
            hermes_constants._container_detected = False
    except Exception:
        pass


# The kill step imports gateway.status, which (0.19) imports concurrent.futures.thread;
# at interpreter exit that module can no longer register its own exit hook, so load it now.
if os.environ.get("HERMES_PATCH_TEST_DASHBOARD_PIDFILE"):
    import concurrent.futures.thread  # noqa: F401


def _stop_the_dashboard_like_hermes_update():
    main = sys.modules.get("__main__")
    pidfile = os.environ.get("HERMES_PATCH_TEST_DASHBOARD_PIDFILE")
    if sys.argv[1:2] != ["update"] or not pidfile or not hasattr(main, "_kill_stale_dashboard_processes"):
        return
    with open(pidfile) as fh:
        pid = int(fh.read().strip())
    main._find_stale_dashboard_pids = lambda *a, **k: [pid]
    sys.stdout.flush()
    main._kill_stale_dashboard_processes()
    sys.stdout.flush()


atexit.register(_stop_the_dashboard_like_hermes_update)
'''

_TOKEN_RE = re.compile(rb'window\.__HERMES_SESSION_TOKEN__\s*=\s*"([^"]+)"')


class SupervisedDashboard:
    """``hermes dashboard`` of ``venv`` on a fixed loopback port, restarted by ``supervisor.sh`` whenever it exits.

    Attributes once entered: ``port``, ``base_url``, ``home`` (HERMES_HOME),
    ``workdir``, ``version``. :meth:`pid` is the current dashboard process,
    :meth:`starts` how many times the supervisor started one, :meth:`token`
    the token its page carries. On exit the supervisor and everything it
    started are stopped and the temporary folders removed.
    """

    def __init__(self, venv: Path, flags: list[str], timeout: float = 90.0) -> None:
        self.venv = Path(venv)
        self.flags = list(flags)
        self.timeout = timeout
        self.version = installed_version(self.venv)
        self.port = free_port()
        self.proc: Optional[subprocess.Popen] = None
        self._tmp: Optional[tempfile.TemporaryDirectory] = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "SupervisedDashboard":
        self._tmp = tempfile.TemporaryDirectory(prefix="hermes-live-sup-")
        self.workdir = Path(self._tmp.name)
        self.home = self.workdir / "hermes-home"
        self.home.mkdir(mode=0o700)
        (self.workdir / "links").mkdir()
        (self.workdir / "pyhooks").mkdir()
        (self.workdir / "pyhooks" / "sitecustomize.py").write_text(SITECUSTOMIZE)
        script = self.workdir / "supervisor.sh"
        script.write_text(SUPERVISOR_SH)
        closed = "http://127.0.0.1:9"  # discard port, nothing listens: any HTTP client fails locally
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("HERMES_", "PIP_", "UV_"))
            and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
        }
        env.update(
            HOME=str(self.workdir),
            HERMES_HOME=str(self.home),
            VIRTUAL_ENV=str(self.venv),
            PATH=f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",
            PYTHONPATH=str(self.workdir / "pyhooks"),
            PYTHONUNBUFFERED="1",
            NO_COLOR="1",
            HERMES_DISABLE_LAZY_INSTALLS="1",
            HERMES_PATCH_TEST_NOT_A_CONTAINER="1",
            HERMES_PATCH_TEST_DASHBOARD_PIDFILE=str(self.workdir / "dashboard.pid"),
            PIP_NO_INDEX="1",
            PIP_FIND_LINKS=str(self.workdir / "links"),
            PIP_NO_CACHE_DIR="1",
            PIP_DISABLE_PIP_VERSION_CHECK="1",
            UV_OFFLINE="1",
            http_proxy=closed,
            https_proxy=closed,
            HTTP_PROXY=closed,
            HTTPS_PROXY=closed,
            ALL_PROXY=closed,
        )
        command = [
            str(self.venv / "bin" / "hermes"),
            "dashboard",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-open",
            "--skip-build",
            *self.flags,
        ]
        self.log_path = self.workdir / "supervisor.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ["/bin/sh", str(script), str(self.workdir), *command],
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self.wait_ready(after_starts=0)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        if self._tmp is None:
            return
        with contextlib.suppress(OSError):
            (self.workdir / "stop").touch()
        if self.proc is not None:
            kill_group(self.proc)
        self._final_log = self.log()
        with contextlib.suppress(OSError):
            self._tmp.cleanup()
        self._tmp = None

    def log(self) -> str:
        """The dashboards' combined output."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return getattr(self, "_final_log", "")

    def pid(self) -> int:
        return int((self.workdir / "dashboard.pid").read_text().strip())

    def starts(self) -> int:
        try:
            return len((self.workdir / "starts").read_text().split())
        except OSError:
            return 0

    def token(self) -> Optional[str]:
        """The session token in the page the dashboard serves now (None while it is down)."""
        try:
            status, body = http_get(self.base_url + "/", timeout=2.0)
        except OSError:
            return None
        match = _TOKEN_RE.search(body) if status == 200 else None
        return match.group(1).decode("ascii") if match else None

    def wait_ready(self, after_starts: int) -> None:
        """Wait until the supervisor has started more than ``after_starts`` dashboards and the latest serves its page."""

        def alive() -> Optional[str]:
            code = self.proc.poll()
            return None if code is None else f"supervisor exited ({code}):\n{self.log()[-4000:]}"

        wait_for(
            lambda: self.starts() > after_starts and self.token() is not None,
            self.timeout,
            f"hermes {self.version} dashboard under the supervisor",
            alive=alive,
        )

    def restart(self, extra_env: Optional[dict[str, str]] = None) -> None:
        """Stop the current dashboard (SIGTERM) so the supervisor starts a new one with ``extra_env`` (replacing the last)."""
        extra = self.workdir / "extra.env"
        extra.write_text("".join(f"{k}={v}\n" for k, v in (extra_env or {}).items()))
        before = self.starts()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid(), signal.SIGTERM)
        self.wait_ready(after_starts=before)

    def action_log(self, name: str = "hermes-update.log") -> str:
        path = self.home / "logs" / name
        return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""

    def wait_for_restart(self, after_starts: int, timeout: float = 120.0) -> None:
        """Wait until the action's stop made the supervisor start a new dashboard that serves its page."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.starts() > after_starts and self.token() is not None:
                return
            time.sleep(0.2)
        raise TimeoutError(
            f"no restart after {timeout:.0f}s\n--- action log ---\n{self.action_log()[-3000:]}\n--- dashboards ---\n{self.log()[-3000:]}"
        )
