"""A real pip install upgraded in place: hermes-agent 0.14.0 → 0.19.0 in a venv, with real pip.

The wheels come from the package registry once (cached in ``.cache/wheels``,
or ``$HERMES_PATCH_TEST_CACHE/wheels``); installs are offline from there,
without dependencies (hermes-patch never imports Hermes).
"""

from __future__ import annotations

import hashlib
import py_compile
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import FORWARDED_NEW, UNCONFIGURED, CACHE, Runner, sha, states, update_button_states, wheel
from hermes_update import pip_update, write_launcher
from test_systemd_hook import Systemd, exec_start_pre

pytestmark = pytest.mark.real

PAS, WS = "public-action-status", "relax-ws-peer-check"
WEB = "hermes_cli/web_server.py"


@pytest.fixture(scope="module")
def wheels() -> Path:
    for version in ("0.14.0", "0.19.0"):
        wheel(version)
    return CACHE / "wheels"


@pytest.fixture
def venv(tmp_path: Path, wheels: Path) -> Path:
    """A venv with hermes-agent 0.14.0 installed by pip without dependencies; returns its python."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            "--no-compile",
            "--no-index",
            "--find-links",
            str(wheels),
            "hermes-agent==0.14.0",
        ],
        check=True,
        capture_output=True,
    )
    return python


def pristine(wheels: Path, version: str) -> str:
    """sha256 of the release's own web_server.py, read from its wheel."""
    with zipfile.ZipFile(wheel(version)) as whl:
        return hashlib.sha256(whl.read(WEB)).hexdigest()


def _web(python: Path) -> Path:
    return next((python.parent.parent / "lib").glob(f"python*/site-packages/{WEB}"))


@pytest.mark.parametrize("reapply", ["apply", "systemd-hook"])
def test_upgrade_0_14_to_0_19_in_place(venv: Path, wheels: Path, run: Runner, tmp_path: Path, reapply: str):
    web = _web(venv)
    pristine_14, pristine_19 = pristine(wheels, "0.14.0"), pristine(wheels, "0.19.0")
    assert sha(web) == pristine_14
    sd = Systemd(tmp_path)
    if reapply == "systemd-hook":
        run("hook", "install", "--python", str(venv), "--systemd-unit", "hermes-dashboard", env=sd.env, check=0)
        assert f" apply --root {web.parent.parent} " in sd.dropin().read_text()
        subprocess.run(exec_start_pre(sd.dropin()), check=True, capture_output=True, env=run.env)
    else:
        run("apply", "--python", str(venv), check=0)
    code, doc = run.status("--python", str(venv))
    assert (
        code == 0
        and states(doc)
        == {
            **UNCONFIGURED,
            PAS: "applied",
            WS: "applied",
            **update_button_states("0.14.0", applied=True),
            "ignore-forwarded-for": "applied",
        }
        and doc["target"]["install_method"] == "pip"
    )

    pip_update(venv, "0.19.0", wheels)

    code, doc = run.status("--python", str(venv))
    assert doc["target"]["version"] == "0.19.0" and sha(web) == pristine_19
    assert code == 1 and states(doc) == {
        **UNCONFIGURED,
        PAS: "pending",
        WS: "not-needed",
        **update_button_states("0.19.0"),
        **FORWARDED_NEW,
    }
    assert doc["notes"] == [
        "web_server.py was replaced since hermes-patch last wrote it (release 0.14.0 → 0.19.0); the old backup will not be restored over it"
    ]
    nothing = run("revert", "--python", str(venv), check=0)
    assert "nothing to revert" in nothing.stdout and sha(web) == pristine_19  # the 0.14.0 backup is never restored

    if reapply == "systemd-hook":
        subprocess.run(exec_start_pre(sd.dropin()), check=True, capture_output=True, env=run.env)  # the next (re)start
    else:
        run("apply", "--python", str(venv), check=0)
    code, doc = run.status("--python", str(venv))
    assert code == 0 and states(doc) == {
        **UNCONFIGURED,
        PAS: "applied",
        WS: "not-needed",
        **update_button_states("0.19.0", applied=True),
        **FORWARDED_NEW,
    }
    py_compile.compile(str(web), cfile=str(tmp_path / "web.pyc"), doraise=True)

    run("revert", "--python", str(venv), check=0)
    assert sha(web) == pristine_19 != pristine_14


def test_hermes_patch_update_runs_the_pip_upgrade(venv: Path, wheels: Path, run: Runner, tmp_path: Path):
    log = tmp_path / "runs.jsonl"
    launcher = write_launcher(
        tmp_path / "bin" / "hermes",
        venv,
        {"mode": "pip", "version": "0.19.0", "find_links": str(wheels), "argv_log": str(log)},
    )
    env = {"PATH": f"{launcher.parent}:/usr/bin:/bin"}
    run("apply", env=env, check=0)
    proc = run("update", env=env, check=0)
    assert f"→ running: {launcher} update" in proc.stdout
    assert "→ re-applying onto release 0.19.0 (was 0.14.0)" in proc.stdout
    assert (
        proc.stdout.splitlines()[-1] == "ok: 2 applied, 5 not-needed"
    )  # 0.19.0: public-action-status, durable-action-result; five not needed there
    web = _web(venv)
    run("revert", env=env, check=0)
    assert sha(web) == pristine(wheels, "0.19.0")
