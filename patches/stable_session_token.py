"""stable-session-token: HERMES_DASHBOARD_SESSION_TOKEN, backported from 0.16.0 to 0.13-0.15.

Upstream rule: 0.13.0-0.15.2 draw ``_SESSION_TOKEN =
secrets.token_urlsafe(32)`` at every start, so an open page holds a token
the next dashboard process does not know. ``hermes update`` stops the
running dashboard at its end (0.14.0 ``hermes_cli/main.py``,
``_kill_stale_dashboard_processes``) and a supervisor starts a new one: the
page's Update progress poll then gets 401 (0.14.0 retries every 1.5 s
forever; 0.15 reloads the page and loses the progress modal). 0.16.0 reads
an optional ``HERMES_DASHBOARD_SESSION_TOKEN`` from the environment
instead (``os.environ.get(...) or secrets.token_urlsafe(32)``).

The edit rebinds the token right after upstream's binding, exactly as
0.16.0 decides it: the environment variable when set and not empty, else
upstream's fresh token. Without the variable nothing changes. Releases that
read the variable themselves (0.16.0+) are not-needed; a constant token is
already stable. The token itself never enters the file: it lives in the
dashboard's environment (see ``hermes-patch hook install --session-token``).
"""

from __future__ import annotations

import ast

from hermes_patch.engine import blocks_of
from hermes_patch.patch import MARKER_PREFIX, Detection, Patch, Site, State
from hermes_patch.workspace import Workspace

NAME = "_SESSION_TOKEN"
ENV = "HERMES_DASHBOARD_SESSION_TOKEN"


def render(newline: str) -> str:
    """The block inserted after upstream's ``_SESSION_TOKEN`` binding."""
    return (
        newline.join(
            [
                f"{MARKER_PREFIX}stable-session-token ({ENV} keeps the token across restarts, as in 0.16.0)",
                f'{NAME} = os.environ.get("{ENV}") or {NAME}',
            ]
        )
        + newline
    )


def _mentions_env(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Constant) and n.value == ENV for n in ast.walk(node))


def _is_secrets_call(node: ast.AST | None) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "secrets"
    )


class StableSessionToken(Patch):
    ID = "stable-session-token"
    DESCRIPTION = "Read the session token from HERMES_DASHBOARD_SESSION_TOKEN when set (0.16.0's rule, backported), so an open page survives a dashboard restart."
    VERSIONS = ">=0.13.0"
    UPSTREAM = "HERMES_DASHBOARD_SESSION_TOKEN read by web_server.py since 0.16.0; 0.13.0-0.15.2 draw secrets.token_urlsafe(32) at every start"

    def detect(self, ws: Workspace) -> Detection:
        src = ws.entry_source()
        mine = blocks_of(ws, self.ID, [ws.entry]).get(ws.entry, [])
        owned = {line for b in mine for line in range(b.first, b.last + 1)}
        upstream = [b for b in ws.binding(NAME) if b.first not in owned]
        if len(upstream) != 1 or not isinstance(upstream[0].node, (ast.Assign, ast.AnnAssign)):
            return Detection(
                State.UNKNOWN_SHAPE,
                f"looked for one top-level assignment of {NAME} in {src.path.name}; found {len(upstream)} binding(s) ({ws.closest(NAME)})",
            )
        binding = upstream[0]
        value = binding.node.value  # type: ignore[attr-defined]
        rebound = [n.lineno for n in ast.walk(src.tree) if isinstance(n, ast.Global) and NAME in n.names]
        if rebound:
            return Detection(
                State.UNKNOWN_SHAPE,
                f"{NAME} is declared global in a function (line {rebound[0]}), which could draw a new token later",
            )
        if mine:
            if len(mine) != 1 or mine[0].first != binding.last + 1:
                return Detection(State.DRIFTED, f"the {self.ID} block no longer follows upstream's {NAME} binding")
            if src.lines(mine[0].first, mine[0].last) != render(src.newline):
                return Detection(
                    State.DRIFTED, f"the block at line {mine[0].marker} was edited after hermes-patch wrote it"
                )
            return Detection(State.APPLIED, f"{NAME} comes from {ENV} when the dashboard's environment sets it")
        if value is not None and _mentions_env(value):
            return Detection(State.NOT_NEEDED, f"the release reads {ENV} itself (upstream since 0.16.0)")
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            return Detection(State.NOT_NEEDED, f"{NAME} is a constant: it is the same after every restart")
        if not _is_secrets_call(value):
            return Detection(
                State.UNKNOWN_SHAPE,
                f"{NAME} is bound to `{ast.unparse(value)[:60] if value else '?'}`, not secrets.token_urlsafe(...) nor a read of {ENV}",
            )
        if not any(
            isinstance(s, ast.Import) and any(a.name == "os" and a.asname is None for a in s.names)
            for s in src.tree.body
        ):
            return Detection(State.UNKNOWN_SHAPE, f"{src.path.name} has no top-level `import os`, which the edit uses")
        return Detection(
            State.PENDING,
            f"{NAME} is drawn afresh at every start; the edit lets {ENV} keep it (0.16.0's rule)",
            sites=(Site(ws.entry, NAME, binding.first, binding.last),),
        )

    def transformer(self, site: Site, workspace: Workspace):
        from hermes_patch.codemod import InsertAfter

        return InsertAfter(NAME, lambda module: render(module.default_newline))
