"""cors-origins: the dashboard's CORS rule also allows the operator's exact origins.

Upstream rule (every release from 0.13.0 to 0.19.0, same text): one
top-level statement ``app.add_middleware(CORSMiddleware,
allow_origin_regex=<localhost and 127.0.0.1, http or https, any port>,
allow_methods=["*"], allow_headers=["*"])``. A page served from another
origin (a proxy's own host name, a separate front end) cannot call the API
from a browser (hermes-agent#10567, #47601, #15731, #52040).

Why the edit is an insertion *after* that call. The call binds no name and
its arguments are one expression, so changing the literal would not be a
pure insertion of whole lines. Starlette does not build the middleware
until the first request (or the lifespan start): ``add_middleware`` only
records ``Middleware(cls, *args, **kwargs)`` in ``app.user_middleware``
(``.kwargs`` since Starlette 0.35, ``.options`` before; every release's
``web`` extra pins fastapi 0.133.1, which needs a Starlette with
``.kwargs``, but 0.16.0+ also allow an older fastapi, so both are read).
The inserted statement finds that record (``.cls is CORSMiddleware``) and
rewrites its ``allow_origin_regex`` to ``(?:<upstream>)|\\A(?:<ours>)\\Z``,
where ``<ours>`` is the configured origins, each ``re.escape``-d, joined by
``|``. Upstream's localhost rule stays as it was; Starlette matches with
``fullmatch``, and ``\\A``/``\\Z`` keep ours anchored for any other matcher.
The statement runs at import, before the app serves anything, and undo is
the generic removal of our marked lines.

Origins are validated by :func:`hermes_patch.hostnames.parse_origin`:
``http``/``https``, a host, an optional non-default port, nothing else;
``*`` and ``null`` are refused. With no origins the patch is ``not-needed``;
when upstream's regex already allows every configured origin, too.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from hermes_patch.engine import blocks_of
from hermes_patch.hostnames import parse_origin
from hermes_patch.patch import MARKER_PREFIX, Check, Detection, Param, Patch, Site, State
from hermes_patch.workspace import Workspace, first_line

MIDDLEWARE = "CORSMiddleware"
METHOD = "add_middleware"
KEYWORD = "allow_origin_regex"
# Site.name for the anchor: the call binds no name, so this label stands for it.
ANCHOR = f"{METHOD}({MIDDLEWARE})"
LOOP_VAR = "_hermes_patch_cors"
NOTE = "the dashboard's CORS rule also allows the configured origins"


def _parse_origins(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError('must be a list of origins, e.g. ["https://proxy.example"]')
    return tuple(dict.fromkeys(parse_origin(v) for v in value))


def origins_regex(origins: tuple[str, ...]) -> str:
    """The anchored alternative for ``origins``: ``\\A(?:<escaped>|...)\\Z``."""
    return r"\A(?:" + "|".join(re.escape(o) for o in origins) + r")\Z"


def combined_regex(upstream: str, origins: tuple[str, ...]) -> str:
    """The ``allow_origin_regex`` the patched dashboard runs with (what the inserted code computes)."""
    return f"(?:{upstream})|{origins_regex(origins)}"


def _raw_literal(pattern: str) -> str:
    """``r"<pattern>"``, refusing a pattern a raw literal cannot hold exactly.

    The origins are validated (:func:`hermes_patch.hostnames.parse_origin`:
    ASCII host names, brackets, digits) and ``re.escape``-d, so this never
    refuses in practice; it guards the one value we write as a raw string,
    which releases of hermes-patch have always written this way.
    """
    literal = f'r"{pattern}"'
    if any(c in pattern for c in '"\r\n\u2028\u2029') or pattern.endswith("\\") or ast.literal_eval(literal) != pattern:
        raise ValueError(f"the pattern {pattern!r} cannot be written as a raw string literal")
    return literal


def render(app: str, origins: tuple[str, ...], unit: str, newline: str) -> str:
    """The statement inserted after ``<app>.add_middleware(CORSMiddleware, ...)``, indented with ``unit``."""
    i, ii, iii = unit, unit * 2, unit * 3
    lines = [
        f"{MARKER_PREFIX}cors-origins ({NOTE})",
        f"for {LOOP_VAR} in {app}.user_middleware:",
        f"{i}if {LOOP_VAR}.cls is {MIDDLEWARE}:",
        f"{ii}# Starlette keeps a middleware's keyword arguments in .kwargs (0.35+), in .options before.",
        f'{ii}{LOOP_VAR}_options = getattr({LOOP_VAR}, "kwargs", None) or {LOOP_VAR}.options',
        f'{ii}{LOOP_VAR}_options["{KEYWORD}"] = "(?:%s)|%s" % (',
        f'{iii}{LOOP_VAR}_options["{KEYWORD}"],',
        f"{iii}{_raw_literal(origins_regex(origins))},",
        f"{ii})",
        f"{ii}break",
    ]
    return newline.join(lines) + newline


def _origins_of(node: ast.stmt) -> tuple[str, ...] | None:
    """The origins a block we wrote earlier holds (un-escaping our own ``re.escape``)."""
    for n in ast.walk(node):
        if (
            isinstance(n, ast.Constant)
            and isinstance(n.value, str)
            and n.value.startswith(r"\A(?:")
            and n.value.endswith(r")\Z")
        ):
            inner = n.value[len(r"\A(?:") : -len(r")\Z")]
            return tuple(re.sub(r"\\(.)", r"\1", part) for part in re.split(r"(?<!\\)\|", inner))
    return None


class _Anchor:
    """The upstream ``<app>.add_middleware(CORSMiddleware, allow_origin_regex="...")`` statement."""

    def __init__(self, node: ast.Expr, app: str, regex: str) -> None:
        self.node, self.app, self.regex = node, app, regex
        self.first, self.last = first_line(node), node.end_lineno or node.lineno


def _find_anchor(ws: Workspace) -> _Anchor | str:
    src = ws.entry_source()
    found: list[ast.Expr] = []
    for stmt in src.tree.body:
        call = stmt.value if isinstance(stmt, ast.Expr) else None
        if (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and call.func.attr == METHOD
            and isinstance(call.func.value, ast.Name)
            and call.args
            and isinstance(call.args[0], ast.Name)
            and call.args[0].id == MIDDLEWARE
        ):
            found.append(stmt)  # type: ignore[arg-type]
    if len(found) != 1:
        return f"looked for one top-level `app.{METHOD}({MIDDLEWARE}, ...)` in {src.path.name}; found {len(found)}"
    stmt = found[0]
    call = stmt.value
    assert isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and isinstance(call.func.value, ast.Name)
    regex = next((k.value for k in call.keywords if k.arg == KEYWORD), None)
    if not isinstance(regex, ast.Constant) or not isinstance(regex.value, str):
        return f"the {MIDDLEWARE} call (line {stmt.lineno}) has no string {KEYWORD}= argument"
    return _Anchor(stmt, call.func.value.id, regex.value)


def _unit(ws: Workspace) -> str:
    """The module's indent unit, from the first indented block at top level."""
    src = ws.entry_source()
    for stmt in src.tree.body:
        if (
            isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.If, ast.For, ast.Try))
            and stmt.body
        ):
            line = src.lines(stmt.body[0].lineno, stmt.body[0].lineno)
            indent = line[: len(line) - len(line.lstrip(" \t"))]
            if indent:
                return indent
    return "    "


class CorsOrigins(Patch):
    """Codemod: one statement after ``app.add_middleware(CORSMiddleware, ...)`` (see the module docstring).

    Parameter ``origins``: normalized ``scheme://host[:port]`` strings
    (:func:`hermes_patch.hostnames.parse_origin`); empty means ``not-needed``.
    """

    ID = "cors-origins"
    DESCRIPTION = "Add the configured exact origins to the dashboard's CORS allow_origin_regex; the localhost rule stays, '*' is never allowed."
    VERSIONS = ">=0.13.0"
    UPSTREAM = "hermes-agent#10567, #47601, #15731, #52040; CORSMiddleware allow_origin_regex pinned to localhost in 0.13.0-0.19.0"
    PARAMS = {
        "origins": Param(
            default=(),
            parse=_parse_origins,
            doc="exact origins (scheme://host[:port]) whose pages may call the dashboard API from a browser",
        )
    }

    def detect(self, ws: Workspace) -> Detection:
        anchor = _find_anchor(ws)
        if isinstance(anchor, str):
            return Detection(State.UNKNOWN_SHAPE, anchor)
        origins: tuple[str, ...] = self.params["origins"]
        try:
            upstream = re.compile(anchor.regex)
            re.compile(combined_regex(anchor.regex, origins or ("http://x",)))
        except re.error as exc:
            return Detection(
                State.UNKNOWN_SHAPE, f"the {MIDDLEWARE} {KEYWORD} (line {anchor.node.lineno}) cannot be extended: {exc}"
            )
        blocks = blocks_of(ws, self.ID, [ws.entry]).get(ws.entry, [])
        if blocks:
            return self._detect_applied(ws, anchor, blocks, origins)
        if not origins:
            return Detection(
                State.NOT_NEEDED,
                f"no origins configured, nothing to do; to let a page on another origin call the API add "
                f'origins = ["https://proxy.example"] under [patches.{self.ID}] in the configuration, then run `hermes-patch apply`',
            )
        missing = [o for o in origins if not upstream.fullmatch(o)]
        if not missing:
            return Detection(State.NOT_NEEDED, f"the release's CORS rule already allows {', '.join(origins)}")
        return Detection(
            State.PENDING,
            f"the CORS rule allows localhost origins only; the edit adds {', '.join(missing)}",
            sites=(Site(ws.entry, ANCHOR, anchor.first, anchor.last),),
        )

    def _detect_applied(self, ws: Workspace, anchor: _Anchor, blocks, origins: tuple[str, ...]) -> Detection:
        src = ws.entry_source()
        if len(blocks) != 1:
            return Detection(State.DRIFTED, f"{len(blocks)} cors-origins blocks found; expected one")
        block = blocks[0]
        if block.first != anchor.last + 1:
            return Detection(State.DRIFTED, f"our block (line {block.marker}) no longer follows the {MIDDLEWARE} call")
        body = src.lines(block.first, block.last)
        unit = _unit(ws)
        parsed = {n.value for n in ast.walk(block.node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        if origins and body == render(anchor.app, origins, unit, src.newline) and origins_regex(origins) in parsed:
            return Detection(State.APPLIED, f"the CORS rule also allows {', '.join(origins)}")
        old = _origins_of(block.node)
        if old and body == render(anchor.app, old, unit, src.newline):
            if not origins:
                return Detection(
                    State.PENDING,
                    f"the CORS rule still allows {', '.join(old)}, but the configuration lists no origins any more; `hermes-patch apply` removes the edit",
                    replace=True,
                )
            return Detection(
                State.PENDING,
                f"applied for {', '.join(old)}; the configuration now lists {', '.join(origins)}",
                replace=True,
            )
        return Detection(State.DRIFTED, f"the block at line {block.marker} was edited after hermes-patch wrote it")

    def probe(self, workspace: Workspace) -> tuple[Check, ...]:
        """A CORS preflight from each configured origin passes; a look-alike origin's does not.

        ``OPTIONS /api/status`` with ``Origin`` and
        ``Access-Control-Request-Method: GET``, as a browser sends before a
        cross-origin call: Starlette answers 200 for an allowed origin and
        400 ("Disallowed CORS origin") otherwise. The control is upstream's
        own rule (an origin on 127.0.0.1). Look-alikes: the first origin's
        host with ``.attacker.test`` appended, and the same origin with the
        other scheme.
        """
        origins: tuple[str, ...] = self.params["origins"]
        if not origins:
            return ()

        def preflight(what: str, origin: str, expect: str, control: bool = False) -> Check:
            headers = (("Origin", origin), ("Access-Control-Request-Method", "GET"))
            return Check(what, "http", "/api/status", expect, headers=headers, control=control, method="OPTIONS")

        checks = [
            preflight(
                "CORS preflight from http://127.0.0.1 (upstream's rule)", "http://{bound}", "allowed", control=True
            )
        ]
        checks += [preflight(f"CORS preflight from {o}", o, "allowed") for o in origins]
        scheme, _, rest = origins[0].partition("://")
        host, colon, port = (
            rest.rpartition(":") if rest.count(":") == 1 and not rest.startswith("[") else (rest, "", "")
        )
        fake = f"{scheme}://{host}.attacker.test{colon}{port}"
        checks.append(preflight(f"CORS preflight from look-alike {fake}", fake, "refused"))
        other = ("http" if scheme == "https" else "https") + "://" + rest
        if other not in origins:
            checks.append(preflight(f"CORS preflight from {other} (other scheme)", other, "refused"))
        return tuple(checks)

    def transformer(self, site: Site, workspace: Workspace):
        from hermes_patch.codemod import InsertAfter, is_call_statement

        anchor = _find_anchor(workspace)
        assert isinstance(anchor, _Anchor)
        origins, unit, app = self.params["origins"], _unit(workspace), anchor.app
        return InsertAfter(
            lambda stmt: is_call_statement(stmt, f"{app}.{METHOD}", MIDDLEWARE),
            lambda module: render(app, origins, unit, module.default_newline),
        )
