"""Run the Host / Origin check and the CORS rule of a (patched) dashboard module, without Hermes.

The behaviour tests of ``trusted-hosts`` and ``cors-origins`` execute the
real code that is in the file: the top-level statements that make up
``_is_accepted_host`` (its helpers and constants), the WebSocket
Host/Origin guard, and the ``app.add_middleware(CORSMiddleware, ...)``
statement followed by whatever hermes-patch inserted after it. Nothing else
of the module runs, so neither fastapi nor Hermes' dependencies are needed.
"""

from __future__ import annotations

import __future__
import ast
import re
import urllib.parse
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Optional

HOST_NAMES = (
    "_LOOPBACK_HOST_VALUES",
    "_is_accepted_host",
    "_hermes_patch_trusted_host",
    "_ws_host_origin_reason",
    "_ws_host_origin_is_allowed",
)


def _bound(stmt: ast.stmt) -> str | None:
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return stmt.name
    if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
        return stmt.targets[0].id
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
        return stmt.target.id
    return None


def _run(nodes: list[ast.stmt], namespace: dict, filename: str) -> dict:
    code = compile(
        ast.Module(body=nodes, type_ignores=[]),
        filename,
        "exec",
        flags=__future__.annotations.compiler_flag,
        dont_inherit=True,
    )
    exec(code, namespace)
    return namespace


class HostCheck:
    """The Host / Origin functions of the modules in ``package`` (``hermes_cli/``), ready to call.

    Attributes:
        accepted: ``_is_accepted_host(value, bound_host) -> bool``.
        ws_reason: ``(headers, bound_host) -> str | None`` through the
            release's WebSocket guard (``None`` means allowed), or ``None``
            when the release has no such guard (0.13, 0.14).
    """

    def __init__(self, package: Path, files: tuple[str, ...] = ("web_server.py", "ws_policy.py")) -> None:
        self.app = SimpleNamespace(state=SimpleNamespace(bound_host="127.0.0.1"))
        namespace: dict = {"__name__": "hostcheck", "urllib": urllib, "Optional": Optional, "app": self.app}
        for name in files:
            path = package / name
            if not path.exists():
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            _run([s for s in tree.body if _bound(s) in HOST_NAMES], namespace, str(path))
        self.ns = namespace
        self.accepted: Callable[[str, str], bool] = namespace["_is_accepted_host"]
        self.has_ws_guard = "_ws_host_origin_reason" in namespace or "_ws_host_origin_is_allowed" in namespace

    def ws_reason(self, headers: dict[str, str], bound_host: str = "127.0.0.1") -> Optional[str]:
        """Run the release's WebSocket Host/Origin guard; ``None`` when the upgrade passes."""
        self.app.state.bound_host = bound_host
        ws = SimpleNamespace(headers={k.lower(): v for k, v in headers.items()}, scope={"app": self.app})
        if "_ws_host_origin_reason" in self.ns:
            return self.ns["_ws_host_origin_reason"](ws)
        return None if self.ns["_ws_host_origin_is_allowed"](ws) else "refused"


class _Middleware:
    """Starlette's ``Middleware`` record as of 0.35: ``cls``, ``args``, ``kwargs``."""

    def __init__(self, cls, *args, **kwargs):
        self.cls, self.args, self.kwargs = cls, args, kwargs


class _OldMiddleware:
    """Starlette's ``Middleware`` record before 0.35: ``cls``, ``options``."""

    def __init__(self, cls, **options):
        self.cls, self.options = cls, options


class _App:
    def __init__(self, record) -> None:
        self.user_middleware: list = []
        self.record = record

    def add_middleware(self, cls, *args, **kwargs) -> None:
        # Starlette puts the newest middleware first (outermost).
        self.user_middleware.insert(0, self.record(cls, *args, **kwargs))


class CORSMiddleware:
    """Stands for fastapi's CORSMiddleware class (only its identity matters here)."""


def cors_regex(web_server: Path, *, old_starlette: bool = False) -> str:
    """The ``allow_origin_regex`` the dashboard's CORSMiddleware is built with.

    Runs the module's ``app.add_middleware(CORSMiddleware, ...)`` statement
    and the statements hermes-patch placed right after it (our block, if
    any) against a stand-in app whose ``add_middleware`` records options like
    Starlette does; a second, unrelated middleware is added first so the
    block must find the right record.
    """
    tree = ast.parse(web_server.read_text(encoding="utf-8"))
    body = tree.body
    index = next(
        i
        for i, s in enumerate(body)
        if isinstance(s, ast.Expr)
        and isinstance(s.value, ast.Call)
        and isinstance(s.value.func, ast.Attribute)
        and s.value.func.attr == "add_middleware"
        and s.value.args
        and isinstance(s.value.args[0], ast.Name)
        and s.value.args[0].id == "CORSMiddleware"
    )
    nodes = [body[index]]
    text = web_server.read_text(encoding="utf-8").splitlines()
    for stmt in body[index + 1 :]:
        if "# hermes-patch: cors-origins" not in text[stmt.lineno - 2]:
            break
        nodes.append(stmt)
    app = _App(_OldMiddleware if old_starlette else _Middleware)
    app.add_middleware(object, marker="unrelated")
    _run(nodes, {"__name__": "corscheck", "app": app, "CORSMiddleware": CORSMiddleware}, str(web_server))
    record = next(m for m in app.user_middleware if m.cls is CORSMiddleware)
    other = next(m for m in app.user_middleware if m.cls is object)
    assert (other.options if old_starlette else other.kwargs) == {"marker": "unrelated"}
    return (record.options if old_starlette else record.kwargs)["allow_origin_regex"]


def cors_allows(regex: str, origin: str) -> bool:
    """Starlette's test (``CORSMiddleware.is_allowed_origin``): ``fullmatch`` of the compiled regex."""
    return re.compile(regex).fullmatch(origin) is not None
