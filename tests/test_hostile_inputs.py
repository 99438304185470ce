"""Hostile inputs through the installed command: refused with one paragraph, or patched exactly.

Every refusal must exit 2, print one paragraph on stderr that names the path
and the next command to run, and leave every file (the Hermes tree and our
state dir) byte-identical. Inputs that are valid Python (a PEP 263 coding
line, a UTF-8 BOM, CRLF endings, tabs) must be patched, with their encoding
and endings kept, identically by the fast path and by whole-module libcst,
and reverted byte for byte. In-process checks of the same refusals live in
test_patches.py; these run the command a user runs.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import tokenize
from pathlib import Path

import pytest

from conftest import FORWARDED_NEW, UNCONFIGURED, Runner, copy_fixture, copy_real, states, tally, tree_digest

PAS, WS = "public-action-status", "relax-ws-peer-check"
PROXY = '[patches.relax-ws-peer-check]\ntrusted_proxies = ["127.0.0.5/32"]\n'
SLOW = {"HERMES_PATCH_NO_FAST_PATH": "1"}


def state_digest(run: Runner) -> dict[str, str]:
    """The ledger and backups (lock files are empty and not part of the state)."""
    if not run.state.exists():
        return {}
    return {k: v for k, v in tree_digest(run.state).items() if not k.startswith("locks/")}


REFUSED = "exit 2, one paragraph naming the path and the next command, files unchanged"


def paragraph_ok(proc: subprocess.CompletedProcess, path: Path | str, command: str) -> bool:
    """Nothing on stdout; one ``error:`` paragraph on stderr naming ``path`` and the next ``command``."""
    err = proc.stderr
    return (
        proc.stdout == ""
        and err.startswith("error: ")
        and err.endswith("\n")
        and len(err.strip().splitlines()) == 1
        and "Traceback" not in err
        and str(path) in err
        and f"`{command}" in err
    )


def outcome(procs: list[subprocess.CompletedProcess], path: Path | str, command: str, unchanged: bool) -> str:
    """The observed outcome of refused commands, in the words of :data:`REFUSED`."""
    codes = "/".join(str(c) for c in sorted({p.returncode for p in procs}))
    said = (
        "one paragraph naming the path and the next command"
        if all(paragraph_ok(p, path, command) for p in procs)
        else "NOT the expected paragraph"
    )
    return f"exit {codes}, {said}, {'files unchanged' if unchanged else 'FILES CHANGED'}"


def refuse_everywhere(
    run: Runner,
    target: list[str],
    path: Path | str,
    command: str,
    root: Path,
    subject: str,
    *,
    commands=("status", "apply", "revert", "diff"),
) -> str:
    """Run each command on a bad input; each must refuse and change nothing. Returns the message."""
    before_tree, before_state = tree_digest(root), state_digest(run)
    procs = [run(cmd, *target) for cmd in commands]
    unchanged = tree_digest(root) == before_tree and state_digest(run) == before_state
    observed = outcome(procs, path, command, unchanged)
    tally(subject, REFUSED, observed)
    assert observed == REFUSED, "\n".join(f"{p.args[1]}: exit {p.returncode}\n{p.stdout}{p.stderr}" for p in procs)
    return procs[-1].stderr


# -- the target file ----------------------------------------------------------------


BAD_TARGETS = {
    "syntax error": (lambda d: d + b"\ndef broken(:\n", "is not valid Python", "hermes-patch status"),
    "empty": (lambda d: b"", "is empty", "hermes-patch status"),
    "only whitespace": (lambda d: b"\n\n   \n", "is empty", "hermes-patch status"),
    "not UTF-8": (lambda d: d + b'\n_X = "\xff\xfe"\n', "cannot be decoded", "pip install --force-reinstall"),
    "unknown PEP 263 encoding": (
        lambda d: b"# -*- coding: klingon -*-\n" + d,
        "unknown encoding",
        "pip install --force-reinstall",
    ),
    "NUL bytes": (lambda d: d + b"\x00\x00", "NUL bytes", "hermes-patch status"),
    "BOM and a contradicting coding line": (
        lambda d: b"\xef\xbb\xbf# -*- coding: latin-1 -*-\n" + d,
        "cannot be decoded",
        "pip install --force-reinstall",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_TARGETS))
def test_bad_target_file_is_refused(case, tmp_path, run: Runner):
    change, needle, command = BAD_TARGETS[case]
    root = copy_fixture("r0_15", tmp_path / "sp")
    web = root / "hermes_cli/web_server.py"
    web.write_bytes(change(web.read_bytes()))
    message = refuse_everywhere(run, ["--root", str(root)], web, command, root, f"target: {case}")
    assert needle in message


def test_missing_file_and_directory_are_refused(tmp_path, run: Runner):
    root = copy_fixture("r0_15", tmp_path / "sp")
    missing = root / "hermes_cli/nope.py"
    assert "does not exist" in refuse_everywhere(
        run, ["--file", str(missing)], missing, "hermes-patch status", root, "target: missing file"
    )
    folder = root / "hermes_cli"
    assert "is a directory" in refuse_everywhere(
        run, ["--file", str(folder)], folder, "hermes-patch status --root", root, "target: a directory"
    )
    gone = tmp_path / "no-such-root"
    assert "does not exist" in refuse_everywhere(
        run, ["--root", str(gone)], gone, "hermes-patch status --python", root, "target: --root that does not exist"
    )


def test_dangling_symlink_is_refused(tmp_path, run: Runner):
    root = copy_fixture("r0_15", tmp_path / "sp")
    link = tmp_path / "link.py"
    link.symlink_to(tmp_path / "gone.py")
    refuse_everywhere(run, ["--file", str(link)], link, "hermes-patch status", root, "target: dangling symlink")
    assert link.is_symlink()


# -- valid Python that looks unusual: patched exactly ---------------------------------------


def _latin1(data: bytes) -> bytes:
    text = data.decode("utf-8").replace("Miniature", "Miniatüre « café »")
    return b"# -*- coding: latin-1 -*-\n" + text.encode("latin-1")


def _tabs(data: bytes) -> bytes:
    return re.sub(rb"(?m)^((?:    )+)", lambda m: b"\t" * (len(m.group(1)) // 4), data)


VARIANTS = {
    "PEP 263 latin-1": _latin1,
    "UTF-8 BOM": lambda d: b"\xef\xbb\xbf" + d,
    "CRLF endings": lambda d: d.replace(b"\n", b"\r\n"),
    "tab indentation": _tabs,
    "BOM + CRLF + tabs": lambda d: b"\xef\xbb\xbf" + _tabs(d).replace(b"\n", b"\r\n"),
}


def _transform_tree(root: Path, change) -> None:
    for py in sorted((root / "hermes_cli").glob("*.py")):
        py.write_bytes(change(py.read_bytes()))


PATCHED = "patched (fast path == whole-module libcst), compiles, encoding and endings kept, revert byte-exact"


def round_trip(run: Runner, fast: Path, slow: Path) -> str:
    """Apply on ``fast`` (fast path) and ``slow`` (whole module), check, revert ``fast``; describe it."""
    original = tree_digest(fast)
    before = {name: (fast / name).read_bytes() for name in original}
    applied = (
        run("apply", "--root", str(fast)).returncode == 0
        and run("apply", "--root", str(slow), env=SLOW).returncode == 0
    )
    code, doc = run.status("--root", str(fast))
    applied = (
        applied
        and code == 0
        and set(states(doc).values()) <= {"applied", "not-needed"}
        and states(doc)["public-action-status"] == "applied"
    )
    same = tree_digest(fast) == tree_digest(slow)
    changed = [name for name, digest in tree_digest(fast).items() if digest != original[name]]
    compiles, kept = bool(changed), True
    for name in changed:
        data, old = (fast / name).read_bytes(), before[name]
        try:
            compile(data, name, "exec", dont_inherit=True)
        except SyntaxError:
            compiles = False
        if b"\r\n" in old and data.count(b"\n") != data.count(b"\r\n"):
            kept = False  # a bare LF crept in
        if old.startswith(b"\xef\xbb\xbf") != data.startswith(b"\xef\xbb\xbf") or data[3:].startswith(b"\xef\xbb\xbf"):
            kept = False
        if b"coding: latin-1" in old[:100] and (b"\xfc" not in data or _decodes(data)):
            kept = False  # must stay latin-1
        if _indent_chars(old) == {"\t"} and _indent_chars(data) != {"\t"}:
            kept = False  # a space-indented block in a tab-indented file
    run("revert", "--root", str(fast))
    exact = tree_digest(fast) == original
    return (
        f"{'patched' if applied else 'NOT patched'} (fast path {'==' if same else '!='} whole-module libcst), "
        f"{'compiles' if compiles else 'DOES NOT COMPILE'}, encoding and endings {'kept' if kept else 'CHANGED'}, "
        f"revert {'byte-exact' if exact else 'NOT byte-exact'}"
    )


def _indent_chars(data: bytes) -> set[str]:
    """The characters of every INDENT token (block indentation, not bracket continuation)."""
    tokens = tokenize.tokenize(io.BytesIO(data).readline)
    return {c for t in tokens if t.type == tokenize.INDENT for c in t.string}


def _decodes(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


@pytest.mark.parametrize("shape", ["r0_15", "r0_20_moved"])
@pytest.mark.parametrize("case", list(VARIANTS))
def test_unusual_but_valid_files_are_patched_exactly(case, shape, tmp_path, run: Runner):
    run.configure(PROXY)
    fast, slow = copy_fixture(shape, tmp_path / "fast"), copy_fixture(shape, tmp_path / "slow")
    for root in (fast, slow):
        _transform_tree(root, VARIANTS[case])
    observed = round_trip(run, fast, slow)
    tally(f"target: {case} ({shape}, {'two files' if 'moved' in shape else 'one file'})", PATCHED, observed)
    assert observed == PATCHED


@pytest.mark.slow
def test_crlf_and_bom_on_a_real_release(tmp_path, run: Runner):
    run.configure(PROXY)
    fast, slow = copy_real("0.16.0", tmp_path / "fast"), copy_real("0.16.0", tmp_path / "slow")
    for root in (fast, slow):
        web = root / "hermes_cli/web_server.py"
        web.write_bytes(b"\xef\xbb\xbf" + web.read_bytes().replace(b"\n", b"\r\n"))
    observed = round_trip(run, fast, slow)
    tally("target: real 0.16.0 with a BOM and CRLF endings", PATCHED, observed)
    assert observed == PATCHED


# -- symlinks -------------------------------------------------------------------------------


def test_symlinked_target_edits_the_real_file_and_keeps_the_link(tmp_path, run: Runner):
    """Policy: follow the link, edit the file it points to, keep the link, say so in status."""
    root = copy_fixture("r0_20_moved", tmp_path / "sp")
    run.configure(PROXY)
    link = root / "hermes_cli/web_server.py"
    real = tmp_path / "elsewhere/web_server.py"
    real.parent.mkdir()
    shutil.move(link, real)
    link.symlink_to(real)
    original = real.read_bytes()

    out = run("status", "--root", str(root)).stdout
    said = f"via symlink {link}" in out and "release 0.20.0" in out
    code, doc = run.status("--root", str(root))
    found = (
        doc["target"]["file"] == str(real)
        and doc["target"]["version"] == "0.20.0"
        and states(doc) == {**UNCONFIGURED, **FORWARDED_NEW, PAS: "pending", WS: "pending"}
    )
    run("apply", "--root", str(root))
    kept = link.is_symlink() and os.readlink(link) == str(real)
    edited = real.read_bytes() != original and states(run.status("--file", str(link))[1]) == {
        **UNCONFIGURED,
        **FORWARDED_NEW,
        PAS: "applied",
        WS: "applied",
    }
    no_tmp = not list(real.parent.glob(".*.tmp")) and not list(link.parent.glob(".*.tmp"))
    run("revert", "--file", str(link))
    exact = link.is_symlink() and real.read_bytes() == original
    expected = "status says `via symlink` and finds the release; real file edited; link kept; revert byte-exact"
    observed = (
        f"status {'says `via symlink` and finds the release' if said and found else 'MISSES the link or the release'}; "
        f"real file {'edited' if edited and no_tmp else 'NOT edited cleanly'}; link {'kept' if kept else 'REPLACED'}; "
        f"revert {'byte-exact' if exact else 'NOT byte-exact'}"
    )
    tally("target: symlinked web_server.py (policy: follow it)", expected, observed)
    assert observed == expected, (out, doc)


# -- where the target sits ----------------------------------------------------------------


def _can_bind_mount(tmp_path: Path) -> str | None:
    probe = tmp_path / "probe"
    probe.mkdir()
    proc = subprocess.run(["mount", "--bind", str(probe), str(probe)], capture_output=True, text=True)
    if proc.returncode != 0:
        return f"bind mounts are not available here ({proc.stderr.strip() or proc.returncode}); needs root"
    subprocess.run(["umount", str(probe)], check=True)
    return None


@pytest.fixture
def read_only_mount(tmp_path):
    """Make a directory read-only with a read-only bind mount (a Nix store in miniature)."""
    why = _can_bind_mount(tmp_path) if shutil.which("mount") else "no mount command"
    if why:
        pytest.skip(why)
    mounted: list[Path] = []

    def make(directory: Path) -> None:
        subprocess.run(["mount", "--bind", str(directory), str(directory)], check=True)
        mounted.append(directory)
        subprocess.run(["mount", "-o", "remount,ro,bind", str(directory)], check=True)

    yield make
    for directory in reversed(mounted):
        subprocess.run(["umount", str(directory)], check=True)


def test_read_only_filesystem_is_refused(tmp_path, run: Runner, read_only_mount):
    root = copy_fixture("r0_15", tmp_path / "sp")
    read_only_mount(root / "hermes_cli")
    web = root / "hermes_cli/web_server.py"
    with pytest.raises(OSError):
        (root / "hermes_cli/probe").write_text("x")
    out = run("status", "--root", str(root), check=1).stdout
    assert "read-only filesystem" in out
    message = refuse_everywhere(
        run,
        ["--root", str(root)],
        web,
        "hermes-patch diff",
        root,
        "target on a read-only filesystem (ro bind mount)",
        commands=("apply", "revert"),
    )
    assert "read-only filesystem" in message


def _unprivileged() -> str | None:
    proc = subprocess.run(
        ["unshare", "-U", "--map-user=1000", "--map-group=1000", "true"], capture_output=True, text=True
    )
    return None if proc.returncode == 0 else f"user namespaces are not available ({proc.stderr.strip()})"


@pytest.mark.parametrize("what", ["directory", "file"])
def test_read_only_directory_or_file_is_refused_for_a_normal_user(what, tmp_path, run: Runner):
    """Root ignores permission bits, so run as a mapped non-root user in a user namespace."""
    if not shutil.which("unshare") or (why := _unprivileged()):
        pytest.skip(why or "no unshare command")
    root = copy_fixture("r0_15", tmp_path / "sp")
    web = root / "hermes_cli/web_server.py"
    locked = web.parent if what == "directory" else web
    locked.chmod(0o555 if what == "directory" else 0o444)
    try:
        before = tree_digest(root)
        cmd = ["unshare", "-U", "--map-user=1000", "--map-group=1000", run.exe]
        procs = [
            subprocess.run([*cmd, sub, "--root", str(root), *run.common], capture_output=True, text=True, env=run.env)
            for sub in ("apply", "revert")
        ]
        observed = outcome(procs, locked, "hermes-patch diff", tree_digest(root) == before)
    finally:
        locked.chmod(0o755 if what == "directory" else 0o644)
    tally(f"target in a read-only {what} (non-root user)", REFUSED, observed)
    assert observed == REFUSED, [p.stderr for p in procs]
    assert all("not writable" in p.stderr for p in procs)


# -- the state directory ------------------------------------------------------------------


def _applied(tmp_path: Path, run: Runner) -> Path:
    root = copy_fixture("r0_15", tmp_path / "sp")
    run("apply", "--root", str(root), check=0)
    return root


LEDGERS = {
    "truncated": lambda data: data[: len(data) // 2],
    "empty": lambda data: b"",
    "not JSON": lambda data: b"\xff\xfe garbage",
    "a JSON list": lambda data: b"[1, 2]",
    "a target record that is not an object": lambda data: _edit_record(data, lambda rec: 5),
    "files that are not an object": lambda data: _edit_record(data, lambda rec: {**rec, "files": "oops"}),
    "a pending write without files": lambda data: _edit_record(data, lambda rec: {**rec, "pending": {"kind": "apply"}}),
    "a snapshot without inputs": lambda data: _edit_record(data, lambda rec: {**rec, "snapshot": {"reports": []}}),
}


def _edit_record(data: bytes, change) -> bytes:
    ledger = json.loads(data)
    key = next(iter(ledger["targets"]))
    ledger["targets"][key] = change(ledger["targets"][key])
    return json.dumps(ledger).encode()


@pytest.mark.parametrize("case", list(LEDGERS))
def test_corrupted_ledger_is_refused(case, tmp_path, run: Runner):
    root = _applied(tmp_path, run)
    ledger = run.state / "ledger.json"
    ledger.write_bytes(LEDGERS[case](ledger.read_bytes()))
    message = refuse_everywhere(run, ["--root", str(root)], ledger, f"mv {ledger}", root, f"ledger: {case}")
    assert "corrupted" in message


def test_ledger_from_a_newer_schema_is_refused(tmp_path, run: Runner):
    root = _applied(tmp_path, run)
    ledger = run.state / "ledger.json"
    doc = json.loads(ledger.read_text())
    doc["schema"] = 2
    ledger.write_text(json.dumps(doc))
    message = refuse_everywhere(
        run, ["--root", str(root)], ledger, "pip install -U hermes-patch", root, "ledger: from a newer schema"
    )
    assert "newer hermes-patch (schema 2" in message


# -- the configuration --------------------------------------------------------------------


CONFIGS = {
    "TOML syntax error": ("[patches\n", "not valid TOML"),
    "unknown top-level key": ("colour = 1\n", "unknown key(s) colour"),
    "unknown patch id": ("[patches.no-such-patch]\nenabled = false\n", "no-such-patch"),
    "unknown parameter": ("[patches.public-action-status]\nbogus = 1\n", "unknown key(s) bogus"),
    "enabled not a boolean": ('[patches.public-action-status]\nenabled = "yes"\n', "true or false"),
    "CIDR that does not parse": ('[patches.relax-ws-peer-check]\ntrusted_proxies = ["proxy.local"]\n', "not a network"),
    "CIDR with host bits 10.0.0.5/24": (
        '[patches.relax-ws-peer-check]\ntrusted_proxies = ["10.0.0.5/24"]\n',
        "10.0.0.0/24",
    ),
    "catch-all 0.0.0.0/0": (
        '[patches.relax-ws-peer-check]\ntrusted_proxies = ["0.0.0.0/0"]\n',
        "allow_catch_all = true",
    ),
    "catch-all ::/0": ('[patches.relax-ws-peer-check]\ntrusted_proxies = ["::/0"]\n', "allow_catch_all = true"),
    "catch-all with override not a boolean": (
        '[patches.relax-ws-peer-check]\ntrusted_proxies = ["::/0"]\nallow_catch_all = "yes"\n',
        "true or false",
    ),
    "trusted_proxies not a list": (
        '[patches.relax-ws-peer-check]\ntrusted_proxies = "127.0.0.5/32"\n',
        "list of CIDRs",
    ),
    "action the release does not have": ('[patches.public-action-status]\nactions = ["dump"]\n', "does not have"),
    "action name with a template": ('[patches.public-action-status]\nactions = ["{name}"]\n', "not an action name"),
    "action name with a wildcard": ('[patches.public-action-status]\nactions = ["*"]\n', "not an action name"),
}


@pytest.mark.parametrize("case", list(CONFIGS))
def test_bad_configuration_is_refused(case, tmp_path, run: Runner):
    text, needle = CONFIGS[case]
    root = _applied(tmp_path, run) if "release" not in case else copy_fixture("r0_15", tmp_path / "sp")
    run.configure(text)
    message = refuse_everywhere(run, ["--root", str(root)], run.config, "hermes-patch ", root, f"config: {case}")
    assert needle in message


def test_catch_all_is_accepted_with_the_documented_override(tmp_path, run: Runner):
    root = copy_fixture("r0_16", tmp_path / "sp")
    run.configure('[patches.relax-ws-peer-check]\ntrusted_proxies = ["0.0.0.0/0", "::/0"]\nallow_catch_all = true\n')
    pending = states(run.status("--root", str(root))[1])[WS] == "pending"
    applied = (
        run("apply", "--root", str(root)).returncode == 0
        and '("0.0.0.0/0", "::/0")' in (root / "hermes_cli/web_server.py").read_text()
    )
    observed = "accepted and applied" if pending and applied else "REFUSED"
    tally("config: catch-all with allow_catch_all = true", "accepted and applied", observed)
    assert observed == "accepted and applied"
