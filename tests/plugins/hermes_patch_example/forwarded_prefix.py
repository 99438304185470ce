"""forwarded-prefix: the dashboard works behind a proxy that serves it under a sub-path.

Behind ``handle_path /hermes/*`` (Caddy) or ``location /hermes/ { proxy_pass
http://127.0.0.1:9119/; }`` (nginx) the proxy strips ``/hermes`` before the
dashboard sees the request. Every release from 0.13.0 builds the page's base
path (``window.__HERMES_BASE_PATH__`` and the asset URLs in ``index.html``)
from the ``X-Forwarded-Prefix`` header only, so without it the page asks for
``/assets/...``, which the proxy does not route. This patch adds a middleware
right after ``app = FastAPI(...)`` that supplies the configured prefix when
the proxy sends no ``X-Forwarded-Prefix`` (one the proxy sends wins).
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


def render(prefix: str, newline: str) -> str:
    lines = [
        f"{MARKER_PREFIX}forwarded-prefix (served under {prefix})",
        '@app.middleware("http")',
        "async def _hermes_patch_forwarded_prefix(request, call_next):",
        '    if not any(name == b"x-forwarded-prefix" for name, _ in request.scope["headers"]):',
        f'        request.scope["headers"] = [*request.scope["headers"], (b"x-forwarded-prefix", b"{prefix}")]',
        "    return await call_next(request)",
    ]
    return newline.join(lines) + newline


class ForwardedPrefix(Patch):
    ID = "forwarded-prefix"
    DESCRIPTION = "Serve the dashboard under the proxy's sub-path (X-Forwarded-Prefix when the proxy sends none)."
    VERSIONS = ">=0.13.0"
    UPSTREAM = "app = FastAPI(...) and the X-Forwarded-Prefix base path in web_server.py, 0.13.0-0.19.0"
    PARAMS = {"prefix": Param(default="", parse=_parse, doc='the path the proxy strips, e.g. "/hermes"')}

    def detect(self, ws):
        src = ws.entry_source()
        prefix = self.params["prefix"]
        mine = blocks_of(ws, self.ID, [ws.entry]).get(ws.entry, [])
        if mine:
            if len(mine) == 1 and src.lines(mine[0].marker, mine[0].last) == render(prefix, src.newline):
                return Detection(
                    State.APPLIED,
                    f"the dashboard builds its page for {prefix} when the proxy sends no X-Forwarded-Prefix",
                )
            return Detection(
                State.DRIFTED,
                "the forwarded-prefix block differs from the configuration; `hermes-patch revert forwarded-prefix`, then apply",
            )
        if not prefix:
            return Detection(State.NOT_NEEDED, "no prefix configured")
        apps = ws.binding("app")
        node = apps[0].node if len(apps) == 1 else None
        if not (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and getattr(node.value.func, "id", "") == "FastAPI"
        ):
            return Detection(State.UNKNOWN_SHAPE, f"looked for one top-level `app = FastAPI(...)` in {ws.entry}")
        return Detection(
            State.PENDING,
            f"without X-Forwarded-Prefix the dashboard's page asks for /assets/..., not {prefix}/assets/...",
            sites=(Site(ws.entry, "app", apps[0].first, apps[0].last),),
        )

    def transformer(self, site, ws):
        from hermes_patch.codemod import InsertAfter

        return InsertAfter("app", lambda module: render(self.params["prefix"], module.default_newline))
