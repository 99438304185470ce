"""relax-ws-peer-check: WebSocket peers behind a reverse proxy are accepted.

Upstream rule: in loopback / ``--insecure`` mode the WebSocket peer check
(``_ws_client_is_allowed``; from 0.16.0 also ``_ws_client_reason``, which
``/api/pty`` uses, and ``/api/console`` from 0.18.1) accepts loopback peers only, so a
proxy on another address gets HTTP 403 (hermes-agent#34227,
hermes-agent#18415). 0.16.0 added "any peer when bound to a non-loopback
address"; 0.13/0.14 only had that for ``0.0.0.0``/``::`` and 0.15 not at all.

The edit adds one helper next to ``_LOOPBACK_HOSTS`` and a guard at the top
of each peer-check function: accept the peer when the dashboard is bound to
a non-loopback address (upstream's 0.16 rule, backported) or the peer is
inside the operator's ``trusted_proxies``. The OAuth-gated mode keeps
upstream's rule and the token check is not touched. The functions are found
where the release keeps them, following an import into a sibling module.

Upstream main after 0.19 (REAL_TARGETS, "After 0.19.0"): the rule lives in
``web_server_chat.py`` (``_ws_client_reason`` decides, ``_ws_client_is_allowed``
delegates); until September 2026 web_server.py re-exports both, afterwards
only ``web_routers/chat_ws.py`` uses them (``_ws_request_is_allowed`` imported,
``_ws_client_reason`` late-bound). When web_server.py does not import them,
the module the WebSocket routes get them from is the one edited.
"""

from __future__ import annotations

import ast
import ipaddress
from typing import Any

from hermes_patch.engine import blocks_of
from hermes_patch.patch import MARKER_PREFIX, Check, Detection, Param, Patch, Site, State, py_str
from hermes_patch.source import walk
from hermes_patch.workspace import Binding, Workspace

LOOPBACK = "_LOOPBACK_HOSTS"
HELPER = "_hermes_patch_ws_peer_allowed"
# peer-check function -> the value it returns for "allowed"
FUNCTIONS = {"_ws_client_is_allowed": "True", "_ws_client_reason": "None"}
REQUIRED = "_ws_client_is_allowed"
# Names a WebSocket route module calls to decide on the peer (upstream main's chat_ws.py
# imports _ws_request_is_allowed, which calls _ws_client_is_allowed, and late-binds _ws_client_reason).
ROUTE_NAMES = ("_ws_client_is_allowed", "_ws_client_reason", "_ws_request_is_allowed")
# The route verify drives end to end; it decides on _ws_client_is_allowed in every release.
EVENTS = "/api/events?token={token}&channel=hermes-patch-verify"
# Peers verify may use as "outside trusted_proxies": not loopback in upstream's eyes.
OUTSIDE_PEERS = ("127.0.0.6", "203.0.113.7", "2001:db8::7")
# The address of a remote browser behind a proxy (TEST-NET-2), sent as X-Forwarded-For.
BROWSER = "198.51.100.23"


def _gates_every_public_bind(ws: Workspace) -> bool:
    """True when ``should_require_auth`` ignores ``allow_public`` (0.19.0: every non-loopback bind is gated)."""
    b = ws.binding("should_require_auth")
    if len(b) != 1 or not isinstance(b[0].node, ast.FunctionDef):
        return False
    body = b[0].node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return not any(isinstance(n, ast.Name) and n.id == "allow_public" for stmt in body for n in ast.walk(stmt))


def _parse_proxies(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError('must be a list of CIDRs, e.g. ["127.0.0.5/32"]')
    out = []
    for text in value:
        if "%" in text:  # ipaddress takes fe80::1%<anything> as a scope id, quotes and newlines included
            raise ValueError(
                f'{text!r}: a zone id (%...) is not accepted; a peer address never carries one, write the network alone, e.g. "fe80::/64"'
            )
        try:
            net = ipaddress.ip_network(text.strip(), strict=True)
        except ValueError as exc:
            hint = ""
            try:
                loose = ipaddress.ip_network(text.strip(), strict=False)
                host = text.strip().split("/")[0]
                hint = f"; did you mean {loose} (the whole network) or {host}/{loose.max_prefixlen} (just that host)?"
            except ValueError:
                pass
            raise ValueError(f"{text!r} is not a network in CIDR form ({exc}){hint}") from None
        mapped = net.network_address.ipv4_mapped if net.version == 6 and net.prefixlen >= 96 else None
        if mapped is not None:  # ::ffff:a.b.c.d/N: the helper compares IPv4-mapped peers as IPv4
            net = ipaddress.ip_network(f"{mapped}/{net.prefixlen - 96}")
        out.append(str(net))
    return tuple(dict.fromkeys(out))


def render_helper(proxies: tuple[str, ...], unit: str, newline: str) -> str:
    """The module-level helper (two blank lines, marker, def) with indent ``unit``."""
    i, ii = unit, unit * 2
    literal = "(" + ", ".join(py_str(p) for p in proxies) + ("," if len(proxies) == 1 else "") + ")"
    lines = [
        "",
        "",
        f"{MARKER_PREFIX}relax-ws-peer-check (WebSocket peers behind a reverse proxy)",
        f"def {HELPER}(ws):",
        f'{i}"""Relaxed WebSocket peer rule added by hermes-patch; loopback / --insecure mode only.',
        "",
        f"{i}True when the dashboard is bound to a non-loopback address (upstream's rule",
        f"{i}since 0.16.0) or the peer is inside trusted_proxies. The token check and the",
        f"{i}OAuth-gated mode keep upstream's rules.",
        f'{i}"""',
        f"{i}import ipaddress",
        "",
        f"{i}trusted_proxies = {literal}",
        f'{i}state = getattr(ws.scope.get("app"), "state", None)',
        f'{i}if getattr(state, "auth_required", False):',
        f"{ii}return False",
        f'{i}bound_host = (getattr(state, "bound_host", "") or "").strip().lower()',
        f"{i}if bound_host and bound_host not in {LOOPBACK}:",
        f"{ii}return True",
        f"{i}try:",
        f'{ii}peer = ipaddress.ip_address(ws.client.host if ws.client else "")',
        f"{i}except ValueError:",
        f"{ii}return False",
        f"{i}if peer.version == 6 and peer.ipv4_mapped is not None:",
        f"{ii}peer = peer.ipv4_mapped",
        f"{i}return any(peer in ipaddress.ip_network(net) for net in trusted_proxies)",
    ]
    return newline.join(lines) + newline


def render_guard(param: str, allowed: str, unit: str, newline: str) -> str:
    """The guard at the top of a peer-check function (unindented; libcst indents it)."""
    lines = [
        f"{MARKER_PREFIX}relax-ws-peer-check",
        f"if {HELPER}({param}):",
        f"{unit}return {allowed}",
    ]
    return newline.join(lines) + newline


def _has_bind_rule(fn: ast.FunctionDef | ast.AsyncFunctionDef, allowed: str) -> bool:
    """True when ``fn`` has upstream's 0.16 rule: ``if <bound> not in _LOOPBACK_HOSTS: return <allowed>``."""
    for stmt in fn.body:
        if not isinstance(stmt, ast.If) or len(stmt.body) != 1 or not isinstance(stmt.body[0], ast.Return):
            continue
        value = stmt.body[0].value
        if (ast.unparse(value) if value is not None else "None") != allowed:
            continue
        for node in ast.walk(stmt.test):
            if (
                isinstance(node, ast.Compare)
                and any(isinstance(op, ast.NotIn) for op in node.ops)
                and any(isinstance(c, ast.Name) and c.id == LOOPBACK for c in node.comparators)
                and "bound" in ast.unparse(node.left)
            ):
                return True
    return False


def _has_rule(name: str, found: dict[str, Binding], seen: frozenset[str] = frozenset()) -> bool:
    """The bind rule is in ``name`` itself, or in the peer-check function it delegates to."""
    node = found[name].node
    if _has_bind_rule(node, FUNCTIONS[name]):  # type: ignore[arg-type]
        return True
    calls = {n.func.id for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    return any(
        other in found and other not in seen and _has_rule(other, found, seen | {name})
        for other in calls & set(FUNCTIONS)
    )


class RelaxWsPeerCheck(Patch):
    ID = "relax-ws-peer-check"
    DESCRIPTION = "Accept WebSocket peers from a non-loopback bind (0.16 rule, backported) or from trusted_proxies; token check unchanged."
    VERSIONS = ">=0.13.0"
    UPSTREAM = "hermes-agent#34227, hermes-agent#18415; non-loopback-bind rule and _ws_client_reason since 0.16.0; in web_server_chat.py on main since Aug 2026"
    PARAMS = {
        "trusted_proxies": Param(
            default=(),
            parse=_parse_proxies,
            doc="CIDRs of reverse proxies whose WebSocket connections are accepted on a loopback bind",
        ),
        "allow_catch_all": Param(
            default=False,
            parse=lambda v: _bool(v),
            doc="allow 0.0.0.0/0 or ::/0 in trusted_proxies (trusts every peer; off by default)",
        ),
    }

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        super().__init__(params)
        nets = [ipaddress.ip_network(p) for p in self.params["trusted_proxies"]]
        wide = [str(n) for n in nets if n.prefixlen == 0]
        for version, everything in ((4, ipaddress.ip_network("0.0.0.0/0")), (6, ipaddress.ip_network("::/0"))):
            union = list(ipaddress.collapse_addresses([n for n in nets if n.version == version]))  # type: ignore[misc]
            if not wide and union == [everything]:
                wide = [f"{', '.join(str(n) for n in nets if n.version == version)} (together {everything})"]
        if wide and not self.params["allow_catch_all"]:
            from hermes_patch.errors import ConfigError

            raise ConfigError(
                f"[patches.{self.ID}] trusted_proxies contains {', '.join(wide)}, which trusts every peer on "
                "every network: the loopback-only WebSocket rule would be gone. List your proxy's own address "
                'instead (e.g. "127.0.0.5/32"), or, if you really mean it, add `allow_catch_all = true` '
                f"under [patches.{self.ID}]."
            )

    # -- detection ---------------------------------------------------------

    def _functions(self, ws: Workspace) -> dict[str, Binding] | str:
        """The peer-check functions by name, or why the shape is not ours; computed once per workspace.

        detect(), each transformer() and probe() ask the same question of the
        same (immutable) workspace; the scan walks every function of the
        modules involved, so it is kept for the last workspace seen.
        """
        cached = getattr(self, "_functions_cache", None)
        if cached is not None and cached[0] is ws:
            return cached[1]
        result = self._scan_functions(ws)
        self._functions_cache = (ws, result)
        return result

    def _scan_functions(self, ws: Workspace) -> dict[str, Binding] | str:
        start = ws.entry
        if ws.resolve(REQUIRED) is None:
            # Upstream main after September 2026: web_server.py no longer imports the
            # peer check; the routes (web_routers/chat_ws.py) get it from web_server_chat.py.
            start = self._policy_module(ws)
            if start is None:
                return (
                    f"looked for def {REQUIRED}(ws) in {ws.entry} (or a hermes_cli module it imports it from), "
                    f"and for WebSocket routes that get {' or '.join(ROUTE_NAMES)} from a hermes_cli module; "
                    f"found none ({ws.closest(REQUIRED)})"
                )
            if start.startswith("!"):
                return start[1:]
        found: dict[str, Binding] = {}
        for name in FUNCTIONS:
            b = ws.resolve(name, start)
            if b is None:
                if name == REQUIRED:
                    return f"looked for def {name}(ws) in {start} (or a hermes_cli module it imports it from); found none ({ws.closest(name, start)})"
                continue
            if not isinstance(b.node, (ast.FunctionDef, ast.AsyncFunctionDef)) or not b.node.args.args:
                return f"{name} in {b.file} is not a function taking the WebSocket"
            twice = ws.rebound(name, b)
            if twice:
                return twice
            names = {n.id for n in ast.walk(b.node) if isinstance(n, ast.Name)}
            if LOOPBACK not in names and not names & (set(FUNCTIONS) - {name}):
                return f"{name} in {b.file} neither compares the peer with {LOOPBACK} nor delegates to {' or '.join(sorted(set(FUNCTIONS) - {name}))}"
            found[name] = b
        for file in sorted({b.file for b in found.values()} | {ws.entry}):
            src = ws.source(file)
            assert src is not None
            # Only statements that mention _LOOPBACK_HOSTS can hold such a function.
            for node in walk(src.mentioning(LOOPBACK)):
                if (
                    isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                    and node.name not in FUNCTIONS
                    and node.name != HELPER
                ):
                    names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
                    attrs = {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
                    if LOOPBACK in names and "client" in attrs:
                        return f"the WebSocket peer rule is also decided in {node.name}() ({file}:{node.lineno}), which this patch does not know"
        return found

    @staticmethod
    def _policy_module(ws: Workspace) -> str | None:
        """The module the WebSocket routes get the peer policy from, when the entry does not import it.

        Route modules are those holding a ``.websocket(`` route and mentioning
        one of :data:`ROUTE_NAMES`; each such name they use is resolved
        (imports and ``late(...)`` bindings followed) to the module defining
        it. Returns that module's file name, ``None`` when no route gets the
        policy from the package, or ``"!"`` + a reason when routes disagree.
        """
        routes = set(ws.files_mentioning(".websocket(")) - {ws.entry}
        defining: dict[str, set[str]] = {}
        for name in ROUTE_NAMES:
            for file in sorted(routes & set(ws.files_mentioning(name))):
                b = ws.resolve(name, file)
                if b is not None and b.file != file:
                    defining.setdefault(b.file, set()).add(f"{file}:{name}")
        if not defining:
            return None
        if len(defining) > 1:
            where = "; ".join(f"{mod} (for {', '.join(sorted(users))})" for mod, users in sorted(defining.items()))
            return f"!the WebSocket routes get their peer policy from more than one module: {where}"
        return next(iter(defining))

    def detect(self, ws: Workspace) -> Detection:
        found = self._functions(ws)
        if isinstance(found, str):
            return Detection(State.UNKNOWN_SHAPE, found)
        anchors: dict[str, Binding] = {}
        for file in sorted({b.file for b in found.values()}):
            bindings = [
                b
                for b in ws.binding(LOOPBACK, file)
                if not (isinstance(b.node, ast.FunctionDef) and b.node.name == HELPER)
            ]
            if len(bindings) != 1:
                return Detection(
                    State.UNKNOWN_SHAPE,
                    f"looked for one top-level binding of {LOOPBACK} in {file}; found {len(bindings)}",
                )
            anchors[file] = bindings[0]
        proxies: tuple[str, ...] = self.params["trusted_proxies"]
        blocks = blocks_of(ws, self.ID, sorted(anchors))
        if blocks:
            return self._detect_applied(ws, found, anchors, blocks, proxies)
        if not proxies and all(_has_rule(n, found) for n in found):
            return Detection(
                State.NOT_NEEDED,
                "this release already accepts any peer on a non-loopback bind (upstream 0.16 rule); "
                "set trusted_proxies to accept a same-host proxy on a loopback bind",
            )
        sites = [Site(file, LOOPBACK, a.first, a.last) for file, a in anchors.items()]
        sites += [Site(b.file, name, b.first, b.last) for name, b in found.items()]
        why = (
            f"peers inside trusted_proxies {', '.join(proxies)}"
            if proxies
            else "any peer when the dashboard is bound to a non-loopback address (upstream's rule since 0.16)"
        )
        return Detection(
            State.PENDING,
            f"the dashboard refuses WebSocket connections (HTTP 403) from a proxy whose address is not loopback; the edit accepts {why}",
            sites=tuple(sites),
        )

    def _detect_applied(self, ws, found, anchors, blocks, proxies) -> Detection:
        helpers = {}
        for name, binding in found.items():
            src = ws.source(binding.file)
            fn_blocks = [b for b in blocks.get(binding.file, []) if binding.first <= b.marker <= binding.last]
            if len(fn_blocks) != 1:
                return Detection(
                    State.DRIFTED,
                    f"the guard in {name}() is {'missing' if not fn_blocks else 'repeated'} (partly applied or edited by hand)",
                )
            unit = _unit(src, binding)
            guard = render_guard(binding.node.args.args[0].arg, FUNCTIONS[name], unit, src.newline)
            if src.lines(fn_blocks[0].marker, fn_blocks[0].last) != _indent(
                guard, _indent_of(src, fn_blocks[0].marker), src.newline
            ):
                return Detection(
                    State.DRIFTED,
                    f"the guard in {name}() (line {fn_blocks[0].marker}) was edited after hermes-patch wrote it",
                )
            helpers[binding.file] = unit
        total = sum(len(v) for v in blocks.values())
        if total != len(found) + len(anchors):
            return Detection(
                State.DRIFTED, f"found {total} relax-ws-peer-check blocks; expected {len(found) + len(anchors)}"
            )
        stale = None
        for file, anchor in anchors.items():
            src = ws.source(file)
            helper = [b for b in blocks[file] if isinstance(b.node, ast.FunctionDef) and b.node.name == HELPER]
            if len(helper) != 1 or helper[0].first != anchor.last + 1:
                return Detection(State.DRIFTED, f"the {HELPER} helper no longer follows {LOOPBACK} in {file}")
            body = src.lines(helper[0].first, helper[0].last)
            # Applied means the text we render *and* the values Python parses from it are the configured ones.
            if body == render_helper(proxies, helpers[file], src.newline) and _proxies_of(helper[0].node) == proxies:
                continue
            old = _proxies_of(helper[0].node)
            if old is not None and body == render_helper(old, helpers[file], src.newline):
                stale = old
                continue
            return Detection(
                State.DRIFTED, f"the {HELPER} helper (line {helper[0].marker}) was edited after hermes-patch wrote it"
            )
        if stale is not None:
            return Detection(
                State.PENDING,
                f"applied with trusted_proxies [{', '.join(stale)}]; the configuration now says [{', '.join(proxies)}]",
                replace=True,
            )
        extra = f", and from peers inside trusted_proxies {', '.join(proxies)}" if proxies else ""
        return Detection(
            State.APPLIED,
            f"the dashboard accepts WebSocket connections from any peer when bound to a non-loopback address{extra}",
        )

    def probe(self, workspace: Workspace) -> tuple[Check, ...]:
        """What a browser behind each trusted proxy, and what outsiders, get from the real server.

        Each case is a real ``/api/events`` handshake (through uvicorn as the
        release runs it) plus a call of every peer-check function the release
        has (``_ws_client_reason`` decides ``/api/pty`` from 0.16 and
        ``/api/console`` from 0.18.1). A proxy's requests carry the ``X-Forwarded-For`` of a
        remote browser (:data:`BROWSER`), as Caddy, Traefik, nginx with
        ``$proxy_add_x_forwarded_for``, tailscaled and cloudflared send it:
        on 0.13/0.14 uvicorn replaces a 127.0.0.1 proxy's peer with it unless
        ``ignore-forwarded-for`` is applied, which verify must catch. The
        negative cases: a peer outside trusted_proxies, with and without a
        forged ``X-Forwarded-For: 127.0.0.1``. The control is a loopback
        peer on a loopback bind, which every release accepts. A
        non-loopback bind is checked where ``--insecure`` still turns the
        OAuth gate off (not 0.19, where such a bind is always gated).
        """
        found = self._functions(workspace)
        if isinstance(found, str):
            return ()
        proxies: tuple[str, ...] = self.params["trusted_proxies"]
        checks: list[Check] = []

        def case(
            what: str,
            peer: str,
            bound: str,
            expect: str,
            control: bool = False,
            headers: tuple[tuple[str, str], ...] = (),
        ) -> None:
            checks.append(
                Check(
                    f"{what}: /api/events", "websocket", EVENTS, expect, peer, bound, headers=headers, control=control
                )
            )
            if not headers:
                checks.extend(
                    Check(f"{what}: {name}()", "call", name, expect, peer, bound, control=control)
                    for name in callable_names
                )

        # The probe calls functions of hermes_cli.web_server; on upstream main after
        # September 2026 that module no longer imports them, and /api/events decides.
        callable_names = [n for n, b in found.items() if workspace.resolve(n) == b]

        case("loopback peer on a loopback bind", "127.0.0.1", "127.0.0.1", "allowed", control=True)
        for text in proxies:
            net = ipaddress.ip_network(text)
            peer = str(net.network_address + 1 if net.num_addresses > 1 else net.network_address)
            case(f"peer {peer} inside trusted_proxies {text}", peer, "127.0.0.1", "allowed")
            if ipaddress.ip_address(peer).version == 4:
                case(
                    f"browser {BROWSER} through the proxy at {peer} (X-Forwarded-For: {BROWSER})",
                    peer,
                    "127.0.0.1",
                    "allowed",
                    headers=(("X-Forwarded-For", BROWSER),),
                )
        outside = next(
            (p for p in OUTSIDE_PEERS if not any(ipaddress.ip_address(p) in ipaddress.ip_network(n) for n in proxies)),
            None,
        )
        if outside is not None:
            case(f"peer {outside} outside trusted_proxies on a loopback bind", outside, "127.0.0.1", "refused")
            if ipaddress.ip_address(outside).version == 4:
                case(
                    f"peer {outside} outside trusted_proxies forging X-Forwarded-For: 127.0.0.1",
                    outside,
                    "127.0.0.1",
                    "refused",
                    headers=(("X-Forwarded-For", "127.0.0.1"),),
                )
        if not _gates_every_public_bind(workspace):
            case(
                f"peer {OUTSIDE_PEERS[0]} on a non-loopback bind (127.0.0.2)", OUTSIDE_PEERS[0], "127.0.0.2", "allowed"
            )
        return tuple(checks)

    def transformer(self, site: Site, workspace: Workspace):
        from hermes_patch.codemod import InsertAfter, InsertIntoFunction

        found = self._functions(workspace)
        assert isinstance(found, dict)
        if site.name == LOOPBACK:
            holder = next(b for b in found.values() if b.file == site.file)
            unit = _unit(workspace.source(site.file), holder)
            proxies = self.params["trusted_proxies"]
            return InsertAfter(LOOPBACK, lambda module: render_helper(proxies, unit, module.default_newline))
        binding = found[site.name]
        unit = _unit(workspace.source(site.file), binding)
        param = binding.node.args.args[0].arg
        allowed = FUNCTIONS[site.name]
        return InsertIntoFunction(
            site.name, lambda module, fn: render_guard(param, allowed, unit, module.default_newline)
        )


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _unit(src, binding: Binding) -> str:
    """The indent unit of a top-level function's body (its first statement's leading white space)."""
    first = binding.node.body[0].lineno
    line = src.lines(first, first)
    return line[: len(line) - len(line.lstrip(" \t"))] or "    "


def _indent_of(src, line_no: int) -> str:
    line = src.lines(line_no, line_no)
    return line[: len(line) - len(line.lstrip(" \t"))]


def _indent(code: str, prefix: str, newline: str) -> str:
    return "".join(prefix + line if line.strip() else line for line in code.splitlines(keepends=True))


def _proxies_of(node: ast.FunctionDef) -> tuple[str, ...] | None:
    for stmt in node.body:
        if (
            isinstance(stmt, ast.Assign)
            and isinstance(stmt.targets[0], ast.Name)
            and stmt.targets[0].id == "trusted_proxies"
        ):
            if isinstance(stmt.value, ast.Tuple) and all(
                isinstance(e, ast.Constant) and isinstance(e.value, str) for e in stmt.value.elts
            ):
                return tuple(e.value for e in stmt.value.elts)  # type: ignore[attr-defined]
    return None
