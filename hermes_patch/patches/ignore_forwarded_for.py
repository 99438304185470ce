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
import re
from typing import NamedTuple

from hermes_patch.core.edits import BeforeLast, Change, Edit, Example, NotNeeded, Unrecognized
from hermes_patch.core.patch import Check, Patch
from hermes_patch.core.source import Source, walk
from hermes_patch.core.workspace import Workspace

FUNCTION = "start_server"
KEYWORD = "proxy_headers"
# 0.15.0's own expression, with getattr: 0.13/0.14 never set app.state.auth_required.
RULE = 'bool(getattr(app.state, "auth_required", False))'
NOTE = "0.15's proxy_headers rule: uvicorn keeps the TCP peer outside the gated mode"
EVENTS = "/api/events?token={token}&channel=hermes-patch-verify"
BROWSER = "198.51.100.23"  # a remote browser's address (TEST-NET-2)
UVICORN_CALLS = ("uvicorn.run", "uvicorn.Config", "uvicorn.config.Config", "Config")

_BEFORE = "def start_server(host):\n    import uvicorn\n\n    uvicorn.run(app, host=host)\n"
_MARKER = f"# hermes-patch: ignore-forwarded-for ({NOTE})"


class Run(NamedTuple):
    """Where ``start_server()`` is, and upstream's final ``uvicorn.run(...)`` as written (None: it passes proxy_headers)."""

    file: str
    call: str | None


class IgnoreForwardedFor(Patch[Run]):
    ID = "ignore-forwarded-for"
    DESCRIPTION = "0.13/0.14: uvicorn no longer replaces the peer with X-Forwarded-For outside the gated mode (0.15 rule, backported)."
    VERSIONS = ">=0.13.0"
    UPSTREAM = (
        "hermes-agent#18415 (PR #26834), #15731, #34390; proxy_headers=bool(app.state.auth_required) since 0.15.0"
    )
    EXAMPLES = (
        Example(
            _BEFORE,
            "def start_server(host):\n    import uvicorn\n"
            f"    {_MARKER}\n    return uvicorn.run(app, host=host, {KEYWORD}={RULE})\n"
            "\n    uvicorn.run(app, host=host)\n",
        ),
        # Continuation lines are upstream's, kept as written (here in a module indented by two spaces).
        Example(
            "def start_server(host):\n  import uvicorn\n  uvicorn.run(\n      app,\n      host=host,\n  )\n",
            "def start_server(host):\n  import uvicorn\n"
            f"  {_MARKER}\n  return uvicorn.run(\n      app,\n      host=host, {KEYWORD}={RULE})\n"
            "  uvicorn.run(\n      app,\n      host=host,\n  )\n",
        ),
        Example(_BEFORE.replace("host=host)", "host=host, proxy_headers=False)"), state="not-needed", reason="0.15.0+"),
        Example(_BEFORE + "    print('bye')\n", state="unknown-shape", reason="does not end with its only uvicorn.run"),
        Example(_BEFORE.replace("host=host)", "**options)"), state="unknown-shape", reason="**kwargs"),
    )

    def locate(self, ws: Workspace) -> Run | Unrecognized:
        """``start_server()`` where the release keeps it (the entry module, or a sibling it imports it from)."""
        b = ws.resolve(FUNCTION)
        if b is None or not isinstance(b.node, ast.FunctionDef):
            return Unrecognized(
                f"looked for def {FUNCTION}() in {ws.entry} (or a hermes_cli module it imports it from); found none ({ws.closest(FUNCTION)})"
            )
        twice = ws.rebound(FUNCTION, b)
        if twice:
            return Unrecognized(twice)
        fn = b.node
        calls = [n for n in walk(fn.body) if isinstance(n, ast.Call) and ast.unparse(n.func) in UVICORN_CALLS]
        if any(k.arg == KEYWORD for call in calls for k in call.keywords):
            return Run(b.file, None)
        runs = [s for s in walk(fn.body) if isinstance(s, ast.Expr) and _is_run(s.value)]
        if len(runs) != 1 or runs[0] is not fn.body[-1]:
            return Unrecognized(f"{FUNCTION}() does not end with its only uvicorn.run(...) call")
        if not any(
            isinstance(s, ast.Import) and any(a.name == "uvicorn" and a.asname is None for a in s.names)
            for s in fn.body
        ):
            return Unrecognized(f"{FUNCTION}() does not `import uvicorn` itself")
        call = runs[0].value
        assert isinstance(call, ast.Call)
        if any(k.arg is None for k in call.keywords) or any(isinstance(a, ast.Starred) for a in call.args):
            return Unrecognized(
                f"the uvicorn.run(...) call in {FUNCTION}() passes *args or **kwargs; cannot tell what it sets"
            )
        src = ws.source(b.file)
        assert src is not None
        return Run(b.file, _call_text(src, runs[0]))

    def edits(self, run: Run) -> Change | NotNeeded:
        if run.call is None:
            return NotNeeded(
                f"{FUNCTION}() already passes {KEYWORD} to uvicorn (upstream 0.15.0+): no forwarded-header rewriting in loopback / --insecure mode"
            )
        head = run.call[: run.call.rindex(")")].rstrip()
        sep = "" if head.endswith("(") else " " if head.endswith(",") else ", "
        return Change(
            (
                Edit(
                    BeforeLast(FUNCTION, file=run.file),
                    f"return {head}{sep}{KEYWORD}={RULE})",
                    note=NOTE,
                    what="copy of upstream's call",
                    verbatim=True,
                ),
            ),
            pending=f"{FUNCTION}() runs uvicorn with its defaults (proxy_headers on, 127.0.0.1 trusted): a same-host proxy's "
            "X-Forwarded-For replaces the WebSocket peer; the edit passes 0.15's proxy_headers rule",
            applied=f"{FUNCTION}() runs uvicorn with {KEYWORD}={RULE}",
        )

    def checks(self, run: Run) -> tuple[Check, ...]:
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


def _is_run(node: ast.expr) -> bool:
    return isinstance(node, ast.Call) and ast.unparse(node.func) == "uvicorn.run"


def _call_text(src: Source, stmt: ast.stmt) -> str:
    """Upstream's call as written, continuation lines relative to the statement's indent.

    libcst re-indents a parenthesized continuation line with the block it
    is placed in, so the text we insert holds it relative.
    """
    lines = re.split(r"\r\n|\r|\n", src.lines(stmt.lineno, stmt.end_lineno or stmt.lineno).rstrip("\r\n"))
    indent = lines[0][: stmt.col_offset]
    out = [lines[0][stmt.col_offset :]]
    out += [line[len(indent) :] if line.startswith(indent) else line for line in lines[1:]]
    return "\n".join(out)
