"""``hermes-patch verify`` on the miniatures of upstream main (split helpers, web_routers/*).

There is no registry release of these layouts, so the miniature's package is
put in front of the dashboard dependencies of the live 0.19.0 venv (a
``.pth`` file in a throw-away venv) and verify imports the patched app in
that interpreter, as it does for a real install.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import Runner, copy_fixture

from .venvs import hermes_venv, site_packages

pytestmark = pytest.mark.live

PAS, WS = "public-action-status", "relax-ws-peer-check"
PROXY = '[patches.relax-ws-peer-check]\ntrusted_proxies = ["127.0.0.5/32"]\n'


def fixture_python(tmp: Path, root: Path) -> Path:
    """An interpreter whose ``hermes_cli`` is the miniature at ``root``, with fastapi from the 0.19.0 venv."""
    deps = site_packages(hermes_venv("0.19.0"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site_packages(venv) / "hermes_patch_fixture.pth").write_text(f"{root}\n{deps}\n")
    return venv / "bin" / "python"


def verdicts(stdout: str) -> dict[str, str]:
    out = {}
    for line in stdout.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0] in (PAS, WS):
            out[parts[0]] = parts[1]
    return out


@pytest.mark.parametrize("layout", ["r0_20_split", "r0_21_main"])
def test_verify_on_upstream_main_layouts(tmp_path, run: Runner, layout):
    root = copy_fixture(layout, tmp_path / "t")
    python = fixture_python(tmp_path, root)
    run.configure(PROXY)
    target = ("--python", str(python))
    found = verdicts(run("verify", *target, check=0).stdout)
    assert found[PAS].startswith("not applied") and found[WS].startswith("not applied")

    run("apply", *target, check=0)
    found = verdicts(run("verify", *target, check=0).stdout)
    assert found[PAS].startswith("effective") and found[WS].startswith("effective"), found

    # Sabotage the helper: status sees the hand edit, verify sees the peer refused.
    chat = root / "hermes_cli/web_server_chat.py"
    text = chat.read_text()
    chat.write_text(
        text.replace(
            '    trusted_proxies = ("127.0.0.5/32",)\n', '    trusted_proxies = ("127.0.0.5/32",)\n    return False\n'
        )
    )
    proc = run("verify", *target)
    assert proc.returncode == 1 and verdicts(proc.stdout)[WS].startswith("not effective"), proc.stdout
