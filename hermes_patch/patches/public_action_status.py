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
from dataclasses import replace
from typing import Any

from hermes_patch.engine import blocks_of
from hermes_patch.patch import MARKER_PREFIX, Check, Detection, Param, Patch, Site, State, py_str
from hermes_patch.source import walk
from hermes_patch.workspace import Workspace

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


def _parse_actions(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError('must be a list of action names, e.g. ["hermes-update", "gateway-restart"]')
    for name in value:
        if not _ACTION_RE.fullmatch(name):  # match() would let "hermes-update\n" through
            raise ValueError(f"{name!r} is not an action name (no wildcards, templates or slashes)")
    return tuple(dict.fromkeys(value))


def status_path(action: str) -> str:
    """The concrete status path of ``action``: ``/api/actions/<action>/status``."""
    return f"/api/actions/{action}/status"


def render(actions: tuple[str, ...], newline: str) -> str:
    """The block inserted after upstream's binding, for ``actions``, with ``newline`` endings."""
    lines = [
        f"{MARKER_PREFIX}public-action-status (update-progress poll works through a reverse proxy)",
        f"{NAME} = {NAME} | frozenset({{",
        *(f"    {py_str(status_path(a))}," for a in actions),
        "})",
    ]
    return newline.join(lines) + newline


def _strings(node: ast.expr | None) -> set[str] | None:
    """The strings of a ``frozenset({...})``/``{...}`` literal, or None for another shape."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "frozenset"
        and len(node.args) == 1
        and not node.keywords
    ):
        node = node.args[0]
    if isinstance(node, (ast.Set, ast.List, ast.Tuple)) and all(
        isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts
    ):
        return {e.value for e in node.elts}  # type: ignore[attr-defined]
    return None


class PublicActionStatus(Patch):
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

    def _actions_table(self, ws: Workspace):
        """Where the release defines ``_ACTION_LOG_FILES``: the :class:`Binding`, or ``None``.

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

    def _release_actions(self, ws: Workspace) -> list[str] | None:
        """The action names the release knows (keys of ``_ACTION_LOG_FILES``), or ``None`` for a shape we do not know."""
        table = self._release_table(ws)
        return None if table is None else list(table)

    def _release_table(self, ws: Workspace) -> dict[str, str | None] | None:
        """``_ACTION_LOG_FILES`` as name → log file name (``None`` when not a literal), or ``None``.

        Reads a dict literal whose entries are string keys or ``**{name:
        ... for name in ("a", "b")}`` over a tuple/list of strings (upstream
        main, August 2026), plus later top-level ``_ACTION_LOG_FILES.setdefault("x", ...)``
        and ``_ACTION_LOG_FILES["x"] = ...`` in the defining module and in
        ``web_server.py``. Only statements that mention the name are looked at.
        """
        cache = getattr(self, "_table_cache", None)
        if cache is not None and cache[0] is ws:
            return cache[1]
        table = self._read_table(ws)
        self._table_cache = (ws, table)
        return table

    def _read_table(self, ws: Workspace) -> dict[str, str | None] | None:
        b = self._actions_table(ws)
        if b is None:
            return None
        if len(ws.binding(ACTIONS, b.file)) != 1:
            return None
        node = b.node
        value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
        if not isinstance(value, ast.Dict):
            return None
        table: dict[str, str | None] = {}
        for key, item in zip(value.keys, value.values):
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                table[key.value] = (
                    item.value if isinstance(item, ast.Constant) and isinstance(item.value, str) else None
                )
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

    def _default_actions(self, table: dict[str, str | None]) -> tuple[str, ...]:
        """The update and gateway-restart actions this release names (see :data:`DEFAULT_ACTIONS`).

        ``hermes-update`` and ``gateway-restart`` when present; otherwise a
        fork's own spelling: an action named ``<word>-update`` /
        ``<word>-restart`` whose log file is ``<name>.log``, as upstream's
        own two are (the generic actions log to ``action-<name>.log``).
        """
        out = []
        for wanted, suffix in zip(DEFAULT_ACTIONS, ("-update", "-restart")):
            if wanted in table:
                out.append(wanted)
                continue
            out.extend(n for n, log in table.items() if n.endswith(suffix) and log == f"{n}.log")
        return tuple(dict.fromkeys(out))

    def _upstream_paths(self, ws: Workspace, node: ast.stmt) -> set[str] | None | str:
        """Upstream's public set, ``None`` if the import target cannot be read, or a shape complaint."""
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            found = _strings(node.value)
            if found is None:
                return f"{NAME} is bound to `{ast.unparse(node.value)[:60]}`, not a frozenset literal or an import"  # type: ignore[arg-type]
            return found
        if isinstance(node, ast.ImportFrom):
            target = ws.resolve(NAME)
            if target is not None and isinstance(target.node, (ast.Assign, ast.AnnAssign)):
                return _strings(target.node.value)
            return None
        return f"{NAME} is bound by a {type(node).__name__}, not a frozenset literal or an import"

    def detect(self, ws: Workspace) -> Detection:
        src = ws.entry_source()
        mine = blocks_of(ws, self.ID, [ws.entry])
        my_blocks = mine.get(ws.entry, [])
        owned = {line for b in my_blocks for line in range(b.first, b.last + 1)}
        upstream = [b for b in ws.binding(NAME) if b.first not in owned]
        if len(upstream) != 1:
            found = f"{len(upstream)} top-level bindings" if upstream else f"no top-level binding ({ws.closest(NAME)})"
            return Detection(
                State.UNKNOWN_SHAPE, f"looked for one top-level binding of {NAME} in {src.path.name}; found {found}"
            )
        binding = upstream[0]
        # Only statements whose text holds the name can rebind it (Source.mentioning).
        elsewhere = [
            n.lineno
            for n in walk(src.mentioning(NAME))
            if _rebinds(n) and n is not binding.node and n.lineno not in owned
        ]
        if elsewhere:
            return Detection(
                State.UNKNOWN_SHAPE,
                f"{NAME} is also assigned at line {elsewhere[0]} (in a block or a function), which could replace the set the edit extends",
            )
        uses = [
            n
            for n in walk(src.mentioning(NAME))
            if isinstance(n, ast.Compare)
            and any(isinstance(op, (ast.NotIn, ast.In)) for op in n.ops)
            and any(isinstance(c, ast.Name) and c.id == NAME for c in n.comparators)
        ]
        if not uses:
            return Detection(
                State.UNKNOWN_SHAPE,
                f"no `path not in {NAME}` test found: auth_middleware no longer checks exact membership",
            )
        table = self._release_table(ws)
        if table is None:
            return Detection(
                State.UNKNOWN_SHAPE,
                f"looked for a dict literal {ACTIONS} (the release's action names) in {src.path.name}, in the hermes_cli "
                f"module it imports it from, and behind the {STATUS_ROUTE} route; found none",
            )
        release_actions = list(table)
        configured: tuple[str, ...] | None = self.params["actions"]
        fitted = ""
        if configured is None:
            actions = self._default_actions(table)
            if not actions:
                return Detection(
                    State.NOT_NEEDED,
                    f"this release names no update or gateway-restart action (its {ACTIONS} has: {', '.join(release_actions)}); "
                    f"to make some status polls public, list them: actions = [...] under [patches.{self.ID}]",
                )
            if actions != DEFAULT_ACTIONS:
                fitted = f" (default fitted to this release: {', '.join(actions)})"
        else:
            actions = configured
            unknown = [a for a in actions if a not in release_actions]
            if unknown:
                from hermes_patch.errors import ConfigError

                raise ConfigError(
                    f"[patches.{self.ID}] actions lists {', '.join(unknown)}, which this release does not have "
                    f"(its {ACTIONS} has: {', '.join(release_actions)}). Remove the name from the configuration, "
                    f"or delete the actions line to use the release's own update and gateway-restart actions."
                )
        notes = tuple(
            f"the status log of {a!r} can carry sensitive output and is now readable without the token"
            for a in actions
            if a in SENSITIVE
        )
        if my_blocks:
            found = self._detect_applied(src.text, src.newline, my_blocks, binding, actions, notes, ws)
            return replace(found, reason=found.reason + fitted) if fitted else found
        existing = self._upstream_paths(ws, binding.node)
        if isinstance(existing, str):
            return Detection(State.UNKNOWN_SHAPE, existing)
        missing = [status_path(a) for a in actions if existing is None or status_path(a) not in existing]
        if not missing:
            return Detection(
                State.NOT_NEEDED,
                "the release already serves these status polls without the token" + fitted,
                notes=notes,
            )
        return Detection(
            State.PENDING,
            f"a page whose session token is gone (restarted dashboard, cached page) gets 401 on {len(missing)} status poll(s): {', '.join(missing)}{fitted}",
            sites=(Site(ws.entry, NAME, binding.first, binding.last),),
            notes=notes,
        )

    def _detect_applied(self, text, newline, blocks, binding, actions, notes, ws) -> Detection:
        src = ws.entry_source()
        if len(blocks) != 1:
            return Detection(State.DRIFTED, f"{len(blocks)} public-action-status blocks found; expected one")
        block = blocks[0]
        body = src.lines(block.first, block.last)
        if block.first != binding.last + 1:
            return Detection(
                State.DRIFTED, f"our block (line {block.marker}) no longer follows upstream's {NAME} binding"
            )
        if body == render(actions, newline) and _parsed_paths(block.node) == [status_path(a) for a in actions]:
            return Detection(
                State.APPLIED,
                f"{len(actions)} status poll(s) answer without the token (for a page whose token is gone): {', '.join(actions)}",
                notes=notes,
            )
        earlier = (
            _strings(block.node.value.right)
            if isinstance(block.node, ast.Assign) and isinstance(block.node.value, ast.BinOp)
            else None
        )  # type: ignore[attr-defined]
        if earlier is not None:
            old = tuple(p[len("/api/actions/") : -len("/status")] for p in _ordered_strings(block.node))
            if body == render(old, newline):
                return Detection(
                    State.PENDING,
                    f"applied for {', '.join(old)}; the configuration now lists {', '.join(actions)}",
                    sites=(),
                    replace=True,
                    notes=notes,
                )
        return Detection(State.DRIFTED, f"the block at line {block.marker} was edited after hermes-patch wrote it")

    def probe(self, workspace: Workspace) -> tuple[Check, ...]:
        """Token-less polls of the configured actions pass; a private endpoint and an unconfigured action's poll do not.

        The control (the first configured poll *with* the token answers)
        shows the route exists, so a 401 without the token is the patch's
        fault and not a missing route.
        """
        actions = self.actions(workspace)
        if not actions:
            return ()
        token = (("{session_header}", "{token}"),)
        checks = [
            Check(
                f"status poll of {actions[0]} with the token",
                "http",
                status_path(actions[0]),
                "allowed",
                PROXY_PEER,
                headers=token,
                control=True,
            )
        ]
        checks += [
            Check(f"status poll of {a} without the token", "http", status_path(a), "allowed", PROXY_PEER)
            for a in actions
        ]
        checks.append(
            Check("private endpoint /api/config without the token", "http", "/api/config", "refused", PROXY_PEER)
        )
        # Prefer a sensitive log: that is the one that must stay private.
        others = sorted(
            (a for a in self._release_actions(workspace) or () if a not in actions),
            key=lambda a: (a not in SENSITIVE, a),
        )
        if others:
            checks.append(
                Check(
                    f"status poll of {others[0]} (not configured) without the token",
                    "http",
                    status_path(others[0]),
                    "refused",
                    PROXY_PEER,
                )
            )
        return tuple(checks)

    def transformer(self, site: Site, workspace: Workspace):
        from hermes_patch.codemod import InsertAfter

        actions = self.actions(workspace)
        return InsertAfter(NAME, lambda module: render(actions, module.default_newline))

    def actions(self, ws: Workspace) -> tuple[str, ...]:
        """The actions this patch makes public on ``ws``: the configured ones, else the release's defaults."""
        configured = self.params["actions"]
        if configured is not None:
            return configured
        table = self._release_table(ws)
        return self._default_actions(table) if table is not None else ()


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


def _parsed_paths(node: ast.stmt) -> list[str] | None:
    """The status paths our block holds, as Python parses them (``None`` for another shape)."""
    try:
        paths = _ordered_strings(node)
    except (AttributeError, IndexError):
        return None
    return paths if all(isinstance(p, str) for p in paths) else None


def _ordered_strings(node: ast.stmt) -> list[str]:
    call = node.value.right  # type: ignore[attr-defined]
    elts = call.args[0].elts if isinstance(call, ast.Call) else call.elts
    return [e.value for e in elts]


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
    ):
        return None
    if not isinstance(gen.iter, (ast.Tuple, ast.List)) or not all(
        isinstance(e, ast.Constant) and isinstance(e.value, str) for e in gen.iter.elts
    ):
        return None
    return [e.value for e in gen.iter.elts]  # type: ignore[attr-defined]


def _later_additions(src) -> list[str]:
    """Action names added at the top level after the literal: ``_ACTION_LOG_FILES.setdefault("x", ...)``, ``_ACTION_LOG_FILES["x"] = ...``."""
    names = []
    for stmt in src.mentioning(ACTIONS):
        expr = stmt.value if isinstance(stmt, ast.Expr) else None
        if (
            isinstance(expr, ast.Call)
            and isinstance(expr.func, ast.Attribute)
            and isinstance(expr.func.value, ast.Name)
            and expr.func.value.id == ACTIONS
            and expr.func.attr == "setdefault"
            and expr.args
            and isinstance(expr.args[0], ast.Constant)
            and isinstance(expr.args[0].value, str)
        ):
            names.append(expr.args[0].value)
        if isinstance(stmt, ast.Assign):
            for t in stmt.targets:
                if (
                    isinstance(t, ast.Subscript)
                    and isinstance(t.value, ast.Name)
                    and t.value.id == ACTIONS
                    and isinstance(t.slice, ast.Constant)
                    and isinstance(t.slice.value, str)
                ):
                    names.append(t.slice.value)
    return names
