"""The verify probe: runs INSIDE the target's interpreter, never inside hermes-patch.

:mod:`hermes_patch.verify` runs this file's text with the Python that runs
Hermes (``python -I -B -c <this text> <json>``), in a temporary working
directory with ``HERMES_HOME`` and ``HOME`` pointing into it, so importing
the dashboard touches neither the user's home nor the install (``-B``: no
bytecode is written). It therefore uses the standard library only, plus
Starlette, which the dashboard itself needs; it must stay importable on the
oldest Python a Hermes release supports.

Input (``sys.argv[1]``, JSON): ``{"module": "hermes_cli.web_server",
"checks": {"<patch id>": [<check>, ...]}, "timeout": <seconds>}``; a check
is :class:`hermes_patch.patch.Check` as a dict.

It imports the module, sets what ``start_server()`` would set for a
loopback dashboard with embedded chat (``app.state.bound_host`` per check,
``app.state.auth_required = False``, ``_DASHBOARD_EMBEDDED_CHAT_ENABLED``),
and drives the ASGI app directly with hand-made scopes whose ``client`` is
the check's peer: no socket is opened. Each check yields an observation:
``{"outcome": "allowed" | "refused" | "other", "detail": "..."}``;
judging it against the expectation is verify.py's job.

Output: one line on stdout, ``HERMES-PATCH-PROBE <json>``, holding
``{"file": <module __file__>, "error": <str or null>, "results": {id: [...]}}``.
An ``error`` (Starlette or the module cannot be imported) means nothing
could be observed.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys

MARKER = "HERMES-PATCH-PROBE "
PORT = 9119  # the dashboard's default port; only used in Host headers and scopes


def _emit(doc):
    sys.stdout.write("\n" + MARKER + json.dumps(doc) + "\n")
    sys.stdout.flush()
    # The dashboard may have started non-daemon threads at import: do not wait for them.
    os._exit(0)


def _hostport(host):
    return "[%s]:%d" % (host, PORT) if ":" in host else "%s:%d" % (host, PORT)


def _fill(text, values):
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


def _scope(kind, check, app, values):
    path, _, query = _fill(check["target"], values).partition("?")
    headers = [(b"host", _hostport(check["bound_host"]).encode("latin-1"))]
    for name, value in check.get("headers", ()):
        headers.append((_fill(name, values).lower().encode("latin-1"), _fill(value, values).encode("latin-1")))
    scope = {
        "type": kind,
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "http" if kind == "http" else "ws",
        "path": path,
        "raw_path": path.encode("latin-1"),
        "query_string": query.encode("latin-1"),
        "root_path": "",
        "headers": headers,
        "client": (check["peer"], 50000),
        "server": (check["bound_host"], PORT),
        "state": {},
        "app": app,
    }
    if kind == "http":
        scope["method"] = "GET"
    else:
        scope["subprotocols"] = []
    return scope


async def _http(app, scope, timeout):
    messages = []
    finished = asyncio.Event()
    requested = []

    async def receive():
        if not requested:
            requested.append(True)
            return {"type": "http.request", "body": b"", "more_body": False}
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        messages.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            finished.set()

    await asyncio.wait_for(app(scope, receive, send), timeout)
    start = [m for m in messages if m["type"] == "http.response.start"]
    if not start:
        return "other", "the app sent no response"
    status = start[0]["status"]
    if status in (401, 403):
        return "refused", "HTTP %d" % status
    if status < 400:
        return "allowed", "HTTP %d" % status
    return "other", "HTTP %d" % status


async def _websocket(app, scope, timeout):
    loop = asyncio.get_running_loop()
    first = loop.create_future()
    hang_up = asyncio.Event()
    connected = []

    async def receive():
        if not connected:
            connected.append(True)
            return {"type": "websocket.connect"}
        await hang_up.wait()
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(message):
        if not first.done():
            first.set_result(message)

    task = asyncio.ensure_future(app(scope, receive, send))
    await asyncio.wait({task, first}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    hang_up.set()
    try:
        await asyncio.wait_for(task, timeout)
    except Exception:
        pass  # what matters is the first message; a handler failing after it changes nothing
    if not first.done():
        if task.done() and not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            return "other", "the handler raised %s: %s" % (type(exc).__name__, exc)
        return "other", "the handler sent nothing"
    message = first.result()
    kind = message["type"]
    if kind == "websocket.accept":
        return "allowed", "upgraded (accept)"
    if kind == "websocket.close":
        return "refused", "closed before accept (code %s, HTTP 403 on the wire)" % message.get("code", 1000)
    if kind == "websocket.http.response.start":
        status = message.get("status")
        return ("refused" if status in (401, 403) else "other"), "HTTP %s" % status
    return "other", "first message %s" % kind


async def _call(module, app, scope, check):
    from starlette.websockets import WebSocket

    fn = getattr(module, check["target"], None)
    if not callable(fn):
        return "other", "%s has no function %s" % (module.__name__, check["target"])

    async def receive():
        return {"type": "websocket.connect"}

    async def send(message):
        pass

    result = fn(WebSocket(scope, receive, send))
    if asyncio.iscoroutine(result):
        result = await result
    if result is True or result is None:
        return "allowed", "returned %r" % (result,)
    if result is False or isinstance(result, str):
        return "refused", "returned %r" % (result,)
    return "other", "returned %r" % (result,)


async def _run(module, checks, timeout):
    app = module.app
    values = {
        "token": str(getattr(module, "_SESSION_TOKEN", "")),
        "session_header": str(getattr(module, "_SESSION_HEADER_NAME", "X-Hermes-Session-Token")),
    }
    if hasattr(module, "_DASHBOARD_EMBEDDED_CHAT_ENABLED"):
        module._DASHBOARD_EMBEDDED_CHAT_ENABLED = True
    results = {}
    for patch_id, patch_checks in checks.items():
        out = results[patch_id] = []
        for check in patch_checks:
            app.state.bound_host = check["bound_host"]
            app.state.auth_required = False
            kind = check["kind"]
            try:
                if kind == "http":
                    outcome = await _http(app, _scope("http", check, app, values), timeout)
                elif kind == "websocket":
                    outcome = await _websocket(app, _scope("websocket", check, app, values), timeout)
                elif kind == "call":
                    outcome = await _call(module, app, _scope("websocket", check, app, values), check)
                else:
                    outcome = ("other", "unknown check kind %r" % kind)
            except asyncio.TimeoutError:
                outcome = ("other", "no answer within %ss" % timeout)
            except Exception as exc:
                outcome = ("other", "%s: %s" % (type(exc).__name__, exc))
            out.append({"outcome": outcome[0], "detail": outcome[1]})
    return results


def main():
    args = json.loads(sys.argv[1])
    name = args["module"]
    try:
        module = importlib.import_module(name)
    except BaseException as exc:
        hint = ""
        if isinstance(exc, ImportError):
            hint = "; the dashboard's dependencies (fastapi, starlette, ...) are not all installed in this environment"
        _emit({"file": None, "error": "importing %s failed: %s: %s%s" % (name, type(exc).__name__, exc, hint), "results": {}})
    try:
        import starlette.websockets  # noqa: F401  (the dashboard imports it too)
    except ImportError as exc:
        _emit({"file": getattr(module, "__file__", None), "error": "starlette cannot be imported (%s)" % exc, "results": {}})
    if not hasattr(module, "app"):
        _emit({"file": getattr(module, "__file__", None), "error": "%s has no `app`" % name, "results": {}})
    results = asyncio.run(_run(module, args["checks"], float(args.get("timeout", 10))))
    _emit({"file": getattr(module, "__file__", None), "error": None, "results": results})


if __name__ == "__main__":
    main()
