"""Root on someone else's install: every attack of issue 13, run through the installed command.

Operators run hermes-patch with sudo, from root's systemd units and from git
hooks, on installs a service account owns. Each test here creates a second,
unprivileged user (``useradd``; removed afterwards), lets that user prepare
files, a state dir, a checkout, a venv or a configuration, then runs the
installed ``hermes-patch`` as root against them. Every run must end in a
refusal (exit 2, one ``error:`` paragraph, no traceback) or in a safe
outcome, and no file outside the target may change: victims are root-owned
files next to the prepared ones, canaries are files that attacker code would
create. The policy these encode is in docs/threat-model.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import FIXTURES, REPO, Runner, copy_fixture, hermes_patch_exe, sha, tally

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="these attacks are about running as root"),
    pytest.mark.skipif(shutil.which("useradd") is None, reason="needs useradd to create the second user"),
]

PROXY = '[patches.relax-ws-peer-check]\ntrusted_proxies = ["127.0.0.5/32"]\n'
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or "/usr/bin/python3"
REFUSED = "exit 2, one paragraph, nothing outside the target changed"


# -- the second user --------------------------------------------------------------------------


class Intruder:
    """An unprivileged local user and a folder of theirs under /tmp (root's pytest dirs are 0700)."""

    def __init__(self, name: str, home: Path) -> None:
        entry = pwd.getpwnam(name)
        self.name, self.uid, self.gid, self.home = name, entry.pw_uid, entry.pw_gid, home

    def run(self, *cmd: str, check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess:
        env = {"HOME": str(self.home), "PATH": "/usr/local/bin:/usr/bin:/bin", "LC_ALL": "C"}
        return subprocess.run(
            list(cmd),
            user=self.uid,
            group=self.gid,
            extra_groups=[],
            env=env,
            cwd=cwd or self.home,
            capture_output=True,
            text=True,
            check=check,
        )

    def own(self, path: Path) -> Path:
        """Give ``path`` (recursively) to the intruder, as if they had made it."""
        for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
            os.lchown(p, self.uid, self.gid)
        return path

    def folder(self, name: str) -> Path:
        """A new folder of theirs (a fresh name each time: the user lives for the whole module)."""
        d = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.home))
        os.chown(d, self.uid, self.gid)
        return d


@pytest.fixture(scope="module")
def intruder():
    name = f"hpi13x{os.getpid() % 100000}"
    home = Path(tempfile.mkdtemp(prefix="hermes-patch-intruder-", dir="/tmp"))
    subprocess.run(
        ["useradd", "--no-create-home", "--user-group", "--shell", "/bin/sh", "--home-dir", str(home), name],
        check=True,
        capture_output=True,
    )
    try:
        user = Intruder(name, home)
        os.chown(home, user.uid, user.gid)
        home.chmod(0o755)
        yield user
    finally:
        subprocess.run(["userdel", name], capture_output=True)
        subprocess.run(["groupdel", name], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


# -- outcomes -----------------------------------------------------------------------------------


def one_paragraph(proc: subprocess.CompletedProcess, *words: str) -> bool:
    err = proc.stderr
    return (
        proc.returncode == 2
        and err.startswith("error: ")
        and len(err.strip().splitlines()) == 1
        and "Traceback" not in err
        and all(w in err for w in words)
    )


def digest(*paths: Path) -> dict[str, str]:
    """sha256 (or the link target, or ``missing``) of each path, files below directories included."""
    out: dict[str, str] = {}
    for path in paths:
        items = [path, *sorted(path.rglob("*"))] if path.is_dir() and not path.is_symlink() else [path]
        for p in items:
            if "__pycache__" in p.parts:
                continue
            if p.is_symlink():
                out[str(p)] = "-> " + os.readlink(p)
            elif p.is_file():
                out[str(p)] = sha(p)
            elif not p.exists():
                out[str(p)] = "missing"
    return out


def judge(
    subject: str, procs: list[subprocess.CompletedProcess], unchanged: bool, *words: str, canary: Path | None = None
) -> None:
    """Record and assert: each command refused with one paragraph; nothing changed; no attacker code ran."""
    ran = canary is not None and canary.exists()
    observed = ", ".join(
        [
            "exit 2, one paragraph"
            if all(one_paragraph(p, *words) for p in procs)
            else f"NOT REFUSED (exits {[p.returncode for p in procs]})",
            "nothing outside the target changed"
            if unchanged and not ran
            else ("ATTACKER CODE RAN" if ran else "FILES CHANGED"),
        ]
    )
    tally(f"as root: {subject}", REFUSED, observed)
    assert observed == REFUSED, "\n".join(
        f"{' '.join(map(str, p.args[1:3]))}: exit {p.returncode}\n{p.stdout}{p.stderr}" for p in procs
    )


def victim(tmp_path: Path, name: str = "victim.conf") -> Path:
    """A root-owned file that no command here may touch."""
    path = tmp_path / name
    path.write_text("root's own file\n")
    path.chmod(0o644)
    return path


# -- 1. the state directory ----------------------------------------------------------------------


def _forged_ledger(root: Path, state: Path, name: str, evil: bytes) -> None:
    """A ledger whose 'interrupted write' would put ``evil`` at ``hermes_cli/<name>``."""
    (state / "backups").mkdir(parents=True, exist_ok=True)
    evil_sha = hashlib.sha256(evil).hexdigest()
    (state / "backups" / evil_sha).write_bytes(evil)
    target = root / "hermes_cli" / name
    before = sha(target) if target.exists() else hashlib.sha256(b"").hexdigest()
    key = str((root / "hermes_cli").resolve())
    commit = {
        "version": "0.15.0",
        "files": {},
        "patches": {},
        "snapshot": {"config_key": "x", "inputs": {}, "reports": []},
    }
    ledger = {
        "schema": 1,
        "targets": {
            key: {
                "pending": {
                    "kind": "apply",
                    "files": {name: {"before": before, "after": evil_sha, "original": before}},
                    "commit": commit,
                }
            }
        },
    }
    (state / "ledger.json").write_text(json.dumps(ledger))


STATE_SETUPS = [
    "state dir owned by the other user",
    "state dir writable by everyone",
    "ledger owned by the other user",
    "ledger writable by everyone",
]


@pytest.mark.parametrize("setup", STATE_SETUPS)
def test_a_state_dir_another_user_can_write_is_refused(setup, tmp_path, intruder):
    root = copy_fixture("r0_15", tmp_path / "sp")
    target = victim(tmp_path)
    run = Runner(tmp_path, process=True)  # root's own process against the other user's files
    run.configure(PROXY)
    if setup.startswith("state dir owned"):
        run.state = intruder.folder("state")
    else:
        run.state.mkdir(mode=0o700)
    _forged_ledger(root, run.state, os.path.relpath(target, root / "hermes_cli"), b"owned by the intruder\n")
    if setup.startswith("state dir owned"):
        intruder.own(run.state)
    elif setup == "state dir writable by everyone":
        run.state.chmod(0o777)
    elif setup == "ledger owned by the other user":
        intruder.own(run.state / "ledger.json")
    else:
        (run.state / "ledger.json").chmod(0o666)
    before = digest(root, target, run.state)
    procs = [run(cmd, "--root", str(root)) for cmd in ("status", "apply", "revert")]
    judge(
        setup,
        procs,
        digest(root, target, run.state) == before,
        str(run.state) if "state dir" in setup else "ledger.json",
    )
    assert "--state-dir" in procs[0].stderr


SYMLINKS = {
    "ledger.json is a symlink to a root file": ("ledger.json", "file"),
    "backups/ is a symlink to a root folder": ("backups", "dir"),
    "the lock file is a symlink to a root file": ("locks/ledger.lock", "file"),
}


@pytest.mark.parametrize("case", list(SYMLINKS))
def test_symlinks_inside_the_state_dir_are_never_followed(case, tmp_path):
    root = copy_fixture("r0_15", tmp_path / "sp")
    run = Runner(tmp_path)
    run.configure(PROXY)
    name, kind = SYMLINKS[case]
    run.state.mkdir(mode=0o700)
    (run.state / "locks").mkdir(mode=0o700)
    aim = tmp_path / "elsewhere"
    if kind == "dir":
        aim.mkdir()
        (aim / "keep").write_text("root's\n")
    else:
        aim.write_text('{"schema": 1, "targets": {}}\n')
    os.symlink(aim, run.state / name)
    before = digest(root, aim)
    procs = [run(cmd, "--root", str(root)) for cmd in ("apply", "revert")]
    judge(f"state dir: {case}", procs, digest(root, aim) == before, "symlink")


def test_a_forged_interrupted_write_cannot_name_a_file_outside_the_package(tmp_path):
    """The state dir is root's (checks pass); the record itself names ../../victim: confined, refused."""
    root = copy_fixture("r0_15", tmp_path / "sp")
    target = victim(tmp_path)
    run = Runner(tmp_path)
    run.state.mkdir(mode=0o700)
    _forged_ledger(root, run.state, os.path.relpath(target, root / "hermes_cli"), b"forged\n")
    before = digest(root, target)
    procs = [run(cmd, "--root", str(root)) for cmd in ("status", "apply", "revert")]
    judge(
        "a forged journal naming a file outside the package",
        procs,
        digest(root, target) == before,
        str(run.state / "ledger.json"),
    )


def test_a_forged_hook_record_cannot_delete_or_rename_files(tmp_path):
    root = copy_fixture("r0_15", tmp_path / "sp")
    first, second = victim(tmp_path, "one.conf"), victim(tmp_path, "two.conf")
    run = Runner(tmp_path)
    run.state.mkdir(mode=0o700)
    key = str((root / "hermes_cli").resolve())
    hooks = {
        "post-merge": {
            "path": str(first),
            "sha256": sha(first),
            "chained": str(second),
            "created_dirs": [str(tmp_path)],
        }
    }
    dropins = {str(second): {"unit": "x", "scope": "user", "sha256": sha(second), "created_dirs": []}}
    ledger = {"schema": 1, "targets": {key: {"integrations": {"git-hooks": hooks, "systemd": dropins}}}}
    (run.state / "ledger.json").write_text(json.dumps(ledger))
    before = digest(root, first, second)
    procs = [run("hook", "uninstall", "--root", str(root))]
    judge(
        "a forged hook record (hook uninstall)",
        procs,
        digest(root, first, second) == before,
        str(run.state / "ledger.json"),
    )


def test_a_forged_session_token_record_cannot_delete_another_file(tmp_path):
    root = copy_fixture("r0_15", tmp_path / "sp")
    other = victim(tmp_path, "precious.conf")
    run = Runner(tmp_path)
    run.state.mkdir(mode=0o700)
    key = str((root / "hermes_cli").resolve())
    token = {"session-token": {"path": str(other), "sha256": sha(other)}}
    ledger = {"schema": 1, "targets": {key: {"integrations": token}}}
    (run.state / "ledger.json").write_text(json.dumps(ledger))
    before = digest(root, other)
    procs = [run("hook", "uninstall", "--root", str(root)), run("revert", "--root", str(root))]
    unchanged = digest(root, other) == before
    clean = all(p.returncode in (0, 2) and "Traceback" not in p.stderr for p in procs)
    observed = (
        "safe outcome: the file is kept"
        if unchanged and clean
        else f"FILES CHANGED or crashed (exits {[p.returncode for p in procs]})"
    )
    tally("as root: a forged session token record (hook uninstall, revert)", "safe outcome: the file is kept", observed)
    assert observed == "safe outcome: the file is kept", "\n".join(p.stdout + p.stderr for p in procs)


@pytest.mark.slow
def test_a_forged_previous_filter_is_never_planted_in_git(tmp_path):
    """A record's "previous filter" (a command) is never written back into .git/config."""
    checkout = _root_checkout(tmp_path / "hermes-agent")
    canary = tmp_path / "canary"
    run = Runner(tmp_path)
    run.configure(PROXY)
    run("apply", "--root", str(checkout), check=0)
    ledger = json.loads((run.state / "ledger.json").read_text())
    record = next(iter(ledger["targets"].values()))
    record["integrations"]["git-filter"]["previous"] = f"touch {canary}; cat"
    (run.state / "ledger.json").write_text(json.dumps(ledger))
    reverted = run("revert", "--root", str(checkout))
    value = subprocess.run(
        ["git", "-C", str(checkout), "config", "--get", "filter.hermes-patch.clean"], capture_output=True, text=True
    ).stdout
    (checkout / "hermes_cli/web_server.py").write_text(
        (checkout / "hermes_cli/web_server.py").read_text() + "# touched\n"
    )
    subprocess.run(["git", "-C", str(checkout), "add", "-A"], capture_output=True)
    observed = (
        "safe outcome: no command planted, nothing ran"
        if reverted.returncode == 0 and not value and not canary.exists()
        else f"PLANTED {value!r} exit {reverted.returncode} ran={canary.exists()}"
    )
    tally(
        "as root: a forged previous git filter in the ledger (revert)",
        "safe outcome: no command planted, nothing ran",
        observed,
    )
    assert observed == "safe outcome: no command planted, nothing ran", reverted.stderr


# -- 2. a tree owned by another user ----------------------------------------------------------------


def _user_checkout(intruder: Intruder, canary: Path, target: Path) -> Path:
    """A git checkout of the intruder with a hostile core.fsmonitor and a symlinked info/attributes."""
    checkout = intruder.folder("hermes-agent")
    shutil.copytree(
        FIXTURES / "r0_15" / "hermes_cli", checkout / "hermes_cli", ignore=shutil.ignore_patterns("__pycache__")
    )
    intruder.own(checkout)
    intruder.run("git", "init", "-q", str(checkout))
    intruder.run("git", "-C", str(checkout), "add", "-A")
    intruder.run(
        "git", "-C", str(checkout), "-c", "user.name=x", "-c", "user.email=x@x.invalid", "commit", "-q", "-m", "x"
    )
    hook = checkout / ".git" / "fsmon.sh"
    hook.write_text(f"#!/bin/sh\nid -u >> {canary}\n")
    hook.chmod(0o755)
    intruder.own(hook)
    intruder.run("git", "-C", str(checkout), "config", "core.fsmonitor", str(hook))
    info = checkout / ".git" / "info"
    intruder.run("mkdir", "-p", str(info))
    intruder.run("rm", "-f", str(info / "attributes"))
    intruder.run("ln", "-s", str(target), str(info / "attributes"))
    return checkout


@pytest.mark.slow
def test_a_checkout_owned_by_another_user_is_refused_and_its_git_config_never_runs(tmp_path, intruder):
    canary = intruder.home / "fsmonitor-ran"
    target = victim(tmp_path)
    checkout = _user_checkout(intruder, canary, target)
    run = Runner(tmp_path, process=True)  # root's own process against the other user's files
    run.configure(PROXY)
    before = digest(checkout, target)
    procs = [
        run(*cmd, "--root", str(checkout))
        for cmd in (("status",), ("apply",), ("revert",), ("diff",), ("hook", "install"))
    ]
    judge(
        "a git checkout owned by another user (core.fsmonitor, symlinked info/attributes)",
        procs,
        digest(checkout, target) == before,
        str(checkout),
        "sudo -u",
        canary=canary,
    )
    assert intruder.name in procs[0].stderr


def _need_system_python() -> None:
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip(f"{SYSTEM_PYTHON} (an interpreter the second user can run) is missing")


def _user_venv(intruder: Intruder, canary: Path) -> Path:
    """The intruder's venv with hermes_cli in it and a .pth file that runs code at every start."""
    _need_system_python()
    venv = intruder.folder("venv")
    intruder.run(SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(venv))
    site = next(venv.glob("lib/python3*/site-packages"))
    shutil.copytree(
        FIXTURES / "r0_15" / "hermes_cli", site / "hermes_cli", ignore=shutil.ignore_patterns("__pycache__")
    )
    (site / "zz_intruder.pth").write_text(f"import os; open({str(canary)!r}, 'a').write(str(os.getuid()) + '\\n')\n")
    intruder.own(venv)
    return venv


@pytest.mark.slow
@pytest.mark.parametrize(
    "how", ["status --python", "verify --python", "apply --python", "status via the hermes launcher on PATH"]
)
def test_an_interpreter_owned_by_another_user_never_runs_as_root(how, tmp_path, intruder):
    canary = intruder.home / f"pth-ran-{how.split()[0]}-{how.split()[-1]}"
    venv = _user_venv(intruder, canary)
    run = Runner(tmp_path, process=True)  # root's own process against the other user's files
    before = digest(venv)
    if "launcher" in how:
        bindir = intruder.folder("bin")
        launcher = bindir / "hermes"
        launcher.write_text(f"#!{venv}/bin/python\nimport sys\n")
        launcher.chmod(0o755)
        intruder.own(launcher)
        procs = [run("status", env={"PATH": f"{bindir}:{os.environ['PATH']}", "HOME": str(tmp_path)})]
    else:
        cmd = how.split()[0]
        procs = [run(cmd, "--python", str(venv / "bin" / "python"))]
    judge(f"an interpreter owned by another user ({how})", procs, digest(venv) == before, "sudo -u", canary=canary)


# -- 6. a file swapped or upgraded while apply runs -------------------------------------------------


def _pause_at_rename(run: Runner, root: Path) -> subprocess.Popen:
    """Start ``apply`` and wait until it stops itself (SIGSTOP) right before its rename."""
    env = {**run.env, "HERMES_PATCH_FAULT": "rename:1:stop"}
    proc = subprocess.Popen(
        [hermes_patch_exe(), "apply", "--root", str(root), *run.common],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            break
        if state == "T":
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    out, err = proc.communicate()
    pytest.fail(f"apply did not pause before its rename: {out}{err}")


def _finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    os.kill(proc.pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.slow
def test_web_server_swapped_for_a_symlink_before_the_rename_is_left_alone(tmp_path):
    root = copy_fixture("r0_15", tmp_path / "sp")
    web = root / "hermes_cli/web_server.py"
    target = victim(tmp_path)
    run = Runner(tmp_path)
    run.configure(PROXY)
    proc = _pause_at_rename(run, root)
    web.unlink()
    web.symlink_to(target)
    before = digest(root, target)
    done = _finish(proc)
    judge(
        "web_server.py swapped for a symlink between read and rename", [done], digest(root, target) == before, str(web)
    )
    assert web.is_symlink()
    leftovers = [p.name for p in web.parent.iterdir() if p.name.endswith(".hermes-patch.tmp")]
    assert leftovers == []


@pytest.mark.slow
def test_a_concurrent_upgrade_is_never_rolled_back(tmp_path):
    root = copy_fixture("r0_15", tmp_path / "sp")
    web = root / "hermes_cli/web_server.py"
    run = Runner(tmp_path)
    run.configure(PROXY)
    proc = _pause_at_rename(run, root)
    upgraded = (FIXTURES / "r0_16" / "hermes_cli" / "web_server.py").read_bytes()
    tmp = web.with_name("web_server.py.new")
    tmp.write_bytes(upgraded)
    os.replace(tmp, web)  # how pip and git put a new release in place
    done = _finish(proc)
    judge(
        "an upgrade replaced web_server.py while apply ran",
        [done],
        web.read_bytes() == upgraded,
        str(web),
        "hermes-patch status",
    )
    code, doc = run.status("--root", str(root))
    assert not any("interrupted" in n for n in doc["notes"]), doc["notes"]


# -- 3. configuration that escapes into code --------------------------------------------------------


ESCAPES = {
    "a zone id leaving the string literal": 'trusted_proxies = ["fe80::%x\\" + str(__import__(\\"os\\").system(\\"touch {canary}\\")) + \\"/128"]',
    "a zone id with a newline": 'trusted_proxies = ["fe80::%a\\nimport os; os.system(\\"touch {canary}\\")\\n/128"]',
    "a zone id with U+2028": 'trusted_proxies = ["fe80::%a\\u2028b/128"]',
    "a zone id with a backslash": 'trusted_proxies = ["fe80::%a\\\\b/128"]',
}


@pytest.mark.parametrize("case", list(ESCAPES))
def test_configuration_never_escapes_into_generated_code(case, tmp_path):
    root = copy_fixture("r0_15", tmp_path / "sp")
    canary = tmp_path / "canary"
    run = Runner(tmp_path)
    run.configure("[patches.relax-ws-peer-check]\n" + ESCAPES[case].replace("{canary}", str(canary)) + "\n")
    before = digest(root)
    procs = [run(cmd, "--root", str(root)) for cmd in ("status", "apply", "diff")]
    judge(f"config: {case}", procs, digest(root) == before, "zone", canary=canary)
    # verify reports a patch whose parameters are refused as `cannot verify` and runs nothing of it.
    checked = run("verify", "--root", str(root))
    assert "zone id" in checked.stdout + checked.stderr and "Traceback" not in checked.stderr
    assert not canary.exists() and digest(root) == before


# -- 4. stored commands -----------------------------------------------------------------------------------


def _user_hermes_patch(intruder: Intruder) -> Path:
    """hermes-patch run from a venv the intruder owns (the tests' installed package, through a .pth)."""
    _need_system_python()
    venv = intruder.folder("hp-venv")
    intruder.run(SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(venv))
    site = next(venv.glob("lib/python3*/site-packages"))
    ours = next(Path(sys.prefix).glob("lib/python3*/site-packages"))
    (site / "tests-hermes-patch.pth").write_text(f"{ours}\n")
    script = venv / "bin" / "hermes-patch"
    script.write_text(f"#!{venv}/bin/python\nfrom hermes_patch.cli import main\nmain()\n")
    script.chmod(0o755)
    intruder.own(venv)
    return script


def _root_checkout(path: Path) -> Path:
    shutil.copytree(
        FIXTURES / "r0_15" / "hermes_cli", path / "hermes_cli", ignore=shutil.ignore_patterns("__pycache__")
    )
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    subprocess.run(["git", "-C", str(path), "add", "-A"], check=True)
    subprocess.run(
        ["git", "-C", str(path), "-c", "user.name=x", "-c", "user.email=x@x.invalid", "commit", "-q", "-m", "x"],
        check=True,
    )
    return path


@pytest.mark.slow
def test_a_command_in_a_user_writable_venv_is_never_stored_for_root(tmp_path, intruder):
    exe = _user_hermes_patch(intruder)
    checkout = _root_checkout(tmp_path / "hermes-agent")
    units = tmp_path / "units"
    units.mkdir()
    (units / "hermes-dashboard.service").write_text(
        "[Service]\nExecStart=/bin/true\n"
    )  # hook install wants the unit to exist
    run = Runner(tmp_path, process=True)  # root's own process against the other user's files
    run.configure(PROXY)
    before = digest(checkout, units)
    procs = [
        subprocess.run(
            [str(exe), *cmd, "--root", str(checkout), *run.common], capture_output=True, text=True, env=run.env
        )
        for cmd in (
            ["hook", "install"],
            ["hook", "install", "--systemd-unit", "hermes-dashboard", "--unit-dir", str(units)],
            ["apply"],
        )
    ]
    judge(
        "hook install / apply from a hermes-patch in a user-writable venv",
        procs,
        digest(checkout, units) == before,
        str(exe),
    )
    shown = run("hook", "show", "--root", str(checkout), check=0).stdout
    assert "command path" in shown and "not group- or world-writable" in shown


@pytest.mark.slow
def test_quotes_dollar_and_newline_in_paths_never_become_commands(tmp_path):
    canary = tmp_path / "canary"
    base = tmp_path / f"x$(touch {canary})'\"`touch {canary}`"
    checkout = _root_checkout(base / "hermes-agent")
    run = Runner(tmp_path)
    run.state = base / "state"
    run.configure(PROXY)
    (tmp_path / "units").mkdir()
    for unit in ("hermes-dashboard", "other"):  # hook install wants the unit to exist
        (tmp_path / "units" / f"{unit}.service").write_text("[Service]\nExecStart=/bin/true\n")
    run(
        "hook",
        "install",
        "--root",
        str(checkout),
        "--systemd-unit",
        "hermes-dashboard",
        "--unit-dir",
        str(tmp_path / "units"),
        check=0,
    )
    dropin = next((tmp_path / "units").rglob("hermes-patch.conf")).read_text()
    directives = [line for line in dropin.splitlines() if line and not line.startswith("#")]
    assert directives[0] == "[Service]" and len(directives) == 2 and directives[1].startswith("ExecStartPre=-"), dropin
    # Make the hook's apply fail so that its error line runs too, then run the hook as git would.
    run.configure("[patches.no-such-patch]\n")
    hook = checkout / ".git/hooks/post-merge"
    subprocess.run([str(hook), "0"], cwd=checkout, capture_output=True, text=True, env=run.env)
    assert not canary.exists()
    # A newline in a stored path would start a new systemd directive or shell line: refused.
    nl = tmp_path / "a\nExecStartPre=/bin/touch canary"
    checkout2 = _root_checkout(nl / "hermes-agent")
    before = digest(tmp_path / "units")
    procs = [
        run(
            "hook",
            "install",
            "--root",
            str(checkout2),
            "--systemd-unit",
            "other",
            "--unit-dir",
            str(tmp_path / "units"),
        )
    ]
    judge("a newline in a path stored in a drop-in", procs, digest(tmp_path / "units") == before, "newline")


# -- 5. patch_dirs and the configuration file ---------------------------------------------------------


CONFIG_CASES = [
    "config file owned by the other user",
    "config file writable by everyone",
    "patch_dirs folder owned by the other user",
    "patch module owned by the other user",
]


@pytest.mark.parametrize("case", CONFIG_CASES)
def test_configuration_and_patch_dirs_another_user_can_write_are_refused(case, tmp_path, intruder):
    root = copy_fixture("r0_15", tmp_path / "sp")
    canary = intruder.home / f"patch-module-ran-{case.split()[0]}-{case.split()[-4]}"
    run = Runner(tmp_path, process=True)  # root's own process against the other user's files
    folder = intruder.folder("patches") if "folder owned" in case else tmp_path / "patches"
    folder.mkdir(exist_ok=True)
    module = folder / "evil.py"
    module.write_text(f"import os\nopen({str(canary)!r}, 'a').write(str(os.getuid()))\n")
    if "folder owned" in case:
        intruder.own(folder)
    elif "module owned" in case:
        intruder.own(module)
    config = f"patch_dirs = [{str(folder)!r}]\n" if "patch" in case else PROXY
    if case == "config file owned by the other user":
        run.config = intruder.folder("cfg") / "config.toml"
        run.config.write_text(config)
        intruder.own(run.config)
    else:
        run.configure(config)
        if "everyone" in case:
            run.config.chmod(0o666)
    before = digest(root)
    procs = [
        run("status", "--root", str(root)),
        run("apply", "--root", str(root)),
        run("list", "--config", str(run.config)),
    ]
    judge(case, procs, digest(root) == before, "sudo -u" if "owned" in case else "writable", canary=canary)


SIBLING_CASES = [
    "a module folder owned by the other user",
    "a module writable by everyone",
    "a module that is a link out of the package",
]


@pytest.mark.parametrize("case", SIBLING_CASES)
def test_modules_beside_web_server_that_another_user_can_change_are_refused(case, tmp_path, intruder):
    """helper-22: root read a sibling module through another user's link (to /etc/shadow), and trusted their modules."""
    root = copy_fixture("r0_20_split", tmp_path / "sp")  # the patches read dashboard_auth/public_paths.py here
    auth = root / "hermes_cli" / "dashboard_auth"
    secret = victim(tmp_path, "secret.py")
    if "folder owned" in case:
        intruder.own(auth)
    elif "everyone" in case:
        (auth / "public_paths.py").chmod(0o666)
    else:
        (auth / "public_paths.py").unlink()
        (auth / "public_paths.py").symlink_to(secret)
    run = Runner(tmp_path, process=True)
    run.configure(PROXY)
    before = digest(root, secret)
    procs = [run("status", "--root", str(root)), run("apply", "--root", str(root))]
    words = {"folder owned": "sudo -u", "everyone": "writable", "link": "outside the Hermes package"}
    judge(case, procs, digest(root, secret) == before, next(w for k, w in words.items() if k in case))


# -- 7. the smaller items ----------------------------------------------------------------------------


def test_a_deep_but_valid_expression_is_one_paragraph_not_a_traceback(tmp_path):
    root = copy_fixture("r0_15", tmp_path / "sp")
    web = root / "hermes_cli/web_server.py"
    with open(web, "a", encoding="utf-8") as fh:
        fh.write("\n_DEEP = " + "+".join(["1"] * 100000) + "\n")
    run = Runner(tmp_path)
    before = digest(root)
    procs = [run(cmd, "--root", str(root)) for cmd in ("status", "apply")]
    judge("a deep but valid expression in web_server.py", procs, digest(root) == before, str(web))


def test_an_action_name_with_a_trailing_newline_is_refused(tmp_path):
    root = copy_fixture("r0_15", tmp_path / "sp")
    run = Runner(tmp_path)
    run.configure('[patches.public-action-status]\nactions = ["hermes-update\\n"]\n')
    before = digest(root)
    judge(
        "an action name with a trailing newline",
        [run("apply", "--root", str(root))],
        digest(root) == before,
        "action name",
    )


@pytest.mark.parametrize("suffix", [".co.uk", ".github.io", ".com.au"])
def test_a_public_suffix_in_hosts_is_refused(suffix, tmp_path):
    root = copy_fixture("r0_15", tmp_path / "sp")
    run = Runner(tmp_path)
    run.configure(f'[patches.trusted-hosts]\nhosts = ["{suffix}"]\n')
    before = digest(root)
    judge(
        f"hosts lists the public suffix {suffix}",
        [run("apply", "--root", str(root))],
        digest(root) == before,
        "public suffix",
    )


def test_doctor_is_a_sensitive_action(tmp_path):
    root = copy_fixture("r0_16", tmp_path / "sp")
    run = Runner(tmp_path)
    run.configure('[patches.public-action-status]\nactions = ["hermes-update", "doctor"]\n')
    _, doc = run.status("--root", str(root))
    notes = next(p for p in doc["patches"] if p["id"] == "public-action-status")["notes"]
    assert any("'doctor'" in n and "sensitive" in n for n in notes), notes


def test_verify_accepts_a_relative_python(tmp_path):
    root = copy_fixture("r0_15", tmp_path / "sp")
    venv = tmp_path / "venv"
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python3*/site-packages"))
    (site / "hermes.pth").write_text(f"{root}\n")
    run = Runner(tmp_path)
    run.configure(PROXY)
    run("apply", "--root", str(root), check=0)
    cmd = [hermes_patch_exe(), "verify", "--python", "venv/bin/python", *run.common]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=run.env)
    assert "could not run" not in proc.stdout + proc.stderr and "does not exist" not in proc.stderr, (
        proc.stdout + proc.stderr
    )
    assert "fastapi" in proc.stdout or "effective" in proc.stdout, proc.stdout + proc.stderr


def test_status_warns_that_the_proxy_is_the_only_gate(tmp_path):
    root = copy_fixture("r0_15", tmp_path / "sp")
    run = Runner(tmp_path)
    run.configure('[patches.trusted-hosts]\nhosts = ["proxy.example"]\n')
    _, doc = run.status("--root", str(root))
    # Advice, not a warning: it holds whatever the operator does, so it must not fail `status --strict` (issue 16).
    assert any("session token" in n and "auth" in n for n in doc["advice"]), doc["advice"]
    assert not any("session token" in n for n in doc["notes"]), doc["notes"]
    run.configure("")
    _, doc = run.status("--root", str(root))
    assert not any("session token" in n for n in doc["notes"] + doc["advice"]), doc["advice"]


def test_filelock_is_pinned_past_the_symlink_cves():
    text = (REPO / "pyproject.toml").read_text()
    assert '"filelock>=3.20.3"' in text
    from importlib.metadata import version

    from packaging.version import Version

    assert Version(version("filelock")) >= Version("3.20.3")


# -- found by a breaker run after the first fixes ----------------------------------------------------


def test_a_bytecode_cache_of_another_user_in_patch_dirs_is_refused(tmp_path, intruder):
    """A root-owned patch folder whose __pycache__ is the other user's: Python would run their .pyc."""
    import importlib.util
    import marshal
    import struct

    root = copy_fixture("r0_15", tmp_path / "sp")
    canary = intruder.home / "pyc-ran"
    folder = tmp_path / "patches"
    folder.mkdir()
    module = folder / "ok.py"
    module.write_text("X = 1\n")
    st = module.stat()
    code = compile(f"open({str(canary)!r}, 'a').write('ran')\n", str(module), "exec")
    cache = folder / "__pycache__"
    cache.mkdir()
    pyc = cache / f"ok.{sys.implementation.cache_tag}.pyc"
    pyc.write_bytes(
        importlib.util.MAGIC_NUMBER + struct.pack("<III", 0, int(st.st_mtime), st.st_size) + marshal.dumps(code)
    )
    intruder.own(cache)
    run = Runner(tmp_path, process=True)  # root's own process against the other user's files
    run.configure(f"patch_dirs = [{str(folder)!r}]\n")
    before = digest(root)
    procs = [run("status", "--root", str(root)), run("apply", "--root", str(root))]
    judge(
        "a patch folder whose bytecode cache is another user's",
        procs,
        digest(root) == before,
        "__pycache__",
        canary=canary,
    )


def test_a_session_token_folder_of_another_user_or_behind_a_link_is_refused(tmp_path, intruder):
    root = copy_fixture("r0_15", tmp_path / "sp")
    units = tmp_path / "units"
    units.mkdir()
    (units / "hermes-dashboard.service").write_text("[Service]\nExecStart=/bin/true\n")
    theirs = intruder.folder("hermes-home")
    link = intruder.folder("links") / "home"
    link.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere").mkdir()
    run = Runner(tmp_path, process=True)  # root's own process against the other user's files
    procs = []
    for home in (theirs, link):
        procs.append(
            run(
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
            )
        )
    unchanged = (
        not list(theirs.iterdir())
        and not list((tmp_path / "elsewhere").iterdir())
        and [p.name for p in units.iterdir()] == ["hermes-dashboard.service"]
    )
    judge("a session token folder of another user, or behind their link", procs, unchanged)


@pytest.mark.parametrize("how", ["commondir", "include.path"])
def test_git_configuration_reached_indirectly_is_checked_too(how, tmp_path, intruder):
    """.git/commondir and [include] path lead git to files the other user owns (core.fsmonitor runs as root)."""
    checkout = _root_checkout(tmp_path / "hermes-agent")
    canary = intruder.home / f"fsmonitor-ran-{how}"
    theirs = intruder.folder("gitconf")
    if how == "commondir":
        shutil.copytree(checkout / ".git", theirs / "gd")
        (checkout / ".git/commondir").write_text(str(theirs / "gd") + "\n")
        intruder.own(theirs / "gd")
        intruder.run("git", "config", "--file", str(theirs / "gd/config"), "core.fsmonitor", f"touch {canary}; false")
    else:
        inc = theirs / "inc.cfg"
        inc.write_text(f"[core]\n\tfsmonitor = touch {canary}; false\n")
        intruder.own(inc)
        subprocess.run(["git", "-C", str(checkout), "config", "include.path", str(inc)], check=True)
    run = Runner(tmp_path, process=True)  # root's own process against the other user's files
    before = digest(checkout / "hermes_cli")
    procs = [run("apply", "--root", str(checkout)), run("hook", "install", "--root", str(checkout))]
    judge(f"git configuration reached through {how}", procs, digest(checkout / "hermes_cli") == before, canary=canary)


def test_a_configuration_nested_too_deeply_is_one_paragraph(tmp_path):
    root = copy_fixture("r0_15", tmp_path / "sp")
    run = Runner(tmp_path)
    run.configure("x = " + "[" * 5000 + "]" * 5000 + "\n")
    procs = [
        run("status", "--json", "--root", str(root)),
        run("apply", "--check", "--root", str(root)),
        run("revert", "--json", "--root", str(root)),
    ]
    judge("a configuration nested 5000 levels deep", procs, True, "too deeply")
