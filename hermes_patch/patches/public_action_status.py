"""public-action-status: the update-progress poll works through a reverse proxy.

Upstream rule (every release from 0.13.0 to 0.19.0): ``auth_middleware``
requires the session token on every ``/api/`` path that is not an exact
member of ``_PUBLIC_API_PATHS``. The dashboard's Update button polls
``GET /api/actions/hermes-update/status`` without the token, which a proxy
that does not inject the header turns into a 401 loop (hermes-agent#34227).

The edit rebinds web_server's own ``_PUBLIC_API_PATHS`` right after
upstream's binding, adding one concrete path per configured action:
membership is exact, so a template (``/api/actions/{name}/status``) would
match nothing and a wildcard would open every action log. From 0.16.0 the
set is imported from ``dashboard_auth/public_paths.py``, which the
internet-facing OAuth gate also reads; that module is never touched.

Upstream main after 0.19 (REAL_TARGETS, "After 0.19.0"): from August 2026
``_ACTION_LOG_FILES`` is imported into web_server.py from
``web_server_gateway.py`` and built with a ``**{name: ... for name in (...)}``
entry; from September 2026 the status route lives in
``web_routers/actions.py``. The table is read where it is defined (imports
followed, or the status route's module when web_server.py does not bind
it), and the edit still goes after web_server's own binding, which
``auth_middleware`` tests. Without configured ``actions`` the release's own
update and gateway-restart actions are used (forks rename them:
``xiaoban-update``, ``fabric-update``).

What it fixes, measured in real browsers (docs/update-button.md): in every
bundle 0.14.0-0.19.0 the poll goes through the same fetch wrapper as the
Update request and *does* send the token. It 401s when the page's token is
gone: the dashboard was restarted (``hermes update`` stops it; a supervisor
starts a new process with a new token) or a proxy served a cached page.
This patch lets that page keep reading the status. It does not bring back
the result of an action the old process started (durable-action-result
does) nor keep the token (stable-session-token with ``hermes-patch hook
install --session-token`` does; with that in place this patch can be
switched off). It stays on by default because it is the only fix that needs
no operator step.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any

from hermes_patch.core.edits import After, BadParams, Change, Edit, Example, NotNeeded, Unrecognized
from hermes_patch.core.patch import Check, Param, Patch, py_str
from hermes_patch.core.source import Source, walk
from hermes_patch.core.workspace import Binding, Workspace

NAME = "_PUBLIC_API_PATHS"
ACTIONS = "_ACTION_LOG_FILES"
# Action logs that can carry secrets (REAL_TARGETS: dump, backup, security-audit).
# doctor: its report lists configuration and environment details (issue 13).
SENSITIVE = frozenset({"dump", "backup", "security-audit", "doctor"})
_ACTION_RE = re.compile(r"[a-z0-9][a-z0-9._-]*")
# A same-host proxy's address, as in the reports: the poll arrives through it.
PROXY_PEER = "127.0.0.5"
# The route the Update button polls (upstream keeps it in web_routers/actions.py from September 2026).
STATUS_ROUTE = "/api/actions/{name}/status"
# Upstream's names for the two actions whose progress the dashboard polls; forks rename them.
DEFAULT_ACTIONS = ("hermes-update", "gateway-restart")
NOTE = "update-progress poll works through a reverse proxy"
_EXAMPLE = (
    '_PUBLIC_API_PATHS = frozenset({"/api/status"})\n'
    '_ACTION_LOG_FILES = {"hermes-update": "hermes-update.log", "dump": "action-dump.log"}\n'
    "\n\n"
    "def auth_middleware(path):\n"
    "    return path not in _PUBLIC_API_PATHS\n"
)


def status_path(action: str) -> str:
    """The concrete status path of ``action``: ``/api/actions/<action>/status``."""
    return f"/api/actions/{action}/status"


def _parse_actions(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError('must be a list of action names, e.g. ["hermes-update", "gateway-restart"]')
    for name in value:
        if not _ACTION_RE.fullmatch(name):  # match() would let "hermes-update\n" through
            raise ValueError(f"{name!r} is not an action name (no wildcards, templates or slashes)")
    return tuple(dict.fromkeys(value))


@dataclass(frozen=True)
class Found:
    """The release's facts.

    Attributes:
        table: ``_ACTION_LOG_FILES`` as action name to log file name (``None`` when not a literal), in order.
        public: upstream's ``_PUBLIC_API_PATHS``, or ``None`` when it is imported from a module we cannot read.
    """

    table: dict[str, str | None]
    public: frozenset[str] | None


class PublicActionStatus(Patch[Found]):
    ID = "public-action-status"
    DESCRIPTION = "Let the Update progress poll (/api/actions/<name>/status) answer a page whose session token is gone (dashboard restarted, cached page), for the configured actions only; not needed with a stable token."
    VERSIONS = ">=0.13.0"
    UPSTREAM = "hermes-agent#34227; _PUBLIC_API_PATHS literal in 0.13.0-0.15.2, imported from dashboard_auth/public_paths.py since 0.16.0; _ACTION_LOG_FILES in web_server_gateway.py on main since Aug 2026"
    PARAMS = {
        "actions": Param(
            default=None,
            parse=_parse_actions,
            doc="action names whose status poll needs no token; each must exist in the release's _ACTION_LOG_FILES. "
            "Default: the update and gateway-restart actions this release names (hermes-update, or a fork's own, "
            "e.g. xiaoban-update)",
        )
    }
    EXAMPLES = (
        Example(
            _EXAMPLE,
            '_PUBLIC_API_PATHS = frozenset({"/api/status"})\n'
            "# hermes-patch: public-action-status (update-progress poll works through a reverse proxy)\n"
            "_PUBLIC_API_PATHS = _PUBLIC_API_PATHS | frozenset({\n"
            '    "/api/actions/hermes-update/status",\n'
            "})\n"
            '_ACTION_LOG_FILES = {"hermes-update": "hermes-update.log", "dump": "action-dump.log"}\n'
            "\n\n"
            "def auth_middleware(path):\n"
            "    return path not in _PUBLIC_API_PATHS\n",
        ),
        Example(  # a tab-indented file: the set's entries keep four spaces, as hermes-patch has always written them
            _EXAMPLE.replace("    return", "\treturn"),
            '_PUBLIC_API_PATHS = frozenset({"/api/status"})\n'
            "# hermes-patch: public-action-status (update-progress poll works through a reverse proxy)\n"
            "_PUBLIC_API_PATHS = _PUBLIC_API_PATHS | frozenset({\n"
            '    "/api/actions/hermes-update/status",\n'
            "})\n"
            '_ACTION_LOG_FILES = {"hermes-update": "hermes-update.log", "dump": "action-dump.log"}\n'
            "\n\n"
            "def auth_middleware(path):\n"
            "\treturn path not in _PUBLIC_API_PATHS\n",
        ),
        Example(_EXAMPLE, params={"actions": []}, state="not-needed", reason="no status poll is made public"),
        Example(_EXAMPLE, params={"actions": ["backup"]}, state="unknown-shape", reason="does not have"),
        Example(_EXAMPLE.replace("hermes-update", "upgrade"), state="not-needed", reason="names no update"),
        Example(
            _EXAMPLE.replace('"/api/status"', '"/api/actions/hermes-update/status"'),
            state="not-needed",
            reason="already serves",
        ),
        Example(
            _EXAMPLE.replace("path not in _PUBLIC_API_PATHS", "not _is_public(path)"),
            state="unknown-shape",
            reason="exact membership",
        ),
    )

    def locate(self, ws: Workspace) -> Found | Unrecognized:
        """Upstream's public set, bound once at the top of web_server.py and tested by exact membership, and the action table."""
        src = ws.entry_source()
        bindings = ws.binding(NAME)
        if len(bindings) != 1:
            found = f"{len(bindings)} top-level bindings" if bindings else f"no top-level binding ({ws.closest(NAME)})"
            return Unrecognized(f"looked for one top-level binding of {NAME} in {src.path.name}; found {found}")
        binding = bindings[0].node
        # Only statements whose text holds the name can rebind or test it (Source.mentioning).
        nodes = list(walk(src.mentioning(NAME)))
        elsewhere = [n.lineno for n in nodes if isinstance(n, ast.stmt) and _rebinds(n) and n is not binding]
        if elsewhere:
            return Unrecognized(
                f"{NAME} is also assigned at line {elsewhere[0]} (in a block or a function), which could replace the set the edit extends"
            )
        if not any(_tests_membership(n) for n in nodes):
            return Unrecognized(
                f"no `path not in {NAME}` test found: auth_middleware no longer checks exact membership"
            )
        table = _read_table(ws)
        if table is None:
            return Unrecognized(
                f"looked for a dict literal {ACTIONS} (the release's action names) in {src.path.name}, in the hermes_cli "
                f"module it imports it from, and behind the {STATUS_ROUTE} route; found none"
            )
        public = _upstream_paths(ws, binding)
        return Unrecognized(public) if isinstance(public, str) else Found(table, public)

    def actions(self, found: Found) -> tuple[str, ...]:
        """The actions made public: the configured ones, else the release's update and gateway-restart actions.

        ``hermes-update`` and ``gateway-restart`` when present; otherwise a
        fork's own spelling: an action named ``<word>-update`` /
        ``<word>-restart`` whose log file is ``<name>.log``, as upstream's
        own two are (the generic actions log to ``action-<name>.log``).
        """
        configured: tuple[str, ...] | None = self.params["actions"]
        if configured is not None:
            return configured
        out: list[str] = []
        for wanted, suffix in zip(DEFAULT_ACTIONS, ("-update", "-restart")):
            if wanted in found.table:
                out.append(wanted)
                continue
            out.extend(n for n, log in found.table.items() if n.endswith(suffix) and log == f"{n}.log")
        return tuple(dict.fromkeys(out))

    def edits(self, found: Found) -> Change | NotNeeded | BadParams:
        actions, known = self.actions(found), ", ".join(found.table)
        unknown = [a for a in actions if a not in found.table]
        if unknown:
            return BadParams(
                f"[patches.{self.ID}] actions lists {', '.join(unknown)}, which this release does not have "
                f"(its {ACTIONS} has: {known}). Remove the name from the configuration, "
                f"or delete the actions line to use the release's own update and gateway-restart actions."
            )
        if self.params["actions"] == ():
            return NotNeeded(f"actions = [] under [patches.{self.ID}]: no status poll is made public")
        if not actions:
            return NotNeeded(
                f"this release names no update or gateway-restart action (its {ACTIONS} has: {known}); "
                f"to make some status polls public, list them: actions = [...] under [patches.{self.ID}]"
            )
        fitted = ""
        if self.params["actions"] is None and actions != DEFAULT_ACTIONS:
            fitted = f" (default fitted to this release: {', '.join(actions)})"
        notes = tuple(
            f"the status log of {a!r} can carry sensitive output and is now readable without the token"
            for a in actions
            if a in SENSITIVE
        )
        missing = [status_path(a) for a in actions if found.public is None or status_path(a) not in found.public]
        if not missing:
            return NotNeeded("the release already serves these status polls without the token" + fitted, notes=notes)
        paths = "".join(f"    {py_str(status_path(a))},\n" for a in actions)
        return Change(
            (
                Edit(
                    After(NAME),
                    f"{NAME} = {NAME} | frozenset({{\n{paths}}})",
                    NOTE,
                    "set of status paths",
                    verbatim=True,
                ),
            ),
            pending=f"a page whose session token is gone (restarted dashboard, cached page) gets 401 on {len(missing)} status poll(s): {', '.join(missing)}{fitted}",
            applied=f"{len(actions)} status poll(s) answer without the token (for a page whose token is gone): {', '.join(actions)}{fitted}",
            notes=notes,
        )

    def checks(self, found: Found) -> tuple[Check, ...]:
        """Token-less polls of the configured actions pass; a private endpoint and an unconfigured action's poll do not.

        The control (the first configured poll *with* the token answers)
        shows the route exists, so a 401 without the token is the patch's
        fault and not a missing route.
        """
        actions = self.actions(found)
        if not actions:
            return ()
        token = (("{session_header}", "{token}"),)
        first = Check(
            f"status poll of {actions[0]} with the token",
            "http",
            status_path(actions[0]),
            "allowed",
            PROXY_PEER,
            headers=token,
            control=True,
        )
        checks = [first] + [
            Check(f"status poll of {a} without the token", "http", status_path(a), "allowed", PROXY_PEER)
            for a in actions
        ]
        checks.append(
            Check("private endpoint /api/config without the token", "http", "/api/config", "refused", PROXY_PEER)
        )
        # Prefer a sensitive log: that is the one that must stay private.
        others = sorted((a for a in found.table if a not in actions), key=lambda a: (a not in SENSITIVE, a))
        if others:
            what = f"status poll of {others[0]} (not configured) without the token"
            checks.append(Check(what, "http", status_path(others[0]), "refused", PROXY_PEER))
        return tuple(checks)


def _rebinds(node: ast.AST) -> bool:
    """An assignment, augmented assignment or ``global`` declaration of ``_PUBLIC_API_PATHS``."""
    if isinstance(node, ast.Global):
        return NAME in node.names
    targets = (
        node.targets
        if isinstance(node, ast.Assign)
        else [node.target]
        if isinstance(node, (ast.AnnAssign, ast.AugAssign))
        else []
    )
    return any(isinstance(n, ast.Name) and n.id == NAME for t in targets for n in ast.walk(t))


def _tests_membership(node: ast.AST) -> bool:
    """``... in _PUBLIC_API_PATHS`` or ``... not in _PUBLIC_API_PATHS``."""
    return (
        isinstance(node, ast.Compare)
        and any(isinstance(op, (ast.NotIn, ast.In)) for op in node.ops)
        and any(isinstance(c, ast.Name) and c.id == NAME for c in node.comparators)
    )


def _strings(node: ast.expr | None) -> frozenset[str] | None:
    """The strings of a ``frozenset({...})``/``{...}`` literal, or None for another shape."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "frozenset"
        and len(node.args) == 1
        and not node.keywords
    ):
        node = node.args[0]
    if not isinstance(node, (ast.Set, ast.List, ast.Tuple)):
        return None
    values = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return frozenset(values) if len(values) == len(node.elts) else None


def _upstream_paths(ws: Workspace, node: ast.stmt) -> frozenset[str] | None | str:
    """Upstream's public set, ``None`` if the import target cannot be read, or a shape complaint."""
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        found = _strings(node.value)
        if found is None:
            shown = ast.unparse(node.value)[:60] if node.value is not None else "?"
            return f"{NAME} is bound to `{shown}`, not a frozenset literal or an import"
        return found
    if isinstance(node, ast.ImportFrom):
        target = ws.resolve(NAME)
        if target is not None and isinstance(target.node, (ast.Assign, ast.AnnAssign)):
            return _strings(target.node.value)
        return None
    return f"{NAME} is bound by a {type(node).__name__}, not a frozenset literal or an import"


def _table_binding(ws: Workspace) -> Binding | None:
    """Where the release defines ``_ACTION_LOG_FILES``.

    Followed from ``web_server.py`` through imports (upstream main from
    August 2026 imports it from ``web_server_gateway.py``); when
    ``web_server.py`` does not bind it, from the module that serves the
    status route (``web_routers/actions.py`` on upstream main 0.21).
    """
    found = ws.resolve(ACTIONS)
    if found is None and not ws.binding(ACTIONS):
        for file in ws.files_mentioning(STATUS_ROUTE):
            if file != ws.entry and ws.binding(ACTIONS, file):
                found = ws.resolve(ACTIONS, file)
                if found is not None:
                    break
    return found


def _read_table(ws: Workspace) -> dict[str, str | None] | None:
    """``_ACTION_LOG_FILES`` as name → log file name (``None`` when not a literal), or ``None`` for another shape.

    Reads a dict literal whose entries are string keys or ``**{name:
    ... for name in ("a", "b")}`` over a tuple/list of strings (upstream
    main, August 2026), plus later top-level ``_ACTION_LOG_FILES.setdefault("x", ...)``
    and ``_ACTION_LOG_FILES["x"] = ...`` in the defining module and in
    ``web_server.py``. Only statements that mention the name are looked at.
    """
    b = _table_binding(ws)
    if b is None or len(ws.binding(ACTIONS, b.file)) != 1:
        return None
    value = b.node.value if isinstance(b.node, (ast.Assign, ast.AnnAssign)) else None
    if not isinstance(value, ast.Dict):
        return None
    table: dict[str, str | None] = {}
    for key, item in zip(value.keys, value.values):
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            table[key.value] = item.value if isinstance(item, ast.Constant) and isinstance(item.value, str) else None
            continue
        names = _comprehension_keys(item) if key is None else None
        if names is None:
            return None
        table.update((n, None) for n in names)
    for file in dict.fromkeys((b.file, ws.entry)):
        src = ws.source(file)
        if src is not None:
            table.update((n, None) for n in _later_additions(src) if n not in table)
    return table


def _comprehension_keys(node: ast.expr | None) -> list[str] | None:
    """``{name: ... for name in ("a", "b")}`` (a ``**`` entry of the action table) → ``["a", "b"]``, else ``None``."""
    if not isinstance(node, ast.DictComp) or len(node.generators) != 1:
        return None
    gen = node.generators[0]
    if (
        gen.ifs
        or gen.is_async
        or not isinstance(gen.target, ast.Name)
        or not isinstance(node.key, ast.Name)
        or node.key.id != gen.target.id
        or not isinstance(gen.iter, (ast.Tuple, ast.List))
    ):
        return None
    names = [e.value for e in gen.iter.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return names if len(names) == len(gen.iter.elts) else None


def _later_additions(src: Source) -> list[str]:
    """Action names added at the top level after the literal: ``_ACTION_LOG_FILES.setdefault("x", ...)``, ``_ACTION_LOG_FILES["x"] = ...``."""
    keys: list[ast.expr] = []
    for stmt in src.mentioning(ACTIONS):
        call = stmt.value if isinstance(stmt, ast.Expr) else None
        if isinstance(call, ast.Call) and call.args and ast.unparse(call.func) == f"{ACTIONS}.setdefault":
            keys.append(call.args[0])
        if isinstance(stmt, ast.Assign):
            keys += [t.slice for t in stmt.targets if isinstance(t, ast.Subscript) and ast.unparse(t.value) == ACTIONS]
    return [k.value for k in keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]
