"""The integrations take a small typed context, not the App: any object with the protocol's members works.

In-process and on plain objects: a :class:`FakeContext` holding a located
target, a state dir and a configuration stands in for the App wherever an
integration takes a :class:`hermes_patch.context.Context`.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import copy_fixture

from hermes_patch.integrations import auto_apply, git_filter, restart, session_token
from hermes_patch.config import Config
from hermes_patch.context import Context
from hermes_patch.integrations.git_clean import clean
from hermes_patch.ledger import StateDir, target_key
from hermes_patch.locate import Target, install_method
from hermes_patch.integrations.stored_command import apply_command, stored_command


@dataclass(frozen=True)
class FakeContext:
    """Exactly the members of :class:`~hermes_patch.context.Context`, nothing of the App."""

    target: Target
    state: StateDir
    key: str
    config: Config

    def record(self, ledger: dict[str, Any] | None = None) -> dict[str, Any]:
        ledger = ledger if ledger is not None else self.state.load()
        record: dict[str, Any] = ledger["targets"].get(self.key, {})
        return record


def context(tmp_path: Path, root: Path, config_exists: bool = False) -> Context:
    package = root / "hermes_cli"
    method, where = install_method(package)
    target = Target(package / "web_server.py", package, "0.15.0", method, where, None, "a test")
    state = StateDir(tmp_path / "state", tree_root=target.tree_root)
    config = Config(path=tmp_path / "config.toml", exists=config_exists)
    return FakeContext(target, state, target_key(package), config)


def test_apply_command_names_the_target_the_state_dir_and_an_existing_configuration(tmp_path):
    root = copy_fixture("r0_15", tmp_path / "sp")
    ctx = context(tmp_path, root)
    args = apply_command(ctx)[len(stored_command("a test")) :]
    assert args == ["apply", "--file", str(root / "hermes_cli/web_server.py"), "--state-dir", str(tmp_path / "state")]

    with_config = apply_command(context(tmp_path, root, config_exists=True))
    assert with_config[-2:] == ["--config", str(tmp_path / "config.toml")]


def test_a_bare_file_has_nothing_installed_and_no_stale_dashboard(tmp_path):
    root = copy_fixture("r0_15", tmp_path / "sp")
    ctx = context(tmp_path, root)
    assert [item.kind for item in auto_apply.show(ctx)] == ["command path"]
    assert session_token.forget(ctx, keep=False) == []
    assert restart.recorded_units(ctx) == []
    assert restart.stale_note(ctx) == []  # no dashboard of this install runs here
    assert git_filter.status_notes(ctx, applied=True) == []  # not a git install


def test_status_notes_say_when_git_sees_our_edits_and_sync_hides_them(tmp_path):
    root = copy_fixture("r0_15", tmp_path / "checkout")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)
    subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=x", "-c", "user.email=x@x.invalid", "commit", "-q", "-m", "x"],
        check=True,
    )
    ctx = context(tmp_path, root)
    assert ctx.target.install_method == "git"
    file = ctx.target.file
    original = file.read_bytes()
    file.write_bytes(original + b"# hermes-patch: test-patch\nX = 1\n")
    assert clean(file.read_bytes()) == original

    [note] = git_filter.status_notes(ctx, applied=True)
    assert note.startswith("git sees our edits of hermes_cli/web_server.py as local changes")

    git_filter.sync(ctx)  # our block is in the file: the filter is registered and recorded
    assert git_filter.status_notes(ctx, applied=True) == []
    assert git_filter.filter_state(root).paths() == ["hermes_cli/web_server.py"]
    assert ctx.record()["integrations"]["git-filter"]["paths"] == ["hermes_cli/web_server.py"]
    status = subprocess.run(["git", "-C", str(root), "status", "--porcelain"], capture_output=True, text=True)
    assert status.stdout == ""

    file.write_bytes(original)
    git_filter.sync(ctx)  # no block left and no hook: exactly what was added is removed
    assert git_filter.filter_state(root).value is None
    assert "git-filter" not in ctx.record().get("integrations", {})
