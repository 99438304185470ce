"""The Ansible collection on a real engine: ansible-core drives three Hermes hosts over real SSH.

Each host is a Unix user created here, reached through Debian's sshd started
by this test on a loopback port (its own host key, configuration and
authorized key; host key checking on). Hosts:

- ``h014``: a pip venv with hermes-agent 0.14.0,
- ``h019``: a pip venv with hermes-agent 0.19.0,
- ``hgit``: a git checkout made from the 0.19.0 release's files.

The playbook is the one in docs/many-hosts.md, verbatim. It installs
hermes-patch from the wheel built from this checkout (offline, from a local
wheelhouse), writes the configuration and applies. The hosts run the tool
as themselves. Needs root (useradd, sshd) and Debian's openssh-server, which
``scripts/test`` installs.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import CACHE, REPO, wheel
from live.processes import free_port

pytestmark = [pytest.mark.slow, pytest.mark.real]

SSHD = Path("/usr/sbin/sshd")
HOST_PYTHON = Path("/usr/bin/python3")  # every host's interpreter; /root (pyenv) is closed to other users
WEB = "hermes_cli/web_server.py"
TASK = "Patch the dashboard"
BIN = Path(sys.executable).parent


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root: it creates Unix users and runs sshd"
    if not SSHD.exists():
        return "Debian's openssh-server is not installed (scripts/test installs it)"
    if (
        not HOST_PYTHON.exists()
        or subprocess.run(
            [HOST_PYTHON, "-c", "import sys, ensurepip, setuptools; sys.exit(sys.version_info < (3, 11))"]
        ).returncode
    ):
        return "/usr/bin/python3 (3.11+, with venv and setuptools) is needed on the hosts (scripts/test installs python3-venv, python3-setuptools)"
    if not (BIN / "ansible-playbook").exists():
        return "ansible-core is not installed in the test environment (pip install '.[test]')"
    return None


pytestmark.append(pytest.mark.skipif(_why_not() is not None, reason=_why_not() or ""))


@dataclass
class Host:
    alias: str
    user: str
    home: Path
    target: dict[str, str]  # hermes_python= or hermes_root=

    @property
    def web(self) -> Path:
        if "hermes_root" in self.target:
            return self.home / "hermes-agent" / WEB
        return next((self.home / "hermes-venv" / "lib").glob(f"python3*/site-packages/{WEB}"))

    @property
    def state(self) -> Path:
        return self.home / ".local/state/hermes-patch"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _pristine(version: str) -> bytes:
    with zipfile.ZipFile(wheel(version)) as whl:
        return whl.read(WEB)


def _digest(path: Path) -> dict[str, str]:
    return (
        {str(p.relative_to(path)): _sha(p.read_bytes()) for p in sorted(path.rglob("*")) if p.is_file()}
        if path.exists()
        else {}
    )


def _run(*cmd, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600, **kw)
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def _as(host: Host, *cmd) -> subprocess.CompletedProcess:
    env = {"HOME": str(host.home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    return _run(*cmd, user=host.user, group=host.user, extra_groups=[], env=env, cwd=host.home)


def _wheelhouse(dest: Path) -> None:
    """hermes-patch's wheel built from this checkout, its dependencies, the two hermes-agent releases."""
    deps = CACHE / "ansible-wheelhouse"
    key = _sha((REPO / "pyproject.toml").read_bytes())
    if not (deps / key).exists():  # the dependencies' wheels, once per pyproject.toml
        shutil.rmtree(deps, ignore_errors=True)
        _run(sys.executable, "-m", "pip", "wheel", "--quiet", "-w", deps, REPO)
        for built in deps.glob("hermes_patch-*.whl"):
            built.unlink()
        (deps / key).write_text("")
    dest.mkdir()
    for whl in deps.glob("*.whl"):
        shutil.copy(whl, dest)
    fast = ["--no-build-isolation"] if _has("hatchling") else []  # the test extra has hatchling: no build env to make
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", *fast, "-w", dest, REPO)
    for version in ("0.14.0", "0.19.0"):
        shutil.copy(wheel(version), dest)
    for p in dest.iterdir():
        p.chmod(0o644)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


class Fleet:
    """Users, their Hermes installs, sshd, the collection and the Ansible configuration."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="hp-ansible-"))
        self.base.chmod(0o755)
        self.tag = f"{os.getpid() % 100000:05d}"
        self.hosts: list[Host] = []
        self.sshd: subprocess.Popen | None = None
        self.env: dict[str, str] = {}

    # -- hosts -----------------------------------------------------------------

    def add_user(self, alias: str) -> Host:
        user = f"hp{alias}{self.tag}"
        home = self.base / "home" / user
        home.parent.mkdir(exist_ok=True, mode=0o755)
        _run(
            "useradd",
            "--create-home",
            "--home-dir",
            home,
            "--password",
            "*",
            "--shell",
            "/bin/sh",
            "--user-group",
            user,
        )
        host = Host(alias, user, home, {})
        self.hosts.append(host)
        return host

    def pip_host(self, alias: str, version: str) -> Host:
        host = self.add_user(alias)
        venv = host.home / "hermes-venv"
        _as(host, HOST_PYTHON, "-m", "venv", "--without-pip", venv)
        # offline, without dependencies (hermes-patch never imports Hermes); then the files are the user's
        _run(
            sys.executable,
            "-m",
            "pip",
            "--python",
            venv / "bin/python",
            "install",
            "--quiet",
            "--no-deps",
            "--no-compile",
            "--no-index",
            "--find-links",
            self.base / "wheels",
            f"hermes-agent=={version}",
        )
        _run("chown", "-R", f"{host.user}:{host.user}", venv)
        host.target = {"hermes_python": "~/hermes-venv/bin/python"}
        return host

    def git_host(self, alias: str, version: str) -> Host:
        host = self.add_user(alias)
        checkout = host.home / "hermes-agent"
        with zipfile.ZipFile(wheel(version)) as whl:
            for name in whl.namelist():
                if ".dist-info/" not in name:
                    whl.extract(name, checkout)
        _run("chown", "-R", f"{host.user}:{host.user}", checkout)
        git = ["git", "-C", checkout, "-c", "user.name=hermes", "-c", "user.email=hermes@example.invalid"]
        _as(host, *git[:3], "init", "--quiet", "--initial-branch", "main")
        _as(host, *git, "add", "--all")
        _as(host, *git, "commit", "--quiet", "-m", f"hermes-agent {version}")
        host.target = {"hermes_root": "~/hermes-agent"}
        return host

    # -- sshd --------------------------------------------------------------------

    def start_sshd(self) -> None:
        d = self.base / "sshd"
        d.mkdir(mode=0o755)
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", d / "host_key")
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.base / "client_key")
        pub = (self.base / "client_key.pub").read_text()
        for host in self.hosts:
            ssh = host.home / ".ssh"
            ssh.mkdir(mode=0o700)
            (ssh / "authorized_keys").write_text(pub)
            (ssh / "authorized_keys").chmod(0o600)
            _run("chown", "-R", f"{host.user}:{host.user}", ssh)
        self.port = free_port()
        (d / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\nPidFile {d / 'sshd.pid'}\n"
            "AuthenticationMethods publickey\nPubkeyAuthentication yes\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin no\nStrictModes yes\n"
            f"AllowUsers {' '.join(h.user for h in self.hosts)}\nLogLevel VERBOSE\nSubsystem sftp internal-sftp\n"
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        _run(SSHD, "-t", "-f", d / "sshd_config")
        self.sshd_log = open(d / "sshd.log", "w")
        self.sshd = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(d / "sshd_config")], stdout=self.sshd_log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                assert self.sshd.poll() is None and time.monotonic() < deadline, (d / "sshd.log").read_text()
                time.sleep(0.05)
        host_key = (d / "host_key.pub").read_text().split()
        (self.base / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {host_key[0]} {host_key[1]}\n")

    # -- ansible -----------------------------------------------------------------

    def configure_ansible(self) -> None:
        b = self.base
        out = b / "dist"
        _run(
            BIN / "ansible-galaxy",
            "collection",
            "build",
            REPO / "ansible_collections/hermes_patch/hermes",
            "--output-path",
            out,
            env=self._env(),
        )
        [tarball] = out.glob("hermes_patch-hermes-*.tar.gz")
        _run(
            BIN / "ansible-galaxy",
            "collection",
            "install",
            "--offline",
            "-p",
            b / "collections",
            tarball,
            env=self._env(),
        )
        doc = _run(
            BIN / "ansible-doc",
            "--json",
            "hermes_patch.hermes.patch",
            env={**self._env(), "ANSIBLE_COLLECTIONS_PATH": str(b / "collections")},
        )
        options = json.loads(doc.stdout)["hermes_patch.hermes.patch"]["doc"]["options"]
        assert {
            "state",
            "python",
            "root",
            "file",
            "config",
            "config_file",
            "state_dir",
            "patches",
            "force",
            "executable",
        } == set(options)
        hosts = {h.alias: {"ansible_user": h.user, **h.target} for h in self.hosts}
        inventory = {
            "hermes": {
                "hosts": hosts,
                "vars": {
                    "ansible_host": "127.0.0.1",
                    "ansible_port": self.port,
                    "ansible_python_interpreter": str(HOST_PYTHON),
                    "ansible_ssh_private_key_file": str(b / "client_key"),
                    # offline, from the wheelhouse; no .pyc compiled at install (they are written on first use)
                    "hermes_patch_pip_env": {
                        "PIP_NO_INDEX": "1",
                        "PIP_FIND_LINKS": str(b / "wheels"),
                        "PIP_NO_COMPILE": "1",
                        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                    },
                },
            }
        }
        (b / "inventory.yml").write_text(json.dumps(inventory, indent=1))  # JSON is YAML
        (b / "cp").mkdir()
        (b / "ansible.cfg").write_text(
            "[defaults]\n"
            f"inventory = {b / 'inventory.yml'}\ncollections_path = {b / 'collections'}\nforks = 4\n"
            "host_key_checking = True\nretry_files_enabled = False\n"
            "[ssh_connection]\npipelining = True\n"
            f"ssh_args = -F /dev/null -o ControlMaster=auto -o ControlPersist=120s -o IdentitiesOnly=yes "
            f"-o UserKnownHostsFile={b / 'known_hosts'} -o StrictHostKeyChecking=yes\n"
            f"control_path_dir = {b / 'cp'}\n"
        )
        playbook = re.search(
            r"<!-- playbook: site.yml -->\n```yaml\n(.*?)```", (REPO / "docs/many-hosts.md").read_text(), re.S
        )
        assert playbook, "docs/many-hosts.md lost its playbook"
        (b / "site.yml").write_text(playbook.group(1))

    def _env(self) -> dict[str, str]:
        return {
            "PATH": f"{BIN}:/usr/bin:/bin",
            "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8",
            "ANSIBLE_CONFIG": str(self.base / "ansible.cfg"),
            "ANSIBLE_HOME": str(self.base / "ansible-home"),
            "ANSIBLE_LOCAL_TEMP": str(self.base / "ansible-local"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_DEPRECATION_WARNINGS": "0",
            "ANSIBLE_CALLBACK_PLUGINS": str(Path(__file__).parent / "ansible_plugins/callback"),
            "ANSIBLE_CALLBACKS_ENABLED": "record",
        }

    def play(self, *args: str) -> "Play":
        """Run the playbook; the default callback's output for people, and every result recorded as JSON."""
        record = self.base / "record.json"
        record.unlink(missing_ok=True)
        started = time.monotonic()
        proc = subprocess.run(
            [str(BIN / "ansible-playbook"), str(self.base / "site.yml"), *args],
            capture_output=True,
            text=True,
            env={**self._env(), "HERMES_PATCH_ANSIBLE_RECORD": str(record)},
            timeout=900,
            cwd=self.base,
        )
        seconds = time.monotonic() - started
        print(f"ansible-playbook {' '.join(args)}: {seconds:.1f} s", flush=True)
        assert record.exists(), (
            f"ansible-playbook recorded nothing (exit {proc.returncode})\n{proc.stdout}\n{proc.stderr}"
        )
        return Play(proc, json.loads(record.read_text()), seconds)

    # -- teardown ----------------------------------------------------------------

    def close(self) -> None:
        for sock in (self.base / "cp").glob("*") if (self.base / "cp").exists() else []:
            subprocess.run(
                ["ssh", "-F", "/dev/null", "-o", f"ControlPath={sock}", "-O", "exit", "127.0.0.1"],
                capture_output=True,
                timeout=30,
            )
        if self.sshd is not None:
            self.sshd.terminate()
            self.sshd.wait(timeout=30)
            self.sshd_log.close()
        for host in self.hosts:
            for _ in range(50):  # a session's processes may take a moment to go
                if subprocess.run(["userdel", host.user], capture_output=True).returncode in (0, 6):
                    break
                time.sleep(0.2)
        shutil.rmtree(self.base, ignore_errors=True)


@dataclass
class Play:
    proc: subprocess.CompletedProcess
    record: dict
    seconds: float

    def changed(self) -> dict[str, int]:
        """Per host, the recap's changed= count."""
        return {h: s["changed"] for h, s in self.record["stats"].items()}

    def failed(self) -> dict[str, int]:
        return {h: s["failures"] for h, s in self.record["stats"].items()}

    def recap(self) -> dict[str, dict[str, int]]:
        """The PLAY RECAP lines as the operator reads them."""
        return {
            m[0]: {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m[1])}
            for m in re.findall(r"^(\S+)\s+: (ok=.*)$", self.proc.stdout, re.M)
        }

    def result(self, host: str) -> dict:
        """The patch task's result on ``host``, with ``status`` (ok / failed) as the callback saw it in ``_outcome``."""
        [r] = [
            {**r["result"], "_outcome": r["status"]}
            for r in self.record["results"]
            if r["task"] == TASK and r["host"] == host
        ]
        return r


@pytest.fixture(scope="module")
def fleet():
    why = _why_not()
    if why:
        pytest.skip(why)
    f = Fleet()
    try:
        _wheelhouse(f.base / "wheels")
        f.pip_host("h014", "0.14.0")
        f.pip_host("h019", "0.19.0")
        f.git_host("hgit", "0.19.0")
        f.start_sshd()
        f.configure_ansible()
        yield f
    finally:
        f.close()


def _states(result: dict) -> dict[str, str]:
    return {p["id"]: p["state"] for p in result["status"]["patches"]}


#: The catalog's states after apply with this playbook's configuration, by release (0.14 also
#: gets the backports 0.15/0.16 made upstream: ignore-forwarded-for, stable-session-token).
APPLIED = {
    "0.14.0": {
        "cors-origins": "not-needed",
        "durable-action-result": "applied",
        "ignore-forwarded-for": "applied",
        "public-action-status": "applied",
        "relax-ws-peer-check": "applied",
        "stable-session-token": "applied",
        "trusted-hosts": "not-needed",
    },
    "0.19.0": {
        "cors-origins": "not-needed",
        "durable-action-result": "applied",
        "ignore-forwarded-for": "not-needed",
        "public-action-status": "applied",
        "relax-ws-peer-check": "applied",
        "stable-session-token": "not-needed",
        "trusted-hosts": "not-needed",
    },
}
VERSION = {"h014": "0.14.0", "h019": "0.19.0", "hgit": "0.19.0"}


def _applied_msg(version: str) -> str:
    """The module's ``msg`` for a first apply on ``version``: the applied ids, sorted."""
    return "applied " + ", ".join(sorted(k for k, v in APPLIED[version].items() if v == "applied"))


def test_a_fleet_over_ssh(fleet: Fleet):
    hosts = {h.alias: h for h in fleet.hosts}
    aliases = sorted(hosts)
    pristine = {"h014": _pristine("0.14.0"), "h019": _pristine("0.19.0"), "hgit": _pristine("0.19.0")}
    assert {a: hosts[a].web.read_bytes() for a in aliases} == pristine
    timings = {}

    # 1. first run: installs hermes-patch, writes the configuration, patches every host
    first = fleet.play()
    timings["first"] = first.seconds
    assert first.proc.returncode == 0, first.proc.stdout[-3000:] + first.proc.stderr
    for a in aliases:
        r = first.result(a)
        assert r["changed"] is True and r["msg"] == _applied_msg(VERSION[a]), r
        assert _states(r) == APPLIED[VERSION[a]] and r["status"]["exit_code"] == 0
        [written] = r["files"]
        assert (
            written["written"]
            and written["sha256_before"] == _sha(pristine[a])
            and written["sha256_after"] == _sha(hosts[a].web.read_bytes())
        )
        assert written["path"] == str(hosts[a].web.resolve())
        assert hosts[a].web.stat().st_uid == pwd.getpwnam(hosts[a].user).pw_uid  # written by the host's own user
    assert first.result("hgit")["status"]["target"]["install_method"] == "git"
    assert {first.result(a)["status"]["target"]["version"] for a in aliases} == {"0.14.0", "0.19.0"}
    patched = {a: hosts[a].web.read_bytes() for a in aliases}

    # 2. second run: idempotent, changed=0 on every host
    second = fleet.play()
    timings["second"] = second.seconds
    assert (
        second.proc.returncode == 0
        and second.changed() == {a: 0 for a in aliases}
        and second.failed() == {a: 0 for a in aliases}
    )
    assert {h: (r["changed"], r["failed"]) for h, r in second.recap().items()} == {
        a: (0, 0) for a in aliases
    }  # what the operator reads
    assert all(second.result(a)["msg"] == "nothing to apply" for a in aliases)
    assert {a: hosts[a].web.read_bytes() for a in aliases} == patched

    # 3. state=reverted: every host back to the release's bytes
    reverted = fleet.play("-e", "hermes_patch_state=reverted")
    assert reverted.proc.returncode == 0 and all(reverted.result(a)["changed"] for a in aliases)
    assert {a: hosts[a].web.read_bytes() for a in aliases} == pristine
    git_status = _as(hosts["hgit"], "git", "-C", hosts["hgit"].home / "hermes-agent", "status", "--porcelain").stdout
    assert git_status == ""

    # 4. --check --diff: reports what would change, shows the diff, writes nothing anywhere
    states_before = {a: _digest(hosts[a].state) for a in aliases}
    check = fleet.play("--check", "--diff")
    timings["check"] = check.seconds
    out = check.proc.stdout
    assert check.proc.returncode == 0, out[-3000:]
    assert check.changed() == {a: 1 for a in aliases}, out[-2000:]
    assert {h: r["changed"] for h, r in check.recap().items()} == {a: 1 for a in aliases}
    for a in aliases:
        assert f"--- a{hosts[a].web.resolve()}\n+++ b{hosts[a].web.resolve()}\n" in out
    assert out.count("+# hermes-patch: public-action-status (update-progress poll works through a reverse proxy)") == 3
    assert out.count('+    trusted_proxies = ("127.0.0.5/32",)') == 3
    assert {a: hosts[a].web.read_bytes() for a in aliases} == pristine
    assert {a: _digest(hosts[a].state) for a in aliases} == states_before

    # 5. an unknown shape on one host: it fails alone, with the tool's message; the others are patched
    odd = pristine["h019"].replace(b"def _ws_client_is_allowed(", b"def _renamed_upstream(")
    hosts["h019"].web.write_bytes(odd)
    mixed = fleet.play()
    assert mixed.proc.returncode == 2
    assert mixed.failed() == {"h014": 0, "h019": 1, "hgit": 0}
    fail = mixed.result("h019")
    assert fail["_outcome"] == "failed" and fail["changed"] is False and fail["document"]["error"]["kind"] == "refused"
    assert fail["msg"].startswith(f"relax-ws-peer-check does not recognize the code in {hosts['h019'].web.resolve()}")
    assert "Nothing was written." in fail["msg"] and "\n" not in fail["msg"]
    assert hosts["h019"].web.read_bytes() == odd
    assert all(mixed.result(a)["changed"] for a in ("h014", "hgit"))
    assert {a: hosts[a].web.read_bytes() for a in ("h014", "hgit")} == {a: patched[a] for a in ("h014", "hgit")}

    # the file is put right (as an update would); the next run patches that host only
    hosts["h019"].web.write_bytes(pristine["h019"])
    healed = fleet.play()
    assert healed.proc.returncode == 0 and healed.changed() == {"h014": 0, "h019": 1, "hgit": 0}
    assert hosts["h019"].web.read_bytes() == patched["h019"]

    # 6. pip upgrade of one host, 0.14.0 -> 0.19.0, offline from the wheelhouse: patched there, changed=0 elsewhere
    h014 = hosts["h014"]
    _as(
        h014,
        h014.home / ".local/share/hermes-patch/venv/bin/pip",
        "--python",
        h014.home / "hermes-venv/bin/python",
        "install",
        "--quiet",
        "--upgrade",
        "--no-deps",
        "--no-compile",
        "--no-index",
        "--find-links",
        fleet.base / "wheels",
        "hermes-agent==0.19.0",
    )
    assert h014.web.read_bytes() == pristine["h019"]
    upgraded = fleet.play()
    timings["after-upgrade"] = upgraded.seconds
    assert upgraded.proc.returncode == 0 and upgraded.changed() == {"h014": 1, "h019": 0, "hgit": 0}
    r = upgraded.result("h014")
    assert r["status"]["target"]["version"] == "0.19.0" and _states(r) == APPLIED["0.19.0"]
    assert r["notes"] == [
        "web_server.py was replaced since hermes-patch last wrote it (release 0.14.0 → 0.19.0); the old backup will not be restored over it"
    ]
    assert h014.web.read_bytes() == patched["h019"]  # the same bytes as the host that was on 0.19.0 all along
    print(f"ansible-playbook seconds: {timings}")


def test_the_module_with_an_inline_configuration_on_localhost(fleet: Fleet, tmp_path: Path):
    """`config:` (a dict with the TOML keys) and a refused configuration, through ansible's local connection."""
    root = tmp_path / "sp"
    shutil.copytree(REPO / "fixtures/releases/r0_16", root)
    common = [
        "localhost",
        "-c",
        "local",
        "-i",
        "localhost,",
        "-e",
        f"ansible_python_interpreter={sys.executable}",
        "-m",
        "hermes_patch.hermes.patch",
    ]
    args = {
        "root": str(root),
        "executable": str(BIN / "hermes-patch"),
        "state_dir": str(tmp_path / "state"),
        "config": {
            "patches": {"trusted-hosts": {"hosts": ["hermes.example.com"]}, "relax-ws-peer-check": {"enabled": False}}
        },
    }
    env = fleet._env()
    proc = subprocess.run(
        [str(BIN / "ansible"), *common, "-a", json.dumps(args)], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0 and "localhost | CHANGED" in proc.stdout, proc.stdout + proc.stderr
    text = (root / WEB).read_text()
    assert "# hermes-patch: trusted-hosts" in text and "'hermes.example.com'" in text or '"hermes.example.com"' in text
    args["config"] = {"patches": {"relax-ws-peer-check": {"trusted_proxies": ["10.0.0.5/24"]}}}
    proc = subprocess.run(
        [str(BIN / "ansible"), *common, "-a", json.dumps(args)], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 2 and "localhost | FAILED" in proc.stdout and "10.0.0.5/24" in proc.stdout, proc.stdout
    assert (root / WEB).read_text() == text
