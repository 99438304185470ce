"""Claims the operator docs make about the real releases, checked against the real releases."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import RELEASES, REPO, real_release


@pytest.mark.real
def test_api_console_exists_from_0_18_1_as_the_docs_say():
    """The README says `/api/console` exists from 0.18.1 (not 0.16): each real release's web_server.py agrees."""
    have = [
        v for v in RELEASES if "/api/console" in (real_release(v) / "hermes_cli" / "web_server.py").read_text("utf-8")
    ]
    assert have == RELEASES[RELEASES.index("0.18.1") :]
    docs = (REPO / "README.md").read_text() + "".join(p.read_text() for p in (REPO / "docs").glob("*.md"))
    claims = [docs[max(0, m.start() - 40) : m.end() + 40] for m in re.finditer(r"`/api/console`", docs)]
    assert claims and all("0.18.1" in c for c in claims), claims


def test_the_nginx_server_block_in_docs_proxies_is_accepted_by_nginx(tmp_path):
    """docs/proxies.md's nginx block, as written (certificates swapped for a plain loopback listen), passes `nginx -t`."""
    import shutil
    import subprocess

    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        pytest.skip("nginx is not installed (scripts/test installs it)")
    text = (REPO / "docs" / "proxies.md").read_text()
    (block,) = re.findall(r"```nginx\n(.*?)```", text, re.S)
    for needed in (
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Host $host;",
        "proxy_http_version 1.1;",
    ):
        assert needed in block
    plain = re.sub(r"listen 443 ssl;\n", "listen 127.0.0.1:18443;\n", block)
    plain = re.sub(r"\s*ssl_certificate(_key)? [^;]+;", "", plain)
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\nhttp {{\n"
        f"access_log off;\nclient_body_temp_path {tmp_path}/b;\nproxy_temp_path {tmp_path}/p;\n"
        f"fastcgi_temp_path {tmp_path}/f;\nuwsgi_temp_path {tmp_path}/u;\nscgi_temp_path {tmp_path}/s;\n{plain}}}\n"
    )
    proc = subprocess.run([nginx, "-t", "-c", str(conf), "-p", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
