"""root-path: the dashboard works when a reverse proxy serves it under a sub-path.

Behind ``handle_path /hermes/*`` (Caddy) or ``location /hermes/`` (nginx)
FastAPI must know its prefix, or the links and docs it builds point at
``/``. Every release from 0.13.0 binds ``app = FastAPI(...)`` at the top of
``hermes_cli/web_server.py``; this patch sets ``app.root_path`` right after.
"""

from __future__ import annotations

import ast
import re

from hermes_patch.engine import blocks_of
from hermes_patch.patch import MARKER_PREFIX, Detection, Param, Patch, Site, State


def _parse(value):
    if not isinstance(value, str) or not re.fullmatch(r"(/[A-Za-z0-9._~-]+)*", value):
        raise ValueError('must be a path prefix like "/hermes" (no trailing slash), or "" for none')
    return value


def render(root_path: str, newline: str) -> str:
    return f'{MARKER_PREFIX}root-path (served under {root_path}){newline}app.root_path = "{root_path}"{newline}'


class RootPath(Patch):
    ID = "root-path"
    DESCRIPTION = "Serve the dashboard under the proxy's sub-path (sets app.root_path)."
    VERSIONS = ">=0.13.0"
    UPSTREAM = "app = FastAPI(...) in web_server.py, 0.13.0-0.19.0"
    PARAMS = {"root_path": Param(default="", parse=_parse, doc='the proxy\'s path prefix, e.g. "/hermes"')}

    def detect(self, ws):
        src = ws.entry_source()
        root_path = self.params["root_path"]
        mine = blocks_of(ws, self.ID, [ws.entry]).get(ws.entry, [])
        if mine:
            if len(mine) == 1 and src.lines(mine[0].first, mine[0].last) == render(root_path, src.newline):
                return Detection(State.APPLIED, f"served under {root_path}")
            return Detection(State.DRIFTED, "the root-path block differs from the configuration; `hermes-patch revert root-path`, then apply")
        if not root_path:
            return Detection(State.NOT_NEEDED, "no root_path configured")
        apps = ws.binding("app")
        node = apps[0].node if len(apps) == 1 else None
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and getattr(node.value.func, "id", "") == "FastAPI"):
            return Detection(State.UNKNOWN_SHAPE, f"looked for one top-level `app = FastAPI(...)` in {ws.entry}")
        return Detection(State.PENDING, f"app.root_path is not {root_path}", sites=(Site(ws.entry, "app", apps[0].first, apps[0].last),))

    def transformer(self, site, ws):
        from hermes_patch.codemod import InsertAfter

        return InsertAfter("app", lambda module: render(self.params["root_path"], module.default_newline))
