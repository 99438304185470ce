"""trusted-hosts and cors-origins on a real 0.19.0 dashboard behind a real nginx.

nginx passes the browser's Host (``proxy_set_header Host $http_host;``) and
Origin to a dashboard bound to 127.0.0.1. It connects from 127.0.0.1, so the
WebSocket peer check passes and only the Host / Origin guard decides. The
same dashboard is started three times: on the release bytes, after
``hermes-patch apply`` (the installed command, found through ``--python``)
and after ``hermes-patch revert``.

Expected, for the listed name ``proxy.example``:
before apply HTTP 400 and the WebSocket refused; after apply accepted, while
an unlisted name and look-alikes are still refused; after revert refused
again. CORS: the listed origin gets ``Access-Control-Allow-Origin`` only
after apply; other origins never; localhost origins always.
"""

from __future__ import annotations

import http.client

import pytest

from conftest import Runner

from .clients import ws_handshake, ws_stays_open
from .dashboard import Dashboard
from .nginx import ensure_nginx, Nginx, NginxUnavailable
from .venvs import fresh_web_server, hermes_venv, record_digest, wheel_record_hashes

pytestmark = pytest.mark.live

VERSION = "0.19.0"
LISTED, ORIGIN = "proxy.example", "https://proxy.example"
CONFIG = (
    "[patches.public-action-status]\nenabled = false\n"
    "[patches.relax-ws-peer-check]\nenabled = false\n"
    f'[patches.trusted-hosts]\nhosts = ["{LISTED}"]\n'
    f'[patches.cors-origins]\norigins = ["{ORIGIN}"]\n'
)


@pytest.fixture(scope="module")
def nginx_binary():
    try:
        return ensure_nginx()
    except NginxUnavailable as exc:
        pytest.skip(f"nginx unavailable, live proxy tests skipped: {exc}")


def request(proxy: Nginx, method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    """One HTTP request through the proxy with exactly these headers; returns (status, lower-cased headers)."""
    conn = http.client.HTTPConnection(proxy.listen, proxy.port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.putheader("Connection", "close")
        conn.endheaders()
        response = conn.getresponse()
        response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


def observe(venv) -> dict[str, object]:
    """Start the dashboard and nginx, and record what a browser would get."""
    seen: dict[str, object] = {}
    with Dashboard(venv) as dash, Nginx(dash.port, pass_host=True, proxy_bind="127.0.0.1") as proxy:
        local = f"127.0.0.1:{proxy.port}"
        for host in (LISTED, f"{LISTED}:443", "evil-proxy.example", f"{LISTED}.evil.test", f"{LISTED}.", local):
            seen[f"GET / Host={host}"] = request(proxy, "GET", "/", {"Host": host})[0]
        events = f"/api/events?token={dash.token}&channel=live"
        for host, origin in (
            (LISTED, ORIGIN),
            (LISTED, "http://proxy.example@evil.test"),
            (LISTED, "https://evil.example"),
            ("evil.example", "https://evil.example"),
        ):
            with ws_handshake(proxy.listen, proxy.port, events, headers={"Host": host, "Origin": origin}) as ws:
                open_ = not ws.refused and ws_stays_open(ws, 0.3)
                seen[f"WS Host={host} Origin={origin}"] = "open" if open_ else ws.describe()
        for origin in (ORIGIN, "https://evil.example", "http://localhost:5173", "null"):
            status, headers = request(proxy, "GET", "/api/status", {"Host": local, "Origin": origin})
            seen[f"CORS GET Origin={origin}"] = (status, headers.get("access-control-allow-origin"))
            status, headers = request(
                proxy,
                "OPTIONS",
                "/api/status",
                {"Host": local, "Origin": origin, "Access-Control-Request-Method": "GET"},
            )
            seen[f"CORS preflight Origin={origin}"] = (status, headers.get("access-control-allow-origin"))
    return seen


def test_listed_host_and_origin_before_apply_after_apply_after_revert(nginx_binary, tmp_path):
    venv = hermes_venv(VERSION)
    run = Runner(tmp_path, process=True)  # as the operator runs it beside a live dashboard
    run.configure(CONFIG)
    python = str(venv / "bin" / "python")
    with fresh_web_server(venv) as web:
        release = web.read_bytes()
        before = observe(venv)
        run("apply", "--python", python, check=0)
        assert b"# hermes-patch: trusted-hosts" in web.read_bytes()
        after = observe(venv)
        run("revert", "--python", python, check=0)
        assert web.read_bytes() == release
        assert record_digest(web.read_bytes()) == wheel_record_hashes(venv)["hermes_cli/web_server.py"]
        reverted = observe(venv)

    refused_ws = lambda v: v != "open"  # noqa: E731
    # Before: the proxy's name is refused on HTTP and WebSocket; the loopback name works.
    assert before[f"GET / Host={LISTED}"] == 400 and before[f"GET / Host={LISTED}:443"] == 400
    assert refused_ws(before[f"WS Host={LISTED} Origin={ORIGIN}"]), before
    assert before[f"GET / Host=127.0.0.1:{_port(before)}"] == 200
    assert before[f"CORS GET Origin={ORIGIN}"][1] is None and before[f"CORS preflight Origin={ORIGIN}"][0] == 400

    # After: the listed name and origin pass; everything else is refused as before.
    assert after[f"GET / Host={LISTED}"] == 200 and after[f"GET / Host={LISTED}:443"] == 200
    assert after[f"WS Host={LISTED} Origin={ORIGIN}"] == "open", after
    for host in ("evil-proxy.example", f"{LISTED}.evil.test", f"{LISTED}."):
        assert after[f"GET / Host={host}"] == 400, host
    assert refused_ws(after[f"WS Host={LISTED} Origin=http://proxy.example@evil.test"])
    assert refused_ws(after[f"WS Host={LISTED} Origin=https://evil.example"])
    assert refused_ws(after["WS Host=evil.example Origin=https://evil.example"])
    assert after[f"CORS GET Origin={ORIGIN}"] == (200, ORIGIN)
    assert after[f"CORS preflight Origin={ORIGIN}"] == (200, ORIGIN)
    for origin in ("https://evil.example", "null"):
        assert after[f"CORS GET Origin={origin}"][1] is None and after[f"CORS preflight Origin={origin}"][0] == 400, (
            origin
        )
    assert after["CORS GET Origin=http://localhost:5173"] == (200, "http://localhost:5173")

    # After revert: exactly the release's behaviour again.
    assert _without_port(reverted) == _without_port(before)


def _port(seen: dict[str, object]) -> str:
    return next(k for k in seen if k.startswith("GET / Host=127.0.0.1:")).rsplit(":", 1)[1]


def _without_port(seen: dict[str, object]) -> dict[str, object]:
    """The observations keyed without nginx's port, which differs between runs."""
    return {k.replace(f":{_port(seen)}", ":PORT"): v for k, v in seen.items()}
