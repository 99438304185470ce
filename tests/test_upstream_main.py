"""Upstream main after 0.19 (git installs): the split layouts, renamed actions, versions between releases.

Miniatures we wrote (``fixtures/releases/r0_20_split``: Aug-Sep 2026, helpers
re-exported from web_server_gateway/web_server_chat; ``r0_21_main``: 0.21.4,
routes in web_routers/*, web_server.py no longer imports the WebSocket gates).
The full proofs (apply, idempotency, compile, byte-exact revert) run on them
in tests/test_patches.py's table as well; here are the layout-specific facts.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
from pathlib import Path

import pytest

from hermes_patch.app import App
from hermes_patch.fileio import on_disk

from conftest import RELEASES, Runner, copy_fixture, states, tree_digest

PAS, WS = "public-action-status", "relax-ws-peer-check"
PROXY = '[patches.relax-ws-peer-check]\ntrusted_proxies = ["127.0.0.5/32"]\n'
LAYOUTS = ["r0_20_split", "r0_21_main"]
# Where each layout keeps the edited statements.
WS_FILE = {"r0_20_split": "web_server_chat.py", "r0_21_main": "web_server_chat.py"}


def make_app(tmp_path: Path, root: Path, config: str = "", **kw) -> App:
    cfg = tmp_path / "config.toml"
    cfg.write_text(config)
    return App(root=root, config_path=cfg, state_dir=tmp_path / "state", **kw)


def report(app: App, pid: str):
    return {r.id: r for r in app.status().reports}[pid]


def rename(root: Path, old: str, new: str) -> None:
    """A fork's renamed action: every file of the miniature, as a fork would have it."""
    for path in (root / "hermes_cli").rglob("*.py"):
        text = path.read_text()
        if old in text:
            path.write_text(text.replace(old, new))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_states_and_where_the_edits_go(tmp_path, layout):
    root = copy_fixture(layout, tmp_path / "t")
    original = tree_digest(root)
    assert states_of(make_app(tmp_path, root)) == {PAS: "pending", WS: "not-needed"}
    assert states_of(make_app(tmp_path, root, PROXY)) == {PAS: "pending", WS: "pending"}

    result = make_app(tmp_path, root, PROXY).apply()
    assert set(result.patch_ids) == {PAS, WS}
    changed = {name for name, digest in tree_digest(root).items() if digest != original[name]}
    # public-action-status edits web_server.py (auth_middleware reads its _PUBLIC_API_PATHS);
    # the peer guard goes where the rule lives; the shared public_paths.py is never touched.
    assert changed == {"hermes_cli/web_server.py", f"hermes_cli/{WS_FILE[layout]}"}
    chat = (root / "hermes_cli" / WS_FILE[layout]).read_text()
    tree = ast.parse(chat)
    guarded = {
        fn.name
        for fn in tree.body
        if isinstance(fn, ast.FunctionDef)
        and any(isinstance(s, ast.If) and "_hermes_patch_ws_peer_allowed" in ast.unparse(s.test) for s in fn.body)
    }
    assert guarded == {"_ws_client_is_allowed", "_ws_client_reason"}
    assert states_of(make_app(tmp_path, root, PROXY)) == {PAS: "applied", WS: "applied"}
    assert make_app(tmp_path, root, PROXY).apply().patch_ids == ()
    make_app(tmp_path, root, PROXY).revert()
    assert tree_digest(root) == original


def states_of(app: App) -> dict[str, str]:
    return {r.id: r.state for r in app.status().reports if r.id in (PAS, WS)}


def test_release_actions_are_read_through_the_import_and_the_comprehension(tmp_path):
    root = copy_fixture("r0_21_main", tmp_path / "t")
    ws = on_disk(root / "hermes_cli")
    from hermes_patch.patches.public_action_status import PublicActionStatus

    patch = PublicActionStatus()
    found = patch.locate(ws)
    assert list(found.table) == [
        "gateway-restart",
        "gateway-stop",
        "hermes-update",
        "doctor",
        "security-audit",
        "backup",
        "skills-update",
        "dump",
    ]
    assert patch.actions(found) == ("hermes-update", "gateway-restart")


def test_status_route_module_is_followed_when_web_server_does_not_import_the_table(tmp_path):
    """A later main could drop the re-export: the table is then found behind the status route."""
    root = copy_fixture("r0_21_main", tmp_path / "t")
    web = root / "hermes_cli/web_server.py"
    text = web.read_text()
    start = text.index("from hermes_cli.web_server_gateway import")
    end = text.index(")\n", start) + 2
    web.write_text(text[:start] + text[end:])
    assert states_of(make_app(tmp_path, root)) == {PAS: "pending", WS: "not-needed"}
    make_app(tmp_path, root).apply()
    assert report(make_app(tmp_path, root), PAS).state == "applied"


def test_resolve_follows_late_bindings_and_relative_imports(tmp_path):
    root = copy_fixture("r0_21_main", tmp_path / "t")
    routes = root / "hermes_cli/web_routers/chat_ws.py"
    routes.write_text(
        routes.read_text().replace("from hermes_cli.web_server_chat import", "from ..web_server_chat import")
    )
    ws = on_disk(root / "hermes_cli")
    assert (
        ws.resolve("_ws_client_reason", "web_routers/chat_ws.py").file == "web_server_chat.py"
    )  # late("...", "hermes_cli.web_server_chat")
    assert (
        ws.resolve("_ws_request_is_allowed", "web_routers/chat_ws.py").file == "web_server_chat.py"
    )  # relative import
    assert ws.resolve("_ws_client_is_allowed") is None  # web_server.py no longer imports it
    assert ws.importers("_ws_request_is_allowed", "web_server_chat.py") == ["web_routers/chat_ws.py"]


def test_routes_taking_the_policy_from_two_modules_is_unknown_shape(tmp_path):
    root = copy_fixture("r0_21_main", tmp_path / "t")
    shutil.copy(root / "hermes_cli/web_server_chat.py", root / "hermes_cli/web_server_chat2.py")
    routes = root / "hermes_cli/web_routers/chat_ws.py"
    routes.write_text(
        routes.read_text().replace(
            'late("_ws_client_reason", "hermes_cli.web_server_chat")',
            'late("_ws_client_reason", "hermes_cli.web_server_chat2")',
        )
    )
    r = report(make_app(tmp_path, root, PROXY), WS)
    assert r.state == "unknown-shape" and "more than one module" in r.reason


# -- defaults that fit the release -----------------------------------------------------


@pytest.mark.parametrize("name", ["xiaoban-update", "fabric-update"])
def test_renamed_update_action_works_with_an_empty_configuration(tmp_path, run: Runner, name):
    root = copy_fixture("r0_21_main", tmp_path / "t")
    rename(root, "hermes-update", name)
    original = tree_digest(root)
    code, doc = run.status("--root", str(root))
    assert code == 1 and states(doc)[PAS] == "pending"
    reason = {p["id"]: p["reason"] for p in doc["patches"]}[PAS]
    assert f"default fitted to this release: {name}, gateway-restart" in reason
    run("apply", "--root", str(root), check=0)
    text = (root / "hermes_cli/web_server.py").read_text()
    assert f'"/api/actions/{name}/status",' in text and "hermes-update" not in text
    code, doc = run.status("--root", str(root))
    assert code == 0 and states(doc)[PAS] == "applied"
    run("revert", "--root", str(root), check=0)
    assert tree_digest(root) == original


def test_a_release_without_an_update_action_is_not_a_configuration_error(tmp_path, run: Runner):
    root = copy_fixture("r0_21_main", tmp_path / "t")
    rename(root, '"hermes-update"', '"upgrade"')
    rename(root, '"gateway-restart"', '"restart"')
    code, doc = run.status("--root", str(root))
    assert code == 0 and states(doc)[PAS] == "not-needed"
    assert "names no update or gateway-restart action" in {p["id"]: p["reason"] for p in doc["patches"]}[PAS]


def test_one_patch_s_parameter_error_leaves_status_whole_and_apply_id_of_another(tmp_path, run: Runner):
    root = copy_fixture("r0_21_main", tmp_path / "t")
    run.configure(PROXY + '[patches.public-action-status]\nactions = ["hermes-update", "no-such-action"]\n')
    code, doc = run.status("--root", str(root))
    assert code == 2
    assert states(doc) == {
        "cors-origins": "not-needed",
        PAS: "unknown-shape",
        WS: "pending",
        "trusted-hosts": "not-needed",
        "durable-action-result": "not-needed",
        "stable-session-token": "not-needed",
        "ignore-forwarded-for": "not-needed",
    }
    reason = {p["id"]: p["reason"] for p in doc["patches"]}[PAS]
    assert "no-such-action" in reason and str(run.config) in reason
    before = tree_digest(root)
    proc = run("apply", "--root", str(root), check=2)  # all-or-nothing: the whole apply refuses
    assert "no-such-action" in proc.stderr and f"hermes-patch apply {WS}" in proc.stderr
    assert tree_digest(root) == before
    run("apply", WS, "--root", str(root), check=0)
    code, doc = run.status("--root", str(root))
    assert states(doc)[WS] == "applied" and states(doc)[PAS] == "unknown-shape"


def test_a_bad_cidr_is_that_patch_s_report(tmp_path, run: Runner):
    root = copy_fixture("r0_20_split", tmp_path / "t")
    run.configure('[patches.relax-ws-peer-check]\ntrusted_proxies = ["not-a-cidr"]\n')
    code, doc = run.status("--root", str(root))
    assert code == 2 and len(doc["patches"]) == 7  # every patch of the catalog reports
    assert states(doc)[WS] == "unknown-shape" and states(doc)[PAS] == "pending"
    run("apply", PAS, "--root", str(root), check=0)


# -- the version range is a fact ------------------------------------------------------------


def test_known_shape_outside_the_version_range_warns_and_applies_on_request(tmp_path, run: Runner):
    """Main carried __version__ = "0.12.0" with 0.13+ shapes for days (REAL_TARGETS)."""
    root = copy_fixture("r0_16", tmp_path / "t")
    init = root / "hermes_cli/__init__.py"
    init.write_text(init.read_text().replace('"0.19.0"', '"0.12.0"'))
    original = tree_digest(root)
    code, doc = run.status("--root", str(root))
    assert code == 1 and states(doc)[PAS] == "pending" and states(doc)[WS] == "not-needed"
    notes = {p["id"]: p["notes"] for p in doc["patches"]}
    assert any("outside this patch's supported range" in n and "--allow-version" in n for n in notes[PAS])
    assert any("outside" in n for n in notes[WS])  # not-needed, still said
    proc = run("apply", "--root", str(root), check=2)
    assert "--allow-version" in proc.stderr and tree_digest(root) == original
    run("apply", "--allow-version", "--root", str(root), check=0)
    code, doc = run.status("--root", str(root))
    assert code == 0 and states(doc)[PAS] == "applied"
    proc = run("status", "--strict", "--root", str(root), check=1)  # the warning stays, --strict counts it
    run("revert", "--root", str(root), check=0)
    assert tree_digest(root) == original
    run.configure("allow_version = true\n")
    run("apply", "--root", str(root), check=0)
    assert states(run.status("--root", str(root))[1])[PAS] == "applied"


def test_unknown_shape_outside_the_range_says_both(tmp_path):
    root = copy_fixture("r0_16", tmp_path / "t")
    init = root / "hermes_cli/__init__.py"
    init.write_text(init.read_text().replace('"0.19.0"', '"0.12.0"'))
    web = root / "hermes_cli/web_server.py"
    web.write_text(web.read_text().replace("path not in _PUBLIC_API_PATHS", "not _is_public(path)"))
    r = report(make_app(tmp_path, root), PAS)
    assert r.state == "unknown-shape" and "exact membership" in r.reason and "outside" in r.reason


# -- the perf fix changes no byte on the registry releases ----------------------------------------


@pytest.mark.real
@pytest.mark.parametrize("version", RELEASES)
def test_public_action_status_bytes_on_every_real_release(tmp_path, version):
    """The edit on each real release equals one built independently: the block right after upstream's binding."""
    from conftest import copy_real

    root = copy_real(version, tmp_path / "sp")
    web = root / "hermes_cli/web_server.py"
    data = web.read_bytes()
    tree = ast.parse(data)
    binding = [
        n
        for n in tree.body
        if (isinstance(n, ast.ImportFrom) and any((a.asname or a.name) == "_PUBLIC_API_PATHS" for a in n.names))
        or (
            isinstance(n, (ast.Assign, ast.AnnAssign))
            and "_PUBLIC_API_PATHS"
            in {
                t.id
                for t in ast.walk(n.targets[0] if isinstance(n, ast.Assign) else n.target)
                if isinstance(t, ast.Name)
            }
        )
    ]
    assert len(binding) == 1
    lines = data.split(b"\n")
    end = binding[0].end_lineno
    block = [
        b"# hermes-patch: public-action-status (update-progress poll works through a reverse proxy)",
        b"_PUBLIC_API_PATHS = _PUBLIC_API_PATHS | frozenset({",
        b'    "/api/actions/hermes-update/status",',
        b'    "/api/actions/gateway-restart/status",',
        b"})",
    ]
    expected = b"\n".join(lines[:end] + block + lines[end:])
    app = make_app(tmp_path, root)
    assert app.apply([PAS]).patch_ids == (PAS,)
    assert web.read_bytes() == expected


# -- look before updating: check --ref / --wheel, and update uses it ---------------------------


def _git_repo(tmp_path: Path):
    from test_git_install import Repo, _commit_release

    (tmp_path / "r").mkdir()
    return Repo(tmp_path / "r"), _commit_release


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_check_ref_reports_a_newer_commit_without_touching_the_checkout(tmp_path, run: Runner):
    from hermes_update import git

    repo, commit_release = _git_repo(tmp_path)
    run.configure(PROXY)
    run("apply", "--root", repo.root, check=0)
    commit_release(
        repo.seed, "r0_21_main", "Hermes\nmain, September\n"
    )  # upstream moves on; the checkout has not pulled
    head = git(repo.checkout, "rev-parse", "HEAD").stdout
    files = {p: p.read_bytes() for p in repo.checkout.rglob("*") if p.is_file() and ".git" not in p.parts}
    index = (repo.checkout / ".git/index").read_bytes()

    proc = run("check", "--ref", "origin/main", "--json", "--root", repo.root)
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert states(doc) == {
        "cors-origins": "not-needed",
        PAS: "pending",
        WS: "pending",
        "trusted-hosts": "not-needed",
        "durable-action-result": "not-needed",
        "stable-session-token": "not-needed",
        "ignore-forwarded-for": "not-needed",
    }
    assert doc["target"]["version"] == "0.21.4" and doc["target"]["install_method"] == "git"
    assert doc["target"]["file"] == "origin/main:hermes_cli/web_server.py" and doc["target"]["writable"] is False
    new = git(repo.checkout, "rev-parse", "origin/main").stdout.strip()
    assert new != head.strip() and f"commit {new[:12]}" in doc["target"]["found_by"]  # fetched
    # Nothing checked out or written: HEAD, the index and every file are as before.
    assert git(repo.checkout, "rev-parse", "HEAD").stdout == head
    assert (repo.checkout / ".git/index").read_bytes() == index
    assert {p: p.read_bytes() for p in repo.checkout.rglob("*") if p.is_file() and ".git" not in p.parts} == files
    code, now = run.status("--root", repo.root)
    assert code == 0 and states(now)[PAS] == "applied"  # the installed code is still 0.14 and patched

    # A commit whose shape no patch knows: check says so (exit 2).
    seed_web = repo.seed / "hermes_cli/web_server.py"
    seed_web.write_text(seed_web.read_text().replace("path not in _PUBLIC_API_PATHS", "not _is_public(path)"))
    git(repo.seed, "commit", "-qam", "auth by function")
    git(repo.seed, "push", "-q", "origin", "HEAD:main")
    proc = run("check", "--ref", "origin/main", "--root", repo.root)
    assert proc.returncode == 2 and "unknown-shape" in proc.stdout


def test_check_ref_needs_a_git_install_and_a_real_ref(tmp_path, run: Runner):
    root = copy_fixture("r0_21_main", tmp_path / "t")
    proc = run("check", "--ref", "origin/main", "--root", str(root), check=2)
    assert "needs a git install" in proc.stderr and "check --wheel" in proc.stderr


def test_check_wheel_reads_the_release_inside(tmp_path, run: Runner):
    import zipfile

    wheel = tmp_path / "hermes_agent-0.21.4-py3-none-any.whl"
    src = copy_fixture("r0_21_main", tmp_path / "src")
    with zipfile.ZipFile(wheel, "w") as zf:
        for path in sorted((src / "hermes_cli").rglob("*.py")):
            zf.write(path, path.relative_to(src).as_posix())
        zf.writestr(
            "hermes_agent-0.21.4.dist-info/METADATA", "Metadata-Version: 2.1\nName: hermes-agent\nVersion: 0.21.4\n\n"
        )
    installed = copy_fixture("r0_16", tmp_path / "installed")
    proc = run("check", "--wheel", str(wheel), "--json", "--root", str(installed))
    doc = json.loads(proc.stdout)
    assert proc.returncode == 1 and doc["target"]["version"] == "0.21.4"
    assert states(doc)[PAS] == "pending" and states(doc)[WS] == "not-needed"
    proc = run("check", "--wheel", str(tmp_path / "src/hermes_cli/web_server.py"), "--root", str(installed), check=2)
    assert "cannot be read as a wheel" in proc.stderr


def test_check_wheel_refuses_a_zip_bomb_and_never_prints_escape_sequences(tmp_path, run: Runner):
    """Found by a breaker run: a 600 MiB member took 1.25 GB of memory; ESC sequences in Version reached the terminal."""
    import zipfile

    src = copy_fixture("r0_21_main", tmp_path / "src")
    installed = copy_fixture("r0_16", tmp_path / "installed")

    def make(name: str, version: str, extra: tuple[str, bytes] | None = None):
        wheel = tmp_path / name
        with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path in sorted((src / "hermes_cli").rglob("*.py")):
                zf.write(path, path.relative_to(src).as_posix())
            if extra:
                zf.writestr(*extra)
            zf.writestr(
                "hermes_agent-0.21.4.dist-info/METADATA",
                f"Metadata-Version: 2.1\nName: hermes-agent\nVersion: {version}\n\n",
            )
        return wheel

    bomb = make("bomb.whl", "0.21.4", ("hermes_cli/huge.py", b"#" * (40 * 1024 * 1024)))
    proc = run("check", "--wheel", str(bomb), "--root", str(installed), check=2)
    assert "more than any hermes-agent release holds" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    ansi = make("ansi.whl", "0.21.4\x1b]0;title\x07\x1b[2J")
    proc = run("check", "--wheel", str(ansi), "--root", str(installed))
    assert proc.returncode in (0, 1) and "\x1b" not in proc.stdout + proc.stderr, proc.stdout
    fifo = tmp_path / "fifo.whl"
    os.mkfifo(fifo)
    proc = run("check", "--wheel", str(fifo), "--root", str(installed), check=2)
    assert "not a regular file" in proc.stderr


@pytest.mark.real
def test_check_wheel_on_every_registry_release_matches_status(tmp_path, run: Runner):
    from conftest import copy_real, wheel

    for version in RELEASES:
        root = copy_real(version, tmp_path / version)
        code, installed = run.status("--root", str(root))
        proc = run("check", "--wheel", str(wheel(version)), "--json", "--root", str(root))
        incoming = json.loads(proc.stdout)
        assert proc.returncode == code and incoming["patches"] == installed["patches"], version


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_update_stops_before_hermes_is_touched_when_the_incoming_code_would_run_unpatched(tmp_path, run: Runner):
    from hermes_update import git
    from test_update import Fake

    repo, commit_release = _git_repo(tmp_path)
    fake = Fake(
        tmp_path, repo.checkout, mode="git", checkout=repo.root, watch=str(repo.checkout / "hermes_cli/web_server.py")
    )
    run("apply", env=fake.env, check=0)
    before = tree_digest(repo.checkout / "hermes_cli")
    commit_release(repo.seed, "r0_21_main", "Hermes\nmain\n")
    seed_web = repo.seed / "hermes_cli/web_server.py"
    seed_web.write_text(seed_web.read_text().replace("path not in _PUBLIC_API_PATHS", "not _is_public(path)"))
    git(repo.seed, "commit", "-qam", "auth by function")
    git(repo.seed, "push", "-q", "origin", "HEAD:main")

    proc = run("update", env=fake.env)
    assert proc.returncode == 2
    assert "stopped before running `hermes update`" in proc.stderr and "--go-on" in proc.stderr
    assert fake.runs() == [] and tree_digest(repo.checkout / "hermes_cli") == before  # Hermes untouched, still patched

    proc = run("update", "--go-on", env=fake.env)
    assert len(fake.runs()) == 1  # told to go on: hermes update ran
    assert "WITHOUT public-action-status" in proc.stderr


# -- automatic refusals are visible afterwards ------------------------------------------------------


def test_a_refused_automatic_apply_is_recorded_and_shown_until_an_apply_succeeds(tmp_path, run: Runner):
    root = copy_fixture("r0_21_main", tmp_path / "t")
    web = root / "hermes_cli/web_server.py"
    pristine = web.read_text()
    web.write_text(pristine.replace("path not in _PUBLIC_API_PATHS", "not _is_public(path)"))
    proc = run("apply", "--root", str(root), "--auto", "systemd:hermes-dashboard.service", check=2)
    assert "automatic apply from systemd:hermes-dashboard.service refused" in proc.stderr  # what the journal shows
    code, doc = run.status("--root", str(root))
    [note] = [n for n in doc["notes"] if n.startswith("the last automatic apply")]
    assert "from systemd:hermes-dashboard.service) refused:" in note and "exact membership" in note
    assert "the last automatic apply" in run("status", "--root", str(root)).stdout

    web.write_text(pristine)  # the operator fixes it; a later apply succeeds
    run("apply", "--root", str(root), check=0)
    code, doc = run.status("--root", str(root))
    assert code == 0 and not any("automatic apply" in n for n in doc["notes"])


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_the_git_hook_refusal_reaches_git_s_stderr_and_status(tmp_path, run: Runner):
    from hermes_update import git

    repo, commit_release = _git_repo(tmp_path)
    run("hook", "install", "--root", repo.root, check=0)
    commit_release(repo.seed, "r0_21_main", "Hermes\nmain\n")
    seed_web = repo.seed / "hermes_cli/web_server.py"
    seed_web.write_text(seed_web.read_text().replace("path not in _PUBLIC_API_PATHS", "not _is_public(path)"))
    git(repo.seed, "commit", "-qam", "auth by function")
    git(repo.seed, "push", "-q", "origin", "HEAD:main")
    pull = subprocess_run(["git", "-C", repo.root, "pull", "-q", "--ff-only"], run.env)
    assert pull.returncode == 0  # the hook never changes git's outcome
    assert "automatic apply from git-hook:post-merge refused" in pull.stderr
    code, doc = run.status("--root", repo.root)
    assert any("from git-hook:post-merge) refused" in n for n in doc["notes"])


def subprocess_run(cmd: list[str], env: dict[str, str]):
    import subprocess

    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
