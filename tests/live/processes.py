"""Loopback addresses, free ports, polling with deadlines, process groups and file locks for the live helpers."""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

__all__ = ["POLL_INTERVAL", "check_loopback", "flock", "free_port", "hostport", "kill_group", "wait_for"]

POLL_INTERVAL = 0.05


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


def hostport(host: str, port: int) -> str:
    """``host:port`` for URLs, Host headers and nginx (IPv6 in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_loopback(host: str) -> None:
    """Refuse any address outside 127.0.0.0/8 (or ::1): the live tests stay on loopback."""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"the live tests only talk to loopback addresses, got {host!r}")


def wait_for(predicate, timeout: float, what: str, alive=None) -> None:
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
        time.sleep(POLL_INTERVAL)


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
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
def flock(path: Path) -> Iterator[None]:
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
