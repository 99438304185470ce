"""Smoke tests for the live harness: the reported faults, on unpatched releases.

Each test proves one fact from shared/REAL_TARGETS.md on a real, unpatched
hermes-agent release, reached directly or through a real nginx whose
upstream connections come from 127.0.0.5 (a non-loopback peer to the
dashboard):

- fault 1: ``GET /api/actions/hermes-update/status`` needs the session
  token header (401 without it, 200 with it);
- fault 2: the ``/api/events`` WebSocket is refused for a proxy peer and
  accepted from 127.0.0.1;
- on 0.14 a non-loopback bind (``--host 127.0.0.2 --insecure``) still
  refuses a 127.0.0.5 peer.
"""

from __future__ import annotations

import pytest

from .clients import http_get, ws_handshake, ws_stays_open
from .dashboard import Dashboard, DashboardStartError
from .nginx import Nginx, PROXY_PEER
from .venvs import (
    fresh_web_server,
    hermes_venv,
    record_digest,
    session_header_name,
    web_server_path,
    wheel_record_hashes,
)

pytestmark = pytest.mark.live

VERSIONS = ["0.14.0", "0.19.0"]
STATUS_PATH = "/api/actions/hermes-update/status"

#: How each release refuses /api/events for a non-loopback peer: it closes
#: before accept(), which uvicorn answers with a plain HTTP 403.
EXPECTED_WS_REFUSAL = {"0.14.0": 403, "0.19.0": 403}


def events_path(token: str) -> str:
    return f"/api/events?token={token}&channel=c"


@pytest.fixture(scope="module", params=VERSIONS)
def venv(request):
    return hermes_venv(request.param)


@pytest.fixture(scope="module")
def dashboard(venv):
    """An unpatched dashboard on 127.0.0.1 for the module's version."""
    with fresh_web_server(venv), Dashboard(venv) as dash:
        yield dash


@pytest.fixture(scope="module")
def proxy(dashboard, nginx_binary):
    """nginx on 127.0.0.1, connecting to the dashboard from 127.0.0.5."""
    with Nginx(dashboard.port) as nginx:
        yield nginx


@pytest.fixture(scope="module")
def token_header(venv):
    return session_header_name(web_server_path(venv))


def test_fresh_web_server_restores_release_bytes(venv):
    record = wheel_record_hashes(venv)["hermes_cli/web_server.py"]
    with fresh_web_server(venv) as path:
        path.write_bytes(path.read_bytes() + b"\n# patched by a test\n")
        backup = path.with_name("web_server.py.orig")
        backup.write_bytes(b"left behind by a patcher")
        with fresh_web_server(venv) as again:
            assert again == path
            assert record_digest(again.read_bytes()) == record
            assert not backup.exists()


def test_status_without_token_is_401_through_nginx(proxy):
    status, body = http_get(proxy.base_url + STATUS_PATH)
    assert status == 401, body


def test_status_with_token_header_is_200_through_nginx(proxy, dashboard, token_header):
    status, body = http_get(proxy.base_url + STATUS_PATH, headers={token_header: dashboard.token})
    assert status == 200, body
    assert b'"name":"hermes-update"' in body


def test_events_ws_through_nginx_is_refused(proxy, dashboard):
    with ws_handshake(proxy.listen, proxy.port, events_path(dashboard.token)) as ws:
        assert ws.refused, ws.describe()
        assert (ws.status, ws.closed_with) == (EXPECTED_WS_REFUSAL[dashboard.version], None), ws.describe()


def test_dashboard_sees_nginx_as_peer_127_0_0_5(proxy, dashboard):
    """0.16+ log the refused peer; it must be nginx's ``proxy_bind`` address."""
    if dashboard.version.startswith("0.14."):
        pytest.skip("0.14 does not log WebSocket refusals")
    with ws_handshake(proxy.listen, proxy.port, f"/api/pty?token={dashboard.token}") as ws:
        assert ws.status == 403, ws.describe()
    line = dashboard.wait_for_hermes_log("pty refused")
    assert f"peer={PROXY_PEER}" in line and "peer_not_loopback" in line, line


def test_events_ws_through_nginx_bound_to_loopback_is_accepted(dashboard, nginx_binary):
    """Control: the same nginx config passes the upgrade when its peer is 127.0.0.1."""
    with Nginx(dashboard.port, proxy_bind="127.0.0.1") as nginx:
        with ws_handshake(nginx.listen, nginx.port, events_path(dashboard.token)) as ws:
            assert not ws.refused, ws.describe()
            assert ws_stays_open(ws, 0.3), ws.describe()


def test_events_ws_direct_from_proxy_peer_is_refused(dashboard):
    with ws_handshake(dashboard.host, dashboard.port, events_path(dashboard.token), source_ip=PROXY_PEER) as ws:
        assert ws.refused, ws.describe()


def test_events_ws_direct_from_loopback_is_accepted(dashboard):
    with ws_handshake(dashboard.host, dashboard.port, events_path(dashboard.token), source_ip="127.0.0.1") as ws:
        assert ws.status == 101 and not ws.refused, ws.describe()
        assert ws_stays_open(ws, 0.5), ws.describe()


def test_events_ws_with_wrong_token_is_refused(dashboard):
    with ws_handshake(dashboard.host, dashboard.port, events_path("wrong")) as ws:
        assert ws.refused, ws.describe()


@pytest.mark.parametrize("pass_host, expected", [(False, 200), (True, 400)])
def test_nginx_pass_host_forwards_the_browser_host(dashboard, nginx_binary, pass_host, expected):
    """With ``pass_host`` the dashboard sees the browser's Host and rejects a foreign one."""
    with Nginx(dashboard.port, pass_host=pass_host) as nginx:
        status, body = http_get(nginx.base_url + "/", headers={"Host": "hermes.example.test"})
        assert status == expected, body[:300]


def test_non_loopback_bind_refuses_proxy_peer_on_0_14(nginx_binary):
    venv = hermes_venv("0.14.0")
    with fresh_web_server(venv), Dashboard(venv, host="127.0.0.2") as dash:
        assert "--insecure" in dash.command()
        path = events_path(dash.token)
        with ws_handshake(dash.host, dash.port, path, source_ip=PROXY_PEER) as ws:
            assert ws.refused, ws.describe()
        with Nginx(dash.port, upstream_host=dash.host) as nginx:
            with ws_handshake(nginx.listen, nginx.port, path) as ws:
                assert ws.refused, ws.describe()
        with ws_handshake(dash.host, dash.port, path, source_ip="127.0.0.1") as ws:
            assert not ws.refused, ws.describe()


def test_failed_start_raises_with_the_dashboard_log():
    """0.19 refuses a non-loopback bind without an auth provider; the error carries its output."""
    venv = hermes_venv("0.19.0")
    with fresh_web_server(venv):
        dash = Dashboard(venv, host="127.0.0.2", timeout=30)
        with pytest.raises(DashboardStartError, match="Refusing to bind dashboard to 127.0.0.2"):
            dash.__enter__()
        assert dash.proc.poll() is not None
        assert dash.home is not None and not dash.home.exists()
