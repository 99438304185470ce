"""The sub-path example patch on the real 0.19.0 behind an nginx that strips /hermes, in Chromium; and restart advice for a real dashboard.

nginx serves the dashboard under ``/hermes/`` and strips the prefix
(``proxy_pass http://upstream/;``) without sending ``X-Forwarded-Prefix``:
the page then asks for ``/assets/...``, which the proxy does not route, and
stays blank. The documented example patch (docs/writing-a-patch.md,
``forwarded-prefix``) supplies the header. The same real dashboard process
is what ``apply`` must name for a restart, and what ``status`` must warn
about until it is restarted.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import REPO, Runner

from live.browser import PageRecord, browser, screenshot
from live.clients import http_get
from live.dashboard import Dashboard
from live.nginx import Nginx
from live.venvs import fresh_web_server, hermes_venv

EXAMPLE_DIR = REPO / "tests" / "plugins" / "hermes_patch_example"
PREFIX = "/hermes"


class StrippingNginx(Nginx):
    """tests/live/nginx.py's proxy, with its location moved to ``/hermes/`` and the prefix stripped (a URI on proxy_pass)."""

    def render_config(self) -> str:
        upstream = f"{self.upstream_host}:{self.upstream_port}"
        conf = super().render_config()
        assert "location / {" in conf and f"proxy_pass http://{upstream};" in conf
        return conf.replace("location / {", f"location {PREFIX}/ {{").replace(
            f"proxy_pass http://{upstream};", f"proxy_pass http://{upstream}/;"
        )


def _page(proxy: Nginx, name: str) -> tuple[PageRecord, Path, str]:
    with browser() as ctx:
        page = ctx.new_page()
        record = PageRecord()
        record.attach(page)
        page.goto(proxy.base_url + PREFIX + "/", wait_until="load")
        page.wait_for_timeout(2500)
        text = page.inner_text("body")
        shot = screenshot(page, name)
        page.close()
    return record, shot, text


@pytest.mark.live
@pytest.mark.browser
@pytest.mark.slow
def test_forwarded_prefix_behind_a_prefix_stripping_nginx_and_restart_advice(run: Runner):
    venv = hermes_venv("0.19.0")
    python = str(venv / "bin" / "python")
    run.configure(f'patch_dirs = ["{EXAMPLE_DIR}"]\n[patches.forwarded-prefix]\nprefix = "{PREFIX}"\n')
    with fresh_web_server(venv):
        with Dashboard(venv) as dash, StrippingNginx(dash.port) as proxy:
            status, body = http_get(proxy.base_url + PREFIX + "/")
            assert status == 200 and b'__HERMES_BASE_PATH__=""' in body
            script = re.search(rb'src="(/assets/[^"]+\.js)"', body).group(1).decode()
            assert http_get(proxy.base_url + script)[0] == 404  # the page's own script is not routed
            record, shot, _ = _page(proxy, "subpath-0.19.0-before")
            assert any(s == 404 and "/assets/" in u for s, u in record.responses), record.responses

            out = run("apply", "forwarded-prefix", "--python", python, check=0).stdout
            said = [line for line in out.splitlines() if line.startswith("restart:")]
            assert len(said) == 1 and said[0].startswith(
                f"restart: the dashboard pid {dash.proc.pid} (`hermes dashboard --host 127.0.0.1 --port {dash.port} "
            ), out
            code, doc = run.status("--python", python)
            assert [n for n in doc["notes"] if n.startswith(f"the running dashboard pid {dash.proc.pid} ")], doc[
                "notes"
            ]
            assert run("status", "--strict", "--python", python).returncode == 1
            assert b'__HERMES_BASE_PATH__=""' in http_get(proxy.base_url + PREFIX + "/")[1]  # still the old code

        with Dashboard(venv) as dash, StrippingNginx(dash.port) as proxy:  # restarted, as apply said
            code, doc = run.status("--python", python)
            assert not [n for n in doc["notes"] if "running dashboard" in n], doc["notes"]
            status, body = http_get(proxy.base_url + PREFIX + "/")
            assert status == 200 and f'__HERMES_BASE_PATH__="{PREFIX}"'.encode() in body
            script = re.search(rb'src="(/hermes/assets/[^"]+\.js)"', body).group(1).decode()
            assert http_get(proxy.base_url + script)[0] == 200
            record, shot, text = _page(proxy, "subpath-0.19.0-after")
            assert not [(s, u) for s, u in record.responses if s == 404 and "/assets/" in u], record.responses
            assert text.strip(), "the page rendered nothing"
            # A proxy that sends its own X-Forwarded-Prefix wins over the configured one.
            assert (
                b'__HERMES_BASE_PATH__="/other"'
                in http_get(f"http://127.0.0.1:{dash.port}/", headers={"X-Forwarded-Prefix": "/other"})[1]
            )
        run("revert", "forwarded-prefix", "--python", python, check=0)
