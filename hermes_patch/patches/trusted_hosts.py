"""trusted-hosts: accept the reverse proxy's Host / Origin names on a loopback-bound dashboard.

Upstream rule. ``_is_accepted_host(host_header, bound_host)`` is the
dashboard's DNS-rebinding defence. The HTTP Host
middleware answers 400 when it says no; from 0.15.0 the WebSocket upgrade
asks it about the Host header and about the Origin's netloc too. It accepts
any host on a ``0.0.0.0``/``::`` bind, only ``localhost``/``127.0.0.1``/``::1``
on a loopback bind, and only the bound address otherwise, so a dashboard on
127.0.0.1 behind Tailscale Serve, Caddy, nginx or a Cloudflare Tunnel that
passes the browser's Host (``proxy_set_header Host $http_host;``) refuses
every request (hermes-agent#34390, #70059 with PRs #70064 and #75053,
#91658, #55917).

Shapes, measured on every release (0.13.0-0.19.0). ``_is_accepted_host``
has the same body in all eleven: it strips ``[v6]`` or the last ``:port``
by hand and lower-cases, without validating (a user name or spaces reach
the comparison). What differs is who asks it::

    release        asked by                                            dashboard.public_url
    0.13.0-0.14.0  host_header_middleware (HTTP 400); WebSocket        no
                   upgrades check the peer only
    0.15.0-0.15.2  + _ws_host_origin_is_allowed: the Host, then        no
                   urlparse(Origin).netloc; a non-http(s) Origin is
                   refused
    0.16.0-0.18.2  + _ws_host_origin_reason (same, but a non-http(s)   yes: resolve_public_url() in
                   Origin such as null passes), wrapped by             dashboard_auth/prefix.py builds the
                   _ws_host_origin_is_allowed                          OAuth callback URL; it does not
                                                                       widen _is_accepted_host
    0.19.0         same                                                same, also for MCP OAuth callbacks

The edit. A guard at the top of ``_is_accepted_host`` returns True when a
helper inserted right after the function says the value's host part is one
of the operator's ``hosts``; otherwise upstream's rule decides exactly as
before. The helper parses the value itself instead of trusting upstream's
split: lower-cases, takes ``[v6]`` or ``name`` and an optional all-digit
port, refuses anything with a user name (``proxy.example@evil.test`` in an
Origin), spaces, empty labels or a trailing dot, and then compares exactly.
A leading-dot entry (``.ts.net``) is a suffix: every name below it passes,
including names other people can register and point at 127.0.0.1, which is
precisely the DNS-rebinding attack the check exists for; so suffixes are
taken only when written out, never a single label (``.net``), and status
notes the risk. With no ``hosts`` the patch is ``not-needed``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from collections.abc import Iterator
from typing import Any

from hermes_patch.core.edits import After, AtTop, Change, Edit, Example, NotNeeded, Unrecognized
from hermes_patch.core.hostnames import parse_host
from hermes_patch.core.patch import Check, Param, Patch, py_str
from hermes_patch.core.workspace import Workspace

FUNCTION = "_is_accepted_host"
HELPER = "_hermes_patch_trusted_host"
# Upstream's WebSocket Host/Origin guards (0.15: the first; 0.16+: both).
WS_GUARDS = ("_ws_host_origin_is_allowed", "_ws_host_origin_reason")
PUBLIC_URL_MODULE, PUBLIC_URL_FUNCTION = "dashboard_auth/prefix.py", "resolve_public_url"
NOTE = "Host / Origin names of the reverse proxy"
EVENTS = "/api/events?token={token}&channel=hermes-patch-verify"


def _parse_hosts(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError('must be a list of host names, e.g. ["proxy.example", "hermes.your-tailnet.ts.net"]')
    return tuple(dict.fromkeys(parse_host(v) for v in value))


def _tuple(items: tuple[str, ...]) -> str:
    return "(" + ", ".join(py_str(s) for s in items) + ("," if len(items) == 1 else "") + ")"


def helper_code(hosts: tuple[str, ...]) -> str:
    """The module-level helper for ``hosts`` (names first, then the leading-dot suffixes)."""
    names = tuple(h for h in hosts if not h.startswith("."))
    suffixes = tuple(h for h in hosts if h.startswith("."))
    return f'''\
def {HELPER}(value):
    """The operator's Host / Origin allowlist, added by hermes-patch (trusted-hosts).

    True when the host part of value (a Host header, or an Origin's netloc) is
    exactly one of hosts or ends with one of suffixes: case-insensitive, port
    ignored, IPv6 in brackets. A user name, spaces, an empty label, a trailing
    dot or a bad port gives False, and upstream's rule decides as before.
    """
    import ipaddress
    import re

    hosts = {_tuple(names)}
    suffixes = {_tuple(suffixes)}
    text = (value or "").strip()
    if not text.isascii():
        return False
    text = text.lower()
    if text.startswith("["):
        name, bracket, rest = text[1:].partition("]")
        colon, port = rest[:1], rest[1:]
        if not bracket or (rest and colon != ":"):
            return False
        try:
            name = str(ipaddress.IPv6Address(name))
        except ValueError:
            return False
        suffixes = ()
    else:
        name, colon, port = text.partition(":")
        if not re.fullmatch(r"[a-z0-9_-]+(?:\\.[a-z0-9_-]+)*", name):
            return False
    if colon and not re.fullmatch(r"[0-9]{{1,5}}", port):
        return False
    return name in hosts or any(name.endswith(suffix) for suffix in suffixes)
'''


@dataclass(frozen=True)
class Found:
    """Where upstream keeps the Host check and who asks it."""

    file: str  # the module that defines _is_accepted_host
    param: str  # its first parameter, the Host header (or Origin netloc)
    ws_guard: bool  # the WebSocket upgrade asks it too (0.15+)
    public_url: bool  # the release offers dashboard.public_url (0.16+)


def _nodes(root: ast.AST) -> Iterator[ast.AST]:
    """Every node under ``root`` (itself included), in no particular order: :func:`ast.walk` without its
    generator per node, twice as fast on the two dozen functions of 0.19.0 that mention ``headers``."""
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        for name in node._fields:
            value = getattr(node, name, None)
            if isinstance(value, ast.AST):
                stack.append(value)
            elif type(value) is list:
                stack.extend([x for x in value if isinstance(x, ast.AST)])


def _scan(fn: ast.AST) -> tuple[set[str], bool]:
    """The plain names ``fn`` calls, and whether it reads ``<x>.headers.get("host"|"origin")`` or ``<x>.headers[...]``."""
    calls: set[str] = set()
    reads = False
    for n in _nodes(fn):
        key = holder = None
        if isinstance(n, ast.Call):
            if isinstance(n.func, ast.Name):
                calls.add(n.func.id)
            elif isinstance(n.func, ast.Attribute) and n.func.attr == "get" and n.args:
                holder, key = n.func.value, n.args[0]
        elif isinstance(n, ast.Subscript):
            holder, key = n.value, n.slice
        if (
            isinstance(holder, ast.Attribute)
            and holder.attr == "headers"
            and isinstance(key, ast.Constant)
            and isinstance(key.value, str)
            and key.value.lower() in ("host", "origin")
        ):
            reads = True
    return calls, reads


BEFORE = """\
def _is_accepted_host(host_header, bound_host):
    \"\"\"Upstream's rule.\"\"\"
    return host_header == bound_host


def host_header_middleware(request):
    return _is_accepted_host(request.headers.get("host"), "127.0.0.1")
"""


class TrustedHosts(Patch):
    """A guard at the top of ``_is_accepted_host`` and a helper after it (see the module docstring).

    Parameter ``hosts``: normalized names, IPs and leading-dot suffixes
    (:func:`hermes_patch.core.hostnames.parse_host`); empty means ``not-needed``.
    """

    ID = "trusted-hosts"
    DESCRIPTION = "Accept the configured reverse-proxy names in the Host / Origin check (_is_accepted_host); every other host is refused as before."
    VERSIONS = ">=0.13.0"
    UPSTREAM = "hermes-agent#34390, #70059 (PRs #70064, #75053), #91658, #55917; _is_accepted_host since 0.13.0, WebSocket Host/Origin guard since 0.15.0, dashboard.public_url since 0.19.0"
    PARAMS = {
        "hosts": Param(
            default=(),
            parse=_parse_hosts,
            doc="host names (or IPs) the browser uses to reach the proxy; a leading dot (.tail1234.ts.net) trusts every name below it; public suffixes (.co.uk, .ts.net) are refused",
        )
    }
    EXAMPLES = (
        Example(
            BEFORE,
            BEFORE.replace(
                '    """Upstream\'s rule."""\n',
                '    """Upstream\'s rule."""\n'
                "    # hermes-patch: trusted-hosts\n"
                f"    if {HELPER}(host_header):\n"
                "        return True\n",
            ).replace(
                "\n\n\ndef host_header_middleware",
                f"\n\n\n# hermes-patch: trusted-hosts ({NOTE})\n{helper_code(('proxy.example',))}"
                "\n\ndef host_header_middleware",
            ),
            params={"hosts": ["proxy.example"]},
        ),
        Example(BEFORE, state="not-needed", reason="no hosts configured"),
        Example(
            BEFORE + '\n\ndef ws_ok(ws):\n    return ws.headers["origin"] == "http://localhost"\n',
            params={"hosts": ["proxy.example"]},
            state="unknown-shape",
            reason="also judged in ws_ok()",
        ),
    )

    def locate(self, ws: Workspace) -> Found | Unrecognized:
        b = ws.resolve(FUNCTION)
        if b is None:
            return Unrecognized(
                f"looked for def {FUNCTION}(host_header, bound_host) in {ws.entry} (or a hermes_cli module it imports it from); found none"
            )
        twice = ws.rebound(FUNCTION, b)
        if twice:
            return Unrecognized(twice)
        node = b.node
        if not isinstance(node, ast.FunctionDef) or len(node.args.args) < 2:
            return Unrecognized(f"{FUNCTION} in {b.file} is not a function of (host_header, bound_host)")
        bound = node.args.args[1].arg
        if not any(isinstance(n, ast.Name) and n.id == bound for n in ast.walk(node)):
            return Unrecognized(f"{FUNCTION}() in {b.file} no longer compares with the bound host ({bound})")
        callers: list[str] = []
        for file in sorted({ws.entry, b.file}):
            src = ws.source(file)
            assert src is not None
            # Top-level functions only (nested ones count for their parent) that name the check or a header.
            for stmt in sorted(set(src.mentioning(FUNCTION)) | set(src.mentioning("headers")), key=lambda s: s.lineno):
                if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) or stmt.name in (FUNCTION, HELPER):
                    continue
                calls, reads = _scan(stmt)
                if FUNCTION in calls:
                    callers.append(stmt.name)
                elif reads and not calls & set(WS_GUARDS):
                    return Unrecognized(
                        f"the Host / Origin header is also judged in {stmt.name}() ({file}:{stmt.lineno}) without {FUNCTION}(), which this patch does not know"
                    )
        if not callers:
            return Unrecognized(f"nothing calls {FUNCTION}(): the Host check moved somewhere this patch does not know")
        return Found(
            b.file,
            node.args.args[0].arg,
            ws_guard=any(g in callers for g in WS_GUARDS),
            public_url=bool(ws.binding(PUBLIC_URL_FUNCTION, PUBLIC_URL_MODULE)),
        )

    def edits(self, found: Found) -> Change | NotNeeded:
        hosts: tuple[str, ...] = self.params["hosts"]
        if not hosts:
            # A reason, not a note: nothing is wrong, so `status --strict` must stay 0.
            upstream = (
                "; this release also offers dashboard.public_url, upstream's setting for a proxied dashboard "
                "(with --host 0.0.0.0 and the auth gate), prefer it where you can"
                if found.public_url
                else ""
            )
            return NotNeeded(
                f'no hosts configured, nothing to do; to accept your proxy\'s name add hosts = ["proxy.example"] '
                f"under [patches.{self.ID}] in the configuration, then run `hermes-patch apply`{upstream}"
            )
        suffixes = [h for h in hosts if h.startswith(".")]
        notes = (
            (
                f"hosts includes {', '.join(suffixes)}: every name below it passes the DNS-rebinding defence, including "
                "names other people control; list exact names where you can",
            )
            if suffixes
            else ()
        )
        # Information, not a warning: the release offers upstream's own route (0.16+).
        advice = (
            (
                "this release offers dashboard.public_url (or HERMES_DASHBOARD_PUBLIC_URL), upstream's setting for a "
                "dashboard behind a reverse proxy: `hermes dashboard --host 0.0.0.0` with the auth gate (OAuth or "
                "dashboard.basic_auth) and public_url set to the proxy's URL needs no Host allowlist. public_url only "
                "builds the OAuth callback URLs and does not widen the Host check, so a loopback-bound dashboard "
                "behind a proxy still needs this patch",
            )
            if found.public_url
            else ()
        )
        refused = (
            "the dashboard answers 400 (Invalid Host header) to a browser that reaches it by any name but its bound "
            "interface's"
            + (", and refuses its WebSocket upgrades when the Origin names another host" if found.ws_guard else "")
        )
        accepted = (
            "pages and WebSocket upgrades"
            if found.ws_guard
            else "pages (this release has no WebSocket Host/Origin guard)"
        )
        guard = Edit(AtTop(FUNCTION, found.file), f"if {HELPER}({found.param}):\n    return True", what="guard")
        helper = Edit(
            After(FUNCTION, found.file), helper_code(hosts), NOTE, what="helper", blank_lines=2, unit_of=FUNCTION
        )
        return Change(
            (guard, helper),
            pending=f"{refused}; the edit also accepts {', '.join(hosts)}",
            applied=f"the dashboard also serves {accepted} for the Host and Origin {', '.join(hosts)}",
            notes=notes,
            advice=advice,
        )

    def checks(self, found: Found) -> tuple[Check, ...]:
        """Each configured name passes the Host (and, where the release has it, the WebSocket Host/Origin) check; look-alikes do not.

        Sent from a same-host proxy (peer 127.0.0.1 with a browser's
        ``X-Forwarded-For``), as Tailscale Serve, cloudflared or Caddy send
        it: ``GET /`` with ``Host: <name>``; where the release has a
        WebSocket Host/Origin guard (0.15+) an ``/api/events`` handshake with
        Host and Origin ``https://<name>``, and one whose Host the proxy
        rewrote to the dashboard's own but whose Origin is the name. A
        suffix (``.ts.net``) is tried with a name below it. Negative checks:
        a look-alike name (``<name>.attacker.test``) as Host (and as Origin)
        and the right name with a wrong token. The control is ``GET /`` with
        the dashboard's own Host.
        """
        hosts: tuple[str, ...] = self.params["hosts"]
        if not hosts:
            return ()
        guard = found.ws_guard
        proxy = (("X-Forwarded-For", "198.51.100.23"),)

        def check(what: str, kind: str, path: str, expect: str, **headers: str) -> Check:
            return Check(what, kind, path, expect, "127.0.0.1", headers=(*headers.items(), *proxy))

        checks = [Check("GET / with the dashboard's own Host", "http", "/", "allowed", control=True)]
        for entry in hosts:
            name = f"hermes-patch-verify{entry}" if entry.startswith(".") else entry
            host = f"[{name}]" if ":" in name else name
            checks.append(check(f"GET / with Host {host} (via a same-host proxy)", "http", "/", "allowed", Host=host))
            if guard:
                origin = f"https://{host}"
                checks.append(
                    check(
                        f"/api/events with Host and Origin {origin}",
                        "websocket",
                        EVENTS,
                        "allowed",
                        Host=host,
                        Origin=origin,
                    )
                )
                checks.append(
                    check(
                        f"/api/events with the Host rewritten and Origin {origin}",
                        "websocket",
                        EVENTS,
                        "allowed",
                        Origin=origin,
                    )
                )
        first = hosts[0]
        name = f"hermes-patch-verify{first}" if first.startswith(".") else first
        if ":" not in name:
            fake = f"{name}.attacker.test"
            checks.append(check(f"GET / with look-alike Host {fake}", "http", "/", "refused", Host=fake))
            if guard:
                checks.append(
                    check(
                        f"/api/events with look-alike Origin https://{fake}",
                        "websocket",
                        EVENTS,
                        "refused",
                        Host=name,
                        Origin=f"https://{fake}",
                    )
                )
            checks.append(
                check(
                    f"/api/events with Host {name} and a wrong token",
                    "websocket",
                    EVENTS.replace("{token}", "wrong-token"),
                    "refused",
                    Host=name,
                    Origin=f"https://{name}",
                )
            )
        return tuple(checks)
