"""`hermes-patch update`: revert, run `hermes update`, re-apply, status; and every way it can fail.

`hermes update` here is a fake ``hermes`` launcher (tests/hermes_update.py)
found on PATH the way users have it: its shebang names the interpreter of an
environment where ``hermes_cli`` is importable.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FORWARDED_NEW, UNCONFIGURED, FIXTURES, Runner, copy_fixture, states, tree_digest
from hermes_update import git, write_launcher

PAS, WS = "public-action-status", "relax-ws-peer-check"
WEB = "hermes_cli/web_server.py"


def venv_for(tmp: Path, root: Path) -> Path:
    """A venv (no pip) whose interpreter finds ``root/hermes_cli``, as an editable install does."""
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python*/site-packages"))
    (site / "hermes-agent.pth").write_text(f"{root}\n")
    return venv / "bin" / "python"


class Fake:
    """A fake `hermes` on PATH plus the log of its runs."""

    def __init__(self, tmp: Path, root: Path, **settings) -> None:
        self.log = tmp / "hermes-runs.jsonl"
        self.bin = tmp / "bin"
        self.launcher = write_launcher(
            self.bin / "hermes", venv_for(tmp, root), {"argv_log": str(self.log), **settings}
        )
        self.env = {"PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}"}

    def runs(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
@pytest.mark.slow
def test_update_on_a_git_install(tmp_path: Path, run: Runner):
    from test_git_install import Repo

    (tmp_path / "r").mkdir()
    repo = Repo(tmp_path / "r")
    fake = Fake(tmp_path, repo.checkout, mode="git", checkout=repo.root, watch=str(repo.checkout / WEB))
    applied = run("apply", env=fake.env, check=0)
    assert f"→ {repo.checkout / WEB}" in applied.stdout  # found through the launcher
    repo.upstream_release()

    proc = run("update", "--", "--yes", env=fake.env, check=0)

    out = proc.stdout.splitlines()
    commit = git(repo.checkout, "rev-parse", "origin/main").stdout.strip()
    # step 0: the incoming code is checked before Hermes is touched
    assert out[0] == "→ checking the incoming code (origin/main) before updating"
    assert out[1].startswith(f"  check --ref origin/main (commit {commit[:12]}), release 0.19.0: ")
    assert f"{PAS} pending" in out[1] and f"{WS} not-needed" in out[1]
    assert out[2] == "  the patches will come back after the update"
    out = out[3:]
    assert out[:5] == [
        f"→ reverting hermes-patch's edits of {repo.checkout / WEB} (release 0.14.0)",
        f"  reverted ignore-forwarded-for, {PAS}, {WS}",
        f"→ running: {fake.launcher} update --yes",
        "→ re-applying onto release 0.19.0 (was 0.14.0)",
        f"  applied {PAS}",
    ]
    assert (
        out[-1] == f"ok: 1 applied, {len(UNCONFIGURED) + 2} not-needed"
    )  # + relax-ws-peer-check, ignore-forwarded-for
    [seen] = fake.runs()
    assert seen["argv"] == ["update", "--yes"]
    assert seen["watched"] == (FIXTURES / "r0_14" / WEB).read_text()  # hermes update saw upstream's bytes only
    code, doc = run.status("--root", repo.root)
    assert code == 0 and states(doc) == {**UNCONFIGURED, **FORWARDED_NEW, PAS: "applied", WS: "not-needed"}
    assert repo.porcelain() == set() and repo.stashes() == []


@pytest.fixture
def patched_copy(tmp_path: Path, run: Runner) -> Path:
    root = copy_fixture("r0_15", tmp_path / "hermes")
    run("apply", "--root", str(root), check=0)
    return root


@pytest.mark.slow
def test_a_failed_hermes_update_still_ends_patched(tmp_path: Path, run: Runner, patched_copy: Path):
    patched = (patched_copy / WEB).read_bytes()
    fake = Fake(tmp_path, patched_copy, mode="none", exit=1)
    proc = run("update", env=fake.env, check=2)
    assert (
        "error: `hermes update` failed (exit 1). Re-applying the patches onto the release that is installed now."
        in proc.stderr
    )
    assert f"  applied {PAS}, {WS}" in proc.stdout
    assert (patched_copy / WEB).read_bytes() == patched
    assert len(fake.runs()) == 1


def test_a_refused_reapply_says_so_and_leaves_the_new_file_whole(tmp_path: Path, run: Runner, patched_copy: Path):
    unknown = tmp_path / "unknown.py"
    unknown.write_text((FIXTURES / "r0_15" / WEB).read_text().replace("_PUBLIC_API_PATHS", "_OPEN_PATHS"))
    fake = Fake(tmp_path, patched_copy, mode="write", file=str(patched_copy / WEB), source=str(unknown))
    proc = run("update", env=fake.env, check=2)
    assert "error: the patches were NOT re-applied onto release 0.15.2" in proc.stderr
    assert "does not recognize" in proc.stderr
    assert (patched_copy / WEB).read_bytes() == unknown.read_bytes()  # no half-patched file
    assert "attention" in proc.stdout.splitlines()[-1]


def test_update_stops_before_hermes_update_when_revert_is_refused(tmp_path: Path, run: Runner, patched_copy: Path):
    web = patched_copy / WEB
    web.write_text(
        web.read_text().replace("    client_host = ws.client.host", "    client_host = ws.client.host  # mine", 1)
    )
    before = tree_digest(patched_copy)
    fake = Fake(tmp_path, patched_copy, mode="none")
    proc = run("update", env=fake.env, check=2)
    assert proc.stderr.startswith("error: hermes-patch update stopped before running `hermes update`: ")
    assert fake.runs() == []
    assert tree_digest(patched_copy) == before


def test_update_needs_a_launcher_or_an_interpreter(tmp_path: Path, run: Runner, patched_copy: Path):
    before = tree_digest(patched_copy)
    proc = run("update", "--root", str(patched_copy), check=2)
    assert "does not know how to run `hermes update`" in proc.stderr and "--python" in proc.stderr
    assert tree_digest(patched_copy) == before
