"""A throw-away nginx reverse proxy on loopback, connecting from a chosen peer address.

A "reverse proxy" is simply a peer whose address is not ``127.0.0.1``:
nginx is told to ``proxy_bind 127.0.0.5`` (:data:`PROXY_PEER`) so the
dashboard sees that peer, exactly like a same-host proxy in production.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator, Optional, Sequence

from .processes import check_loopback, free_port, hostport, kill_group, wait_for

__all__ = ["Nginx", "NginxUnavailable", "PROXY_PEER", "ensure_nginx"]

#: The address nginx connects from (``proxy_bind``): a non-loopback peer in
#: the dashboard's eyes, since ``_LOOPBACK_HOSTS`` only holds 127.0.0.1.
PROXY_PEER = "127.0.0.5"


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
            check_loopback(addr)
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
        return f"http://{hostport(self.listen, self.port)}"

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
            listen=hostport(self.listen, self.port),
            upstream=hostport(self.upstream_host, self.upstream_port),
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
                    wait_for(self._listening, self.timeout, "nginx", alive=self._exited)
                    return self
                except (RuntimeError, TimeoutError) as exc:
                    log = self._read_error_log()
                    kill_group(self.proc, grace=5.0)
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
            kill_group(self.proc, signal.SIGQUIT, grace=5.0)
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.cleanup()
            self._tmp = None
