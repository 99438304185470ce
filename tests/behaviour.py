"""What a (patched) dashboard decides, evaluated without importing Hermes or FastAPI.

The peer-check functions and the public path set are plain Python over a few
module globals, so the tests exec just those top-level statements, taken
from the files as they are on disk, with stub ``app`` and WebSocket
objects. Comparing these decisions between an original-format and a
reformatted release shows the patch means the same on both.
"""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

HELPER = "_hermes_patch_ws_peer_allowed"
RULE = ("_LOOPBACK_HOSTS", "_is_public_bind", HELPER, "_ws_client_reason", "_ws_client_is_allowed")
PEERS = ("127.0.0.1", "127.0.0.5", "127.0.0.6", "10.0.0.9", "")
BINDS = ("127.0.0.1", "127.0.0.2", "0.0.0.0")
MODULES = ("web_server.py", "ws_policy.py")


def _binds(node: ast.stmt, name: str) -> bool:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return node.name == name
    if isinstance(node, ast.Assign):
        return any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
    if isinstance(node, ast.AnnAssign):
        return isinstance(node.target, ast.Name) and node.target.id == name and node.value is not None
    if isinstance(node, ast.ImportFrom):
        return any((a.asname or a.name) == name for a in node.names)
    return False


def statements(
    package: Path, names: tuple[str, ...], files: tuple[str, ...] = MODULES
) -> list[tuple[Path, ast.stmt, str]]:
    """Top-level statements of ``files`` (in ``package``) that bind any of ``names``, with their source."""
    out = []
    for name in files:
        path = package / name
        if not path.is_file():
            continue
        source = path.read_bytes().decode(_encoding(path))
        for node in ast.parse(source).body:
            if any(_binds(node, n) for n in names):
                out.append((path, node, ast.get_source_segment(source, node, padded=True) or ""))
    return out


def _encoding(path: Path) -> str:
    import tokenize

    with open(path, "rb") as fh:
        return tokenize.detect_encoding(fh.readline)[0]


def _code(package: Path) -> str:
    parts = [src for _, node, src in statements(package, RULE) if not isinstance(node, ast.ImportFrom)]
    return "\n\n".join(ast.unparse(ast.parse(p)) for p in parts)  # unparse: no indentation left from `padded`


def peer_rule(package: Path) -> dict[tuple[str, str, bool], tuple[bool, bool | None]]:
    """(bind, peer, OAuth gate on) → (``_ws_client_is_allowed``, ``_ws_client_reason is None`` or None if absent)."""
    code = compile(_code(package), str(package / "web_server.py"), "exec")
    out = {}
    for bind in BINDS:
        for peer in PEERS:
            for gated in (False, True):
                app = SimpleNamespace(state=SimpleNamespace(bound_host=bind, auth_required=gated))
                ws = SimpleNamespace(client=SimpleNamespace(host=peer) if peer else None, scope={"app": app})
                ns = {"app": app, "Optional": Optional, "WebSocket": object, "__name__": "hermes_cli.web_server"}
                exec(code, ns)
                reason = ns["_ws_client_reason"](ws) is None if "_ws_client_reason" in ns else None
                out[(bind, peer, gated)] = (bool(ns["_ws_client_is_allowed"](ws)), reason)
    return out


def helper(package: Path):
    """The inserted helper as a function (raises KeyError when it is not there)."""
    ns: dict = {"Optional": Optional}
    for _, _, src in statements(package, ("_LOOPBACK_HOSTS", HELPER)):
        exec(ast.unparse(ast.parse(src)), ns)
    return ns[HELPER]


def public_paths(package: Path) -> frozenset[str]:
    """web_server's ``_PUBLIC_API_PATHS`` after every top-level binding of it ran (imports followed)."""
    ns: dict = {}
    for _path, node, src in statements(package, ("_PUBLIC_API_PATHS",), ("web_server.py",)):
        if isinstance(node, ast.ImportFrom):
            module = package.parent / (node.module or "").replace(".", "/")
            shared: dict = {}
            exec(compile((module.with_suffix(".py")).read_bytes(), str(module), "exec"), shared)
            for alias in node.names:
                if (alias.asname or alias.name) == "_PUBLIC_API_PATHS":
                    ns["_PUBLIC_API_PATHS"] = shared[alias.name]
        else:
            exec(ast.unparse(ast.parse(src)), ns)
    return frozenset(ns["_PUBLIC_API_PATHS"])
