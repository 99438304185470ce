"""`hermes-patch hook install --systemd-unit`: the ExecStartPre= drop-in, installed, run, removed.

systemctl is a recording stand-in on PATH (no systemd in the test
environment); the drop-in's ExecStartPre= line is run the way systemd runs
it, without a shell.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from conftest import FORWARDED_NEW, UNCONFIGURED, Runner, copy_fixture, hermes_patch_exe, states, tree_digest

PAS, WS = "public-action-status", "relax-ws-peer-check"


class Systemd:
    """XDG_CONFIG_HOME in tmp and a `systemctl` that records its arguments."""

    def __init__(self, tmp: Path, with_systemctl: bool = True) -> None:
        self.config_home = tmp / "xdg"
        self.bin = tmp / "sbin"
        self.bin.mkdir()
        self.calls = tmp / "systemctl.calls"
        if with_systemctl:
            stub = self.bin / "systemctl"
            stub.write_text(f'#!/bin/sh\necho "$*" >> {self.calls}\n')
            stub.chmod(0o755)
        path = str(self.bin) if not with_systemctl else f"{self.bin}{os.pathsep}{os.environ['PATH']}"
        # The unit itself, where a package or an admin puts user units ($XDG_DATA_HOME/systemd/user).
        self.data_home = tmp / "xdg-data"
        self.unit_file = self.data_home / "systemd" / "user" / "hermes-dashboard.service"
        self.unit_file.parent.mkdir(parents=True)
        self.unit_file.write_text("[Service]\nExecStart=/usr/bin/hermes dashboard --port 9119\n")
        self.env = {
            "XDG_CONFIG_HOME": str(self.config_home),
            "XDG_DATA_HOME": str(self.data_home),
            "XDG_CONFIG_DIRS": str(tmp / "none"),
            "XDG_DATA_DIRS": str(tmp / "none"),
            "PATH": path,
        }

    def dropin(self, unit: str = "hermes-dashboard") -> Path:
        return self.config_home / "systemd" / "user" / f"{unit}.service.d" / "hermes-patch.conf"

    def reloads(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []


def exec_start_pre(dropin: Path) -> list[str]:
    """The ExecStartPre= command as systemd would run it (``-`` prefix off, quotes and %% resolved)."""
    [line] = [line for line in dropin.read_text().splitlines() if line.startswith("ExecStartPre=")]
    return [a.replace("%%", "%").replace("$$", "$") for a in shlex.split(line[len("ExecStartPre=-") :])]


@pytest.mark.slow
def test_user_unit_dropin_reapplies_on_start(tmp_path: Path, run: Runner):
    sd = Systemd(tmp_path)
    root = copy_fixture("r0_15", tmp_path / "hermes")
    web = root / "hermes_cli" / "web_server.py"
    before = tree_digest(root)
    proc = run(
        "hook",
        "install",
        "--root",
        str(root),
        "--systemd-unit",
        "hermes-dashboard.service",
        "--user",
        env=sd.env,
        check=0,
    )
    dropin = sd.dropin()
    assert proc.stdout.splitlines() == [f"systemd drop-in: {dropin}", "ran `systemctl --user daemon-reload`"]
    command = [
        hermes_patch_exe(),
        "apply",
        "--file",
        str(web.resolve()),
        "--state-dir",
        str(run.state),
        "--config",
        str(run.config),
        "--auto",
        "systemd:hermes-dashboard.service",
    ]
    assert dropin.read_text() == (
        "# hermes-patch: re-applies the dashboard patches before every start of hermes-dashboard.service\n"
        "# (installed by `hermes-patch hook install --systemd-unit hermes-dashboard --user`; `hermes-patch hook uninstall` removes it)\n"
        "[Service]\n"
        f"ExecStartPre=-{' '.join(command)}\n"
    )
    assert tree_digest(root) == before  # installing touches no Hermes file

    again = run(
        "hook", "install", "--root", str(root), "--systemd-unit", "hermes-dashboard", "--user", env=sd.env, check=0
    )
    assert again.stdout.splitlines()[0] == f"systemd drop-in: {dropin} (unchanged)"
    assert exec_start_pre(dropin) == command

    subprocess.run(exec_start_pre(dropin), check=True, capture_output=True, env=run.env)  # systemd starts the unit
    code, doc = run.status("--root", str(root))
    assert code == 0 and states(doc) == {**UNCONFIGURED, **FORWARDED_NEW, PAS: "applied", WS: "applied"}

    show = run("hook", "show", "--root", str(root), check=0).stdout.splitlines()
    assert show[:2] == [
        f"systemd drop-in (user unit hermes-dashboard.service): {dropin} (installed)",
        f"    ExecStartPre=-{' '.join(command)}",
    ]
    assert show[2:3] == [f"command path: {command[0]} (trusted)"]

    out = run("hook", "uninstall", "--root", str(root), env=sd.env, check=0).stdout.splitlines()
    assert out == [f"removed the systemd drop-in {dropin}", "ran `systemctl --user daemon-reload`"]
    assert not sd.config_home.exists()  # every folder install created is gone again
    assert sd.reloads() == ["--user daemon-reload"] * 3


def test_system_unit_in_a_unit_dir_that_already_exists(tmp_path: Path, run: Runner):
    sd = Systemd(tmp_path)
    units = tmp_path / "etc-systemd-system"
    (units / "hermes.service.d").mkdir(parents=True)
    (units / "hermes.service").write_text("[Service]\nExecStart=/usr/bin/hermes dashboard\n")
    (units / "hermes.service.d" / "override.conf").write_text("[Service]\nUser=hermes\n")
    root = copy_fixture("r0_16", tmp_path / "hermes")
    run(
        "hook",
        "install",
        "--root",
        str(root),
        "--systemd-unit",
        "hermes",
        "--system",
        "--unit-dir",
        str(units),
        env=sd.env,
        check=0,
    )
    dropin = units / "hermes.service.d" / "hermes-patch.conf"
    assert "--system`" in dropin.read_text()
    run("hook", "uninstall", "--root", str(root), env=sd.env, check=0)
    assert sorted(p.name for p in (units / "hermes.service.d").iterdir()) == ["override.conf"]
    assert sd.reloads() == ["daemon-reload", "daemon-reload"]


def test_without_systemctl_it_says_what_to_run(tmp_path: Path, run: Runner):
    sd = Systemd(tmp_path, with_systemctl=False)
    root = copy_fixture("r0_16", tmp_path / "hermes")
    out = run("hook", "install", "--root", str(root), "--systemd-unit", "hermes-dashboard", env=sd.env, check=0).stdout
    assert (
        out.splitlines()[-1]
        == "systemctl is not on PATH here; run `systemctl --user daemon-reload` on the machine that runs the unit"
    )


def test_a_foreign_dropin_is_not_overwritten(tmp_path: Path, run: Runner):
    sd = Systemd(tmp_path)
    root = copy_fixture("r0_16", tmp_path / "hermes")
    dropin = sd.dropin()
    dropin.parent.mkdir(parents=True)
    dropin.write_text("[Service]\nExecStartPre=/bin/true\n")
    proc = run("hook", "install", "--root", str(root), "--systemd-unit", "hermes-dashboard", env=sd.env, check=2)
    assert "was not written by hermes-patch" in proc.stderr
    assert dropin.read_text() == "[Service]\nExecStartPre=/bin/true\n" and sd.reloads() == []


@pytest.mark.parametrize("unit", ["my unit", "../evil", ""])
def test_a_bad_unit_name_is_refused(tmp_path: Path, run: Runner, unit: str):
    sd = Systemd(tmp_path)
    root = copy_fixture("r0_16", tmp_path / "hermes")
    proc = run("hook", "install", "--root", str(root), "--systemd-unit", unit, env=sd.env, check=2)
    assert "is not a systemd unit name" in proc.stderr
    assert not sd.config_home.exists()


def test_a_pip_install_needs_the_systemd_unit(tmp_path: Path, run: Runner):
    root = copy_fixture("r0_16", tmp_path / "site-packages")
    proc = run("hook", "install", "--root", str(root), check=2)
    assert proc.stderr.startswith(
        f"error: {(root / 'hermes_cli/web_server.py').resolve()} is a pip install: there is no git hook to install."
    )
    assert "--systemd-unit NAME" in proc.stderr and "hermes-patch update" in proc.stderr
    assert not run.state.exists()


@pytest.mark.parametrize("unit, scope", [("hermes-dashbaord", "--user"), ("hermes-dashboard", "--system")])
def test_a_unit_that_does_not_exist_is_refused(tmp_path: Path, run: Runner, unit: str, scope: str):
    """A misspelt unit (or the wrong manager) would get a drop-in that never runs: refused, nothing written."""
    sd = Systemd(tmp_path)
    root = copy_fixture("r0_16", tmp_path / "hermes")
    units = tmp_path / "units"
    units.mkdir()
    extra = ["--unit-dir", str(units)] if scope == "--system" else []
    proc = run("hook", "install", "--root", str(root), "--systemd-unit", unit, scope, *extra, env=sd.env, check=2)
    kind = "user" if scope == "--user" else "system"
    assert proc.stderr.startswith(f"error: there is no {kind} unit {unit}.service (looked in "), proc.stderr
    assert "list-unit-files 'hermes*'" in proc.stderr and "Nothing was changed" in proc.stderr
    assert not sd.config_home.exists() and list(units.iterdir()) == [] and not run.state.exists() and sd.reloads() == []


def test_an_instance_of_a_template_unit_is_found(tmp_path: Path, run: Runner):
    sd = Systemd(tmp_path)
    (sd.unit_file.parent / "hermes@.service").write_text("[Service]\nExecStart=/usr/bin/hermes dashboard --port %i\n")
    root = copy_fixture("r0_16", tmp_path / "hermes")
    run("hook", "install", "--root", str(root), "--systemd-unit", "hermes@9119", env=sd.env, check=0)
    assert sd.dropin("hermes@9119").is_file()
