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
from dataclasses import dataclass
from typing import Any, Mapping

from hermes_patch.core.edits import After, AtTop, Change, Edit, Example, NotNeeded, Unrecognized
from hermes_patch.core.patch import Check, Param, Patch, py_str
from hermes_patch.core.source import walk
from hermes_patch.core.workspace import Binding, Workspace

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


def helper_code(proxies: tuple[str, ...]) -> str:
    """The module-level helper the edit adds after ``_LOOPBACK_HOSTS`` (every configured value through py_str)."""
    literal = "(" + ", ".join(py_str(p) for p in proxies) + ("," if len(proxies) == 1 else "") + ")"
    return f'''def {HELPER}(ws):
    """Relaxed WebSocket peer rule added by hermes-patch; loopback / --insecure mode only.

    True when the dashboard is bound to a non-loopback address (upstream's rule
    since 0.16.0) or the peer is inside trusted_proxies. The token check and the
    OAuth-gated mode keep upstream's rules.
    """
    import ipaddress

    trusted_proxies = {literal}
    state = getattr(ws.scope.get("app"), "state", None)
    if getattr(state, "auth_required", False):
        return False
    bound_host = (getattr(state, "bound_host", "") or "").strip().lower()
    if bound_host and bound_host not in {LOOPBACK}:
        return True
    try:
        peer = ipaddress.ip_address(ws.client.host if ws.client else "")
    except ValueError:
        return False
    if peer.version == 6 and peer.ipv4_mapped is not None:
        peer = peer.ipv4_mapped
    return any(peer in ipaddress.ip_network(net) for net in trusted_proxies)
'''


@dataclass(frozen=True)
class PeerCheck:
    """One peer-check function where the release keeps it.

    Attributes:
        name: ``_ws_client_is_allowed`` or ``_ws_client_reason``.
        file: the module defining it (a sibling of web_server.py when upstream moved it).
        param: the name of its WebSocket parameter (the guard passes it on).
        has_rule: it has upstream's 0.16 bind rule, itself or in the peer-check function it delegates to.
        importable: ``hermes_cli.web_server`` has it, so verify can call it there.
    """

    name: str
    file: str
    param: str
    has_rule: bool
    importable: bool


@dataclass(frozen=True)
class Found:
    functions: tuple[PeerCheck, ...]
    gates_every_public_bind: bool  # 0.19.0: should_require_auth gates every non-loopback bind


class RelaxWsPeerCheck(Patch[Found]):
    ID = "relax-ws-peer-check"
    DESCRIPTION = "Accept WebSocket peers from a non-loopback bind (0.16 rule, backported) or from trusted_proxies; token check unchanged."
    VERSIONS = ">=0.13.0"
    UPSTREAM = "hermes-agent#34227, hermes-agent#18415; non-loopback-bind rule and _ws_client_reason since 0.16.0; in web_server_chat.py on main since Aug 2026"
    PARAMS = {
        "trusted_proxies": Param(
            default=(),
            parse=lambda v: _parse_proxies(v),
            doc="CIDRs of reverse proxies whose WebSocket connections are accepted on a loopback bind",
        ),
        "allow_catch_all": Param(
            default=False,
            parse=lambda v: _bool(v),
            doc="allow 0.0.0.0/0 or ::/0 in trusted_proxies (trusts every peer; off by default)",
        ),
    }
    EXAMPLES = (
        # 0.15: the peer check compares with _LOOPBACK_HOSTS only.
        Example(
            "_LOOPBACK_HOSTS = frozenset({'127.0.0.1'})\n\n\n"
            "def _ws_client_is_allowed(ws):\n    return ws.client.host in _LOOPBACK_HOSTS\n",
            "_LOOPBACK_HOSTS = frozenset({'127.0.0.1'})\n\n\n"
            "# hermes-patch: relax-ws-peer-check (WebSocket peers behind a reverse proxy)\n"
            + helper_code(("127.0.0.5/32",))
            + "\n\ndef _ws_client_is_allowed(ws):\n"
            "    # hermes-patch: relax-ws-peer-check\n"
            f"    if {HELPER}(ws):\n        return True\n"
            "    return ws.client.host in _LOOPBACK_HOSTS\n",
            params={"trusted_proxies": ["127.0.0.5/32"]},
        ),
        # Upstream moved the functions into a sibling module: both edits go there.
        Example(
            {
                "web_server.py": "from hermes_cli.ws_policy import _ws_client_is_allowed, _ws_client_reason\n",
                "ws_policy.py": "_LOOPBACK_HOSTS = frozenset()\n\n\n"
                "def _ws_client_reason(sock):\n"
                "    if sock.client.host not in _LOOPBACK_HOSTS:\n        return 'peer'\n\n\n"
                "def _ws_client_is_allowed(ws):\n    return _ws_client_reason(ws) is None\n",
            },
            {
                "web_server.py": "from hermes_cli.ws_policy import _ws_client_is_allowed, _ws_client_reason\n",
                "ws_policy.py": "_LOOPBACK_HOSTS = frozenset()\n\n\n"
                "# hermes-patch: relax-ws-peer-check (WebSocket peers behind a reverse proxy)\n"
                + helper_code(())
                + "\n\ndef _ws_client_reason(sock):\n"
                "    # hermes-patch: relax-ws-peer-check\n"
                f"    if {HELPER}(sock):\n        return None\n"
                "    if sock.client.host not in _LOOPBACK_HOSTS:\n        return 'peer'\n\n\n"
                "def _ws_client_is_allowed(ws):\n"
                "    # hermes-patch: relax-ws-peer-check\n"
                f"    if {HELPER}(ws):\n        return True\n"
                "    return _ws_client_reason(ws) is None\n",
            },
        ),
        # 0.16+: the bind rule is upstream's; without trusted_proxies nothing is needed.
        Example(
            "_LOOPBACK_HOSTS = frozenset()\n\n\ndef _ws_client_is_allowed(ws):\n"
            "    if ws.app.state.bound_host not in _LOOPBACK_HOSTS:\n        return True\n"
            "    return ws.client.host in _LOOPBACK_HOSTS\n",
            state="not-needed",
            reason="upstream 0.16 rule",
        ),
        Example(
            "_LOOPBACK_HOSTS = frozenset()\n\n\ndef _peer_ok(ws):\n    return True\n",
            state="unknown-shape",
            reason="looked for def _ws_client_is_allowed(ws)",
        ),
    )

    def __init__(self, params: Mapping[str, object] | None = None) -> None:
        super().__init__(params)
        nets = [ipaddress.ip_network(p) for p in self.params["trusted_proxies"]]
        wide = [str(n) for n in nets if n.prefixlen == 0]
        v4 = [n for n in nets if isinstance(n, ipaddress.IPv4Network)]
        v6 = [n for n in nets if isinstance(n, ipaddress.IPv6Network)]
        for family, union, everything in (
            (v4, list(ipaddress.collapse_addresses(v4)), "0.0.0.0/0"),
            (v6, list(ipaddress.collapse_addresses(v6)), "::/0"),
        ):
            if not wide and [str(n) for n in union] == [everything]:
                wide = [f"{', '.join(str(n) for n in family)} (together {everything})"]
        if wide and not self.params["allow_catch_all"]:
            from hermes_patch.core.errors import ConfigError

            raise ConfigError(
                f"[patches.{self.ID}] trusted_proxies contains {', '.join(wide)}, which trusts every peer on "
                "every network: the loopback-only WebSocket rule would be gone. List your proxy's own address "
                'instead (e.g. "127.0.0.5/32"), or, if you really mean it, add `allow_catch_all = true` '
                f"under [patches.{self.ID}]."
            )

    def locate(self, ws: Workspace) -> Found | Unrecognized:
        """The peer-check functions where the release keeps them, following imports into sibling modules."""
        found = _scan_functions(ws)
        if isinstance(found, str):
            return Unrecognized(found)
        for file in sorted({b.file for b in found.values()}):
            count = len(ws.binding(LOOPBACK, file))
            if count != 1:
                return Unrecognized(f"looked for one top-level binding of {LOOPBACK} in {file}; found {count}")
        functions = tuple(
            PeerCheck(name, b.file, _param(b), _has_rule(name, found), ws.resolve(name) == b)
            for name, b in found.items()
        )
        return Found(functions, _gates_every_public_bind(ws))

    def edits(self, found: Found) -> Change | NotNeeded:
        proxies: tuple[str, ...] = self.params["trusted_proxies"]
        if not proxies and all(f.has_rule for f in found.functions):
            return NotNeeded(
                "this release already accepts any peer on a non-loopback bind (upstream 0.16 rule); "
                "set trusted_proxies to accept a same-host proxy on a loopback bind"
            )
        # One helper per module holding a peer check, written in the indent of that module's first one.
        holders: dict[str, str] = {}
        for f in found.functions:
            holders.setdefault(f.file, f.name)
        helpers = tuple(
            Edit(
                After(LOOPBACK, file),
                helper_code(proxies),
                note="WebSocket peers behind a reverse proxy",
                what=f"helper {HELPER}",
                blank_lines=2,
                unit_of=holder,
            )
            for file, holder in holders.items()
        )
        guards = tuple(
            Edit(AtTop(f.name, f.file), f"if {HELPER}({f.param}):\n    return {FUNCTIONS[f.name]}", what="guard")
            for f in found.functions
        )
        why = (
            f"peers inside trusted_proxies {', '.join(proxies)}"
            if proxies
            else "any peer when the dashboard is bound to a non-loopback address (upstream's rule since 0.16)"
        )
        extra = f", and from peers inside trusted_proxies {', '.join(proxies)}" if proxies else ""
        return Change(
            helpers + guards,
            pending="the dashboard refuses WebSocket connections (HTTP 403) from a proxy whose address is not "
            f"loopback; the edit accepts {why}",
            applied=f"the dashboard accepts WebSocket connections from any peer when bound to a non-loopback address{extra}",
        )

    def checks(self, found: Found) -> tuple[Check, ...]:
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
        proxies: tuple[str, ...] = self.params["trusted_proxies"]
        # The probe calls functions of hermes_cli.web_server; on upstream main after
        # September 2026 that module no longer imports them, and /api/events decides.
        callable_names = [f.name for f in found.functions if f.importable]
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
        if not found.gates_every_public_bind:
            case(
                f"peer {OUTSIDE_PEERS[0]} on a non-loopback bind (127.0.0.2)", OUTSIDE_PEERS[0], "127.0.0.2", "allowed"
            )
        return tuple(checks)


# -- where the release keeps its peer check -------------------------------------------------------


def _scan_functions(ws: Workspace) -> dict[str, Binding] | str:
    """The peer-check functions by name, or why the shape is not ours."""
    start = ws.entry
    if ws.resolve(REQUIRED) is None:
        # Upstream main after September 2026: web_server.py no longer imports the
        # peer check; the routes (web_routers/chat_ws.py) get it from web_server_chat.py.
        policy = _policy_module(ws)
        if policy is None:
            return (
                f"looked for def {REQUIRED}(ws) in {ws.entry} (or a hermes_cli module it imports it from), "
                f"and for WebSocket routes that get {' or '.join(ROUTE_NAMES)} from a hermes_cli module; "
                f"found none ({ws.closest(REQUIRED)})"
            )
        if policy.startswith("!"):
            return policy[1:]
        start = policy
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
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name not in FUNCTIONS:
                names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
                attrs = {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
                if LOOPBACK in names and "client" in attrs:
                    return f"the WebSocket peer rule is also decided in {node.name}() ({file}:{node.lineno}), which this patch does not know"
    return found


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


def _param(b: Binding) -> str:
    assert isinstance(b.node, (ast.FunctionDef, ast.AsyncFunctionDef))
    return b.node.args.args[0].arg


def _has_bind_rule(fn: ast.stmt, allowed: str) -> bool:
    """True when ``fn`` has upstream's 0.16 rule: ``if <bound> not in _LOOPBACK_HOSTS: return <allowed>``."""
    for stmt in getattr(fn, "body", ()):
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
    if _has_bind_rule(node, FUNCTIONS[name]):
        return True
    calls = {n.func.id for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    return any(
        other in found and other not in seen and _has_rule(other, found, seen | {name})
        for other in calls & set(FUNCTIONS)
    )


def _gates_every_public_bind(ws: Workspace) -> bool:
    """True when ``should_require_auth`` ignores ``allow_public`` (0.19.0: every non-loopback bind is gated)."""
    b = ws.binding("should_require_auth")
    if len(b) != 1 or not isinstance(b[0].node, ast.FunctionDef):
        return False
    body = b[0].node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return not any(isinstance(n, ast.Name) and n.id == "allow_public" for stmt in body for n in ast.walk(stmt))


# -- parameters ------------------------------------------------------------------------------------


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
        mapped = (
            net.network_address.ipv4_mapped if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96 else None
        )
        if mapped is not None:  # ::ffff:a.b.c.d/N: the helper compares IPv4-mapped peers as IPv4
            net = ipaddress.ip_network(f"{mapped}/{net.prefixlen - 96}")
        out.append(str(net))
    return tuple(dict.fromkeys(out))


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value
