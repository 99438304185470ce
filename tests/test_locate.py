"""Finding the install: --file, --root, --python, the launcher, the install dir; never importing Hermes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hermes_patch.locate import install_method, locate, read_version
from hermes_patch.core.errors import TargetError

from conftest import Runner, copy_fixture, states


def test_file_root_and_version(tmp_path):
    root = copy_fixture("r0_15", tmp_path / "sp")
    by_file = locate(file=root / "hermes_cli/web_server.py")
    by_root = locate(root=root)
    assert by_file.file == by_root.file == (root / "hermes_cli/web_server.py").resolve()
    assert by_file.version == "0.15.2"
    assert by_file.install_method == "file" and by_file.writable


def test_version_from_dist_metadata_when_init_has_none(tmp_path):
    root = copy_fixture("r0_14", tmp_path / "sp")
    (root / "hermes_cli/__init__.py").write_text("")
    dist = root / "hermes_agent-0.14.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hermes-agent\nVersion: 0.14.0\n\nbody\n")
    (dist / "INSTALLER").write_text("uv\n")
    assert read_version(root / "hermes_cli") == "0.14.0"
    assert install_method(root / "hermes_cli")[0] == "uv"


def test_git_checkout_found_from_install_dir_with_venv(tmp_path, monkeypatch):
    checkout = copy_fixture("r0_16", tmp_path / "hermes-agent")
    subprocess.run(["git", "init", "-q", str(checkout)], check=True)
    (checkout / "venv/bin").mkdir(parents=True)
    os.symlink(sys.executable, checkout / "venv/bin/python")
    monkeypatch.setenv("HERMES_INSTALL_DIR", str(checkout))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    target = locate()
    assert target.install_method == "git" and target.root == checkout
    assert target.interpreter == checkout / "venv/bin/python"
    assert "install dir" in target.found_by


def test_launcher_on_path_and_its_interpreter(tmp_path, monkeypatch):
    """A venv with the fixture as its hermes_cli; `hermes` on PATH points at its python."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python3*/site-packages"))
    copy_fixture("r0_14", tmp_path / "fx")
    (tmp_path / "fx/hermes_cli").rename(site / "hermes_cli")
    # Importing hermes_cli would fail (fastapi is not in this venv): proves we never import it.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    launcher = bin_dir / "hermes"
    launcher.write_text(f"#!{venv}/bin/python\nimport hermes_cli.main\n")
    launcher.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.delenv("HERMES_INSTALL_DIR", raising=False)
    target = locate()
    assert target.file == (site / "hermes_cli/web_server.py").resolve()
    assert target.interpreter == venv / "bin/python" and "launcher" in target.found_by
    assert locate(python=venv / "bin/python").file == target.file


def test_nothing_found_says_what_was_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("HERMES_INSTALL_DIR", str(tmp_path / "nope"))
    with pytest.raises(TargetError) as err:
        locate()
    text = str(err.value)
    assert "no Hermes install found" in text and "--python" in text and str(tmp_path / "nope") in text


def test_python_without_hermes(tmp_path):
    with pytest.raises(TargetError, match="no hermes_cli package"):
        locate(python=Path(sys.executable))


def test_two_target_options_are_refused(tmp_path):
    with pytest.raises(TargetError, match="pass only one"):
        locate(file=tmp_path / "a", root=tmp_path)


def test_symlink_is_followed_and_kept(tmp_path, run: Runner):
    root = copy_fixture("r0_14", tmp_path / "sp")
    link = tmp_path / "link.py"
    link.symlink_to(root / "hermes_cli/web_server.py")
    run("apply", "--file", str(link), check=0)
    assert link.is_symlink()
    code, doc = run.status("--file", str(link))
    assert code == 0 and states(doc)["public-action-status"] == states(doc)["relax-ws-peer-check"] == "applied"
    assert set(states(doc).values()) == {"applied", "not-needed"}  # the patches that need configuration
    human = run("status", "--file", str(link))
    assert "via symlink" in human.stdout


def test_symlink_loop_is_a_clear_error(tmp_path, run: Runner):
    loop = tmp_path / "selfloop"
    loop.symlink_to("selfloop")
    proc = run("status", "--file", str(loop), check=2)
    assert proc.stderr.startswith("error: ") and "symlink" in proc.stderr and "Traceback" not in proc.stderr


def test_the_hint_names_the_command_being_run(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("HERMES_INSTALL_DIR", str(tmp_path / "nope"))
    monkeypatch.setattr(sys, "argv", ["hermes-patch", "--config", "x.toml", "apply", "trusted-hosts"])
    with pytest.raises(TargetError) as err:
        locate()
    assert "`hermes-patch apply --python /path/to/venv/bin/python`" in str(err.value)
    assert "`hermes-patch setup --python /path/to/venv/bin/python --url URL`" in str(err.value)
