"""Code that means the same but looks different, on the real releases.

Each variant of a release's web_server.py (ruff format and black at line
lengths 79, 100 and 120; comments in and around the target set and peer
functions; single quotes; magic trailing commas; no blank lines between
top-level statements) must reach the same patch states as the original,
apply (compiling, detecting as applied), revert byte-exact for that
variant, and, once applied, decide exactly as the patched original does:
the same public path set and the same peer decisions (tests/behaviour.py).

Releases: one per shape family by default (0.14.0 for 0.13-0.14, 0.15.2
for 0.15.x, 0.16.0 and 0.19.0 for 0.16-0.19). ruff and the hand-written
variants run on all four; black (whose output ruff format reproduces, and
which needs 15 s to a minute per length on the 9,000-19,000-line files of
0.16+) on 0.14.0 and 0.15.2. With HERMES_PATCH_ALL_RELEASES=1 every release
gets every variant.

Shapes that mean something different must end as unknown-shape or as a
correct edit, never a silent wrong one (the end of this file).
"""

from __future__ import annotations

import ast
import io
import os
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

from behaviour import peer_rule, public_paths
from conftest import CACHE, RELEASES, Runner, copy_real, states, tally, tree_digest

pytestmark = pytest.mark.real

PAS, WS = "public-action-status", "relax-ws-peer-check"
PROXY = '[patches.relax-ws-peer-check]\ntrusted_proxies = ["127.0.0.5/32"]\n'
ALL = bool(os.environ.get("HERMES_PATCH_ALL_RELEASES"))
FAMILY = ["0.14.0", "0.15.2", "0.16.0", "0.19.0"]
BLACK = {"0.14.0", "0.15.2"}
PEER_FUNCTIONS = ("_ws_client_is_allowed", "_ws_client_reason", "_is_public_bind")
TARGET_NAMES = ("_PUBLIC_API_PATHS", "_LOOPBACK_HOSTS")


# -- formatters -------------------------------------------------------------------------------


def _tool(name: str) -> str:
    exe = Path(sys.executable).parent / name
    if not exe.exists():
        pytest.skip(f"{name} is not installed (it is in the `test` extra: pip install '.[test]')")
    return str(exe)


def ruff(length: int):
    def fmt(data: bytes, tmp: Path) -> bytes:
        path = tmp / "fmt.py"
        path.write_bytes(data)
        subprocess.run(
            [_tool("ruff"), "format", "--isolated", "--quiet", "--line-length", str(length), str(path)], check=True
        )
        return path.read_bytes()

    return fmt


def black(length: int):
    def fmt(data: bytes, tmp: Path) -> bytes:
        import hashlib

        exe = _tool("black")
        version = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout.split()[1]
        cached = CACHE / "reformatted" / f"{hashlib.sha256(data).hexdigest()[:16]}-black{version}-{length}.py"
        if cached.exists():  # black needs ~1 min per length on the largest releases
            return cached.read_bytes()
        path = tmp / "fmt.py"
        path.write_bytes(data)
        subprocess.run([exe, "--quiet", "--line-length", str(length), str(path)], check=True)
        cached.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, cached)
        return path.read_bytes()

    return fmt


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


def comments(data: bytes, tmp: Path) -> bytes:
    """Comments above, inside, after and trailing the target set, _LOOPBACK_HOSTS and the peer functions."""
    lines = _lines(data)
    before: dict[int, list[bytes]] = {}
    trailing: set[int] = set()

    def indent(line_no: int) -> bytes:
        line = lines[line_no - 1]
        return line[: len(line) - len(line.lstrip())]

    for node in ast.parse(data).body:
        name = getattr(node, "name", None) or next(
            (ast.unparse(t) for t in getattr(node, "targets", [getattr(node, "target", None)]) if t is not None), None
        )
        if isinstance(node, ast.ImportFrom):
            name = next((a.asname or a.name for a in node.names if (a.asname or a.name) in TARGET_NAMES), None)
        if name in TARGET_NAMES:
            before.setdefault(node.lineno, []).append(f"# a comment above {name}\n".encode())
            if node.end_lineno > node.lineno:
                before.setdefault(node.end_lineno, []).append(f"    # a comment inside {name}\n".encode())
            trailing.add(node.end_lineno)
            before.setdefault(node.end_lineno + 1, []).append(f"# a comment after {name}\n".encode())
        elif isinstance(node, ast.FunctionDef) and node.name in PEER_FUNCTIONS:
            before.setdefault(node.lineno, []).append(f"# a comment above {node.name}\n".encode())
            first = node.body[0].lineno
            if lines[first - 2].rstrip().endswith(b":"):
                trailing.add(first - 1)
            before.setdefault(first, []).append(indent(first) + b"# a comment before the first statement\n")
            if len(node.body) > 1:
                second = node.body[1].lineno
                before.setdefault(second, []).append(indent(second) + b"# a comment after the docstring\n")
            last = node.body[-1].lineno
            before.setdefault(last, []).append(indent(last) + b"# a comment before the last statement\n")
    out = []
    for number, line in enumerate(lines, 1):
        out.extend(before.get(number, []))
        if number in trailing and b"#" not in line:
            body = line.rstrip(b"\r\n")
            line = body + b"  # a trailing comment" + line[len(body) :]
        out.append(line)
    return b"".join(out)


def single_quotes(data: bytes, tmp: Path) -> bytes:
    """Every plain double-quoted one-line string becomes single-quoted."""
    text = data.decode("utf-8")
    starts = [0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    edits = []
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        s = tok.string
        if tok.type == tokenize.STRING and s[:1] == '"' and not s.startswith('"""') and "'" not in s and "\\" not in s:
            edits.append((starts[tok.start[0] - 1] + tok.start[1], len(s), "'" + s[1:-1] + "'"))
    for offset, size, new in reversed(edits):
        text = text[:offset] + new + text[offset + size :]
    return text.encode("utf-8")


def trailing_commas(data: bytes, tmp: Path) -> bytes:
    """A magic trailing comma after the last element of every multi-line call, set, dict and list."""
    lines = _lines(data)
    inserts: list[tuple[int, int]] = []
    for node in ast.walk(ast.parse(data)):
        if isinstance(node, ast.Call):
            if any(isinstance(a, ast.GeneratorExp) for a in node.args):
                continue
            items = [*node.args, *node.keywords]
        elif isinstance(node, (ast.Set, ast.List)):
            items = list(node.elts)
        elif isinstance(node, ast.Dict):
            items = list(node.values)
        else:
            continue
        if not items or node.end_lineno == node.lineno:
            continue
        last = max(items, key=lambda n: (n.end_lineno, n.end_col_offset))
        if last.end_lineno == node.end_lineno:
            continue  # closing bracket on the last element's line: not the magic-comma layout
        tail = lines[last.end_lineno - 1][last.end_col_offset :].split(b"#")[0]
        between = (
            b"".join(lines[last.end_lineno : node.end_lineno - 1]) + lines[node.end_lineno - 1][: node.end_col_offset]
        )
        if tail.strip().startswith(b",") or b"," in tail or between.split(b"#")[0].lstrip().startswith(b","):
            continue
        inserts.append((last.end_lineno, last.end_col_offset))
    for line_no, col in sorted(inserts, reverse=True):
        line = lines[line_no - 1]
        lines[line_no - 1] = line[:col] + b"," + line[col:]
    return b"".join(lines)


def no_blank_lines(data: bytes, tmp: Path) -> bytes:
    """Drop every blank line between top-level statements (comments stay)."""
    lines = _lines(data)
    drop = set()
    body = ast.parse(data).body
    for prev, node in zip(body, body[1:]):
        first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        for number in range(prev.end_lineno + 1, first):
            if not lines[number - 1].strip():
                drop.add(number)
    return b"".join(line for number, line in enumerate(lines, 1) if number not in drop)


VARIANTS = {
    **{f"ruff format -l {n}": ruff(n) for n in (79, 100, 120)},
    **{f"black -l {n}": black(n) for n in (79, 100, 120)},
    "comments in and around the targets": comments,
    "single quotes": single_quotes,
    "magic trailing commas": trailing_commas,
    "no blank lines between top-level statements": no_blank_lines,
}


def _cases():
    for version in RELEASES if ALL else FAMILY:
        for name in VARIANTS:
            if name.startswith("black") and version not in BLACK and not ALL:
                continue
            yield pytest.param(version, name, id=f"{version}-{name.replace(' ', '_')}")


# -- the property --------------------------------------------------------------------------------

_BASELINE: dict[str, tuple] = {}


def baseline(version: str, tmp: Path) -> tuple[dict, dict, frozenset, dict]:
    """States (default and with trusted_proxies) and the applied behaviour of the original release."""
    if version not in _BASELINE:
        root = copy_real(version, tmp / "original" / "sp")
        run = Runner(tmp / "original")
        default = states(run.status("--root", str(root))[1])
        run.configure(PROXY)
        proxied = states(run.status("--root", str(root))[1])
        run("apply", "--root", str(root), check=0)
        _BASELINE[version] = (default, proxied, public_paths(root / "hermes_cli"), peer_rule(root / "hermes_cli"))
    return _BASELINE[version]


@pytest.mark.parametrize("version, variant", list(_cases()))
def test_reformatted_release_patches_the_same(version, variant, tmp_path):
    default, proxied, paths, rule = baseline(version, tmp_path)
    root = copy_real(version, tmp_path / "variant" / "sp")
    web = root / "hermes_cli/web_server.py"
    original = web.read_bytes()
    web.write_bytes(VARIANTS[variant](original, tmp_path))
    formatted = web.read_bytes()
    assert formatted != original, "the variant changed nothing"
    compile(formatted, "variant", "exec", dont_inherit=True)
    before = tree_digest(root)
    run = Runner(tmp_path / "variant")

    same_states = states(run.status("--root", str(root))[1]) == default
    run.configure(PROXY)
    same_states = same_states and states(run.status("--root", str(root))[1]) == proxied
    applied = run("apply", "--root", str(root))
    code, doc = run.status("--root", str(root))
    ok_applied = (
        applied.returncode == 0
        and code == 0
        and set(states(doc).values()) <= {"applied", "not-needed"}
        and states(doc)["public-action-status"] == "applied"
    )
    compiles = True
    try:
        compile(web.read_bytes(), "patched", "exec", dont_inherit=True)
    except SyntaxError:
        compiles = False
    same_paths = public_paths(root / "hermes_cli") == paths
    same_rule = peer_rule(root / "hermes_cli") == rule
    reverted = run("revert", "--root", str(root)).returncode == 0 and tree_digest(root) == before

    expected = "same states; applied, compiles; same public paths and peer decisions as the patched original; revert byte-exact"
    observed = "; ".join(
        [
            "same states" if same_states else f"STATES DIFFER {states(doc)}",
            "applied, compiles" if ok_applied and compiles else f"NOT APPLIED {applied.stderr.strip()[:300]}",
            "same public paths and peer decisions as the patched original"
            if same_paths and same_rule
            else f"BEHAVIOUR DIFFERS (paths {same_paths}, peers {same_rule})",
            "revert byte-exact" if reverted else "REVERT NOT BYTE-EXACT",
        ]
    )
    tally(f"real {version} reformatted: {variant}", expected, observed)
    assert observed == expected


# -- shapes that mean something different ---------------------------------------------------------


def _replace(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def _rename(path: Path, old: str, new: str) -> None:
    import re

    text = path.read_text(encoding="utf-8")
    path.write_text(re.sub(rf"\b{old}\b", new, text), encoding="utf-8")


def _move_body(path: Path, function: str, helper: str) -> None:
    """Move ``function``'s body into a new ``helper`` and make ``function`` delegate to it."""
    text = path.read_text(encoding="utf-8")
    node = next(n for n in ast.parse(text).body if isinstance(n, ast.FunctionDef) and n.name == function)
    lines = text.splitlines(keepends=True)
    header = "".join(lines[node.lineno - 1 : node.body[0].lineno - 1])
    body = "".join(lines[node.body[0].lineno - 1 : node.end_lineno])
    moved = (
        header.replace(f"def {function}(", f"def {helper}(", 1) + body + "\n\n" + header + f"    return {helper}(ws)\n"
    )
    path.write_text("".join(lines[: node.lineno - 1]) + moved + "".join(lines[node.end_lineno :]), encoding="utf-8")


def _shared(root: Path) -> Path:
    return root / "hermes_cli/dashboard_auth/public_paths.py"


def _web(root: Path) -> Path:
    return root / "hermes_cli/web_server.py"


UPDATE, RESTART = "/api/actions/hermes-update/status", "/api/actions/gateway-restart/status"

SHAPES = {
    # name: (release, patch, change, outcomes allowed: "unknown-shape" and/or "correct edit")
    "renamed peer function": (
        "0.15.2",
        WS,
        lambda r: _rename(_web(r), "_ws_client_is_allowed", "_ws_peer_ok"),
        {"unknown-shape"},
    ),
    "renamed _ws_client_reason only": (
        "0.19.0",
        WS,
        lambda r: _rename(_web(r), "_ws_client_reason", "_ws_peer_reason"),
        {"unknown-shape"},
    ),
    "peer policy moved into another function": (
        "0.15.2",
        WS,
        lambda r: _move_body(_web(r), "_ws_client_is_allowed", "_peer_policy"),
        {"unknown-shape"},
    ),
    "reason policy moved into another function": (
        "0.19.0",
        WS,
        lambda r: _move_body(_web(r), "_ws_client_reason", "_peer_reason"),
        {"unknown-shape"},
    ),
    "peer function replaced later by another": (
        "0.15.2",
        WS,
        lambda r: _web(r).write_text(
            _web(r).read_text()
            + "\ndef _strict(ws):\n    return ws.client.host in _LOOPBACK_HOSTS\n\n\n_ws_client_is_allowed = _strict\n"
        ),
        {"unknown-shape"},
    ),
    "set built by a helper call": (
        "0.15.2",
        PAS,
        lambda r: _replace(
            _web(r),
            "_PUBLIC_API_PATHS: frozenset = frozenset({",
            "def _public(paths):\n    return frozenset(paths)\n\n\n_PUBLIC_API_PATHS: frozenset = _public({",
        ),
        {"unknown-shape"},
    ),
    "set rebound inside an if block": (
        "0.15.2",
        PAS,
        lambda r: _web(r).write_text(
            _web(r).read_text()
            + '\nif os.environ.get("HERMES_LOCKDOWN"):\n    _PUBLIC_API_PATHS = frozenset({"/api/status"})\n'
        ),
        {"unknown-shape"},
    ),
    "set rebound by a function at startup": (
        "0.15.2",
        PAS,
        lambda r: _web(r).write_text(
            _web(r).read_text()
            + '\ndef _load_public_paths():\n    global _PUBLIC_API_PATHS\n    _PUBLIC_API_PATHS = frozenset(os.environ.get("HERMES_PUBLIC", "").split())\n'
        ),
        {"unknown-shape"},
    ),
    "membership test replaced by a function": (
        "0.19.0",
        PAS,
        lambda r: _replace(_web(r), "path not in _PUBLIC_API_PATHS", "not _is_public(path)"),
        {"unknown-shape"},
    ),
    "shared set built by a helper call": (
        "0.19.0",
        PAS,
        lambda r: _replace(
            _shared(r),
            "PUBLIC_API_PATHS: frozenset[str] = frozenset({",
            "def _public(paths):\n    return frozenset(paths)\n\n\nPUBLIC_API_PATHS: frozenset[str] = _public({",
        ),
        {"correct edit"},
    ),
    "fork already added the update path": (
        "0.15.2",
        PAS,
        lambda r: _replace(_web(r), '    "/api/status",\n', f'    "/api/status",\n    "{UPDATE}",\n'),
        {"correct edit"},
    ),
    "fork already added both paths": (
        "0.15.2",
        PAS,
        lambda r: _replace(_web(r), '    "/api/status",\n', f'    "/api/status",\n    "{UPDATE}",\n    "{RESTART}",\n'),
        {"not-needed"},
    ),
    "fork added the paths to the shared set": (
        "0.19.0",
        PAS,
        lambda r: _replace(
            _shared(r), '    "/api/status",\n', f'    "/api/status",\n    "{UPDATE}",\n    "{RESTART}",\n'
        ),
        {"not-needed"},
    ),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_shapes_that_mean_something_else_are_refused_or_edited_correctly(shape, tmp_path):
    version, patch_id, change, allowed = SHAPES[shape]
    root = copy_real(version, tmp_path / "sp")
    change(root)
    before = tree_digest(root)
    try:  # a set built by a helper defined elsewhere in web_server.py cannot be evaluated alone
        paths_before = public_paths(root / "hermes_cli")
    except NameError:
        paths_before = None
    run = Runner(tmp_path)
    run.configure(PROXY)
    code, doc = run.status("--root", str(root))
    report = {p["id"]: p for p in doc["patches"]}[patch_id]
    if report["state"] == "unknown-shape":
        refused = run("apply", patch_id, "--root", str(root))
        outcome = (
            "unknown-shape"
            if refused.returncode == 2 and tree_digest(root) == before
            else f"UNKNOWN-SHAPE BUT APPLY EXITED {refused.returncode}"
        )
        outcome += f" ({report['reason'][:90]})" if outcome == "unknown-shape" else ""
    elif report["state"] == "not-needed":
        outcome = "not-needed"
    else:
        applied = run("apply", patch_id, "--root", str(root))
        added = public_paths(root / "hermes_cli") - paths_before if paths_before is not None else None
        correct = (
            applied.returncode == 0
            and added is not None
            and {UPDATE, RESTART} <= public_paths(root / "hermes_cli")
            and added <= {UPDATE, RESTART}
        )
        untouched = not (root / "hermes_cli/dashboard_auth").exists() or tree_digest(
            root / "hermes_cli/dashboard_auth"
        ) == {
            k.split("hermes_cli/dashboard_auth/", 1)[1]: v
            for k, v in before.items()
            if k.startswith("hermes_cli/dashboard_auth/")
        }
        outcome = (
            "correct edit" if correct and untouched else f"WRONG EDIT (added {added}, shared untouched {untouched})"
        )
    verdict = outcome.split(" (")[0]
    expected = " or ".join(sorted(allowed))
    tally(
        f"a shape that means something else: {shape} (real {version})",
        f"{patch_id}: {expected}",
        f"{patch_id}: {verdict}",
    )
    assert verdict in allowed, (report, outcome)
