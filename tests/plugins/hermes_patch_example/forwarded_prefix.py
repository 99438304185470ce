"""forwarded-prefix: serve the dashboard under a proxy's sub-path (why: docs/writing-a-patch.md)."""

import ast

from hermes_patch.core.edits import After, Change, Edit, Example, NotNeeded, Unrecognized
from hermes_patch.core.patch import Param, Patch, matching

MIDDLEWARE = """@app.middleware("http")
async def _hermes_patch_forwarded_prefix(request, call_next):
    if not any(name == b"x-forwarded-prefix" for name, _ in request.scope["headers"]):
        request.scope["headers"] = [*request.scope["headers"], (b"x-forwarded-prefix", b"{prefix}")]
    return await call_next(request)
"""
PREFIX = matching(r"(/[A-Za-z0-9._~-]+)*", 'a path prefix like "/hermes" (no trailing slash), or "" for none')
APP, MARKER = "app = FastAPI()\n", "# hermes-patch: forwarded-prefix (served under /h)\n"


class ForwardedPrefix(Patch):
    ID = "forwarded-prefix"
    DESCRIPTION = "Serve the dashboard under the proxy's sub-path (X-Forwarded-Prefix when the proxy sends none)."
    VERSIONS = ">=0.13.0"
    UPSTREAM = "app = FastAPI(...) and the X-Forwarded-Prefix base path in web_server.py, 0.13.0-0.19.0"
    PARAMS = {"prefix": Param("", PREFIX, 'the path the proxy strips, e.g. "/hermes"')}
    EXAMPLES = (
        Example(APP, APP + MARKER + MIDDLEWARE.format(prefix="/h"), params={"prefix": "/h"}),
        Example(APP, state="not-needed"),
    )

    def locate(self, ws):
        apps = [b.node.value for b in ws.binding("app") if isinstance(b.node, ast.Assign)]
        if len(apps) == 1 and getattr(getattr(apps[0], "func", None), "id", "") == "FastAPI":
            return apps[0]
        return Unrecognized(f"looked for one top-level `app = FastAPI(...)` in {ws.entry}")

    def edits(self, app):
        prefix = self.params["prefix"]
        if not prefix:
            return NotNeeded("no prefix configured")
        return Change(
            (Edit(After("app"), MIDDLEWARE.format(prefix=prefix), note=f"served under {prefix}"),),
            pending=f"without X-Forwarded-Prefix the page asks for /assets/..., not {prefix}/assets/...",
            applied=f"the page is built for {prefix} when the proxy sends no X-Forwarded-Prefix",
        )
