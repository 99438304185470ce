"""Git installs, with real git: our edits through the exact git sequence of `hermes update`.

The origin is a local bare repository with two commits holding our
miniatures of two releases (fixtures/releases/r0_14, then r0_16); the
checkout is patched by the installed hermes-patch; then
``hermes_update.git_update`` runs the git steps of `hermes update`.
"""

from __future__ import annotations

import json
import os
import py_compile
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import FORWARDED_NEW, UNCONFIGURED, FIXTURES, Runner, states
from hermes_update import git, git_update

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

PAS, WS = "public-action-status", "relax-ws-peer-check"
WEB = "hermes_cli/web_server.py"
MARKER = b"# hermes-patch: "


def _ident(path: Path) -> None:
    git(path, "config", "user.name", "hermes-patch tests")
    git(path, "config", "user.email", "tests@hermes-patch.invalid")


def _commit_release(seed: Path, fixture: str, readme: str) -> None:
    shutil.rmtree(seed / "hermes_cli", ignore_errors=True)
    # shutil.copy, not copytree's copy2: the fixtures' __init__.py files differ only in the version and share
    # one checkout time, so with copy2's mtime (and a reused inode) `git add` took the new one as unchanged.
    shutil.copytree(
        FIXTURES / fixture / "hermes_cli",
        seed / "hermes_cli",
        ignore=shutil.ignore_patterns("__pycache__"),
        copy_function=shutil.copy,
    )
    (seed / "README.md").write_text(readme)
    git(seed, "add", "-A")
    git(seed, "commit", "-q", "-m", f"miniature {fixture}")
    git(seed, "push", "-q", "origin", "HEAD:main")


class Repo:
    """origin (bare), seed (where upstream commits), checkout (the Hermes install)."""

    def __init__(self, tmp: Path) -> None:
        self.origin, self.seed, self.checkout = tmp / "origin.git", tmp / "seed", tmp / "hermes-agent"
        subprocess.run(["git", "init", "-q", "--bare", str(self.origin)], check=True)
        git(self.origin, "symbolic-ref", "HEAD", "refs/heads/main")
        subprocess.run(["git", "clone", "-q", str(self.origin), str(self.seed)], check=True, capture_output=True)
        _ident(self.seed)
        (self.seed / "notes.txt").write_text("operator notes\n")
        _commit_release(self.seed, "r0_14", "Hermes\nline two\n")
        subprocess.run(
            ["git", "clone", "-q", "-b", "main", str(self.origin), str(self.checkout)], check=True, capture_output=True
        )
        _ident(self.checkout)

    def upstream_release(self) -> None:
        """Upstream's next release: the r0_16 miniature (web_server.py changed) and a README edit."""
        _commit_release(self.seed, "r0_16", "Hermes\nline two, upstream\n")

    @property
    def root(self) -> str:
        return str(self.checkout)

    def porcelain(self) -> set[str]:
        return set(git(self.checkout, "status", "--porcelain", "--untracked-files=all").stdout.splitlines())

    def stashes(self) -> list[set[str]]:
        """The paths each stash entry holds (tracked changes and untracked files)."""
        out = []
        for sel in git(self.checkout, "stash", "list", "--format=%gd").stdout.split():
            names = git(self.checkout, "stash", "show", "--include-untracked", "--name-only", sel).stdout.split()
            out.append(set(names))
        return out

    def meta(self) -> dict[str, tuple[bytes, int]]:
        """Bytes and mode of every file under .git that hermes-patch may touch (config, info/, hooks/)."""
        g = self.checkout / ".git"
        files = [g / "config", *sorted((g / "info").glob("*")), *sorted((g / "hooks").glob("*"))]
        return {str(p.relative_to(g)): (p.read_bytes(), p.stat().st_mode) for p in files if p.is_file()}


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path)


def _no_conflict_markers(root: Path) -> None:
    for path in root.rglob("*"):
        if ".git" in path.parts or not path.is_file():
            continue
        data = path.read_bytes()
        assert b"<<<<<<< " not in data and b">>>>>>> " not in data, path


# -- the filter ------------------------------------------------------------------------------


def test_git_status_and_stash_ignore_our_edits(repo: Repo, run: Runner):
    run("apply", "--root", repo.root, check=0)
    web = repo.checkout / WEB
    assert web.read_bytes().count(MARKER) == 4  # 2 relax-ws-peer-check, public-action-status, ignore-forwarded-for
    assert repo.porcelain() == set()
    assert git(repo.checkout, "diff", "HEAD").stdout == ""
    os.utime(web)  # stat-dirty with the same size: git re-hashes through the filter
    assert repo.porcelain() == set()
    out = git(repo.checkout, "stash", "push", "--include-untracked", "-m", "x")
    assert "No local changes to save" in out.stdout
    assert repo.stashes() == []
    assert web.read_bytes().count(MARKER) == 4  # the stash did not reset our file either
    git(repo.checkout, "commit", "-a", "-q", "-m", "nothing", check=False)
    assert git(repo.checkout, "rev-list", "--count", "HEAD").stdout.strip() == "1"


@pytest.mark.slow
def test_pull_replaces_the_patched_file_when_upstream_changed_it(repo: Repo, run: Runner):
    run("apply", "--root", repo.root, check=0)
    repo.upstream_release()
    git(repo.checkout, "pull", "-q", "--ff-only", "origin", "main")
    web = repo.checkout / WEB
    assert web.read_bytes() == (FIXTURES / "r0_16" / WEB).read_bytes()  # upstream's new bytes, ours gone
    assert git(repo.checkout, "rev-parse", "HEAD").stdout == git(repo.checkout, "rev-parse", "origin/main").stdout
    code, doc = run.status("--root", repo.root)
    assert states(doc) == {**UNCONFIGURED, **FORWARDED_NEW, PAS: "pending", WS: "not-needed"}
    run("apply", "--root", repo.root, check=0)
    assert repo.porcelain() == set()


def test_git_still_works_when_hermes_patch_is_gone(repo: Repo, run: Runner):
    from hermes_patch.integrations.git_filter import filter_command

    run("apply", "--root", repo.root, check=0)
    git(repo.checkout, "config", "filter.hermes-patch.clean", filter_command(["/nonexistent/bin/hermes-patch"]))
    os.utime(repo.checkout / WEB)
    proc = git(repo.checkout, "status", "--porcelain")
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.splitlines() == [f" M {WEB}"]  # the truth, without our filter


def test_revert_removes_exactly_what_apply_registered(repo: Repo, run: Runner):
    before = repo.meta()
    run("apply", "--root", repo.root, check=0)
    during = repo.meta()
    assert during["info/attributes"][0].decode().splitlines()[1:] == [f"/{WEB} filter=hermes-patch"]
    assert b'[filter "hermes-patch"]' in during["config"][0]
    run("revert", "--root", repo.root, check=0)
    assert repo.meta() == before
    assert repo.porcelain() == set()
    assert (repo.checkout / WEB).read_bytes() == (FIXTURES / "r0_14" / WEB).read_bytes()


def test_existing_attributes_are_kept_byte_for_byte(repo: Repo, run: Runner):
    attributes = repo.checkout / ".git/info/attributes"
    attributes.write_bytes(b"*.png binary")  # no trailing newline
    run("apply", "--root", repo.root, check=0)
    assert attributes.read_bytes().startswith(b"*.png binary\n# hermes-patch: ")
    run("revert", "--root", repo.root, check=0)
    assert attributes.read_bytes() == b"*.png binary"


# -- the update sequence ------------------------------------------------------------------------


USER_EDITS = {
    "none": {},
    "elsewhere": {"notes.txt": "operator notes\nmy own line\n", "mine.txt": "untracked file of the operator\n"},
    "conflicting": {"README.md": "Hermes\nline two, mine\n"},
}


@pytest.mark.parametrize("edits", sorted(USER_EDITS))
@pytest.mark.parametrize("hook", [True, False], ids=["hook", "no-hook"])
@pytest.mark.parametrize("interactive", [True, False], ids=["interactive", "non-interactive"])
@pytest.mark.slow
def test_hermes_update_sequence(repo: Repo, run: Runner, interactive: bool, hook: bool, edits: str):
    run("apply", "--root", repo.root, check=0)
    if hook:
        run("hook", "install", "--root", repo.root, check=0)
    repo.upstream_release()
    for name, text in USER_EDITS[edits].items():
        (repo.checkout / name).write_text(text)

    log = git_update(repo.checkout, interactive)

    web = repo.checkout / WEB
    assert (log["stash"] is not None) == bool(USER_EDITS[edits])  # our edits alone never trigger a stash
    assert log["conflict"] == (interactive and edits == "conflicting")
    if hook:
        assert web.read_bytes().count(MARKER) == 1  # re-applied by the post-merge hook, nobody ran hermes-patch
    else:
        assert web.read_bytes() == (FIXTURES / "r0_16" / WEB).read_bytes()
        run("apply", "--root", repo.root, check=0)
    code, doc = run.status("--root", repo.root)
    assert code == 0 and states(doc) == {**UNCONFIGURED, **FORWARDED_NEW, PAS: "applied", WS: "not-needed"}, doc
    assert doc["notes"] == []
    py_compile.compile(str(web), cfile=str(repo.checkout.parent / "web.pyc"), doraise=True)
    _no_conflict_markers(repo.checkout)
    assert git(repo.checkout, "rev-parse", "HEAD").stdout == git(repo.checkout, "rev-parse", "origin/main").stdout

    stashes = repo.stashes()
    assert all(not any(p.startswith("hermes_cli/") for p in s) for s in stashes), stashes
    restored = interactive and edits == "elsewhere"
    if edits == "none" or restored:
        assert stashes == []
    else:
        assert stashes == [set(USER_EDITS[edits])]  # the operator's own edits, parked
    expected = {" M notes.txt", "?? mine.txt"} if restored else set()
    assert repo.porcelain() == expected
    if restored:
        assert (repo.checkout / "notes.txt").read_text() == USER_EDITS["elsewhere"]["notes.txt"]


# -- stashes left by earlier updates ------------------------------------------------------------


def _legacy_stash(repo: Repo, run: Runner, extra: dict[str, str]) -> None:
    """A stash made the old way: patched file visible to git (no filter), then `hermes update`."""
    run("apply", "--root", repo.root, check=0)
    git(repo.checkout, "config", "--remove-section", "filter.hermes-patch")
    (repo.checkout / ".git/info/attributes").unlink()
    os.utime(repo.checkout / WEB, (1, 1))  # stat-dirty: git re-hashes the raw file
    for name, text in extra.items():
        (repo.checkout / name).write_text(text)
    repo.upstream_release()
    log = git_update(repo.checkout, interactive=False)
    assert log["stash"] is not None


@pytest.mark.slow
def test_a_stash_of_only_our_edits_is_reported_and_dropped(repo: Repo, run: Runner):
    _legacy_stash(repo, run, {})
    assert repo.stashes() == [{WEB}]
    code, doc = run.status("--root", repo.root)
    assert code == 1 and states(doc)[PAS] == "pending"
    assert doc["notes"][0].startswith(
        "web_server.py was replaced since hermes-patch last wrote it (release 0.14.0 → 0.19.0)"
    )
    assert doc["notes"][1:] == [
        "stash@{0} (On main: hermes-update-autostash-test) holds only hermes-patch's own edits of hermes_cli/web_server.py, "
        "left by an earlier update; `hermes-patch apply --drop-our-stash` drops it"
    ]
    assert run("status", "--root", repo.root, "--strict").returncode == 1
    kept = run("apply", "--root", repo.root, check=0)  # not a terminal: never drops without being asked
    assert "--drop-our-stash" in kept.stdout and len(repo.stashes()) == 1
    out = run("apply", "--root", repo.root, "--drop-our-stash", check=0)
    assert "dropped stash@{0}" in out.stdout
    assert repo.stashes() == []
    code, doc = run.status("--root", repo.root)
    assert code == 0 and doc["notes"] == []


@pytest.mark.parametrize(
    "extra", [{"notes.txt": "mine\n"}, {"mine.txt": "untracked\n"}], ids=["tracked-edit", "untracked-file"]
)
@pytest.mark.slow
def test_a_stash_holding_anything_else_is_never_dropped(repo: Repo, run: Runner, extra):
    _legacy_stash(repo, run, extra)
    before = git(repo.checkout, "stash", "list", "--format=%H").stdout
    assert before
    code, doc = run.status("--root", repo.root)
    assert not any("stash" in n for n in doc["notes"])
    run("apply", "--root", repo.root, "--drop-our-stash", check=0)
    assert git(repo.checkout, "stash", "list", "--format=%H").stdout == before


@pytest.mark.slow
def test_apply_asks_before_dropping_on_a_terminal(repo: Repo, run: Runner):
    import pty

    _legacy_stash(repo, run, {})
    cmd = [*run_cmd(run, "apply", "--root", repo.root)]
    pid, fd = pty.fork()
    if pid == 0:  # child: stdin and stdout are the terminal
        os.execve(cmd[0], cmd, run.env)
    output = b""
    answered = False
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
        if not answered and b"Drop? [y/N]" in output:
            os.write(fd, b"y\n")
            answered = True
    os.waitpid(pid, 0)
    assert answered, output.decode(errors="replace")
    assert repo.stashes() == []


def run_cmd(run: Runner, *args: str) -> list[str]:
    from conftest import hermes_patch_exe

    return [hermes_patch_exe(), *args, "--state-dir", str(run.state), "--config", str(run.config)]


# -- git hooks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("patched", [False, True], ids=["unpatched", "patched"])
def test_hook_install_is_idempotent_and_uninstall_exact(repo: Repo, run: Runner, patched: bool):
    if patched:
        run("apply", "--root", repo.root, check=0)
    before = repo.meta()
    run("hook", "install", "--root", repo.root, check=0)
    once, ledger_once = repo.meta(), (run.state / "ledger.json").read_bytes()
    assert {"hooks/post-merge", "hooks/post-checkout", "info/attributes"} <= set(once)
    assert once["hooks/post-merge"][1] & 0o111
    run("hook", "install", "--root", repo.root, check=0)
    assert repo.meta() == once and (run.state / "ledger.json").read_bytes() == ledger_once
    run("hook", "uninstall", "--root", repo.root, check=0)
    assert repo.meta() == before  # the filter stays only while our edits are in the file
    record = json.loads((run.state / "ledger.json").read_text())["targets"][
        str((repo.checkout / "hermes_cli").resolve())
    ]
    assert set(record.get("integrations", {})) == ({"git-filter"} if patched else set())


@pytest.mark.slow
def test_an_existing_post_merge_hook_is_chained_and_restored(repo: Repo, run: Runner, tmp_path: Path):
    hook = repo.checkout / ".git/hooks/post-merge"
    witness = tmp_path / "own-hook-ran"
    hook.write_text(f'#!/bin/sh\necho "$1" > {witness}\nexit 3\n')
    hook.chmod(0o750)
    before = repo.meta()
    run("apply", "--root", repo.root, check=0)
    run("hook", "install", "--root", repo.root, check=0)
    assert (repo.checkout / ".git/hooks/post-merge.pre-hermes-patch").read_text().startswith("#!/bin/sh\necho")
    repo.upstream_release()
    pull = git(repo.checkout, "pull", "-q", "--ff-only", "origin", "main")
    assert pull.returncode == 0
    assert witness.read_text() == "0\n"  # the operator's hook ran, with git's argument
    assert (repo.checkout / WEB).read_bytes().count(MARKER) == 1
    show = run("hook", "show", "--root", repo.root, check=0).stdout
    assert "runs the earlier hook first: " + str(repo.checkout / ".git/hooks/post-merge.pre-hermes-patch") in show
    run("hook", "uninstall", "--root", repo.root, check=0)
    run("revert", "--root", repo.root, check=0)
    assert repo.meta() == before


def test_a_hook_edited_after_install_is_not_removed(repo: Repo, run: Runner):
    run("hook", "install", "--root", repo.root, check=0)
    hook = repo.checkout / ".git/hooks/post-checkout"
    hook.write_text(hook.read_text() + "echo mine\n")
    snapshot = repo.meta()
    show = run("hook", "show", "--root", repo.root, check=0).stdout
    assert f"git hook post-checkout: {hook} (changed since install)" in show
    proc = run("hook", "uninstall", "--root", repo.root, check=2)
    assert "was changed since `hermes-patch hook install` wrote it" in proc.stderr
    assert repo.meta() == snapshot


def test_hook_show_prints_what_and_where(repo: Repo, run: Runner):
    assert run("hook", "show", "--root", repo.root, check=0).stdout.startswith("nothing installed for ")
    run("hook", "install", "--root", repo.root, check=0)
    lines = run("hook", "show", "--root", repo.root, check=0).stdout.splitlines()
    g = repo.checkout / ".git"
    headers = [line for line in lines if not line.startswith("    ")]
    assert headers == [
        f"git clean filter: {g / 'config'} (installed)",
        f"git attributes: {g / 'info/attributes'} (installed)",
        f"git hook post-checkout: {g / 'hooks/post-checkout'} (installed)",
        f"git hook post-merge: {g / 'hooks/post-merge'} (installed)",
        f"command path: {run.exe} (trusted)",
    ]
    assert f"    /{WEB} filter=hermes-patch" in lines
    assert any(
        f"apply --root {repo.checkout} --state-dir {run.state} --config {run.config} --auto git-hook:post-merge" in line
        for line in lines
    )


def test_a_shared_hooks_path_is_refused(repo: Repo, run: Runner, tmp_path: Path):
    shared = tmp_path / "shared-hooks"
    shared.mkdir()
    git(repo.checkout, "config", "core.hooksPath", str(shared))
    before = repo.meta()
    proc = run("hook", "install", "--root", repo.root, check=2)
    assert "core.hooksPath" in proc.stderr and "Nothing was changed" in proc.stderr
    assert repo.meta() == before and list(shared.iterdir()) == []


@pytest.mark.slow
def test_branch_switch_reapplies_through_post_checkout(repo: Repo, run: Runner):
    run("apply", "--root", repo.root, check=0)
    run("hook", "install", "--root", repo.root, check=0)
    git(repo.checkout, "checkout", "-q", "--detach", "HEAD")
    repo.upstream_release()
    git(repo.checkout, "fetch", "-q", "origin")
    git(repo.checkout, "checkout", "-q", "-B", "main", "origin/main")  # what `hermes update` does off its branch
    assert (repo.checkout / WEB).read_bytes().count(MARKER) == 1
    assert repo.porcelain() == set()


@pytest.mark.slow
def test_a_refused_reapply_in_the_hook_never_fails_the_pull(repo: Repo, run: Runner):
    run("apply", "--root", repo.root, check=0)
    run("hook", "install", "--root", repo.root, check=0)
    shutil.rmtree(repo.seed / "hermes_cli")
    shutil.copytree(FIXTURES / "r0_16" / "hermes_cli", repo.seed / "hermes_cli")
    web = repo.seed / WEB
    web.write_text(web.read_text().replace("_PUBLIC_API_PATHS", "_OPEN_PATHS"))  # a shape no patch knows
    git(repo.seed, "add", "-A")
    git(repo.seed, "commit", "-q", "-m", "unknown shape")
    git(repo.seed, "push", "-q", "origin", "HEAD:main")
    pull = git(repo.checkout, "pull", "--ff-only", "origin", "main", check=False)
    assert pull.returncode == 0
    assert (
        f"hermes-patch: the dashboard patches were not re-applied; see: {' '.join(run_cmd(run, 'status', '--root', repo.root)[:1])} status --root {repo.checkout}"
        in pull.stderr
    )
    assert (repo.checkout / WEB).read_bytes() == web.read_bytes()  # upstream's file, whole
    assert repo.porcelain() == set()


@pytest.mark.slow
def test_apply_registers_a_missing_filter_even_with_nothing_to_write(repo: Repo, run: Runner):
    run("apply", "--root", repo.root, check=0)
    git(repo.checkout, "config", "--remove-section", "filter.hermes-patch")
    os.utime(repo.checkout / WEB, (1, 1))
    assert repo.porcelain() == {f" M {WEB}"}
    code, doc = run.status("--root", repo.root)
    assert code == 0 and doc["notes"] == [
        f"git sees our edits of {WEB} as local changes, so `hermes update` would stash them; "
        "`hermes-patch apply` registers the git clean filter that hides them"
    ]
    assert run("status", "--root", repo.root, "--strict").returncode == 1
    assert run("apply", "--root", repo.root, check=0).stdout.strip() == "nothing to apply"
    assert repo.porcelain() == set()
    assert run.status("--root", repo.root)[1]["notes"] == []
