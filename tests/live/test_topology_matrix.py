"""The topology matrix: real nginx in front of real 0.14.0 and 0.19.0 dashboards, loaded in a real Chromium.

Topologies (each an nginx in front of the dashboard on 127.0.0.1:P; the
proxies are started once per release and shared by the three phases):

* ``other-host``: a proxy on another host, i.e. connecting from 127.0.0.5
  (``proxy_bind 127.0.0.5``), Host rewritten to the dashboard's own.
  Recipe: nginx/Caddy/Traefik on another machine. Needs
  ``trusted_proxies = ["127.0.0.5/32"]``.
* ``same-host``: a proxy on the dashboard's host connecting from 127.0.0.1
  and sending ``X-Forwarded-For $proxy_add_x_forwarded_for``, with the
  browser on another address. Chromium always connects from 127.0.0.1 on
  this machine (Linux picks 127.0.0.1 as the source for any 127.x
  destination), so the browser's address comes from a first hop: an edge
  nginx that connects from 127.0.0.9, the browser's address as the
  same-host proxy sees it (``X-Forwarded-For: ..., 127.0.0.9``). On 0.14
  uvicorn then hands the dashboard 127.0.0.9: HTTP 403 on every WebSocket
  until ``ignore-forwarded-for`` is applied. Recipe: Caddy, Traefik,
  nginx on the same host.
* ``public-name``: the browser uses ``http://hermes.example.test:PORT``
  (``--host-resolver-rules`` maps it to the loopback proxy); the proxy
  passes Host (``$http_host``), connects from 127.0.0.1 and sends
  X-Forwarded-For. Needs ``trusted-hosts``. Recipe: Tailscale Serve,
  Cloudflare Tunnel, Caddy with its own domain.
* ``broken``: like ``other-host`` but from 127.0.0.7, which the
  configuration does not list: refused in every phase, and ``verify
  --proxy 127.0.0.7`` must exit 1 after apply.

Phases: the release bytes; ``hermes-patch apply`` + a dashboard restart;
``hermes-patch revert`` + a restart. In each (topology, phase) Chromium
opens ``/chat`` through the proxy and we look at what a person would see:
the page loads, its WebSockets (``/api/ws``, ``/api/events``, ``/api/pty``)
are upgraded (HTTP 101), no "events feed disconnected", no 401/403 among
the page's API requests (0.19's ``/api/auth/me`` answers 401 to everyone
when no login is configured: left out). ``hermes-patch verify --proxy``
(and ``--public-host``) is run for the same case and its exit code must
agree with the browser: 0 when the page works, 1 when it does not. Each
case leaves a screenshot in ``artifacts/screenshots/matrix-*.png``.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from conftest import Runner

from .browser import PageRecord, browser, screenshot
from .clients import http_get, ws_handshake
from .dashboard import Dashboard
from .nginx import Nginx
from .processes import free_port
from .venvs import fresh_web_server, hermes_venv

pytestmark = [pytest.mark.live, pytest.mark.browser, pytest.mark.slow]

PUBLIC = "hermes.example.test"
EDGE_SOURCE = "127.0.0.9"  # the browser's address as the same-host proxy sees it
# What `hermes-patch setup --url http://hermes.example.test --proxy-address 127.0.0.5` writes, plus 127.0.0.1
# (harmless; some operators list it): no CORS origins, the page through the proxy is same-origin.
CONFIG = (
    "[patches.relax-ws-peer-check]\n"
    'trusted_proxies = ["127.0.0.5/32", "127.0.0.1/32"]\n'
    "[patches.trusted-hosts]\n"
    f'hosts = ["{PUBLIC}"]\n'
)
#: API answers a person never sees as an error (0.19: "not logged in" when no login is configured).
EXPECTED_401 = ("/api/auth/me",)


@dataclass
class Topology:
    name: str
    proxy_seen: str  # the proxy's address as the dashboard sees it (verify --proxy)
    public: bool = False


TOPOLOGIES = (
    Topology("other-host", "127.0.0.5"),
    Topology("same-host", "127.0.0.1"),
    Topology("public-name", "127.0.0.1", public=True),
    Topology("broken", "127.0.0.7"),
)

# (release, topology) -> does the page work in phases (before, after apply, after revert)?
WORKS = {
    ("0.14.0", "other-host"): (False, True, False),
    ("0.14.0", "same-host"): (False, True, False),
    ("0.14.0", "public-name"): (False, True, False),
    ("0.14.0", "broken"): (False, False, False),
    # 0.19 keeps the TCP peer (proxy_headers off) and accepts a same-host proxy as loopback.
    ("0.19.0", "same-host"): (True, True, True),
    ("0.19.0", "other-host"): (False, True, False),
    ("0.19.0", "public-name"): (False, True, False),
    ("0.19.0", "broken"): (False, False, False),
}
PHASES = ("before", "after", "revert")


def look(ctx, url: str, name: str) -> tuple[bool, str, PageRecord]:
    """Open ``url`` in a new tab like a person would, wait for the chat to settle; return (works, why not, record)."""
    page = ctx.new_page()
    record = PageRecord()
    record.attach(page, ctx)
    try:
        response = page.goto(url, wait_until="load", timeout=30000)
        deadline = time.monotonic() + 10
        # The chat opens /api/ws, /api/events and /api/pty; wait until each answered (or 10 s).
        while time.monotonic() < deadline:
            page.wait_for_timeout(500)
            if len(record.handshakes) >= 3 and all(record.handshakes.values()):
                break
        page.wait_for_timeout(1000)  # a refused events feed shows its message after the close
        text = page.inner_text("body") if response is not None and response.status == 200 else ""
        screenshot(page, name)
    finally:
        page.close()
    problems = []
    if response is None or response.status != 200:
        problems.append(f"page HTTP {response.status if response else 'none'}")
    sockets = {u.split("?")[0].rsplit("/", 1)[-1]: s for u, s in record.handshakes.items()}
    if not sockets:
        problems.append("no WebSocket opened")
    problems += [f"WebSocket /api/{k} HTTP {s or 'no answer'}" for k, s in sorted(sockets.items()) if s != 101]
    refused = [(s, u) for s, u in record.refused() if not any(p in u for p in EXPECTED_401)]
    problems += [f"HTTP {s} {u.split('?')[0]}" for s, u in refused]
    if "events feed disconnected" in text or "events feed rejected" in text:
        problems.append("the page says the events feed is disconnected")
    return not problems, "; ".join(problems), record


@pytest.fixture(scope="module")
def ctx():
    with browser(extra_args=(f"--host-resolver-rules=MAP {PUBLIC} 127.0.0.1",)) as context:
        yield context


@pytest.mark.parametrize("version", ["0.14.0", "0.19.0"])
def test_topology_matrix(version, ctx, nginx_binary, run: Runner):
    venv = hermes_venv(version)
    python = str(venv / "bin" / "python")
    run.configure(CONFIG)
    port = free_port()
    seen: dict[tuple[str, str], tuple[bool, str, int, str]] = {}
    with (
        fresh_web_server(venv),
        Nginx(port, proxy_bind="127.0.0.5") as other_host,
        Nginx(port, proxy_bind="127.0.0.1") as same_host,
        Nginx(same_host.port, proxy_bind=EDGE_SOURCE, pass_host=True) as edge,
        Nginx(port, proxy_bind="127.0.0.1", pass_host=True) as public,
        Nginx(port, proxy_bind="127.0.0.7") as broken,
    ):
        urls = {
            "other-host": other_host.base_url,
            "same-host": edge.base_url,  # browser -> edge (from 127.0.0.9) -> same-host proxy -> dashboard
            "public-name": f"http://{PUBLIC}:{public.port}",
            "broken": broken.base_url,
        }
        for phase in PHASES:
            if phase == "after":
                run("apply", "--python", python, check=0)
            elif phase == "revert":
                run("revert", "--python", python, check=0)
            with Dashboard(venv, port=port) as dash, ThreadPoolExecutor(max_workers=2) as pool:
                # verify starts its own servers; it runs while the browser looks (CI time).
                verdicts = {}
                for topo in TOPOLOGIES:
                    args = ["verify", "--python", python, "--proxy", topo.proxy_seen]
                    if topo.public:
                        args += ["--public-host", PUBLIC]
                    verdicts[topo.name] = pool.submit(run, *args)
                for topo in TOPOLOGIES:
                    case = f"matrix-{version}-{topo.name}-{phase}"
                    works, why, _ = look(ctx, urls[topo.name] + "/chat", case)
                    proc = verdicts[topo.name].result()
                    topo_line = next((line for line in proc.stdout.splitlines() if line.startswith("topology")), "")
                    seen[(topo.name, phase)] = (works, why, proc.returncode, topo_line)
                # Outsiders stay out in every phase: a peer outside trusted_proxies forging X-Forwarded-For,
                # a look-alike Host through the public-name proxy, a wrong token through a working proxy.
                forged = ws_handshake(
                    "127.0.0.1",
                    port,
                    f"/api/events?token={dash.token}&channel=x",
                    source_ip="127.0.0.6",
                    headers={"X-Forwarded-For": "127.0.0.1"},
                )
                with forged:
                    assert forged.refused, (phase, forged.describe())
                status, _ = http_get(f"http://127.0.0.1:{public.port}/", headers={"Host": f"{PUBLIC}.attacker.test"})
                assert status == 400, (phase, status)
                wrong = ws_handshake("127.0.0.1", other_host.port, "/api/events?token=wrong&channel=x")
                with wrong:
                    assert wrong.refused, (phase, wrong.describe())
    report = json.dumps({f"{t} {p}": v for (t, p), v in seen.items()}, indent=1)
    for topo in TOPOLOGIES:
        for index, phase in enumerate(PHASES):
            works, why, code, line = seen[(topo.name, phase)]
            assert works == WORKS[(version, topo.name)][index], (
                f"{topo.name} {phase}: page works={works} ({why})\n{report}"
            )
            assert code == (0 if works else 1), (
                f"verify disagrees with the browser on {topo.name} {phase}: exit {code}, {line}\n{report}"
            )
