"""``hermes-patch verify`` without a live dashboard: judging, the cases that cannot verify, errors.

The runs that observe a working (or sabotaged) dashboard are in
``tests/live/test_verify_live.py``; they need the venvs with fastapi.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import CACHE, Runner, copy_fixture, real_release, tree_digest
from hermes_patch.core.patch import Check
from hermes_patch.integrations.verify import CANNOT_VERIFY, EFFECTIVE, NOT_EFFECTIVE, judge

PAS, WS = "public-action-status", "relax-ws-peer-check"


def lines(stdout: str) -> dict[str, str]:
    out = {}
    for line in stdout.splitlines():
        pid, _, rest = line.partition("  ")
        if pid in (PAS, WS):
            out[pid] = rest.strip()
    return out


# -- judging observations ------------------------------------------------------------

CONTROL = Check("loopback peer", "call", "_ws_client_is_allowed", "allowed", control=True)
PROXY = Check("proxy peer", "call", "_ws_client_is_allowed", "allowed", peer="127.0.0.5")
OUTSIDE = Check("outside peer", "call", "_ws_client_is_allowed", "refused", peer="127.0.0.6")


def seen(outcome: str, detail: str = "") -> dict[str, str]:
    return {"outcome": outcome, "detail": detail or outcome}


def test_judge_effective_when_every_check_matches():
    assert judge([CONTROL, PROXY, OUTSIDE], [seen("allowed"), seen("allowed"), seen("refused")]) == (
        EFFECTIVE,
        "3 checks passed",
    )


def test_judge_names_the_first_failed_check():
    outcome, reason = judge(
        [CONTROL, PROXY, OUTSIDE], [seen("allowed"), seen("refused", "returned False"), seen("allowed")]
    )
    assert (outcome, reason) == (NOT_EFFECTIVE, "proxy peer should be allowed, got returned False")


def test_judge_a_failed_control_means_nothing_was_measured():
    outcome, reason = judge([CONTROL, PROXY], [seen("other", "HTTP 404"), seen("refused")])
    assert outcome == CANNOT_VERIFY and reason == "control check failed: loopback peer should be allowed, got HTTP 404"


def test_judge_without_checks_or_with_missing_observations():
    assert judge([], [])[0] == CANNOT_VERIFY
    assert judge([CONTROL, PROXY], [seen("allowed")])[0] == CANNOT_VERIFY


def test_check_rejects_unknown_kinds_and_expectations():
    with pytest.raises(ValueError):
        Check("x", "ftp", "/", "allowed")
    with pytest.raises(ValueError):
        Check("x", "http", "/", "maybe")


# -- the command ------------------------------------------------------------------------


def test_verify_pending_patches_say_not_applied_and_run_nothing(tmp_path, run: Runner):
    root = copy_fixture("r0_15", tmp_path / "sp")
    before = tree_digest(root)
    proc = run("verify", "--root", str(root), check=0)
    assert lines(proc.stdout) == {
        PAS: "not applied: a page whose session token is gone (restarted dashboard, cached page) gets 401 on 2 status poll(s): /api/actions/hermes-update/status, /api/actions/gateway-restart/status",
        WS: "not applied: the dashboard refuses WebSocket connections (HTTP 403) from a proxy whose address is not loopback; the edit accepts any peer when the dashboard is bound to a non-loopback address (upstream's rule since 0.16)",
    }, proc.stdout
    assert tree_digest(root) == before


def test_verify_without_an_interpreter_cannot_verify(tmp_path, run: Runner):
    root = copy_fixture("r0_16", tmp_path / "sp")
    run("apply", "--root", str(root), check=0)
    before = tree_digest(root)
    proc = run("verify", "--root", str(root), check=0)
    assert "interpreter none known (pass --python)" in proc.stdout
    assert lines(proc.stdout) == {
        PAS: "cannot verify: no interpreter known; pass --python (the Python that runs Hermes)",
        WS: "not-needed",
    }, proc.stdout
    assert tree_digest(root) == before


def test_verify_with_a_missing_interpreter_is_an_error(tmp_path, run: Runner):
    proc = run("verify", "--python", str(tmp_path / "no-such-python"), check=2)
    assert proc.stderr.startswith("error: the interpreter") and "--python takes" in proc.stderr
    assert proc.stdout == ""


@pytest.mark.real
def test_verify_on_a_wheel_only_install_cannot_verify(tmp_path, run: Runner):
    """``pip install --no-deps hermes-agent`` into a bare venv: no fastapi, nothing to import the dashboard with."""
    real_release("0.14.0")  # makes sure the wheel is in the cache
    wheel = next((CACHE / "wheels").glob("hermes_agent-0.14.0-*.whl"))
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
            str(wheel),
        ],
        check=True,
        timeout=600,
    )
    package = next(venv.glob("lib/python3*/site-packages/hermes_cli"))
    run("apply", "--python", str(python), check=0)
    before = tree_digest(package.parent)
    proc = run("verify", "--python", str(python), check=0)
    found = lines(proc.stdout)
    for pid in (PAS, WS):
        assert found[pid].startswith(
            "cannot verify: importing hermes_cli.web_server failed: ModuleNotFoundError: No module named"
        ), proc.stdout
        assert "are not all installed in this environment" in found[pid] and str(python) in found[pid]
    assert tree_digest(package.parent) == before
    assert not list(package.glob("__pycache__/web_server*.pyc")), "the probe wrote bytecode into the install"
