"""``hermes-patch verify`` on the live venvs of 0.14.0 and 0.19.0 (they have fastapi).

verify imports the patched dashboard in a subprocess of the venv's own
interpreter and drives its routes and WebSocket checks. These tests show it
tells the three cases apart (not applied, effective, not effective after a
sabotage) and never writes a file of the install, bytecode included.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from conftest import Runner

from .venvs import fresh_web_server, hermes_venv

pytestmark = pytest.mark.live

PAS, WS = "public-action-status", "relax-ws-peer-check"
PROXY_CONFIG = '[patches.relax-ws-peer-check]\ntrusted_proxies = ["127.0.0.5/32"]\n'
HELPER_DEF = "def _hermes_patch_ws_peer_allowed(ws):\n"


@pytest.fixture(scope="module", params=["0.14.0", "0.19.0"])
def venv(request) -> Path:
    return hermes_venv(request.param)


def package_digest(package: Path) -> dict[str, str]:
    """sha256 of every file below ``hermes_cli/``, ``__pycache__`` included."""
    return {
        str(p.relative_to(package)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(package.rglob("*"))
        if p.is_file()
    }


def verdicts(stdout: str, ids: tuple[str, ...] = (PAS, WS)) -> dict[str, str]:
    """``{patch id: "effective: ..."}`` from verify's per-patch lines, for the patches ``ids``."""
    out = {}
    for line in stdout.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0] in ids:
            out[parts[0]] = parts[1].strip()
    return out


def verify(run: Runner, venv: Path, expect_exit: int) -> dict[str, str]:
    before = package_digest(web_package(venv))
    proc = run("verify", "--python", str(venv / "bin" / "python"), check=expect_exit)
    assert package_digest(web_package(venv)) == before, "verify changed a file of the install"
    assert f"interpreter {venv / 'bin' / 'python'}" in proc.stdout, proc.stdout
    return verdicts(proc.stdout)


def web_package(venv: Path) -> Path:
    return next(venv.glob("lib/python3*/site-packages/hermes_cli"))


def test_verify_before_apply_says_not_applied(venv, run: Runner):
    run.configure(PROXY_CONFIG)
    with fresh_web_server(venv):
        found = verify(run, venv, 0)
    assert found[PAS].startswith("not applied: ") and found[WS].startswith("not applied: "), found


def test_verify_after_apply_says_effective(venv, run: Runner):
    run.configure(PROXY_CONFIG)
    with fresh_web_server(venv):
        run("apply", "--python", str(venv / "bin" / "python"), check=0)
        found = verify(run, venv, 0)
    assert found[PAS].startswith("effective"), found
    assert found[WS].startswith("effective"), found


def test_verify_default_configuration(venv, run: Runner):
    """No trusted_proxies: 0.14 gets the non-loopback-bind backport (effective); 0.19 does not need it."""
    with fresh_web_server(venv):
        run("apply", "--python", str(venv / "bin" / "python"), check=0)
        found = verify(run, venv, 0)
    assert found[PAS].startswith("effective"), found
    if venv.name.endswith("0.19.0"):
        assert found[WS] == "not-needed", found
    else:
        assert found[WS].startswith("effective"), found


def test_verify_after_sabotage_says_not_effective(venv, run: Runner):
    run.configure(PROXY_CONFIG)
    with fresh_web_server(venv) as web_server:
        run("apply", "--python", str(venv / "bin" / "python"), check=0)
        text = web_server.read_text(encoding="utf-8")
        assert text.count(HELPER_DEF) == 1
        text = text.replace(HELPER_DEF, HELPER_DEF + "    return False\n")
        text = text.replace(
            '    "/api/actions/hermes-update/status",\n', '    "/api/actions/hermes-update/status/",\n', 1
        )
        web_server.write_text(text, encoding="utf-8")
        found = verify(run, venv, 1)
    assert found[WS].startswith("not effective: peer 127.0.0.5 inside trusted_proxies 127.0.0.5/32"), found
    assert "drifted" in found[WS], found
    assert found[PAS].startswith(
        "not effective: status poll of hermes-update without the token should be allowed, got HTTP 401"
    ), found


def test_verify_finds_the_interpreter_through_the_launcher(run: Runner):
    """No --python: the ``hermes`` launcher on PATH names the interpreter on its shebang line."""
    venv = hermes_venv("0.14.0")
    env = {"PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    with fresh_web_server(venv):
        run("apply", "--python", str(venv / "bin" / "python"), check=0)
        proc = run("verify", env=env, check=0)
    # relax-ws-peer-check: control, outsider, forged X-Forwarded-For, non-loopback bind (each a handshake + a call but the forged one)
    assert verdicts(proc.stdout) == {PAS: "effective: 4 checks passed", WS: "effective: 7 checks passed"}, proc.stdout


def test_same_host_proxy_with_x_forwarded_for_needs_ignore_forwarded_for_on_0_14(run: Runner):
    """The README's same-host configuration on real 0.14.0: relax-ws-peer-check alone is NOT effective.

    uvicorn's defaults replace the 127.0.0.1 proxy's peer with the
    X-Forwarded-For address, so verify (which sends what the proxy sends,
    through the release's own uvicorn) must say so and exit 1; with
    ignore-forwarded-for applied too, both are effective.
    """
    venv = hermes_venv("0.14.0")
    python = str(venv / "bin" / "python")
    run.configure(
        '[patches.relax-ws-peer-check]\ntrusted_proxies = ["127.0.0.1/32"]\n[patches.ignore-forwarded-for]\nenabled = false\n'
    )
    with fresh_web_server(venv):
        run("apply", "--python", python, check=0)
        found = verify(run, venv, 1)
        assert found[WS].startswith(
            "not effective: browser 198.51.100.23 through the proxy at 127.0.0.1 (X-Forwarded-For: 198.51.100.23): "
            "/api/events should be allowed, got HTTP 403; the dashboard saw peer 198.51.100.23, not 127.0.0.1 "
            "(uvicorn took it from X-Forwarded-For)"
        ), found
        run.configure('[patches.relax-ws-peer-check]\ntrusted_proxies = ["127.0.0.1/32"]\n')
        run("apply", "--python", python, check=0)
        proc = run("verify", "--python", python, check=0)
    assert verdicts(proc.stdout, ("ignore-forwarded-for",)) == {"ignore-forwarded-for": "effective: 3 checks passed"}, (
        proc.stdout
    )
    assert verdicts(proc.stdout)[WS].startswith("effective"), proc.stdout
