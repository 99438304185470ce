"""The live tests' WebSocket client against a local websockets server: each refusal shape, the headers as sent.

No dashboard: these pin down what :func:`ws_handshake` reports, so a live
failure reads as the dashboard's doing, not the client's.
"""

from __future__ import annotations

import threading
from http import HTTPStatus

import pytest
from websockets.sync.server import ServerConnection, serve

from .clients import ws_handshake, ws_stays_open


@pytest.fixture
def server():
    """A websockets server on 127.0.0.1: ``/refuse`` answers 403, ``/close`` accepts then closes 4403, else echoes.

    Yields ``(port, seen)``: ``seen`` holds each request's (path, raw header list, peer address).
    """
    seen: list[tuple[str, list[tuple[str, str]], str]] = []

    def process_request(connection: ServerConnection, request):
        seen.append((request.path, list(request.headers.raw_items()), connection.remote_address[0]))
        if request.path == "/refuse":
            return connection.respond(HTTPStatus.FORBIDDEN, "no thanks\n")
        return None

    def handler(connection: ServerConnection) -> None:
        if connection.request.path == "/close":
            connection.close(4403, "host not allowed")
            return
        for message in connection:
            connection.send(message)

    with serve(handler, "127.0.0.1", 0, process_request=process_request) as srv:
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        yield srv.socket.getsockname()[1], seen
        srv.shutdown()
        thread.join(timeout=10)


def test_an_http_refusal_is_its_status_headers_and_body(server):
    port, _ = server
    with ws_handshake("127.0.0.1", port, "/refuse") as ws:
        assert ws.refused and ws.status == 403 and ws.connection is None and ws.closed_with is None
        assert ws.body == b"no thanks\n" and ws.headers["content-type"].startswith("text/plain")
        assert ws.describe() == "HTTP 403 b'no thanks\\n'"


def test_accept_then_close_is_the_close_code_and_reason(server):
    port, _ = server
    with ws_handshake("127.0.0.1", port, "/close") as ws:
        assert ws.refused and ws.status == 101 and (ws.closed_with, ws.close_reason) == (4403, "host not allowed")
        assert ws.describe() == "101 then close 4403 'host not allowed'"
        assert not ws_stays_open(ws, 0.1)


def test_an_open_socket_stays_open_and_the_headers_are_sent_as_given(server):
    port, seen = server
    headers = {"Host": "hermes.example.com:80", "Origin": "https://hermes.example.com"}
    with ws_handshake("127.0.0.1", port, "/events?token=t", source_ip="127.0.0.1", headers=headers) as ws:
        assert not ws.refused and ws.describe() == "101 open"
        assert ws_stays_open(ws, 0.3)
        ws.connection.send("ping")
        assert ws.connection.recv(timeout=5) == "ping"
    path, raw, peer = seen[-1]
    assert path == "/events?token=t" and peer == "127.0.0.1"
    names = [name.lower() for name, _ in raw]
    assert [v for n, v in raw if n.lower() == "host"] == ["hermes.example.com:80"]  # one Host line: the test's own
    assert [v for n, v in raw if n.lower() == "origin"] == ["https://hermes.example.com"]
    assert "user-agent" not in names and "sec-websocket-extensions" not in names


def test_the_source_address_is_the_peer_the_server_sees(server):
    port, seen = server
    with ws_handshake("127.0.0.1", port, "/x", source_ip="127.0.0.5") as ws:
        assert ws.status == 101
    assert seen[-1][2] == "127.0.0.5"
    assert [v for n, v in seen[-1][1] if n.lower() == "host"] == [f"127.0.0.1:{port}"]


def test_only_loopback_addresses_are_accepted():
    with pytest.raises(ValueError, match="loopback"):
        ws_handshake("192.0.2.1", 80, "/")
