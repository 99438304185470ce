"""durable-action-result, stable-session-token and the session token file, at file level.

The code these patches write into the real releases is run here (not just
parsed): the helper class is taken from the patched ``web_server.py`` and
executed against a real log file and real child processes, and the token
rebinding is executed with and without ``HERMES_DASHBOARD_SESSION_TOKEN``.
The browser-level proof is ``tests/live/test_update_button.py``.
"""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import RELEASES, Runner, copy_real, tree_digest

DAR, SST = "durable-action-result", "stable-session-token"
ENV = "HERMES_DASHBOARD_SESSION_TOKEN"


def patched(version: str, run: Runner, tmp_path: Path) -> Path:
    root = copy_real(version, tmp_path / f"sp-{version}")
    run("apply", "--root", str(root), check=0)
    return root / "hermes_cli/web_server.py"


def helper_class(web: Path, log_dir: Path):
    """The inserted ``_HermesPatchActionResult`` class, executed with the module names it reads."""
    tree = ast.parse(web.read_text(encoding="utf-8"))
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "_HermesPatchActionResult")
    namespace = {"os": os, "_ACTION_LOG_DIR": log_dir, "_ACTION_LOG_FILES": {"hermes-update": "hermes-update.log"}}
    exec(compile(ast.Module(body=[node], type_ignores=[]), str(web), "exec"), namespace)
    return namespace["_HermesPatchActionResult"]


def spawn(helper, log: Path, code: str) -> subprocess.Popen:
    """What the patched ``_spawn_hermes_action`` does: upstream's start line, then Popen of the wrapped command."""
    with open(log, "ab", buffering=0) as fh:
        fh.write(b"\n=== hermes-update started 2026-01-01 00:00:00 ===\n")
        cmd = helper.command([sys.executable, "-c", code], "hermes-update")
        return subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )


@pytest.mark.real
@pytest.mark.parametrize("version", ["0.14.0", "0.15.2", "0.19.0"])
def test_the_wrapper_records_the_real_exit_code_where_a_restarted_dashboard_reads_it(version, run: Runner, tmp_path):
    web = patched(version, run, tmp_path)
    text = web.read_text(encoding="utf-8")
    # The spawner wraps its command right after building it; the status route asks the log when it has no handle.
    assert "    cmd = [" in text and "    cmd = _HermesPatchActionResult.command(cmd, name)\n" in text
    assert (
        "    proc = _ACTION_PROCS.get(name)\n    # hermes-patch: durable-action-result\n    if proc is None:\n        proc = _HermesPatchActionResult.recorded(name)\n"
        in text
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "hermes-update.log"
    helper = helper_class(web, logs)
    assert helper.recorded("hermes-update") is None  # no log yet: upstream's answer

    ok = spawn(helper, log, "print('updated')")
    assert ok.wait(timeout=60) == 0
    record = helper.recorded("hermes-update")
    assert (record.poll(), record.pid) == (0, ok.pid)
    assert log.read_text().splitlines()[-3:] == [
        f"=== hermes-update running, pid {ok.pid} (recorded by hermes-patch) ===",
        "updated",
        "=== hermes-update finished, exit 0 (recorded by hermes-patch) ===",
    ]

    failed = spawn(helper, log, "import sys; print('pip failed'); sys.exit(3)")
    assert failed.wait(timeout=60) == 3  # the handle a living dashboard holds says the same
    assert helper.recorded("hermes-update").poll() == 3

    killed = spawn(helper, log, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert killed.wait(timeout=60) == -signal.SIGKILL  # re-raised: the wrapper's status is the command's
    assert helper.recorded("hermes-update").poll() == -signal.SIGKILL

    running = spawn(helper, log, "import time; time.sleep(60)")
    try:
        deadline = time.monotonic() + 30
        while helper.recorded("hermes-update") is None and time.monotonic() < deadline:
            time.sleep(0.05)
        record = helper.recorded("hermes-update")
        assert record.pid == running.pid and record.poll() is None  # a restarted dashboard sees it still running
        running.send_signal(signal.SIGTERM)  # forwarded to the command
        assert running.wait(timeout=30) == -signal.SIGTERM
        assert helper.recorded("hermes-update").poll() == -signal.SIGTERM
    finally:
        if running.poll() is None:
            os.killpg(running.pid, signal.SIGKILL)

    # A run that the pid-less upstream path recorded (0.16+ _record_completed_action) is left to upstream.
    with open(log, "ab") as fh:
        fh.write(b"\n=== hermes-update completed 2026-01-01 00:00:01 ===\nUpdates are managed by your container\n")
    assert helper.recorded("hermes-update") is None
    # A wrapper that died without its finish line (and a reused pid) is not reported as a result.
    with open(log, "ab") as fh:
        fh.write(
            f"\n=== hermes-update started x ===\n=== hermes-update running, pid {os.getpid()} (recorded by hermes-patch) ===\n".encode()
        )
    assert helper.recorded("hermes-update") is None
    assert helper.recorded("not-an-action") is None


@pytest.mark.real
@pytest.mark.parametrize("version", ["0.13.0", "0.14.0", "0.15.0", "0.15.1", "0.15.2"])
def test_stable_session_token_reads_the_variable_like_0_16(version, run: Runner, tmp_path):
    web = patched(version, run, tmp_path)
    tree = ast.parse(web.read_text(encoding="utf-8"))
    bindings = [
        n
        for n in tree.body
        if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_SESSION_TOKEN" for t in n.targets)
    ]
    assert len(bindings) == 2  # upstream's, then ours right after it
    code = compile(ast.Module(body=bindings, type_ignores=[]), str(web), "exec")
    import secrets

    for env, expect in (({ENV: "kept-across-restarts"}, "kept-across-restarts"), ({ENV: ""}, None), ({}, None)):
        old = os.environ.pop(ENV, None)
        os.environ.update(env)
        try:
            ns = {"os": os, "secrets": secrets}
            exec(code, ns)
        finally:
            os.environ.pop(ENV, None)
            if old is not None:
                os.environ[ENV] = old
        assert ns["_SESSION_TOKEN"] == expect if expect else len(ns["_SESSION_TOKEN"]) >= 40


@pytest.mark.real
def test_states_on_every_release(run: Runner, tmp_path):
    for version in RELEASES:
        root = copy_real(version, tmp_path / version)
        code, doc = run.status("--root", str(root))
        found = {p["id"]: p["state"] for p in doc["patches"]}
        own_var = version >= "0.16"
        assert found[DAR] == "pending", (version, doc)
        assert found[SST] == ("not-needed" if own_var else "pending"), (version, doc)
        reason = next(p["reason"] for p in doc["patches"] if p["id"] == SST)
        if own_var:
            assert "reads HERMES_DASHBOARD_SESSION_TOKEN itself" in reason


# -- the session token file ------------------------------------------------------------------


@pytest.fixture
def target(tmp_path):
    root = copy_real("0.14.0", tmp_path / "sp")
    home = tmp_path / "hermes-home"
    home.mkdir(mode=0o700)
    return root, home


@pytest.mark.real
def test_session_token_file_is_owner_only_stable_and_never_shown(target, run: Runner, tmp_path):
    root, home = target
    units = tmp_path / "units"
    units.mkdir(exist_ok=True)
    (units / "hermes-dashboard.service").write_text(
        "[Service]\nExecStart=/usr/bin/hermes dashboard\n"
    )  # hook install checks the unit exists
    run("apply", "--root", str(root), check=0)
    first = run(
        "hook",
        "install",
        "--root",
        str(root),
        "--systemd-unit",
        "hermes-dashboard",
        "--unit-dir",
        str(units),
        "--session-token",
        "--hermes-home",
        str(home),
        check=0,
    )
    token_file = home / "dashboard-session-token.env"
    assert token_file.stat().st_mode & 0o777 == 0o600
    lines = [line for line in token_file.read_text().splitlines() if not line.startswith("#")]
    assert len(lines) == 1 and lines[0].startswith(f"{ENV}=")
    token = lines[0].split("=", 1)[1]
    assert len(token) >= 43
    dropin = (units / "hermes-dashboard.service.d/hermes-patch.conf").read_text()
    assert f"EnvironmentFile=-{token_file}\n" in dropin
    again = run(
        "hook",
        "install",
        "--root",
        str(root),
        "--systemd-unit",
        "hermes-dashboard",
        "--unit-dir",
        str(units),
        "--session-token",
        "--hermes-home",
        str(home),
        check=0,
    )
    assert token_file.read_text().endswith(f"{ENV}={token}\n")  # stable: a second install keeps it
    show = run("hook", "show", "--root", str(root), check=0)
    assert str(token_file) in show.stdout
    everything = first.stdout + first.stderr + again.stdout + again.stderr + show.stdout + show.stderr + dropin
    everything += "".join(p.read_text(errors="replace") for p in run.state.rglob("*") if p.is_file())
    everything += "".join(p.read_text(errors="replace") for p in root.rglob("*.py"))
    assert token not in everything

    run("revert", "--root", str(root), "--keep-session-token", check=0)
    assert token_file.exists()
    run("apply", "--root", str(root), check=0)
    reverted = run("revert", "--root", str(root), check=0)
    assert not token_file.exists() and f"removed the session token file {token_file}" in reverted.stdout
    run("hook", "uninstall", "--root", str(root), check=0)
    assert not (units / "hermes-dashboard.service.d").exists()


@pytest.mark.real
def test_session_token_file_without_systemd_and_hook_uninstall(target, run: Runner):
    root, home = target
    out = run("hook", "install", "--root", str(root), "--session-token", "--hermes-home", str(home), check=0)
    token_file = home / "dashboard-session-token.env"
    assert token_file.exists() and "set -a; . " in out.stdout
    kept = run("hook", "uninstall", "--root", str(root), "--keep-session-token", check=0)
    assert token_file.exists() and "kept" in kept.stdout
    run("hook", "install", "--root", str(root), "--session-token", "--hermes-home", str(home), check=0)
    # Not recorded as ours the second time (it existed): uninstall keeps what it did not create.
    run("hook", "uninstall", "--root", str(root), check=0)
    assert token_file.exists()


@pytest.mark.real
@pytest.mark.parametrize("case", ["group-readable", "symlink", "garbage", "folder-writable-by-others", "missing-home"])
def test_session_token_file_refuses_what_it_cannot_trust(case, target, run: Runner, tmp_path):
    root, home = target
    token_file = home / "dashboard-session-token.env"
    if case == "group-readable":
        token_file.write_text(f"{ENV}={'a' * 43}\n")
        token_file.chmod(0o640)
    elif case == "symlink":
        (tmp_path / "elsewhere").write_text(f"{ENV}={'a' * 43}\n")
        token_file.symlink_to(tmp_path / "elsewhere")
    elif case == "garbage":
        token_file.write_text("export EVIL=$(id)\n")
        token_file.chmod(0o600)
    elif case == "folder-writable-by-others":
        home.chmod(0o777)
    else:
        home = tmp_path / "no-such-home"
    before = tree_digest(root), tree_digest(home) if home.exists() else None
    proc = run("hook", "install", "--root", str(root), "--session-token", "--hermes-home", str(home), check=2)
    assert proc.stderr.startswith("error: ") and "Nothing was changed" in proc.stderr, proc.stderr
    assert (tree_digest(root), tree_digest(home) if home.exists() else None) == before
    assert not (run.state / "ledger.json").exists() or "session-token" not in (run.state / "ledger.json").read_text()
