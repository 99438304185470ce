"""`hermes-patch setup`: the proxy settings from the dashboard's public URL, written safely.

Flags for scripts, prompts on a real terminal (a pty), the file's other keys
and comments kept byte for byte, validation before any write, owner-only
atomic writes, and what `status` says about the configuration it read.
"""

from __future__ import annotations

import json
import os
import pty
import select
import stat
import time
from pathlib import Path

import jsonschema
import pytest

from conftest import REPO, Runner, copy_fixture, hermes_patch_exe, states, tree_digest

TH, CO, WS, PAS = "trusted-hosts", "cors-origins", "relax-ws-peer-check", "public-action-status"
ERROR_SCHEMA = jsonschema.Draft202012Validator(json.loads((REPO / "docs" / "error-schema.json").read_text()))

MINE = """\
# my hermes-patch configuration
patch_dirs = []

[patches.public-action-status]
actions = ["hermes-update"]   # only the update button

[patches.trusted-hosts]
hosts = ["Other.Example"]  # the old name, keep it
"""


def test_flags_add_the_settings_and_keep_everything_else(tmp_path: Path, run: Runner):
    root = copy_fixture("r0_15", tmp_path / "sp")
    run.configure(MINE)
    run.config.chmod(0o644)
    before_tree = tree_digest(root)
    proc = run(
        "setup",
        "--root",
        str(root),
        "--url",
        "https://Hermes.Example.com:8443/",
        "--proxy-address",
        "10.0.0.5",
        check=0,
    )
    text = run.config.read_text()
    # Every line of the old file is still there, in order; the new values are added.
    assert text.startswith(MINE.replace('hosts = ["Other.Example"]', 'hosts = ["Other.Example", "hermes.example.com"]'))
    assert "cors-origins" not in text  # the page through the proxy is same-origin: no CORS widening
    assert '[patches.relax-ws-peer-check]\ntrusted_proxies = ["10.0.0.5/32"]' in text
    assert stat.S_IMODE(run.config.stat().st_mode) == 0o600
    assert [p.name for p in run.config.parent.iterdir() if p.name.startswith(".config.toml")] == []  # no temp file left
    assert tree_digest(root) == before_tree  # setup writes the configuration only
    out = proc.stdout
    assert (
        f"configuration {run.config}" in out
        and "hosts: hermes.example.com" in out
        and "trusted_proxies: 10.0.0.5/32" in out
        and "origins: none; the page at https://hermes.example.com:8443 is same-origin" in out
    )
    assert "apply would write: public-action-status, relax-ws-peer-check, trusted-hosts → " in out
    assert f"wrote {run.config} (mode 0600; 2 value(s) added" in out
    code, doc = run.status("--root", str(root))
    assert {k: v for k, v in states(doc).items() if k in (CO, PAS, WS, TH)} == {
        CO: "not-needed",
        PAS: "pending",
        WS: "pending",
        TH: "pending",
    }
    assert doc["config"] == {"path": str(run.config), "exists": True}
    run("apply", "--root", str(root), check=0)
    assert {k: v for k, v in states(run.status("--root", str(root))[1]).items() if k in (CO, PAS, WS, TH)} == {
        CO: "not-needed",
        PAS: "applied",
        WS: "applied",
        TH: "applied",
    }

    again = run(
        "setup",
        "--root",
        str(root),
        "--url",
        "https://hermes.example.com:8443",
        "--proxy-address",
        "10.0.0.5/32",
        check=0,
    )
    assert "the configuration already holds these settings; nothing to write" in again.stdout
    assert run.config.read_text() == text


def test_a_loopback_url_and_a_same_host_proxy_need_no_names(tmp_path: Path, run: Runner):
    root = copy_fixture("r0_16", tmp_path / "sp")
    run.config.unlink()
    proc = run("setup", "--root", str(root), "--url", "http://localhost:9119", "--proxy-address", "127.0.0.1", check=0)
    assert "localhost is a loopback name, which the dashboard accepts already" in proc.stdout
    assert "127.0.0.1 is the loopback address the dashboard accepts already" in proc.stdout
    assert "nothing to write" in proc.stdout and not run.config.exists()


def test_a_sub_path_url_names_the_prefix_header(tmp_path: Path, run: Runner):
    root = copy_fixture("r0_16", tmp_path / "sp")
    proc = run("setup", "--root", str(root), "--url", "https://proxy.example/hermes/", "--dry-run", check=0)
    assert "must strip /hermes and send `X-Forwarded-Prefix: /hermes`" in proc.stdout
    assert "dry run: nothing was written" in proc.stdout and run.config.read_text() == ""


@pytest.mark.parametrize(
    "args, says",
    [
        (["--url", "hermes.example.com"], "is not an http or https URL"),
        (["--url", "https://user@hermes.example.com"], "carries a user name"),
        (["--url", "https://hermes.example.com/?x=1"], "has a query or fragment"),
        (["--url", "https://*.example.com"], "wildcards are not accepted"),
        (
            ["--url", "https://hermes.example.com", "--proxy-address", "10.0.0.5/24"],
            "is not an IP address or a network in CIDR form",
        ),
        (
            ["--url", "https://hermes.example.com", "--proxy-address", "proxy.lan"],
            "is not an IP address or a network in CIDR form",
        ),
        (["--url", "https://hermes.example.com", "--proxy-address", "0.0.0.0/0"], "allow_catch_all"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(tmp_path: Path, run: Runner, args: list[str], says: str):
    root = copy_fixture("r0_16", tmp_path / "sp")
    run.configure(MINE)
    proc = run("setup", "--root", str(root), *args, check=2)
    assert proc.stderr.startswith("error: ") and says in proc.stderr, proc.stderr
    assert run.config.read_text() == MINE and proc.stdout == ""


def test_an_existing_configuration_that_does_not_fit_the_release_is_refused(tmp_path: Path, run: Runner):
    root = copy_fixture("r0_14", tmp_path / "sp")
    broken = MINE.replace(
        'actions = ["hermes-update"]', 'actions = ["hermes-update", "backup"]'
    )  # 0.14 has no backup action
    run.configure(broken)
    proc = run("setup", "--root", str(root), "--url", "https://hermes.example.com", check=2)
    assert "backup" in proc.stderr and "this release does not have" in proc.stderr
    assert run.config.read_text() == broken
    run.configure("[patches.trusted-hosts\n")
    proc = run("setup", "--root", str(root), "--url", "https://hermes.example.com", check=2)
    assert "not valid TOML" in proc.stderr and run.config.read_text() == "[patches.trusted-hosts\n"


def test_without_a_terminal_the_url_is_required(tmp_path: Path, run: Runner):
    root = copy_fixture("r0_16", tmp_path / "sp")
    proc = run("setup", "--root", str(root), check=2, input="")
    assert (
        "setup needs the dashboard's public URL when it does not run on a terminal: `hermes-patch setup --url"
        in proc.stderr
    )


def test_a_missing_config_file_is_created_owner_only(tmp_path: Path, run: Runner):
    root = copy_fixture("r0_16", tmp_path / "sp")
    cfg = tmp_path / "fresh" / "dir" / "config.toml"
    env = {"HERMES_PATCH_CONFIG": str(cfg)}
    proc = run.raw(
        "setup", "--root", str(root), "--state-dir", str(run.state), "--url", "https://hermes.example.com", env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert f"configuration {cfg} (new file)" in proc.stdout
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600 and stat.S_IMODE(cfg.parent.stat().st_mode) == 0o700
    assert cfg.read_text() == '[patches.trusted-hosts]\nhosts = ["hermes.example.com"]\n'


def _pty_run(
    argv: list[str], env: dict[str, str], answers: list[tuple[str, str]], timeout: float = 30.0
) -> tuple[int, str]:
    """Run ``argv`` on a new pseudo-terminal; when the output shows each prompt, type its answer."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(argv[0], argv, env)
    out = b""
    pending = list(answers)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        if pending and pending[0][0].encode() in out.split(b"\n")[-1]:
            os.write(fd, pending.pop(0)[1].encode() + b"\r")
    if pending:
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert not pending, f"never saw the prompt {pending[0][0]!r}:\n{out.decode('utf-8', 'replace')}"
    return os.waitstatus_to_exitcode(status), out.decode("utf-8", "replace").replace("\r\n", "\n")


def test_on_a_terminal_it_asks(tmp_path: Path, run: Runner):
    root = copy_fixture("r0_15", tmp_path / "sp")
    argv = [hermes_patch_exe(), "setup", "--root", str(root), *run.common]
    code, out = _pty_run(
        argv,
        run.env,
        [
            ("public URL", "https://hermes.example.com"),
            ("another host?", "10.0.0.5"),
            ("Write ", "y"),
        ],
    )
    assert code == 0, out
    assert "The dashboard's public URL (what you type in the browser):" in out and f"Write {run.config}? [Y/n]:" in out
    assert run.config.read_text() == (
        '[patches.trusted-hosts]\nhosts = ["hermes.example.com"]\n\n[patches.relax-ws-peer-check]\ntrusted_proxies = ["10.0.0.5/32"]\n'
    )

    run.configure(MINE)
    code, out = _pty_run(
        [*argv, "--url", "https://hermes.example.com"], run.env, [("Write ", "n")]
    )  # --url given: only the confirmation is asked
    assert code == 1 and "nothing was written" in out and run.config.read_text() == MINE


# -- what status says about the configuration ------------------------------------------


def test_status_names_the_configuration_and_advises_setup(tmp_path: Path, run: Runner):
    root = copy_fixture("r0_16", tmp_path / "sp")
    missing = tmp_path / "nowhere" / "config.toml"
    env = {"HERMES_PATCH_CONFIG": str(missing)}
    base = ["status", "--root", str(root), "--state-dir", str(run.state)]  # no --config: the environment names it
    human = run.raw(*base, env=env)
    assert f"config none: defaults ({missing} does not exist)" in human.stdout.splitlines()
    assert "note: no proxy setting is configured" in human.stdout and "`hermes-patch setup --url" in human.stdout
    doc = json.loads(run.raw(*base, "--json", env=env).stdout)
    assert doc["config"] == {"path": str(missing), "exists": False}
    assert any("no proxy setting is configured" in a for a in doc["advice"]) and doc["notes"] == []
    run.raw("apply", "--root", str(root), "--state-dir", str(run.state), env=env, check=0)
    strict = run.raw(*base, "--strict", env=env)
    assert strict.returncode == 0, strict.stdout  # advice is not a warning

    run.configure('[patches.trusted-hosts]\nhosts = ["hermes.example.com"]\n')
    code, doc = run.status("--root", str(root))
    assert doc["config"] == {"path": str(run.config), "exists": True}
    assert not any("no proxy setting" in a for a in doc["advice"]), doc["advice"]  # the setup advice is gone
    assert any("auth" in a and "trusted-hosts" in a for a in doc["advice"])  # the proxy is now the gate: said as advice


def test_status_json_error_document(tmp_path: Path, run: Runner):
    proc = run("status", "--json", "--root", str(tmp_path / "nope"), check=2)
    doc = json.loads(proc.stdout)
    ERROR_SCHEMA.validate(doc)
    assert doc["command"] == "status" and doc["error"]["kind"] == "target" and doc["exit_code"] == 2
    assert proc.stderr == f"error: {doc['error']['message']}\n" and "does not exist" in doc["error"]["message"]
    run.configure("[patches.nope]\n")
    doc = json.loads(run("status", "--json", "--root", str(copy_fixture("r0_16", tmp_path / "sp")), check=2).stdout)
    ERROR_SCHEMA.validate(doc)
    assert doc["error"]["kind"] == "config" and "no patch has the id nope" in doc["error"]["message"]


def _venv_with_hermes(path: Path) -> Path:
    """A venv (no pip) whose site-packages holds the r0_16 miniature's hermes_cli; returns its python."""
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    site = next((path / "lib").glob("python*/site-packages"))
    copy_fixture("r0_16", site / "fixture")
    (site / "fixture" / "hermes_cli").rename(site / "hermes_cli")
    return path / "bin" / "python"


def test_setup_keeps_the_interpreter_so_later_commands_need_no_python(tmp_path: Path, run: Runner):
    """A venv install not on PATH: `setup --python` once, then every command finds it (helper-21's walkthrough)."""
    python = _venv_with_hermes(tmp_path / "hermes-venv")
    run.config.unlink()
    run("setup", "--python", str(python), "--url", "https://hermes.example.com", check=0)
    text = run.config.read_text()
    assert text.startswith(f'python = "{python}"\n') and 'hosts = ["hermes.example.com"]' in text
    code, doc = run.status()
    assert code == 1 and doc["target"]["found_by"] == "python in the configuration"
    assert doc["target"]["file"].startswith(str(tmp_path / "hermes-venv"))
    run("apply", check=0)
    assert run.status()[0] == 0
    again = run("setup", "--python", str(python), "--url", "https://hermes.example.com", check=0)
    assert "nothing to write" in again.stdout and run.config.read_text() == text


def test_a_relative_python_in_the_configuration_is_refused(tmp_path: Path, run: Runner):
    run.configure('python = "venv/bin/python"\n')
    proc = run("status", check=2)
    assert "python must be the absolute path of the interpreter Hermes runs with" in proc.stderr
