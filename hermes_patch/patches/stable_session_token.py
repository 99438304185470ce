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

from hermes_patch.core.edits import After, Change, Edit, Example, NotNeeded, Unrecognized
from hermes_patch.core.patch import Patch
from hermes_patch.core.source import walk
from hermes_patch.core.workspace import Workspace

NAME = "_SESSION_TOKEN"
ENV = "HERMES_DASHBOARD_SESSION_TOKEN"
EDIT = Edit(
    After(NAME),
    f'{NAME} = os.environ.get("{ENV}") or {NAME}',
    note=f"{ENV} keeps the token across restarts, as in 0.16.0",
)


class StableSessionToken(Patch[str]):
    ID = "stable-session-token"
    DESCRIPTION = "Read the session token from HERMES_DASHBOARD_SESSION_TOKEN when set (0.16.0's rule, backported), so an open page survives a dashboard restart."
    VERSIONS = ">=0.13.0"
    UPSTREAM = "HERMES_DASHBOARD_SESSION_TOKEN read by web_server.py since 0.16.0; 0.13.0-0.15.2 draw secrets.token_urlsafe(32) at every start"
    EXAMPLES = (
        Example(
            "import os\nimport secrets\n_SESSION_TOKEN = secrets.token_urlsafe(32)\n",
            "import os\nimport secrets\n_SESSION_TOKEN = secrets.token_urlsafe(32)\n"
            f"# hermes-patch: stable-session-token ({ENV} keeps the token across restarts, as in 0.16.0)\n"
            f'_SESSION_TOKEN = os.environ.get("{ENV}") or _SESSION_TOKEN\n',
        ),
        Example(f'import os\n_SESSION_TOKEN = os.environ.get("{ENV}") or "x"\n', state="not-needed", reason="0.16.0"),
        Example('import os\n_SESSION_TOKEN = "fixed"\n', state="not-needed", reason="constant"),
        Example(
            "import secrets\n_SESSION_TOKEN = secrets.token_urlsafe(32)\n", state="unknown-shape", reason="import os"
        ),
    )

    def locate(self, ws: Workspace) -> str | Unrecognized:
        """How upstream draws ``_SESSION_TOKEN``: ``"env"`` (reads the variable), ``"constant"`` or ``"fresh"``."""
        src = ws.entry_source()
        bindings = ws.binding(NAME)
        if len(bindings) != 1 or not isinstance(bindings[0].node, (ast.Assign, ast.AnnAssign)):
            return Unrecognized(
                f"looked for one top-level assignment of {NAME} in {src.path.name}; "
                f"found {len(bindings)} binding(s) ({ws.closest(NAME)})"
            )
        rebound = [n.lineno for n in walk(src.mentioning(NAME)) if isinstance(n, ast.Global) and NAME in n.names]
        if rebound:
            return Unrecognized(
                f"{NAME} is declared global in a function (line {rebound[0]}), which could draw a new token later"
            )
        value = bindings[0].node.value
        if value is not None and any(isinstance(n, ast.Constant) and n.value == ENV for n in ast.walk(value)):
            return "env"
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            return "constant"
        if not _is_secrets_call(value):
            shown = ast.unparse(value)[:60] if value else "?"
            return Unrecognized(f"{NAME} is bound to `{shown}`, not secrets.token_urlsafe(...) nor a read of {ENV}")
        if not any(
            isinstance(s, ast.Import) and any(a.name == "os" and a.asname is None for a in s.names)
            for s in src.tree.body
        ):
            return Unrecognized(f"{src.path.name} has no top-level `import os`, which the edit uses")
        return "fresh"

    def edits(self, drawn: str) -> Change | NotNeeded:
        if drawn == "env":
            return NotNeeded(f"the release reads {ENV} itself (upstream since 0.16.0)")
        if drawn == "constant":
            return NotNeeded(f"{NAME} is a constant: it is the same after every restart")
        return Change(
            (EDIT,),
            pending=f"{NAME} is drawn afresh at every start; the edit lets {ENV} keep it (0.16.0's rule)",
            applied=f"{NAME} comes from {ENV} when the dashboard's environment sets it",
        )


def _is_secrets_call(node: ast.AST | None) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "secrets"
    )
