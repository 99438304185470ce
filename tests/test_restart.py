"""After apply/revert: which running dashboards of this install serve old code, and how to restart them.

The dashboards here are real processes started by the test with the argv a
real one has (``<venv>/bin/python <venv>/bin/hermes dashboard ...``, as the
kernel builds it from the launcher's shebang), in a real venv whose
site-packages holds the hermes_cli miniature. /proc is the real one.
systemctl is a recording stand-in (no systemd here), as in
test_systemd_hook.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import Runner, copy_fixture, states
from test_systemd_hook import Systemd

from hermes_patch.integrations.restart import Unit, unit_of_cgroup


class Venv:
    """A real venv (no pip) with the miniature in its site-packages and a ``hermes`` launcher that idles."""

    def __init__(self, path: Path, fixture: str = "r0_15") -> None:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
        self.path = path
        self.python = path / "bin" / "python"
        site = next((path / "lib").glob("python*/site-packages"))
        copy_fixture(fixture, site / "fixture")
        (site / "fixture" / "hermes_cli").rename(site / "hermes_cli")
        (site / "hermes_cli" / "main.py").write_text(
            "import time\ntime.sleep(300)\n"
        )  # for `python -m hermes_cli.main dashboard`
        self.launcher = path / "bin" / "hermes"
        self.launcher.write_text(f"#!{self.python}\nimport time\ntime.sleep(300)\n")
        self.launcher.chmod(0o755)
        self.procs: list[subprocess.Popen] = []

    def start(self, *argv: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.procs.append(proc)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until the kernel has exec'd the launcher's interpreter
            if Path(f"/proc/{proc.pid}/cmdline").read_bytes().startswith(str(self.python).encode()):
                break
            time.sleep(0.02)
        return proc

    def dashboard(self, *args: str) -> subprocess.Popen:
        return self.start(str(self.launcher), "dashboard", *args)

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()
        self.procs.clear()


@pytest.fixture
def venv(tmp_path: Path):
    v = Venv(tmp_path / "venv")
    yield v
    v.stop()


def test_apply_names_the_running_dashboard_and_status_warns_until_it_restarts(tmp_path: Path, run: Runner, venv: Venv):
    other = Venv(tmp_path / "other")  # another install's dashboard, same argv shape: not ours
    try:
        theirs = other.dashboard("--port", "9200")
        ours = venv.dashboard("--port", "9119", "--no-open")
        time.sleep(0.3)
        target = ["--python", str(venv.python)]
        code, doc = run.status(*target)
        assert doc["notes"] == []  # started after the file was written: nothing to say yet

        out = run("apply", *target, check=0).stdout.splitlines()
        said = [line for line in out if line.startswith("restart:")]
        assert len(said) == 1, out
        assert said[0].startswith(
            f"restart: the dashboard pid {ours.pid} (`hermes dashboard --port 9119 --no-open`, started "
        )
        assert said[0].endswith(
            f"still serves the code from before this write; it is not run by a systemd unit: stop it (`kill {ours.pid}`) and start it again with the same command"
        )
        assert str(theirs.pid) not in "\n".join(out)

        code, doc = run.status(*target)
        assert (
            code == 0
            and len(doc["notes"]) == 1
            and doc["notes"][0].startswith(f"the running dashboard pid {ours.pid} ")
        )
        assert (
            "started before web_server.py was last written, so it still serves the code from before" in doc["notes"][0]
        )
        assert run("status", "--strict", *target).returncode == 1  # a dashboard running old code is a warning
        assert "restart it: it is not run by a systemd unit" in doc["notes"][0]
        last = run("status", *target, check=0).stdout.rstrip().splitlines()[-1]
        assert last.startswith("ok: ") and last.endswith("see the warning(s) above (`--strict` exits 1 on them)")

        # An update replaces the file: the dashboard still runs the patched code, so restarting first would
        # serve the unpatched release; the warning says to apply first.
        web = Path(doc["target"]["file"])
        patched = web.read_bytes()
        run("revert", *target, check=0)
        code, doc = run.status(*target)
        assert code == 1 and len(doc["notes"]) == 1
        assert "run `hermes-patch apply` first (patches are pending), then restart it: " in doc["notes"][0]
        run("apply", *target, check=0)
        assert web.read_bytes() == patched

        venv.stop()
        restarted = venv.dashboard("--port", "9119")
        code, doc = run.status(*target)
        assert doc["notes"] == [] and run("status", "--strict", *target).returncode == 0

        module = venv.start(
            str(venv.python), "-m", "hermes_cli.main", "dashboard", "--port", "9300"
        )  # the other way to start it
        time.sleep(0.3)
        out = run("revert", *target, check=0).stdout
        assert (
            f"pid {restarted.pid} (`hermes dashboard --port 9119`" in out
            and f"pid {module.pid} (`hermes dashboard --port 9300`" in out
        )
    finally:
        other.stop()


def test_no_dashboard_running_says_so(tmp_path: Path, run: Runner, venv: Venv):
    out = run("apply", "--python", str(venv.python), check=0).stdout
    assert out.splitlines()[-1] == (
        "restart: no running dashboard of this install was found here; one started from now on serves the new code "
        "(a dashboard in a container or on another machine must be restarted there)"
    )
    assert (
        "restart:" not in run("apply", "--python", str(venv.python), check=0).stdout
    )  # nothing written, nothing to restart


def test_restart_restarts_the_unit_hook_install_recorded(tmp_path: Path, run: Runner, venv: Venv):
    sd = Systemd(tmp_path)
    target = ["--python", str(venv.python)]
    run("hook", "install", *target, "--systemd-unit", "hermes-dashboard", env=sd.env, check=0)
    out = run("apply", *target, env=sd.env, check=0).stdout
    assert (
        "restart: the unit hermes-dashboard.service runs this install's dashboard (hook install); if it runs, `systemctl --user try-restart hermes-dashboard.service`"
        in out
    )
    out = run("revert", *target, "--restart", env=sd.env, check=0).stdout
    assert "restarted hermes-dashboard.service (`systemctl --user try-restart hermes-dashboard.service`)" in out
    assert sd.reloads()[-1] == "--user try-restart hermes-dashboard.service"

    failing = sd.bin / "systemctl"
    failing.write_text(
        f'#!/bin/sh\necho "$*" >> {sd.calls}\necho "Failed to restart hermes-dashboard.service: Access denied" >&2\nexit 1\n'
    )
    proc = run("apply", *target, "--restart", env=sd.env, check=2)
    assert (
        "restart: `systemctl --user try-restart hermes-dashboard.service` failed (Failed to restart hermes-dashboard.service: Access denied); run it yourself"
        in proc.stdout
    )
    assert states(run.status(*target)[1])["public-action-status"] == "applied"  # the write stands


@pytest.mark.parametrize(
    "text, unit",
    [
        (
            "0::/user.slice/user-1000.slice/user@1000.service/app.slice/hermes-dashboard.service\n",
            Unit("hermes-dashboard.service", "user", 1000),
        ),
        ("0::/system.slice/hermes.service\n", Unit("hermes.service", "system")),
        ("0::/system.slice/system-hermes.slice/hermes@9119.service\n", Unit("hermes@9119.service", "system")),
        (
            "12:pids:/\n1:name=systemd:/system.slice/hermes.service\n0::/\n",
            Unit("hermes.service", "system"),
        ),  # cgroup v1
        ("0::/user.slice/user-1000.slice/session-3.scope\n", None),  # a login session
        ("0::/user.slice/user-1000.slice/user@1000.service/init.scope\n", None),  # the user manager itself
        ("0::/docker/0123abcd\n", None),
        ("0::/\n", None),
    ],
)
def test_the_unit_comes_from_the_cgroup(text: str, unit):
    assert unit_of_cgroup(text) == unit


def test_a_user_unit_of_another_user_is_addressed_through_its_manager():
    import pwd

    other = next((p for p in pwd.getpwall() if p.pw_uid != os.getuid()), None)
    if other is None:
        pytest.skip("no other user on this machine")
    assert Unit("hermes.service", "user", other.pw_uid).command() == [
        "systemctl",
        "--user",
        "--machine",
        f"{other.pw_name}@",
        "restart",
        "hermes.service",
    ]
    assert Unit("hermes.service", "user", os.getuid()).command("try-restart") == [
        "systemctl",
        "--user",
        "try-restart",
        "hermes.service",
    ]
