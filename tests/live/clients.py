"""HTTP and WebSocket clients that can pick their source address (loopback only).

The source address is how the tests play a proxy: a client bound to
127.0.0.5 is, to the dashboard, a peer that is not loopback's 127.0.0.1.
WebSockets go through the ``websockets`` library's client over a socket
bound here; the handshake headers are sent as the test gives them (a
``Host`` or ``Origin`` replaces the one built from the address).
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Mapping, Optional

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from .processes import check_loopback, hostport

__all__ = ["WsResult", "http_get", "ws_handshake", "ws_stays_open"]


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
    check_loopback(parts.hostname)
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


class _ExactHeaders(ClientConnection):
    """A client connection whose handshake sends the caller's headers instead of the built ones of the same name.

    websockets builds ``Host`` from the URI and adds ``additional_headers``
    after it; a test that forges ``Host`` wants one Host line, its own.
    """

    def handshake(self, additional_headers=None, user_agent_header=None, timeout=None) -> None:
        build = self.protocol.connect

        def request():
            built = build()
            for name in additional_headers or {}:
                if name in built.headers:
                    del built.headers[name]
            return built

        self.protocol.connect = request
        super().handshake(additional_headers, user_agent_header, timeout)


@dataclass
class WsResult:
    """What :func:`ws_handshake` saw.

    - ``status``: the HTTP status code of the handshake response (101 when
      the upgrade was accepted, e.g. 403 when refused before accept).
    - ``connection``: the open :class:`websockets.sync.client.ClientConnection`
      when the upgrade succeeded and the server did not close it during the
      grace period, else ``None``.
    - ``closed_with``: the close code when the server accepted and then
      closed at once (e.g. 4401/4403/4408; 1005 for a close frame without
      code, 1006 for a TCP close without a close frame), else ``None``.
    - ``close_reason``: the close frame's reason text.
    - ``headers``: response headers (lower-cased names).
    - ``body``: response body bytes received with a non-101 answer.

    ``refused`` is True for both refusal shapes. Use it as a context
    manager (or call :meth:`close`) to close the connection.
    """

    status: int
    connection: Optional[ClientConnection]
    closed_with: Optional[int] = None
    close_reason: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    _open: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, repr=False)

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
        """Send a normal close (1000) if the connection is open, and close it."""
        self.connection = None
        self._open.close()

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
    """Open a WebSocket with a real RFC 6455 upgrade request (the ``websockets`` client).

    Inputs: target ``host``/``port`` (loopback only), request ``path``
    (with query), optional ``source_ip`` to bind the client socket to,
    extra request ``headers`` (``Host`` defaults to ``host:port``; no
    ``Origin``, ``User-Agent`` or extension is sent unless given), ``timeout``
    for connect and the handshake, ``close_grace`` seconds to watch for an
    immediate close after a 101.

    Output: a :class:`WsResult`. Refusal comes in two shapes and both
    show up: an HTTP error status (``status`` 403 etc., ``connection``
    None) or ``101`` followed straight away by a close frame
    (``closed_with`` set, ``connection`` None). The client checks
    ``Sec-WebSocket-Accept`` on a 101.
    """
    check_loopback(host)
    sock = socket.create_connection((host, port), timeout=timeout, source_address=(source_ip, 0) if source_ip else None)
    opened = contextlib.ExitStack()  # the connection outlives this call: WsResult.close() ends it
    try:
        connection = opened.enter_context(
            connect(
                f"ws://{hostport(host, port)}{path}",
                sock=sock,
                additional_headers=dict(headers or {}),
                user_agent_header=None,
                compression=None,
                proxy=None,
                open_timeout=timeout,
                ping_interval=None,
                close_timeout=2.0,
                max_size=None,
                create_connection=_ExactHeaders,
            )
        )
    except InvalidStatus as exc:
        sock.close()
        response = exc.response
        found = {name.lower(): value for name, value in response.headers.raw_items()}
        return WsResult(response.status_code, None, headers=found, body=bytes(response.body or b""))
    except BaseException:
        sock.close()
        raise
    assert connection.response is not None
    found = {name.lower(): value for name, value in connection.response.headers.raw_items()}
    result = WsResult(101, connection, headers=found, _open=opened)
    _watch_for_close(result, time.monotonic() + close_grace)
    return result


def _watch_for_close(result: WsResult, deadline: float) -> bool:
    """Read messages until ``deadline``; on a close (frame or EOF) mark ``result`` closed.

    Returns True while the connection is still open. Messages are
    consumed and ignored: only a close counts.
    """
    while result.connection is not None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return True
        try:
            result.connection.recv(timeout=remaining)
        except TimeoutError:
            return True
        except ConnectionClosed as closed:
            if closed.rcvd is None:
                result.closed_with, result.close_reason = 1006, "TCP closed without a close frame"
            else:
                result.closed_with, result.close_reason = closed.rcvd.code, closed.rcvd.reason
            result.close()
            return False
    return False


def ws_stays_open(ws: WsResult, seconds: float = 1.0) -> bool:
    """True when the server does not close the WebSocket of ``ws`` (from :func:`ws_handshake`) within ``seconds``.

    Returns as soon as a close frame or EOF arrives (False, with the close
    code recorded in ``ws``), or after ``seconds`` with the connection still
    open (True). The connection is not closed on success.
    """
    if ws.connection is None:
        return False
    return _watch_for_close(ws, time.monotonic() + seconds)
