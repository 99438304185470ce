"""ignore-forwarded-for: a same-host proxy's X-Forwarded-For no longer replaces the peer (0.15 rule, backported).

Upstream rule. 0.13.0 and 0.14.0 end ``start_server()`` with
``uvicorn.run(app, host=host, port=port, log_level="warning")``, so uvicorn's
defaults apply: ``proxy_headers=True`` and ``forwarded_allow_ips`` =
``127.0.0.1`` (or ``$FORWARDED_ALLOW_IPS``). A reverse proxy on the
dashboard's own host (Caddy, Traefik, nginx with
``$proxy_add_x_forwarded_for``, tailscaled, cloudflared) connects from
127.0.0.1, so uvicorn replaces the peer with the X-Forwarded-For address
before the dashboard's WebSocket peer check runs: every ``/api/ws``,
``/api/events`` and ``/api/pty`` of a browser on another address gets HTTP
403, whatever ``relax-ws-peer-check``'s ``trusted_proxies`` says
(hermes-agent#18415 with PR #26834, #15731, #34390). 0.15.0 passes
``proxy_headers=bool(app.state.auth_required)``: off in loopback /
``--insecure`` mode, on in the OAuth-gated mode.

The edit. One statement inserted right before that final ``uvicorn.run(...)``
call: ``return`` the same call, upstream's arguments copied verbatim, plus
0.15's ``proxy_headers=bool(getattr(app.state, "auth_required", False))``.
Upstream's call stays in the file (unreachable) and comes back on revert.
No forwarded header is read at all outside the gated mode, so a peer gains
nothing by sending X-Forwarded-For: the dashboard sees the TCP peer, and
``relax-ws-peer-check``'s ``trusted_proxies`` decides about it. A release
with a gated mode keeps upstream's rule there (``auth_required`` true turns
proxy headers on, as 0.15+ do).

Releases whose ``start_server()`` already passes ``proxy_headers`` to
``uvicorn.run`` or ``uvicorn.Config`` (0.15.0 and later) are ``not-needed``.
"""

from __future__ import annotations

import ast

from hermes_patch.engine import blocks_of
from hermes_patch.patch import MARKER_PREFIX, Check, Detection, Patch, Site, State
from hermes_patch.workspace import Binding, Workspace

FUNCTION = "start_server"
KEYWORD = "proxy_headers"
# 0.15.0's own expression, with getattr: 0.13/0.14 never set app.state.auth_required.
RULE = 'bool(getattr(app.state, "auth_required", False))'
NOTE = "0.15's proxy_headers rule: uvicorn keeps the TCP peer outside the gated mode"
EVENTS = "/api/events?token={token}&channel=hermes-patch-verify"
BROWSER = "198.51.100.23"  # a remote browser's address (TEST-NET-2)
UVICORN_CALLS = ("uvicorn.run", "uvicorn.Config", "uvicorn.config.Config", "Config")


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def _is_run(stmt: ast.stmt) -> bool:
    """``uvicorn.run(...)`` as an expression statement."""
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) and _dotted(stmt.value.func) == "uvicorn.run"


def _imports_uvicorn(fn: ast.FunctionDef) -> bool:
    return any(
        isinstance(s, ast.Import) and any(a.name == "uvicorn" and a.asname is None for a in s.names) for s in fn.body
    )


def render(call_text: str, newline: str) -> str:
    """The inserted statement (marker line, then ``return <upstream's call + proxy_headers>``), unindented.

    Args:
        call_text: upstream's call exactly as written (continuation lines
            keep their own indentation; libcst keeps it inside the brackets).
    """
    head, _, _ = call_text.rpartition(")")
    head = head.rstrip()
    sep = " " if head.endswith(",") else ", "
    if head.endswith("("):
        sep = ""
    return (
        newline.join([f"{MARKER_PREFIX}ignore-forwarded-for ({NOTE})", f"return {head}{sep}{KEYWORD}={RULE})"])
        + newline
    )


class IgnoreForwardedFor(Patch):
    ID = "ignore-forwarded-for"
    DESCRIPTION = "0.13/0.14: uvicorn no longer replaces the peer with X-Forwarded-For outside the gated mode (0.15 rule, backported)."
    VERSIONS = ">=0.13.0"
    UPSTREAM = (
        "hermes-agent#18415 (PR #26834), #15731, #34390; proxy_headers=bool(app.state.auth_required) since 0.15.0"
    )

    def _shape(self, ws: Workspace) -> tuple[Binding, ast.Expr | None] | str:
        """start_server's binding and its final ``uvicorn.run`` statement (None when it passes proxy_headers), or why not.

        start_server is found where the release keeps it (the entry module,
        or a sibling module it imports it from). Our own block (a ``return
        uvicorn.run(..., proxy_headers=...)``) is left out of the question
        "does upstream pass proxy_headers?".
        """
        b = ws.resolve(FUNCTION)
        if b is None or not isinstance(b.node, ast.FunctionDef):
            return f"looked for def {FUNCTION}() in {ws.entry} (or a hermes_cli module it imports it from); found none ({ws.closest(FUNCTION)})"
        twice = ws.rebound(FUNCTION, b)
        if twice:
            return twice
        fn = b.node
        ours = {id(block.node) for block in blocks_of(ws, self.ID, [b.file]).get(b.file, [])}
        upstream = [s for s in fn.body if id(s) not in ours]
        for stmt in upstream:
            for node in ast.walk(stmt):
                if (
                    isinstance(node, ast.Call)
                    and _dotted(node.func) in UVICORN_CALLS
                    and any(k.arg == KEYWORD for k in node.keywords)
                ):
                    return b, None
        runs = [s for stmt in upstream for s in ast.walk(stmt) if isinstance(s, ast.stmt) and _is_run(s)]
        if len(runs) != 1 or runs[0] is not fn.body[-1]:
            return f"{FUNCTION}() does not end with its only uvicorn.run(...) call"
        if not _imports_uvicorn(fn):
            return f"{FUNCTION}() does not `import uvicorn` itself"
        call = runs[0].value  # type: ignore[attr-defined]
        assert isinstance(call, ast.Call)
        if any(k.arg is None for k in call.keywords) or any(isinstance(a, ast.Starred) for a in call.args):
            return f"the uvicorn.run(...) call in {FUNCTION}() passes *args or **kwargs; cannot tell what it sets"
        return b, runs[0]  # type: ignore[return-value]

    def detect(self, ws: Workspace) -> Detection:
        shape = self._shape(ws)
        if isinstance(shape, str):
            return Detection(State.UNKNOWN_SHAPE, shape)
        binding, run = shape
        fn = binding.node
        assert isinstance(fn, ast.FunctionDef)
        src = ws.source(binding.file)
        assert src is not None
        blocks = blocks_of(ws, self.ID, [binding.file]).get(binding.file, [])
        if run is None:
            if blocks:
                return Detection(
                    State.DRIFTED, f"{FUNCTION}() passes {KEYWORD} itself now, but our block is still there"
                )
            return Detection(
                State.NOT_NEEDED,
                f"{FUNCTION}() already passes {KEYWORD} to uvicorn (upstream 0.15.0+): no forwarded-header rewriting in loopback / --insecure mode",
            )
        if not blocks:
            return Detection(
                State.PENDING,
                f"{FUNCTION}() runs uvicorn with its defaults (proxy_headers on, 127.0.0.1 trusted): a same-host proxy's "
                "X-Forwarded-For replaces the WebSocket peer; the edit passes 0.15's proxy_headers rule",
                sites=(Site(binding.file, FUNCTION, binding.first, binding.last),),
            )
        if len(blocks) != 1:
            return Detection(State.DRIFTED, f"found {len(blocks)} ignore-forwarded-for blocks; expected 1")
        block = blocks[0]
        last = fn.body[-1]
        if not (
            isinstance(block.node, ast.Return) and len(fn.body) >= 2 and fn.body[-2] is block.node and _is_run(last)
        ):
            return Detection(
                State.DRIFTED,
                f"the ignore-forwarded-for block (line {block.marker}) no longer sits right before the uvicorn.run(...) call",
            )
        want = self._expected(src, last, block.marker)
        if src.lines(block.marker, block.last) != want:
            return Detection(
                State.DRIFTED,
                f"the ignore-forwarded-for block (line {block.marker}) differs from upstream's call below it (edited, or the call changed)",
            )
        return Detection(State.APPLIED, f"{FUNCTION}() runs uvicorn with {KEYWORD}={RULE}")

    @staticmethod
    def _call_text(src, stmt: ast.stmt) -> str:
        """Upstream's call as written, continuation lines relative to the statement's indent.

        libcst re-indents a parenthesized continuation line with the block it
        is placed in, so the text we insert holds it relative.
        """
        lines = src.lines(stmt.lineno, stmt.end_lineno or stmt.lineno).splitlines(keepends=True)
        indent = lines[0][: stmt.col_offset]
        out = [lines[0][stmt.col_offset :]]
        out += [line[len(indent) :] if line.startswith(indent) else line for line in lines[1:]]
        return "".join(out).rstrip("\r\n")

    def _expected(self, src, run: ast.stmt, marker_line: int) -> str:
        line = src.lines(marker_line, marker_line)
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        code = render(self._call_text(src, run), src.newline)
        return "".join(indent + piece if piece.strip() else piece for piece in code.splitlines(keepends=True))

    def probe(self, workspace: Workspace) -> tuple[Check, ...]:
        """A browser behind a same-host proxy keeps the proxy's peer; a forged header gains nothing.

        Real ``/api/events`` handshakes through the release's own uvicorn:
        from 127.0.0.1 with ``X-Forwarded-For`` of a remote browser (the
        dashboard must see 127.0.0.1, a loopback peer, and accept), and from
        127.0.0.6 (outside every rule) forging ``X-Forwarded-For: 127.0.0.1``
        (refused). The control is the same handshake without the header.
        """
        forwarded = (("X-Forwarded-For", BROWSER),)
        return (
            Check(
                "loopback peer without X-Forwarded-For: /api/events",
                "websocket",
                EVENTS,
                "allowed",
                "127.0.0.1",
                control=True,
            ),
            Check(
                f"browser {BROWSER} through a same-host proxy at 127.0.0.1 (X-Forwarded-For: {BROWSER}): /api/events",
                "websocket",
                EVENTS,
                "allowed",
                "127.0.0.1",
                headers=forwarded,
            ),
            Check(
                "peer 127.0.0.6 forging X-Forwarded-For: 127.0.0.1: /api/events",
                "websocket",
                EVENTS,
                "refused",
                "127.0.0.6",
                headers=(("X-Forwarded-For", "127.0.0.1"),),
            ),
        )

    def transformer(self, site: Site, workspace: Workspace):
        src = workspace.source(site.file)
        shape = self._shape(workspace)
        assert not isinstance(shape, str) and shape[1] is not None
        code = render(self._call_text(src, shape[1]), src.newline)
        return _InsertBeforeLast(FUNCTION, code)


def _insert_before_last_factory():
    import libcst as cst

    from hermes_patch.codemod import parse_statement

    class InsertBeforeLast(cst.CSTTransformer):
        """Insert one statement right before the last statement of a top-level function."""

        def __init__(self, function: str, code: str) -> None:
            super().__init__()
            self.function = function
            self.code = code

        def visit_Module(self, node: cst.Module) -> bool:
            return False

        def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
            body = list(updated_node.body)
            for index, stmt in enumerate(body):
                if (
                    isinstance(stmt, cst.FunctionDef)
                    and stmt.name.value == self.function
                    and isinstance(stmt.body, cst.IndentedBlock)
                ):
                    new = parse_statement(self.code, updated_node)
                    inner = list(stmt.body.body)
                    if len(inner) >= 2 and updated_node.code_for_node(inner[-2]) == updated_node.code_for_node(new):
                        return updated_node
                    inner.insert(len(inner) - 1, new)
                    body[index] = stmt.with_changes(body=stmt.body.with_changes(body=inner))
                    return updated_node.with_changes(body=body)
            return updated_node

    return InsertBeforeLast


def _InsertBeforeLast(function: str, code: str):
    return _insert_before_last_factory()(function, code)
