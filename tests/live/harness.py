"""Live test harness: real Hermes dashboards behind a real nginx.

Everything here talks to processes on this machine only, over loopback
addresses (127.0.0.0/8).  A "reverse proxy" is simply a peer whose address
is not ``127.0.0.1``: nginx is told to ``proxy_bind 127.0.0.5`` so the
dashboard sees that peer, exactly like a same-host proxy in production.

Building blocks (all stdlib; pytest is only needed by the tests):

- :func:`hermes_venv` builds (once, cached under ``<repo>/.cache``, or
  ``$HERMES_PATCH_TEST_CACHE`` when set) a venv
  with a released ``hermes-agent`` wheel and the dashboard's web deps.
- :func:`web_server_path` finds ``hermes_cli/web_server.py`` in it, and
  :func:`fresh_web_server` restores the release bytes before a test uses it.
- :class:`Dashboard` runs ``hermes dashboard`` from such a venv.
- :class:`Nginx` runs a throw-away nginx in front of it.
- :func:`http_get`, :func:`ws_handshake`, :func:`ws_stays_open` are
  clients that can pick their source address.

Nothing here sleeps for a fixed time: readiness is polled with deadlines.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import fcntl
import hashlib
import http.client
import grp
import ipaddress
import json
import os
import pwd
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Optional, Sequence

__all__ = [
    "CACHE_DIR",
    "Dashboard",
    "dashboard_flags",
    "DashboardStartError",
    "ensure_nginx",
    "free_port",
    "fresh_web_server",
    "hermes_venv",
    "http_get",
    "installed_version",
    "Nginx",
    "NginxUnavailable",
    "PRISTINE_RELPATHS",
    "PROXY_PEER",
    "record_digest",
    "REPO_ROOT",
    "session_header_name",
    "web_server_path",
    "wheel_record_hashes",
    "ws_handshake",
    "ws_stays_open",
    "WsResult",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Shared with tests/conftest.py: ``$HERMES_PATCH_TEST_CACHE`` lets several
#: checkouts use one set of built venvs and downloaded wheels.
CACHE_DIR = Path(os.environ.get("HERMES_PATCH_TEST_CACHE") or REPO_ROOT / ".cache")
VENVS_DIR = CACHE_DIR / "live-venvs"
PIP_CACHE_DIR = CACHE_DIR / "pip"

#: Packages the dashboard needs at run time besides the wheel's own deps.
DASHBOARD_EXTRAS = ("fastapi", "uvicorn[standard]", "websockets")

#: The address nginx connects from (``proxy_bind``): a non-loopback peer in
#: the dashboard's eyes, since ``_LOOPBACK_HOSTS`` only holds 127.0.0.1.
PROXY_PEER = "127.0.0.5"

#: Files restored by :func:`fresh_web_server`, relative to site-packages.
#: ``public_paths.py`` exists from 0.16 on; patches could touch it too.
PRISTINE_RELPATHS = (
    "hermes_cli/web_server.py",
    "hermes_cli/dashboard_auth/public_paths.py",
)

_READY_MARKER = ".hermes-live-ready.json"
_PRISTINE_DIR = "pristine"
_POLL_INTERVAL = 0.05


# ---------------------------------------------------------------------------
# Small utilities
# ---------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now.

    Input: the loopback address the caller will bind to.  Output: a port
    number the kernel just handed out (there is an inherent race until the
    caller binds it; :class:`Dashboard` retries if it loses that race).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _hostport(host: str, port: int) -> str:
    """``host:port`` for URLs, Host headers and nginx (IPv6 in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _check_loopback(host: str) -> None:
    """Refuse any address outside 127.0.0.0/8 (or ::1): this harness is loopback-only."""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"live harness only talks to loopback addresses, got {host!r}")


def _wait_for(predicate, timeout: float, what: str, alive=None) -> None:
    """Poll ``predicate()`` until it is true or ``timeout`` seconds pass.

    ``alive()``, if given, is checked on each round; when it returns a
    string the wait stops early with that as the error.  Raises
    :class:`TimeoutError` naming ``what`` when the deadline passes.
    """
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None:
            problem = alive()
            if problem:
                raise RuntimeError(f"{what}: {problem}")
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not ready after {timeout:.0f}s")
        time.sleep(_POLL_INTERVAL)


def _kill_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
    """Stop ``proc`` and its process group: ``sig`` first, SIGKILL after ``grace`` s.

    The process must have been started with ``start_new_session=True`` so
    its pid is also its process-group id.  Safe to call on a dead process.
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    # Children that outlived the leader would keep ports busy: sweep the group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing).

    Released by the kernel if the process dies, so a crash never leaves a
    stale lock behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------
# Venvs with a released hermes-agent
# ---------------------------------------------------------------------------


def _site_packages(venv: Path) -> Path:
    """Return the venv's ``site-packages`` directory (found on disk, not imported)."""
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if not found:
        raise FileNotFoundError(f"no site-packages under {venv}")
    return found[0]


def _dist_info(venv: Path) -> Path:
    """Return the ``hermes_agent-*.dist-info`` directory inside ``venv``."""
    found = sorted(_site_packages(venv).glob("hermes_agent-*.dist-info"))
    if len(found) != 1:
        raise FileNotFoundError(f"expected one hermes_agent dist-info in {venv}, found {found}")
    return found[0]


def installed_version(venv: Path) -> str:
    """Return the hermes-agent version installed in ``venv``, from its METADATA."""
    metadata = (_dist_info(venv) / "METADATA").read_text(encoding="utf-8")
    match = re.search(r"^Version:\s*(\S+)\s*$", metadata, re.MULTILINE)
    if not match:
        raise ValueError(f"no Version: line in {_dist_info(venv)}/METADATA")
    return match.group(1)


def web_server_path(venv: Path) -> Path:
    """Return the path of the installed ``hermes_cli/web_server.py`` in ``venv``."""
    path = _site_packages(venv) / "hermes_cli" / "web_server.py"
    if not path.is_file():
        raise FileNotFoundError(path)
    return path


def session_header_name(web_server: Path) -> str:
    """Return ``_SESSION_HEADER_NAME`` as assigned in ``web_server`` (parsed, not imported)."""
    text = web_server.read_text(encoding="utf-8")
    match = re.search(r'^_SESSION_HEADER_NAME\s*(?::[^=]+)?=\s*["\']([^"\']+)["\']', text, re.MULTILINE)
    if not match:
        raise ValueError(f"_SESSION_HEADER_NAME not found in {web_server}")
    return match.group(1)


def wheel_record_hashes(venv: Path, *, all_paths: bool = False) -> dict[str, str]:
    """Map site-packages-relative paths to their ``sha256=...`` digests from RECORD.

    With ``all_paths`` the map also holds RECORD entries without a hash
    (``RECORD`` itself, generated scripts), with ``""`` as the digest.
    """
    hashes = {}
    with open(_dist_info(venv) / "RECORD", newline="", encoding="utf-8") as fh:
        for row in csv.reader(fh):
            if len(row) >= 2 and row[1].startswith("sha256="):
                hashes[row[0]] = row[1]
            elif row and all_paths:
                hashes[row[0]] = ""
    return hashes


def record_digest(data: bytes) -> str:
    """Hash ``data`` the way a wheel's RECORD does (urlsafe base64, no padding)."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode("ascii")


def _venv_ready(venv: Path, version: str) -> bool:
    """True when ``venv`` finished building for ``version`` and kept its pristine copies."""
    marker = venv / _READY_MARKER
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if info.get("version") != version or not (venv / "bin" / "hermes").exists():
        return False
    pristine = venv / _PRISTINE_DIR
    return all((pristine / rel).is_file() for rel in info.get("pristine", ())) and bool(info.get("pristine"))


def _pip_install(venv: Path, requirements: Sequence[str], timeout: float) -> None:
    """Install ``requirements`` into ``venv``, reusing the wheels kept in ``.cache/pip``.

    pip's own HTTP cache (``--cache-dir .cache/pip``) is used where pip is
    allowed to store responses, but some networks mark downloads
    ``no-store``.  So the files pip fetched are also kept in
    ``.cache/pip/wheelhouse``: the first try installs from there alone
    (no network at all); only if that cannot satisfy ``requirements`` does
    pip download into the wheelhouse and install from it.
    """
    python = str(venv / "bin" / "python")
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    wheelhouse = PIP_CACHE_DIR / "wheelhouse"
    wheelhouse.mkdir(parents=True, exist_ok=True)
    common = ["--quiet", "--cache-dir", str(PIP_CACHE_DIR)]
    offline = [python, "-m", "pip", "install", *common, "--no-index", "--find-links", str(wheelhouse), *requirements]
    if subprocess.run(offline, env=env, capture_output=True, timeout=timeout).returncode == 0:
        return
    with _flock(PIP_CACHE_DIR / "wheelhouse.lock"):
        steps = [
            [python, "-m", "pip", "download", *common, "--dest", str(wheelhouse), *requirements],
            [python, "-m", "pip", "install", *common, "--find-links", str(wheelhouse), *requirements],
        ]
        for cmd in steps:
            result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
            if result.returncode != 0:
                raise RuntimeError(
                    f"building {venv.name} failed ({result.returncode}):\n$ {' '.join(cmd)}\n"
                    f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
                )


def hermes_venv(version: str, *, timeout: float = 1200.0) -> Path:
    """Return a venv with ``hermes-agent==version`` and the dashboard deps, building it once.

    Input: a released version string, e.g. ``"0.14.0"``.
    Output: the venv directory ``<cache>/live-venvs/hermes-agent-<version>`` (``<cache>`` is :data:`CACHE_DIR`).

    The build runs ``pip install hermes-agent==<version> fastapi
    uvicorn[standard] websockets`` (dependencies included), reusing the
    wheels kept under ``<cache>/pip`` (see :func:`_pip_install`).
    A ready marker is written last, so an
    interrupted build is wiped and redone on the next call; a per-version
    ``flock`` makes concurrent pytest processes wait for one builder.  The
    release bytes of :data:`PRISTINE_RELPATHS` are checked against the
    wheel's RECORD and copied to ``<venv>/pristine/`` for
    :func:`fresh_web_server`.
    """
    venv = VENVS_DIR / f"hermes-agent-{version}"
    with _flock(VENVS_DIR / f"hermes-agent-{version}.lock"):
        if _venv_ready(venv, version):
            return venv
        if venv.exists():
            shutil.rmtree(venv)
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        _pip_install(venv, [f"hermes-agent=={version}", *DASHBOARD_EXTRAS], timeout)
        site = _site_packages(venv)
        hashes = wheel_record_hashes(venv)
        kept = []
        for rel in PRISTINE_RELPATHS:
            src = site / rel
            if not src.is_file():
                continue
            data = src.read_bytes()
            if hashes.get(rel) != record_digest(data):
                raise RuntimeError(f"{src} does not match the wheel's RECORD hash")
            dst = venv / _PRISTINE_DIR / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(data)
            kept.append(rel)
        if "hermes_cli/web_server.py" not in kept:
            raise RuntimeError(f"hermes_cli/web_server.py missing from the {version} install")
        marker = {
            "version": version,
            "pristine": kept,
            "build_seconds": round(time.monotonic() - started, 1),
            "python": sys.version.split()[0],
        }
        (venv / _READY_MARKER).write_text(json.dumps(marker, sort_keys=True, indent=2) + "\n", encoding="utf-8")
        return venv


_USE_DEPTH: dict[Path, int] = {}
_USE_GUARD = threading.Lock()


def _restore_pristine(venv: Path) -> Path:
    """Put the release state back; return web_server.py's path.

    Writes the release bytes over each of :data:`PRISTINE_RELPATHS`,
    deletes their cached bytecode (a restore within the same second and
    at the same size would otherwise let a stale ``.pyc`` win), and
    removes files that the wheel did not install from those files'
    folders (backups or ledgers a patcher may leave next to them).
    """
    site = _site_packages(venv)
    pristine = venv / _PRISTINE_DIR
    info = json.loads((venv / _READY_MARKER).read_text(encoding="utf-8"))
    installed = set(wheel_record_hashes(venv, all_paths=True))
    for rel in info["pristine"]:
        target = site / rel
        data = (pristine / rel).read_bytes()
        if target.is_symlink() or not target.is_file():
            target.unlink(missing_ok=True)
        if not target.is_file() or target.read_bytes() != data:
            target.write_bytes(data)
        for pyc in (target.parent / "__pycache__").glob(f"{target.stem}.*.pyc"):
            pyc.unlink(missing_ok=True)
        folder = Path(rel).parent.as_posix()
        for entry in target.parent.iterdir():
            if (entry.is_file() or entry.is_symlink()) and f"{folder}/{entry.name}" not in installed:
                entry.unlink()
    return web_server_path(venv)


@contextlib.contextmanager
def fresh_web_server(venv: Path) -> Iterator[Path]:
    """Use ``venv``'s web_server.py starting from the release bytes.

    Input: a venv from :func:`hermes_venv`.  Yields the path of the
    installed ``hermes_cli/web_server.py``, already restored to the bytes
    shipped in the wheel (``public_paths.py`` too, where the release has
    it), with files the wheel did not install removed from those folders.
    Tests may patch it freely inside the block.

    While the outermost block is open this process holds an exclusive
    lock on the venv, so two pytest processes never patch the same
    install at once.  Nested blocks in one process are allowed: each
    entry restores the release bytes again; the outermost exit restores
    them a last time and releases the lock.
    """
    venv = Path(venv).resolve()
    with _USE_GUARD:
        depth = _USE_DEPTH.get(venv, 0)
        _USE_DEPTH[venv] = depth + 1
    lock_cm = _flock(venv.parent / f"{venv.name}.use.lock") if depth == 0 else contextlib.nullcontext()
    try:
        with lock_cm:
            path = _restore_pristine(venv)
            try:
                yield path
            finally:
                if depth == 0:
                    _restore_pristine(venv)
    finally:
        with _USE_GUARD:
            _USE_DEPTH[venv] -= 1


# ---------------------------------------------------------------------------
# The dashboard
# ---------------------------------------------------------------------------


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
        _check_loopback(host)
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
        return f"http://{_hostport(self.host, self.port)}"

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
            _wait_for(seen, timeout, f"{needle!r} in {name}")
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
                _wait_for(self._ready, self.timeout, f"hermes {self.version} dashboard", alive=self._exited)
                return
            except (RuntimeError, TimeoutError) as exc:
                lost_port_race = "address already in use" in self.log().lower()
                _kill_group(self.proc)
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
            _kill_group(self.proc)
        if self._tmp is not None:
            self._final_log = self.log()
            with contextlib.suppress(OSError):
                self._tmp.cleanup()
            self._tmp = None


# ---------------------------------------------------------------------------
# nginx
# ---------------------------------------------------------------------------


class NginxUnavailable(RuntimeError):
    """nginx is not installed and could not be installed here."""


def ensure_nginx() -> Path:
    """Return the nginx binary, installing Debian's ``nginx`` package if missing.

    Output: the path to ``nginx``.  Runs ``apt-get install -y nginx``
    (after ``apt-get update`` if the first try fails) only when no nginx is
    found and we are root.  Raises :class:`NginxUnavailable` with the
    reason otherwise; tests turn that into a skip.
    """

    def find() -> Optional[str]:
        return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin:/sbin")

    found = find()
    if found:
        return Path(found)
    if os.geteuid() != 0:
        raise NginxUnavailable("nginx is not installed and we are not root (need: apt-get install -y nginx)")
    if not shutil.which("apt-get"):
        raise NginxUnavailable("nginx is not installed and apt-get is not available")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "nginx"]
    outputs = []
    with _no_service_start():
        for step in (install, ["apt-get", "update", "-q"], install):
            result = subprocess.run(step, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
            outputs.append(f"$ {' '.join(step)} -> {result.returncode}\n{result.stderr[-2000:]}")
            if step is install and result.returncode == 0 and find():
                return Path(find())
    raise NginxUnavailable("could not install nginx:\n" + "\n".join(outputs))


@contextlib.contextmanager
def _no_service_start() -> Iterator[None]:
    """Keep Debian's maintainer scripts from starting services while installing.

    The nginx package would otherwise start a system nginx on port 80 of
    every interface; our proxies run on loopback only.  A ``policy-rc.d``
    that exits 101 ("action forbidden") is what ``invoke-rc.d`` and
    ``deb-systemd-invoke`` consult; an existing one is left alone.
    """
    policy = Path("/usr/sbin/policy-rc.d")
    if policy.exists():
        yield
        return
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    try:
        yield
    finally:
        policy.unlink(missing_ok=True)


_NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
{user}
pid {pid_file};
error_log {tmp}/error.log info;
events {{ worker_connections 128; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;

    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}

    server {{
        listen {listen};
        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_bind {proxy_bind};
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
{host_line}            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_buffering off;
            proxy_read_timeout 3600s;
{extra}        }}
    }}
}}
"""


class Nginx:
    """A throw-away nginx reverse proxy in front of a dashboard.

    Inputs: ``upstream_port`` (and ``upstream_host``), ``pass_host`` (True
    adds ``proxy_set_header Host $http_host;`` so the dashboard sees the
    browser's Host; False keeps nginx's default, ``upstream_host:port``),
    ``proxy_bind`` (the source address nginx connects from, default
    :data:`PROXY_PEER`), ``listen`` (a loopback address), ``extra_directives``
    (more lines for the ``location /`` block, e.g.
    ``"proxy_set_header X-Forwarded-Prefix /hermes"``), ``timeout``.
    Besides the WebSocket upgrade headers the proxy sends the usual
    ``X-Forwarded-For`` and ``X-Forwarded-Proto``.

    On entry it writes a config into a temporary prefix (pid file, error
    and access logs, temp dirs), starts nginx in the foreground (``daemon
    off;``) in its own process group and polls until the port accepts
    connections.  Attributes: ``port``, ``base_url``, ``prefix``,
    ``conf_path``, ``error_log``.  On exit nginx is stopped (SIGQUIT, then
    SIGKILL) and the prefix removed.  Raises :class:`NginxUnavailable` if
    nginx cannot be found or installed, :class:`RuntimeError` with the
    error log if it fails to start.
    """

    def __init__(
        self,
        upstream_port: int,
        *,
        upstream_host: str = "127.0.0.1",
        pass_host: bool = False,
        proxy_bind: str = PROXY_PEER,
        listen: str = "127.0.0.1",
        extra_directives: Sequence[str] = (),
        timeout: float = 15.0,
    ) -> None:
        for addr in (upstream_host, proxy_bind, listen):
            _check_loopback(addr)
        self.upstream_port = upstream_port
        self.upstream_host = upstream_host
        self.pass_host = pass_host
        self.proxy_bind = proxy_bind
        self.listen = listen
        self.extra_directives = list(extra_directives)
        self.timeout = timeout
        self.port: Optional[int] = None
        self.proc: Optional[subprocess.Popen] = None
        self._tmp: Optional[tempfile.TemporaryDirectory] = None
        self.prefix: Optional[Path] = None

    @property
    def base_url(self) -> str:
        """``http://LISTEN:PORT`` of the proxy."""
        return f"http://{_hostport(self.listen, self.port)}"

    @property
    def conf_path(self) -> Path:
        """The generated nginx.conf."""
        return self.prefix / "nginx.conf"

    @property
    def pid_file(self) -> Path:
        """nginx's pid file (written once its sockets are bound)."""
        return self.prefix / "nginx.pid"

    @property
    def error_log(self) -> Path:
        """nginx's error log (startup errors included)."""
        return self.prefix / "error.log"

    def render_config(self) -> str:
        """The nginx.conf text for this proxy."""
        user = ""
        if os.geteuid() == 0:
            # Workers would otherwise drop to "nobody", which may lack a group
            # of the same name and cannot write into our 0700 temp prefix.
            user = f"user {pwd.getpwuid(os.getuid()).pw_name} {grp.getgrgid(os.getgid()).gr_name};"
        host_line = "            proxy_set_header Host $http_host;\n" if self.pass_host else ""
        extra = "".join(f"            {directive.rstrip(';')};\n" for directive in self.extra_directives)
        return _NGINX_CONF.format(
            user=user,
            tmp=self.prefix,
            pid_file=self.pid_file,
            listen=_hostport(self.listen, self.port),
            upstream=_hostport(self.upstream_host, self.upstream_port),
            proxy_bind=self.proxy_bind,
            host_line=host_line,
            extra=extra,
        )

    def __enter__(self) -> "Nginx":
        binary = ensure_nginx()
        self._tmp = tempfile.TemporaryDirectory(prefix="hermes-live-nginx-")
        self.prefix = Path(self._tmp.name)
        try:
            for attempt in range(3):
                self.port = free_port(self.listen)
                self.conf_path.write_text(self.render_config(), encoding="utf-8")
                self.error_log.unlink(missing_ok=True)
                self.proc = subprocess.Popen(
                    [str(binary), "-p", str(self.prefix), "-c", str(self.conf_path), "-e", str(self.error_log)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                try:
                    _wait_for(self._listening, self.timeout, "nginx", alive=self._exited)
                    return self
                except (RuntimeError, TimeoutError) as exc:
                    log = self._read_error_log()
                    _kill_group(self.proc, grace=5.0)
                    if "address already in use" in log.lower() and attempt < 2:
                        continue
                    raise RuntimeError(f"{exc}\n--- nginx error log ---\n{log}") from None
        except BaseException:
            self._stop()
            raise
        raise AssertionError("unreachable")

    def __exit__(self, *exc_info) -> None:
        self._stop()

    def _read_error_log(self) -> str:
        try:
            return self.error_log.read_text(encoding="utf-8", errors="replace")[-10000:]
        except OSError:
            return ""

    def _exited(self) -> Optional[str]:
        code = self.proc.poll()
        return None if code is None else f"exited with code {code}"

    def _listening(self) -> bool:
        # nginx writes its pid file only after it has bound its sockets, so
        # the connect below cannot be answered by some other process.
        try:
            if self.pid_file.read_text().strip() != str(self.proc.pid):
                return False
        except OSError:
            return False
        try:
            with socket.create_connection((self.listen, self.port), timeout=1.0):
                return True
        except OSError:
            return False

    def _stop(self) -> None:
        if self.proc is not None:
            _kill_group(self.proc, signal.SIGQUIT, grace=5.0)
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.cleanup()
            self._tmp = None


# ---------------------------------------------------------------------------
# Clients with a chosen source address
# ---------------------------------------------------------------------------


def http_get(
    url: str,
    headers: Optional[Mapping[str, str]] = None,
    source_ip: Optional[str] = None,
    *,
    timeout: float = 10.0,
) -> tuple[int, bytes]:
    """GET ``url`` and return ``(status, body_bytes)``.

    ``source_ip`` binds the client socket to that local address first (as
    ``curl --interface`` would), so the server sees it as the peer.
    ``headers`` are sent as given (a ``Host`` entry replaces the default).
    Only loopback hosts are accepted.  Raises :class:`OSError` on
    connection failures.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"only http:// URLs are supported: {url!r}")
    _check_loopback(parts.hostname)
    conn = http.client.HTTPConnection(
        parts.hostname,
        parts.port or 80,
        timeout=timeout,
        source_address=(source_ip, 0) if source_ip else None,
    )
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    try:
        extra = dict(headers or {})
        skip_host = any(k.lower() == "host" for k in extra)
        conn.putrequest("GET", target, skip_host=skip_host, skip_accept_encoding=True)
        for name, value in extra.items():
            conn.putheader(name, value)
        conn.putheader("Connection", "close")
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_OP_CLOSE = 0x8


class _FrameReader:
    """Reads RFC 6455 frames from a socket, honouring a deadline.

    ``buffer`` holds bytes already received (e.g. sent right after the 101
    response).  :meth:`next_frame` returns ``(opcode, payload)``, ``None``
    when the deadline passes first, or ``("eof", b"")`` when the peer
    closed the TCP connection.
    """

    def __init__(self, sock: socket.socket, buffer: bytes = b"") -> None:
        self.sock = sock
        self.buffer = bytearray(buffer)

    def _fill(self, n: int, deadline: float) -> Optional[bool]:
        """Ensure ``n`` bytes are buffered. True: ok, False: EOF, None: timeout."""
        while len(self.buffer) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([self.sock], [], [], remaining)
            if not readable:
                return None
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                return False
            if not chunk:
                return False
            self.buffer.extend(chunk)
        return True

    def next_frame(self, deadline: float):
        ok = self._fill(2, deadline)
        if not ok:
            return ("eof", b"") if ok is False else None
        b0, b1 = self.buffer[0], self.buffer[1]
        opcode, masked, length = b0 & 0x0F, b1 & 0x80, b1 & 0x7F
        header = 2
        if length == 126:
            header = 4
        elif length == 127:
            header = 10
        ok = self._fill(header, deadline)
        if not ok:
            return ("eof", b"") if ok is False else None
        if length == 126:
            length = struct.unpack("!H", self.buffer[2:4])[0]
        elif length == 127:
            length = struct.unpack("!Q", self.buffer[2:10])[0]
        mask_len = 4 if masked else 0
        total = header + mask_len + length
        ok = self._fill(total, deadline)
        if not ok:
            return ("eof", b"") if ok is False else None
        payload = bytes(self.buffer[header + mask_len : total])
        if masked:
            key = self.buffer[header : header + 4]
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        del self.buffer[:total]
        return opcode, payload


def _parse_close(payload: bytes) -> tuple[int, str]:
    """Close frame payload → ``(code, reason)``; 1005 when no code was sent."""
    if len(payload) < 2:
        return 1005, ""
    return struct.unpack("!H", payload[:2])[0], payload[2:].decode("utf-8", "replace")


@dataclass
class WsResult:
    """What :func:`ws_handshake` saw.

    - ``status``: the HTTP status code of the handshake response (101 when
      the upgrade was accepted, e.g. 403 when refused before accept).
    - ``sock``: the open socket when the upgrade succeeded and the server
      did not close it during the grace period, else ``None``.
    - ``closed_with``: the close code when the server accepted and then
      closed at once (e.g. 4401/4403/4408; 1005 for a close frame without
      code, 1006 for a TCP close without a close frame), else ``None``.
    - ``close_reason``: the close frame's reason text.
    - ``headers``: response headers (lower-cased names).
    - ``body``: response body bytes received with a non-101 answer.

    ``refused`` is True for both refusal shapes.  For the short form the
    result unpacks as ``status, sock = ws_handshake(...)``.  Use it as a
    context manager (or call :meth:`close`) to close the socket.
    """

    status: int
    sock: Optional[socket.socket]
    closed_with: Optional[int] = None
    close_reason: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    _reader: Optional[_FrameReader] = field(default=None, repr=False)

    @property
    def refused(self) -> bool:
        """True when the server did not leave an open WebSocket."""
        return self.status != 101 or self.closed_with is not None

    def describe(self) -> str:
        """One-line summary for assertion messages: ``HTTP 403 b''``, ``101 then close 4403 '...'``, ``101 open``."""
        if self.status != 101:
            return f"HTTP {self.status} {self.body[:200]!r}"
        if self.closed_with is not None:
            return f"101 then close {self.closed_with} {self.close_reason!r}"
        return "101 open"

    def close(self) -> None:
        """Send a normal close frame (1000) if the socket is open, then close it."""
        if self.sock is not None:
            with contextlib.suppress(OSError):
                mask = os.urandom(4)
                payload = struct.pack("!H", 1000)
                masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                self.sock.sendall(bytes([0x80 | _OP_CLOSE, 0x80 | len(payload)]) + mask + masked)
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None

    def __iter__(self):
        return iter((self.status, self.sock))

    def __enter__(self) -> "WsResult":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def ws_handshake(
    host: str,
    port: int,
    path: str,
    source_ip: Optional[str] = None,
    headers: Optional[Mapping[str, str]] = None,
    timeout: float = 5.0,
    *,
    close_grace: float = 0.3,
) -> WsResult:
    """Open a WebSocket with a real RFC 6455 upgrade request.

    Inputs: target ``host``/``port`` (loopback only), request ``path``
    (with query), optional ``source_ip`` to bind the client socket to,
    extra request ``headers`` (``Host`` defaults to ``host:port``; no
    ``Origin`` is sent unless given), ``timeout`` for connect and reading
    the response, ``close_grace`` seconds to watch for an immediate close
    after a 101.

    Output: a :class:`WsResult`.  Refusal comes in two shapes and both
    show up: an HTTP error status (``status`` 403 etc., ``sock`` None) or
    ``101`` followed straight away by a close frame (``closed_with`` set,
    ``sock`` None).  ``Sec-WebSocket-Accept`` is verified on 101.
    """
    _check_loopback(host)
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    request_headers = {
        "Host": _hostport(host, port),
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13",
    }
    for name, value in (headers or {}).items():
        for existing in [k for k in request_headers if k.lower() == name.lower()]:
            del request_headers[existing]
        request_headers[name] = value
    request = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in request_headers.items()) + "\r\n"

    sock = socket.create_connection((host, port), timeout=timeout, source_address=(source_ip, 0) if source_ip else None)
    try:
        sock.sendall(request.encode("latin-1"))
        raw = bytearray()
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in raw:
            remaining = deadline - time.monotonic()
            readable = select.select([sock], [], [], max(remaining, 0))[0] if remaining > 0 else []
            if not readable:
                raise TimeoutError(f"no WebSocket handshake response from {host}:{port}{path}")
            chunk = sock.recv(65536)
            if not chunk:
                break
            raw.extend(chunk)
        head, _, rest = bytes(raw).partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        match = re.match(r"HTTP/1\.[01] (\d{3})", lines[0]) if lines and lines[0] else None
        if not match:
            raise ConnectionError(f"bad handshake response from {host}:{port}{path}: {bytes(raw)[:200]!r}")
        status = int(match.group(1))
        response_headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            response_headers[name.strip().lower()] = value.strip()

        if status != 101:
            body = rest + _drain(sock, response_headers, len(rest), deadline)
            sock.close()
            return WsResult(status, None, headers=response_headers, body=body)

        expected = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()
        if response_headers.get("sec-websocket-accept") != expected:
            raise ConnectionError(f"bad Sec-WebSocket-Accept from {host}:{port}{path}: {response_headers}")

        reader = _FrameReader(sock, rest)
        result = WsResult(101, sock, headers=response_headers, _reader=reader)
        _watch_for_close(result, time.monotonic() + close_grace)
        return result
    except BaseException:
        with contextlib.suppress(OSError):
            sock.close()
        raise


def _drain(sock: socket.socket, headers: Mapping[str, str], have: int, deadline: float) -> bytes:
    """Read the rest of a non-101 response body (by Content-Length, else to EOF)."""
    want = int(headers.get("content-length", "-1") or -1)
    data = bytearray()
    while want < 0 or have + len(data) < want:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([sock], [], [], remaining)[0]:
            break
        try:
            chunk = sock.recv(65536)
        except OSError:
            break
        if not chunk:
            break
        data.extend(chunk)
    return bytes(data)


def _watch_for_close(result: WsResult, deadline: float) -> bool:
    """Read frames until ``deadline``; on a close frame or EOF mark ``result`` closed.

    Returns True while the socket is still open.  Data, ping and pong
    frames are consumed and ignored: only a close counts.
    """
    while result.sock is not None:
        frame = result._reader.next_frame(deadline)
        if frame is None:
            return True
        opcode, payload = frame
        if opcode == "eof":
            result.closed_with, result.close_reason = 1006, "TCP closed without a close frame"
        elif opcode == _OP_CLOSE:
            result.closed_with, result.close_reason = _parse_close(payload)
        else:
            continue
        result.close()
        return False
    return False


def ws_stays_open(ws: WsResult | socket.socket, seconds: float = 1.0) -> bool:
    """True when the server does not close the WebSocket within ``seconds``.

    Input: a :class:`WsResult` from :func:`ws_handshake` (preferred: it
    keeps bytes already buffered and records the close code) or its raw
    socket.  Waits with ``select`` and returns as soon as a close frame or
    EOF arrives (False), or after ``seconds`` with the socket still open
    (True).  The socket is not closed on success.
    """
    if isinstance(ws, socket.socket):
        ws = WsResult(101, ws, _reader=_FrameReader(ws))
    if ws.sock is None:
        return False
    return _watch_for_close(ws, time.monotonic() + seconds)
