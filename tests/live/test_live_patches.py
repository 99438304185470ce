"""Both patches on live dashboards of real releases, through a real nginx.

The scenario of hermes-agent#34227 end to end: a dashboard bound to
127.0.0.1, an nginx in front of it whose upstream connections come from
127.0.0.5 (``proxy_bind``), and the configuration an operator would write
for it (``trusted_proxies = ["127.0.0.5/32"]``). The installed
``hermes-patch`` finds the release through the venv's interpreter
(``--python``, the real discovery path), with its own state dir and config.

Each test starts from the release bytes (``fresh_web_server``), starts and
stops its own dashboard and nginx, and restarts the dashboard after
``apply``/``revert`` because ``web_server.py`` is imported once at start.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import pytest

from conftest import UNCONFIGURED, Runner, states, update_button_states

from .clients import http_get, ws_handshake, ws_stays_open
from .dashboard import Dashboard
from .nginx import Nginx, PROXY_PEER
from .venvs import (
    fresh_web_server,
    hermes_venv,
    installed_version,
    record_digest,
    session_header_name,
    wheel_record_hashes,
)

pytestmark = pytest.mark.live

VERSIONS = ["0.14.0", "0.19.0"]
PROXY_CONFIG = '[patches.relax-ws-peer-check]\ntrusted_proxies = ["127.0.0.5/32"]\n'
#: A peer that is neither loopback nor inside trusted_proxies.
OUTSIDE_PEER = "127.0.0.6"
STATUS = "/api/actions/{}/status"
#: The actions public-action-status makes public by default (both releases have them).
DEFAULT_ACTIONS = ("hermes-update", "gateway-restart")
#: WebSockets that decide on the peer besides /api/events: 0.14 has /api/pty
#: (``_ws_client_is_allowed``); 0.19 also /api/console, and both decide on
#: ``_ws_client_reason`` there.
TERMINALS = {"0.14.0": ("/api/pty",), "0.19.0": ("/api/pty", "/api/console")}
#: How long an accepted WebSocket must stay open to count as "stays open".
OPEN_FOR = 1.0


def events(token: str) -> str:
    return f"/api/events?token={token}&channel=c"


class Hermes:
    """The installed ``hermes-patch`` aimed at one live venv by its interpreter."""

    def __init__(self, run: Runner, venv: Path) -> None:
        self.run = run
        self.python = str(venv / "bin" / "python")
        self.old = venv.name.endswith(("0.13.0", "0.14.0"))

    def forwarded(self, state: str) -> dict[str, str]:
        """ignore-forwarded-for's state: ``state`` on 0.13/0.14, not-needed from 0.15 (upstream's proxy_headers rule)."""
        return {"ignore-forwarded-for": state if self.old else "not-needed"}

    def __call__(self, command: str, check: int | None = 0):
        return self.run(command, "--python", self.python, check=check)

    def states(self) -> dict[str, str]:
        _, doc = self.run.status("--python", self.python)
        assert doc["target"]["found_by"] == "--python", doc
        return states(doc)


@pytest.fixture(scope="module", params=VERSIONS)
def venv(request) -> Path:
    return hermes_venv(request.param)


@pytest.fixture
def hermes(venv, run) -> Hermes:
    run.configure(PROXY_CONFIG)
    return Hermes(run, venv)


@contextlib.contextmanager
def behind_nginx(venv: Path) -> Iterator[tuple[Dashboard, Nginx]]:
    """A freshly started dashboard on 127.0.0.1 and an nginx in front (peer 127.0.0.5)."""
    with Dashboard(venv) as dash, Nginx(dash.port) as nginx:
        yield dash, nginx


def poll(nginx: Nginx, action: str = "hermes-update") -> tuple[int, bytes]:
    """The Update button's status poll, through the proxy, without the token."""
    return http_get(nginx.base_url + STATUS.format(action))


def terminal_log(dash: Dashboard, path: str) -> str:
    """0.19's agent.log lines about ``/api/pty`` or ``/api/console`` (``pty ...``, ``console ...``)."""
    word = path.rsplit("/", 1)[1]
    return "\n".join(line for line in dash.hermes_log().splitlines() if f" {word} " in line)


def assert_proxy_refused(dash: Dashboard, nginx: Nginx) -> None:
    """The two faults of hermes-agent#34227, and the terminals' peer check, as a release ships them."""
    status, body = poll(nginx)
    assert status == 401, body
    with ws_handshake(nginx.listen, nginx.port, events(dash.token)) as ws:
        assert (ws.status, ws.closed_with) == (403, None), ws.describe()
    for path in TERMINALS[dash.version]:
        with ws_handshake(nginx.listen, nginx.port, f"{path}?token={dash.token}") as ws:
            assert ws.status == 403, f"{path}: {ws.describe()}"
        if dash.version == "0.19.0":
            word = path.rsplit("/", 1)[1]
            line = dash.wait_for_hermes_log(f"{word} refused")
            assert f"peer_not_loopback peer={PROXY_PEER}" in line, line


def test_before_apply_the_proxy_gets_401_and_403(venv, hermes, nginx_binary):
    with fresh_web_server(venv):
        assert hermes.states() == {
            **UNCONFIGURED,
            **hermes.forwarded("pending"),
            "public-action-status": "pending",
            "relax-ws-peer-check": "pending",
            **update_button_states(installed_version(venv)),
        }
        with behind_nginx(venv) as (dash, nginx):
            assert_proxy_refused(dash, nginx)


def test_after_apply_the_proxy_polls_and_upgrades(venv, hermes, nginx_binary):
    with fresh_web_server(venv):
        hermes("apply")
        assert hermes.states() == {
            **UNCONFIGURED,
            **hermes.forwarded("applied"),
            "public-action-status": "applied",
            "relax-ws-peer-check": "applied",
            **update_button_states(installed_version(venv), applied=True),
        }
        with behind_nginx(venv) as (dash, nginx):
            for action in DEFAULT_ACTIONS:
                status, body = poll(nginx, action)
                assert status == 200, body
                assert f'"name":"{action}"'.encode() in body, body[:300]
            with ws_handshake(nginx.listen, nginx.port, events(dash.token)) as ws:
                assert ws.status == 101 and not ws.refused, ws.describe()
                assert ws_stays_open(ws, OPEN_FOR), ws.describe()
            for path in TERMINALS[dash.version]:
                with ws_handshake(nginx.listen, nginx.port, f"{path}?token={dash.token}") as ws:
                    assert ws.status == 101, f"{path}: {ws.describe()}"
                if dash.version == "0.19.0":
                    word = path.rsplit("/", 1)[1]
                    line = dash.wait_for_hermes_log(f"{word} accepted")
                    assert f"peer={PROXY_PEER}" in line, line
                    assert "refused" not in terminal_log(dash, path), terminal_log(dash, path)


def test_after_apply_everything_else_is_still_refused(venv, hermes, nginx_binary):
    with fresh_web_server(venv):
        hermes("apply")
        with behind_nginx(venv) as (dash, nginx):
            # A peer outside trusted_proxies, straight to the dashboard.
            with ws_handshake(dash.host, dash.port, events(dash.token), source_ip=OUTSIDE_PEER) as ws:
                assert (ws.status, ws.closed_with) == (403, None), ws.describe()
            if dash.version == "0.19.0":
                with ws_handshake(
                    dash.host, dash.port, f"/api/console?token={dash.token}", source_ip=OUTSIDE_PEER
                ) as ws:
                    assert ws.status == 403, ws.describe()
                line = dash.wait_for_hermes_log("console refused")
                assert f"peer_not_loopback peer={OUTSIDE_PEER}" in line, line
            # The trusted proxy, but the wrong token.
            with ws_handshake(nginx.listen, nginx.port, events("wrong-token")) as ws:
                assert ws.refused, ws.describe()
            for path in TERMINALS[dash.version]:
                with ws_handshake(nginx.listen, nginx.port, f"{path}?token=wrong-token") as ws:
                    assert ws.refused, f"{path}: {ws.describe()}"
            # Private endpoints still need the token, through the proxy too.
            for path in ("/api/config", "/api/sessions"):
                status, body = http_get(nginx.base_url + path)
                assert status == 401, (path, body)
            header = session_header_name(dash.venv.joinpath("pristine", "hermes_cli", "web_server.py"))
            status, body = http_get(nginx.base_url + "/api/config", headers={header: dash.token})
            assert status == 200, body[:300]
            if dash.version == "0.19.0":
                status, body = poll(nginx, "dump")
                assert status == 401, body


def test_after_revert_the_proxy_is_refused_again(venv, hermes, nginx_binary):
    with fresh_web_server(venv) as web_server:
        hermes("apply")
        hermes("revert")
        assert hermes.states() == {
            **UNCONFIGURED,
            **hermes.forwarded("pending"),
            "public-action-status": "pending",
            "relax-ws-peer-check": "pending",
            **update_button_states(installed_version(venv)),
        }
        assert record_digest(web_server.read_bytes()) == wheel_record_hashes(venv)["hermes_cli/web_server.py"]
        with behind_nginx(venv) as (dash, nginx):
            assert_proxy_refused(dash, nginx)


def test_non_loopback_bind_backport_without_configuration(run, nginx_binary):
    """0.14 bound to 127.0.0.2 with --insecure: upstream's 0.16 rule, backported, with an empty config."""
    venv = hermes_venv("0.14.0")
    hermes = Hermes(run, venv)
    with fresh_web_server(venv):
        with Dashboard(venv, host="127.0.0.2") as dash:
            assert "--insecure" in dash.command()
            with ws_handshake(dash.host, dash.port, events(dash.token), source_ip=PROXY_PEER) as ws:
                assert (ws.status, ws.closed_with) == (403, None), ws.describe()
        assert hermes.states()["relax-ws-peer-check"] == "pending"
        hermes("apply")
        assert hermes.states()["relax-ws-peer-check"] == "applied"
        with Dashboard(venv, host="127.0.0.2") as dash:
            with ws_handshake(dash.host, dash.port, events(dash.token), source_ip=PROXY_PEER) as ws:
                assert ws.status == 101 and not ws.refused, ws.describe()
                assert ws_stays_open(ws, OPEN_FOR), ws.describe()
            with Nginx(dash.port, upstream_host=dash.host) as nginx:
                with ws_handshake(nginx.listen, nginx.port, events(dash.token)) as ws:
                    assert ws.status == 101 and not ws.refused, ws.describe()
            with ws_handshake(dash.host, dash.port, events("wrong-token"), source_ip=PROXY_PEER) as ws:
                assert ws.refused, ws.describe()
