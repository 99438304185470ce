"""The verify probe: runs INSIDE the target's interpreter, never inside hermes-patch.

:mod:`hermes_patch.integrations.verify` runs this file's text with the Python that runs
Hermes (``python -I -B -c <this text> <json>``), in a temporary working
directory with ``HERMES_HOME`` and ``HOME`` pointing into it, so the
dashboard touches neither the user's home nor the install (``-B``: no
bytecode is written). It uses the standard library only, plus what the
dashboard itself imports (uvicorn, Starlette); it must stay importable on
the oldest Python a Hermes release supports.

Input (``sys.argv[1]``, JSON): ``{"module": "hermes_cli.web_server",
"bound_host": "127.0.0.1", "checks": {"<patch id>": [[<index>, <check>],
...]}, "timeout": <seconds>}``; a check is
:class:`hermes_patch.core.patch.Check` as a dict.

What it starts. The REAL server: it imports the module and calls the
release's own ``start_server()`` in the main thread, so uvicorn runs with
exactly the settings that release passes (0.13/0.14: uvicorn's defaults,
``proxy_headers`` on with 127.0.0.1 trusted; 0.15+:
``proxy_headers=bool(app.state.auth_required)``), bound to ``bound_host``
(an address in 127.0.0.0/8) on a free port, with ``open_browser=False``,
``allow_public=True`` (``--insecure``, only matters for a bind other than
127.0.0.1) and ``embedded_chat=True`` (``--tui``) where the release has
those parameters. Nothing listens anywhere but that loopback address.

How it asks. A second thread waits for the port, then sends each check as
a real HTTP request or WebSocket handshake over TCP from the check's
``peer``: an address in 127.0.0.0/8 (or ``::1``) is bound as the socket's
source address; any other address (a proxy on another host, e.g.
100.64.0.5) is injected *beneath* uvicorn's proxy-header handling, as the
connection's own peer, by an ASGI wrapper that uvicorn's ``Config.load``
puts outside everything it loads (so X-Forwarded-For is judged exactly as
for a real connection from that address). A second wrapper, inside uvicorn's
middleware, records which peer the dashboard finally saw, for the reasons
verify prints. ``call`` checks call a module function in this process with
a Starlette ``WebSocket`` whose peer is ``peer`` (no proxy-header layer).

Each check yields ``{"outcome": "allowed" | "refused" | "other", "detail"}``:
HTTP 2xx/3xx is allowed, 400/401/403 refused (400 is the Host check's and
CORS preflight's refusal); a WebSocket 101 is allowed, 403 (or 401)
refused. Judging is verify.py's job.

Output: one line on stdout, ``HERMES-PATCH-PROBE <json>``, holding
``{"file": <module __file__>, "error": <str or null>, "results": {id:
[[index, observation], ...]}}``. An ``error`` (the module, uvicorn or the
server cannot start) means nothing could be observed.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import inspect
import ipaddress
import json
import os
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:  # the aliases exist for mypy only: the probe runs on the target's (older) Python
    from collections.abc import Awaitable, Callable, Mapping, MutableMapping
    from types import ModuleType

    import uvicorn.config

    #: A value of the JSON argument (verify.py's checks) or of the JSON document the probe prints.
    JSON = Any
    #: One check, :class:`hermes_patch.core.patch.Check` as a dict.
    Check = dict[str, JSON]
    #: Patch id to its checks' observations as ``[index, {"outcome", "detail"}]``.
    Results = dict[str, list[list[JSON]]]
    # ASGI's own types (as starlette.types spells them): its scope and messages are dicts of mixed values.
    Scope = MutableMapping[str, Any]
    Message = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[Message]]
    Send = Callable[[Message], Awaitable[None]]
    ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MARKER = "HERMES-PATCH-PROBE "
PROBE_HEADER = "x-hermes-patch-probe"
_INJECT: dict[tuple[str, int], str] = {}  # (source host, source port) -> the peer the connection stands for
_SEEN: dict[str, str | None] = {}  # probe request number -> the client host the dashboard saw
_LOCK = threading.Lock()


def _emit(doc: dict[str, JSON]) -> NoReturn:
    with _LOCK:
        sys.stdout.write("\n" + MARKER + json.dumps(doc) + "\n")
        sys.stdout.flush()
        # The dashboard runs non-daemon threads and the server loop: do not wait for them.
        os._exit(0)


def _hostport(host: str, port: int) -> str:
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def _fill(text: str, values: Mapping[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


# -- beneath and inside uvicorn ---------------------------------------------------


class _Inject(object):
    """Outermost ASGI wrapper: a connection registered in _INJECT gets that peer, as if it came from there."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if client and (client[0], client[1]) in _INJECT:
            scope = dict(scope)
            scope["client"] = (_INJECT[(client[0], client[1])], client[1])
        return await self.app(scope, receive, send)


class _Seen(object):
    """Innermost ASGI wrapper: remembers the peer the dashboard app receives."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        for name, value in scope.get("headers") or ():
            if name == PROBE_HEADER.encode("latin-1"):
                client = scope.get("client")
                _SEEN[value.decode("latin-1")] = client[0] if client else None
        return await self.app(scope, receive, send)


def _hook_uvicorn() -> None:
    import uvicorn.config

    original = uvicorn.config.Config.load

    def load(self: uvicorn.config.Config) -> None:
        original(self)
        if not isinstance(self.loaded_app, _Inject):
            inner = self.loaded_app
            # uvicorn's wrappers (ProxyHeadersMiddleware, ...) keep the next app as .app
            holder = None
            while hasattr(inner, "app") and type(inner).__module__.startswith("uvicorn."):
                holder, inner = inner, inner.app
            if holder is None:
                self.loaded_app = _Seen(self.loaded_app)
            else:
                holder.app = _Seen(inner)
            self.loaded_app = _Inject(self.loaded_app)

    uvicorn.config.Config.load = load


# -- the server -------------------------------------------------------------------


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _start_kwargs(fn: Callable[..., object], host: str, port: int) -> dict[str, object]:
    params = inspect.signature(fn).parameters
    kwargs: dict[str, object] = {"host": host, "port": port}
    for name, value in (("open_browser", False), ("allow_public", True), ("embedded_chat", True)):
        if name in params:
            kwargs[name] = value
    return kwargs


# -- the client -------------------------------------------------------------------


def _loopback(addr: str) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return ip.is_loopback


def _connect(peer: str, host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to the dashboard whose peer, as uvicorn sees it, is ``peer``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    same_family = (":" in peer) == (":" in host)
    if _loopback(peer) and same_family:
        try:
            sock.bind((peer, 0))
            sock.connect((host, port))
            return sock
        except OSError:
            sock.close()
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.settimeout(timeout)
    sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
    local = sock.getsockname()
    _INJECT[(local[0], local[1])] = peer
    sock.connect((host, port))
    return sock


def _request(check: Check, values: Mapping[str, str], number: int, kind: str) -> bytes:
    path = _fill(check["target"], values)
    headers = [(_fill(n, values), _fill(v, values)) for n, v in check.get("headers", ())]
    if not any(n.lower() == "host" for n, _ in headers):
        headers.insert(0, ("Host", values["bound"]))
    method = check.get("method") or "GET"
    if kind == "websocket":
        method = "GET"
        headers += [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", base64.b64encode(os.urandom(16)).decode("ascii")),
        ]
    else:
        headers.append(("Connection", "close"))
    headers.append((PROBE_HEADER, str(number)))
    lines = ["%s %s HTTP/1.1" % (method, path)] + ["%s: %s" % h for h in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _read_head(sock: socket.socket, timeout: float, want_body: bool) -> tuple[int | None, dict[str, str], bytes]:
    deadline = time.monotonic() + timeout
    data = b""
    while b"\r\n\r\n" not in data:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if want_body:
        while len(body) < 2048 and time.monotonic() < deadline:
            try:
                sock.settimeout(max(0.1, min(1.0, deadline - time.monotonic())))
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            body += chunk
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return None, {}, body
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def _snippet(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip().replace("\n", " ")
    return text[:80]


def _wire(
    check: Check, values: Mapping[str, str], number: int, timeout: float, host: str, port: int
) -> tuple[str, str]:
    kind = check["kind"]
    sock = _connect(check["peer"], host, port, timeout)
    try:
        sock.sendall(_request(check, values, number, kind))
        status, headers, body = _read_head(sock, timeout, want_body=kind == "http")
    finally:
        sock.close()
    if status is None:
        return "other", "no HTTP answer"
    if kind == "websocket":
        if status == 101:
            return "allowed", "upgraded (HTTP 101)"
        return ("refused" if status in (401, 403) else "other"), "HTTP %d" % status
    detail = "HTTP %d" % status
    if status >= 400 and body:
        detail += " (%s)" % _snippet(body)
    if check.get("method") == "OPTIONS" and status < 400:
        allowed = headers.get("access-control-allow-origin", "")
        detail += "; Access-Control-Allow-Origin: %s" % (allowed or "none")
    if status in (400, 401, 403):
        return "refused", detail
    if status < 400:
        return "allowed", detail
    return "other", detail


async def _call(module: ModuleType, check: Check, values: Mapping[str, str], port: int) -> tuple[str, str]:
    from starlette.websockets import WebSocket

    fn = getattr(module, check["target"], None)
    if not callable(fn):
        return "other", "%s has no function %s" % (module.__name__, check["target"])
    headers = [(b"host", values["bound"].encode("latin-1"))]
    headers += [
        (_fill(n, values).lower().encode("latin-1"), _fill(v, values).encode("latin-1"))
        for n, v in check.get("headers", ())
    ]
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "ws",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": (check["peer"], 50000),
        "server": (check["bound_host"], port),
        "subprotocols": [],
        "state": {},
        "app": module.app,
    }

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        pass

    result = fn(WebSocket(scope, receive, send))
    if asyncio.iscoroutine(result):
        result = await result
    if result is True or result is None:
        return "allowed", "returned %r" % (result,)
    if result is False or isinstance(result, str):
        return "refused", "returned %r" % (result,)
    return "other", "returned %r" % (result,)


def _describe_peer(check: Check, number: int, detail: str) -> str:
    seen = _SEEN.get(str(number))
    if seen is not None and seen != check["peer"]:
        detail += "; the dashboard saw peer %s, not %s" % (seen, check["peer"])
        if any(n.lower() == "x-forwarded-for" for n, _ in check.get("headers", ())):
            detail += " (uvicorn took it from X-Forwarded-For)"
    return detail


def _run_checks(
    module: ModuleType, checks: dict[str, list[list[JSON]]], timeout: float, host: str, port: int
) -> Results:
    values = {
        "token": str(getattr(module, "_SESSION_TOKEN", "")),
        "session_header": str(getattr(module, "_SESSION_HEADER_NAME", "X-Hermes-Session-Token")),
        "port": str(port),
        "bound": _hostport(host, port),
    }
    results: Results = {}
    number = 0
    for patch_id, indexed in checks.items():
        out = results[patch_id] = []
        for index, check in indexed:
            number += 1
            try:
                if check["kind"] in ("http", "websocket"):
                    outcome, detail = _wire(check, values, number, timeout, host, port)
                    detail = _describe_peer(check, number, detail)
                elif check["kind"] == "call":
                    outcome, detail = asyncio.run(asyncio.wait_for(_call(module, check, values, port), timeout))
                else:
                    outcome, detail = "other", "unknown check kind %r" % check["kind"]
            except (socket.timeout, asyncio.TimeoutError):
                outcome, detail = "other", "no answer within %ss" % timeout
            except Exception as exc:
                outcome, detail = "other", "%s: %s" % (type(exc).__name__, exc)
            out.append([index, {"outcome": outcome, "detail": detail}])
    return results


def _wait_listening(host: str, port: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            try:
                s.connect((host, port))
                return True
            except OSError:
                time.sleep(0.1)
    return False


def main() -> None:
    args = json.loads(sys.argv[1])
    name = args["module"]
    host = args.get("bound_host") or "127.0.0.1"
    timeout = float(args.get("timeout", 10))
    start_timeout = float(args.get("start_timeout", 60))
    try:
        module = importlib.import_module(name)
    except BaseException as exc:
        hint = ""
        if isinstance(exc, ImportError):
            hint = "; the dashboard's dependencies (fastapi, starlette, uvicorn, ...) are not all installed in this environment"
        _emit(
            {
                "file": None,
                "error": "importing %s failed: %s: %s%s" % (name, type(exc).__name__, exc, hint),
                "results": {},
            }
        )
    file = getattr(module, "__file__", None)
    try:
        import starlette.websockets  # noqa: F401  (the dashboard imports it too)

        _hook_uvicorn()
    except ImportError as exc:
        _emit({"file": file, "error": "uvicorn or starlette cannot be imported (%s)" % exc, "results": {}})
    start = getattr(module, "start_server", None)
    if not callable(start):
        _emit({"file": file, "error": "%s has no start_server()" % name, "results": {}})
    try:
        port = _free_port(host)
    except OSError as exc:
        _emit({"file": file, "error": "cannot listen on %s: %s" % (host, exc), "results": {}})

    def prober() -> None:
        try:
            if not _wait_listening(host, port, time.monotonic() + start_timeout):
                _emit(
                    {
                        "file": file,
                        "error": "the dashboard did not listen on %s within %ss"
                        % (_hostport(host, port), start_timeout),
                        "results": {},
                    }
                )
            results = _run_checks(module, args["checks"], timeout, host, port)
            _emit({"file": file, "error": None, "results": results})
        except BaseException as exc:  # never leave the server running without an answer
            _emit({"file": file, "error": "the probe failed: %s: %s" % (type(exc).__name__, exc), "results": {}})

    threading.Thread(target=prober, name="hermes-patch-probe", daemon=True).start()
    try:
        start(**_start_kwargs(start, host, port))
        why = "returned"
    except BaseException as exc:
        why = "raised %s: %s" % (type(exc).__name__, exc)
    _emit({"file": file, "error": "%s.start_server() %s before the checks finished" % (name, why), "results": {}})


if __name__ == "__main__":
    main()
