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

Origins are validated by :func:`hermes_patch.core.hostnames.parse_origin`:
``http``/``https``, a host, an optional non-default port, nothing else;
``*`` and ``null`` are refused. With no origins the patch is ``not-needed``;
when upstream's regex already allows every configured origin, too.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any

from hermes_patch.core.edits import AfterCall, BadParams, Change, Edit, Example, NotNeeded, Unrecognized
from hermes_patch.core.hostnames import parse_origin
from hermes_patch.core.patch import Check, Param, Patch
from hermes_patch.core.workspace import Workspace

MIDDLEWARE = "CORSMiddleware"
METHOD = "add_middleware"
KEYWORD = "allow_origin_regex"
LOOP_VAR = "_hermes_patch_cors"
NOTE = "the dashboard's CORS rule also allows the configured origins"


def _parse_origins(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError('must be a list of origins, e.g. ["https://proxy.example"]')
    return tuple(dict.fromkeys(parse_origin(v) for v in value))


def origins_regex(origins: tuple[str, ...]) -> str:
    """The anchored alternative for ``origins``: ``\\A(?:<escaped>|...)\\Z``."""
    return r"\A(?:" + "|".join(re.escape(o) for o in origins) + r")\Z"


def _raw_literal(pattern: str) -> str:
    """``r"<pattern>"``, refusing a pattern a raw literal cannot hold exactly.

    The origins are validated (:func:`hermes_patch.core.hostnames.parse_origin`:
    ASCII host names, brackets, digits) and ``re.escape``-d, so this never
    refuses in practice; it guards the one value we write as a raw string,
    which releases of hermes-patch have always written this way.
    """
    literal = f'r"{pattern}"'
    if any(c in pattern for c in '"\r\n\u2028\u2029') or pattern.endswith("\\") or ast.literal_eval(literal) != pattern:
        raise ValueError(f"the pattern {pattern!r} cannot be written as a raw string literal")
    return literal


def code(app: str, literal: str) -> str:
    """The statement inserted after ``<app>.add_middleware(CORSMiddleware, ...)``."""
    return f"""\
for {LOOP_VAR} in {app}.user_middleware:
    if {LOOP_VAR}.cls is {MIDDLEWARE}:
        # Starlette keeps a middleware's keyword arguments in .kwargs (0.35+), in .options before.
        {LOOP_VAR}_options = getattr({LOOP_VAR}, "kwargs", None) or {LOOP_VAR}.options
        {LOOP_VAR}_options["{KEYWORD}"] = "(?:%s)|%s" % (
            {LOOP_VAR}_options["{KEYWORD}"],
            {literal},
        )
        break
"""


@dataclass(frozen=True)
class Found:
    """Upstream's ``<app>.add_middleware(CORSMiddleware, allow_origin_regex="<regex>", ...)``."""

    app: str
    regex: str


BEFORE = 'app.add_middleware(CORSMiddleware, allow_origin_regex=r"^https?://localhost(:\\d+)?$")\n'


class CorsOrigins(Patch):
    """One statement after ``app.add_middleware(CORSMiddleware, ...)`` (see the module docstring).

    Parameter ``origins``: normalized ``scheme://host[:port]`` strings
    (:func:`hermes_patch.core.hostnames.parse_origin`); empty means ``not-needed``.
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
    EXAMPLES = (
        Example(
            BEFORE,
            BEFORE + f"# hermes-patch: cors-origins ({NOTE})\n" + code("app", r'r"\A(?:https://proxy\.example)\Z"'),
            params={"origins": ["https://proxy.example"]},
        ),
        Example(BEFORE, params={"origins": ["http://localhost:5173"]}, state="not-needed", reason="already allows"),
        Example(BEFORE, state="not-needed", reason="no origins configured"),
        Example(
            BEFORE.replace('r"^https', 'r"(?i)^https'),
            params={"origins": ["https://proxy.example"]},
            state="unknown-shape",
            reason="cannot be extended",
        ),
    )

    def locate(self, ws: Workspace) -> Found | Unrecognized:
        src = ws.entry_source()
        found: list[tuple[ast.stmt, str, ast.Call]] = []
        for stmt in src.mentioning(MIDDLEWARE):
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
                found.append((stmt, call.func.value.id, call))
        if len(found) != 1:
            return Unrecognized(
                f"looked for one top-level `app.{METHOD}({MIDDLEWARE}, ...)` in {src.path.name}; found {len(found)}"
            )
        stmt, app, call = found[0]
        regex = next((k.value for k in call.keywords if k.arg == KEYWORD), None)
        if not isinstance(regex, ast.Constant) or not isinstance(regex.value, str):
            return Unrecognized(f"the {MIDDLEWARE} call (line {stmt.lineno}) has no string {KEYWORD}= argument")
        try:  # our origins are re.escape-d literals: if one compiles with upstream's, all do
            re.compile(f"(?:{regex.value})|{origins_regex(('http://x',))}")
        except re.error as exc:
            return Unrecognized(f"the {MIDDLEWARE} {KEYWORD} (line {stmt.lineno}) cannot be extended: {exc}")
        return Found(app, regex.value)

    def edits(self, found: Found) -> Change | NotNeeded | BadParams:
        origins: tuple[str, ...] = self.params["origins"]
        if not origins:
            return NotNeeded(
                f"no origins configured, nothing to do; to let a page on another origin call the API add "
                f'origins = ["https://proxy.example"] under [patches.{self.ID}] in the configuration, then run `hermes-patch apply`'
            )
        missing = [o for o in origins if not re.fullmatch(found.regex, o)]
        if not missing:
            return NotNeeded(f"the release's CORS rule already allows {', '.join(origins)}")
        try:
            literal = _raw_literal(origins_regex(origins))
        except ValueError as exc:
            return BadParams(f"[patches.{self.ID}] origins: {exc}")
        return Change(
            (Edit(AfterCall(f"{found.app}.{METHOD}", MIDDLEWARE), code(found.app, literal), NOTE),),
            pending=f"the CORS rule allows localhost origins only; the edit adds {', '.join(missing)}",
            applied=f"the CORS rule also allows {', '.join(origins)}",
        )

    def checks(self, found: Found) -> tuple[Check, ...]:
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
