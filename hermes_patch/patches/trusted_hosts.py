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
from typing import Any

from hermes_patch.engine import blocks_of
from hermes_patch.hostnames import parse_host
from hermes_patch.patch import MARKER_PREFIX, Check, Detection, Param, Patch, Site, State, py_str
from hermes_patch.workspace import Binding, Workspace

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


def render_helper(hosts: tuple[str, ...], unit: str, newline: str) -> str:
    """The module-level helper (two blank lines, marker, def) for ``hosts``, indented with ``unit``."""
    i, ii = unit, unit * 2
    names = tuple(h for h in hosts if not h.startswith("."))
    suffixes = tuple(h for h in hosts if h.startswith("."))
    lines = [
        "",
        "",
        f"{MARKER_PREFIX}trusted-hosts ({NOTE})",
        f"def {HELPER}(value):",
        f'{i}"""The operator\'s Host / Origin allowlist, added by hermes-patch (trusted-hosts).',
        "",
        f"{i}True when the host part of value (a Host header, or an Origin's netloc) is",
        f"{i}exactly one of hosts or ends with one of suffixes: case-insensitive, port",
        f"{i}ignored, IPv6 in brackets. A user name, spaces, an empty label, a trailing",
        f"{i}dot or a bad port gives False, and upstream's rule decides as before.",
        f'{i}"""',
        f"{i}import ipaddress",
        f"{i}import re",
        "",
        f"{i}hosts = {_tuple(names)}",
        f"{i}suffixes = {_tuple(suffixes)}",
        f'{i}text = (value or "").strip()',
        f"{i}if not text.isascii():",
        f"{ii}return False",
        f"{i}text = text.lower()",
        f'{i}if text.startswith("["):',
        f'{ii}name, bracket, rest = text[1:].partition("]")',
        f"{ii}colon, port = rest[:1], rest[1:]",
        f'{ii}if not bracket or (rest and colon != ":"):',
        f"{ii}{i}return False",
        f"{ii}try:",
        f"{ii}{i}name = str(ipaddress.IPv6Address(name))",
        f"{ii}except ValueError:",
        f"{ii}{i}return False",
        f"{ii}suffixes = ()",
        f"{i}else:",
        f'{ii}name, colon, port = text.partition(":")',
        f'{ii}if not re.fullmatch(r"[a-z0-9_-]+(?:\\.[a-z0-9_-]+)*", name):',
        f"{ii}{i}return False",
        f'{i}if colon and not re.fullmatch(r"[0-9]{{1,5}}", port):',
        f"{ii}return False",
        f"{i}return name in hosts or any(name.endswith(suffix) for suffix in suffixes)",
    ]
    return newline.join(lines) + newline


def render_guard(param: str, unit: str, newline: str) -> str:
    """The guard at the top of ``_is_accepted_host`` (unindented; libcst indents it)."""
    return newline.join([f"{MARKER_PREFIX}trusted-hosts", f"if {HELPER}({param}):", f"{unit}return True"]) + newline


def _tuple(items: tuple[str, ...]) -> str:
    return "(" + ", ".join(py_str(s) for s in items) + ("," if len(items) == 1 else "") + ")"


def _unit(ws: Workspace, binding: Binding) -> str:
    """The indent unit of a top-level function's body (its first statement's leading white space)."""
    src = ws.source(binding.file)
    first = binding.node.body[0].lineno  # type: ignore[attr-defined]
    line = src.lines(first, first)
    return line[: len(line) - len(line.lstrip(" \t"))] or "    "


def _scan(fn: ast.AST) -> tuple[set[str], bool]:
    """One walk of a function: the plain names it calls, and whether it reads the Host or Origin header.

    A header read is ``<x>.headers.get("host"|"origin", ...)`` or
    ``<x>.headers["host"|"origin"]``.
    """
    calls: set[str] = set()
    reads = False
    for n in ast.walk(fn):
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


class TrustedHosts(Patch):
    """Codemod: a guard in ``_is_accepted_host`` and a helper after it (see the module docstring).

    Parameter ``hosts``: normalized names, IPs and leading-dot suffixes
    (:func:`hermes_patch.hostnames.parse_host`); empty means ``not-needed``.
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

    # -- detection ---------------------------------------------------------

    def _function(self, ws: Workspace) -> Binding | str:
        b = ws.resolve(FUNCTION)
        if b is None:
            return f"looked for def {FUNCTION}(host_header, bound_host) in {ws.entry} (or a hermes_cli module it imports it from); found none"
        twice = ws.rebound(FUNCTION, b)
        if twice:
            return twice
        node = b.node
        if not isinstance(node, ast.FunctionDef) or len(node.args.args) < 2:
            return f"{FUNCTION} in {b.file} is not a function of (host_header, bound_host)"
        bound = node.args.args[1].arg
        if not any(isinstance(n, ast.Name) and n.id == bound for n in ast.walk(node)):
            return f"{FUNCTION}() in {b.file} no longer compares with the bound host ({bound})"
        return b

    def _callers(self, ws: Workspace, fn: Binding) -> list[str] | str:
        """Names of the functions that ask ``_is_accepted_host``, or why the shape is not ours."""
        callers: list[str] = []
        for file in sorted({ws.entry, fn.file}):
            src = ws.source(file)
            assert src is not None
            for node in src.tree.body:  # top-level functions; nested ones count for their parent
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.name in (FUNCTION, HELPER):
                    continue
                text = src.lines(node.lineno, node.end_lineno or node.lineno)
                if FUNCTION not in text and "headers" not in text:  # a text test spares most ast walks
                    continue
                calls, reads = _scan(node)
                if FUNCTION in calls:
                    callers.append(node.name)
                elif reads and not calls & set(WS_GUARDS):
                    return f"the Host / Origin header is also judged in {node.name}() ({file}:{node.lineno}) without {FUNCTION}(), which this patch does not know"
        if not callers:
            return f"nothing calls {FUNCTION}(): the Host check moved somewhere this patch does not know"
        return callers

    def _advice(self, ws: Workspace) -> tuple[str, ...]:
        """Information, not a warning: the release offers upstream's own route (0.16+)."""
        if not ws.binding(PUBLIC_URL_FUNCTION, PUBLIC_URL_MODULE):
            return ()
        return (
            "this release offers dashboard.public_url (or HERMES_DASHBOARD_PUBLIC_URL), upstream's setting for a dashboard "
            "behind a reverse proxy: `hermes dashboard --host 0.0.0.0` with the auth gate (OAuth or dashboard.basic_auth) "
            "and public_url set to the proxy's URL needs no Host allowlist. public_url only builds the OAuth callback "
            "URLs and does not widen the Host check, so a loopback-bound dashboard behind a proxy still needs this patch",
        )

    def _notes(self, hosts: tuple[str, ...]) -> tuple[str, ...]:
        """Warnings the operator must act on: a suffix in ``hosts`` (counts for ``status --strict``)."""
        suffixes = [h for h in hosts if h.startswith(".")]
        if not suffixes:
            return ()
        return (
            f"hosts includes {', '.join(suffixes)}: every name below it passes the DNS-rebinding defence, including names "
            "other people control; list exact names where you can",
        )

    def detect(self, ws: Workspace) -> Detection:
        fn = self._function(ws)
        if isinstance(fn, str):
            return Detection(State.UNKNOWN_SHAPE, fn)
        callers = self._callers(ws, fn)
        if isinstance(callers, str):
            return Detection(State.UNKNOWN_SHAPE, callers)
        hosts: tuple[str, ...] = self.params["hosts"]
        notes = self._notes(hosts)
        advice = self._advice(ws) if hosts else ()
        ws_guard = any(g in callers for g in WS_GUARDS)
        blocks = blocks_of(ws, self.ID, [fn.file]).get(fn.file, [])
        if blocks:
            return self._detect_applied(ws, fn, blocks, hosts, ws_guard, notes, advice)
        if not hosts:
            # A reason, not a note: nothing is wrong, so `status --strict` must stay 0.
            upstream = (
                "; this release also offers dashboard.public_url, upstream's setting for a proxied dashboard "
                "(with --host 0.0.0.0 and the auth gate), prefer it where you can"
                if self._advice(ws)
                else ""
            )
            return Detection(
                State.NOT_NEEDED,
                f'no hosts configured, nothing to do; to accept your proxy\'s name add hosts = ["proxy.example"] '
                f"under [patches.{self.ID}] in the configuration, then run `hermes-patch apply`{upstream}",
            )
        refused = (
            "the dashboard answers 400 (Invalid Host header) to a browser that reaches it by any name but its bound "
            "interface's"
            + (", and refuses its WebSocket upgrades when the Origin names another host" if ws_guard else "")
        )
        return Detection(
            State.PENDING,
            f"{refused}; the edit also accepts {', '.join(hosts)}",
            sites=(Site(fn.file, FUNCTION, fn.first, fn.last), Site(fn.file, HELPER, fn.first, fn.last)),
            notes=notes,
            advice=advice,
        )

    def _detect_applied(self, ws, fn, blocks, hosts, ws_guard, notes, advice) -> Detection:
        src = ws.source(fn.file)
        guards = [b for b in blocks if fn.first <= b.marker <= fn.last]
        helpers = [b for b in blocks if isinstance(b.node, ast.FunctionDef) and b.node.name == HELPER]
        if len(guards) != 1 or len(helpers) != 1 or len(blocks) != 2:
            return Detection(
                State.DRIFTED,
                f"found {len(guards)} guard(s) in {FUNCTION}() and {len(helpers)} {HELPER} helper(s) among {len(blocks)} trusted-hosts blocks; expected one of each",
            )
        guard, helper = guards[0], helpers[0]
        param = fn.node.args.args[0].arg
        unit = _unit(ws, fn)
        expected = ast.parse(render_guard(param, unit, "\n")).body[0]
        marker = src.lines(guard.marker, guard.marker).strip()
        if (
            ast.dump(guard.node) != ast.dump(expected)
            or marker != f"{MARKER_PREFIX}trusted-hosts"
            or fn.node.body.index(guard.node) > 1
        ):
            return Detection(
                State.DRIFTED, f"the guard in {FUNCTION}() (line {guard.marker}) was edited after hermes-patch wrote it"
            )
        if helper.first != fn.last + 1:
            return Detection(State.DRIFTED, f"the {HELPER} helper no longer follows {FUNCTION}() in {fn.file}")
        body = src.lines(helper.first, helper.last)
        rendered = tuple(h for h in hosts if not h.startswith(".")) + tuple(h for h in hosts if h.startswith("."))
        if hosts and body == render_helper(hosts, unit, src.newline) and _hosts_of(helper.node) == rendered:
            accepted = (
                "pages and WebSocket upgrades"
                if ws_guard
                else "pages (this release has no WebSocket Host/Origin guard)"
            )
            return Detection(
                State.APPLIED,
                f"the dashboard also serves {accepted} for the Host and Origin {', '.join(hosts)}",
                notes=notes,
                advice=advice,
            )
        old = _hosts_of(helper.node)
        if old is not None and body == render_helper(old, unit, src.newline):
            if not hosts:
                return Detection(
                    State.PENDING,
                    f"the dashboard still accepts the Host and Origin {', '.join(old)}, but the configuration lists no hosts any more; `hermes-patch apply` removes the edit",
                    replace=True,
                    notes=notes,
                )
            return Detection(
                State.PENDING,
                f"applied for {', '.join(old)}; the configuration now lists {', '.join(hosts)}",
                replace=True,
                notes=notes,
                advice=advice,
            )
        return Detection(
            State.DRIFTED, f"the {HELPER} helper (line {helper.marker}) was edited after hermes-patch wrote it"
        )

    def probe(self, workspace: Workspace) -> tuple[Check, ...]:
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
        fn = self._function(workspace)
        callers = self._callers(workspace, fn) if not isinstance(fn, str) else []
        guard = not isinstance(callers, str) and any(g in callers for g in WS_GUARDS)
        proxy = (("X-Forwarded-For", "198.51.100.23"),)
        checks = [Check("GET / with the dashboard's own Host", "http", "/", "allowed", control=True)]
        for entry in hosts:
            name = f"hermes-patch-verify{entry}" if entry.startswith(".") else entry
            host = f"[{name}]" if ":" in name else name
            checks.append(
                Check(
                    f"GET / with Host {host} (via a same-host proxy)",
                    "http",
                    "/",
                    "allowed",
                    "127.0.0.1",
                    headers=(("Host", host), *proxy),
                )
            )
            if guard:
                checks.append(
                    Check(
                        f"/api/events with Host and Origin https://{host}",
                        "websocket",
                        EVENTS,
                        "allowed",
                        "127.0.0.1",
                        headers=(("Host", host), ("Origin", f"https://{host}"), *proxy),
                    )
                )
                checks.append(
                    Check(
                        f"/api/events with the Host rewritten and Origin https://{host}",
                        "websocket",
                        EVENTS,
                        "allowed",
                        "127.0.0.1",
                        headers=(("Origin", f"https://{host}"), *proxy),
                    )
                )
        first = hosts[0]
        name = f"hermes-patch-verify{first}" if first.startswith(".") else first
        if ":" not in name:
            fake = f"{name}.attacker.test"
            checks.append(
                Check(
                    f"GET / with look-alike Host {fake}",
                    "http",
                    "/",
                    "refused",
                    "127.0.0.1",
                    headers=(("Host", fake), *proxy),
                )
            )
            if guard:
                checks.append(
                    Check(
                        f"/api/events with look-alike Origin https://{fake}",
                        "websocket",
                        EVENTS,
                        "refused",
                        "127.0.0.1",
                        headers=(("Host", name), ("Origin", f"https://{fake}"), *proxy),
                    )
                )
            checks.append(
                Check(
                    f"/api/events with Host {name} and a wrong token",
                    "websocket",
                    EVENTS.replace("{token}", "wrong-token"),
                    "refused",
                    "127.0.0.1",
                    headers=(("Host", name), ("Origin", f"https://{name}"), *proxy),
                )
            )
        return tuple(checks)

    def transformer(self, site: Site, workspace: Workspace):
        from hermes_patch.codemod import InsertAfter, InsertIntoFunction

        fn = self._function(workspace)
        assert isinstance(fn, Binding)
        unit = _unit(workspace, fn)
        if site.name == HELPER:
            hosts = self.params["hosts"]
            return InsertAfter(FUNCTION, lambda module: render_helper(hosts, unit, module.default_newline))
        param = fn.node.args.args[0].arg  # type: ignore[attr-defined]
        return InsertIntoFunction(FUNCTION, lambda module, node: render_guard(param, unit, module.default_newline))


def _hosts_of(node: ast.FunctionDef) -> tuple[str, ...] | None:
    """The hosts and suffixes a helper we wrote earlier holds (names first, as rendered)."""
    found: dict[str, tuple[str, ...]] = {}
    for stmt in node.body:
        if (
            isinstance(stmt, ast.Assign)
            and isinstance(stmt.targets[0], ast.Name)
            and stmt.targets[0].id in ("hosts", "suffixes")
        ):
            if isinstance(stmt.value, ast.Tuple) and all(
                isinstance(e, ast.Constant) and isinstance(e.value, str) for e in stmt.value.elts
            ):
                found.setdefault(stmt.targets[0].id, tuple(e.value for e in stmt.value.elts))  # type: ignore[attr-defined]
    if set(found) != {"hosts", "suffixes"}:
        return None
    return found["hosts"] + found["suffixes"]
