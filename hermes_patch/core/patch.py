"""The codemod base class, its outcomes, and the marker that tags our edits.

A patch is a class in the catalog (``hermes_patch/patches/<name>.py``) with
metadata as class attributes (validated when the class is defined, as Fixit
does for lint rules) and two methods that state facts about Hermes:

* :meth:`Patch.locate` reads the release as shipped (``ast`` only, no
  libcst) and returns what it found, or
  :class:`~hermes_patch.core.edits.Unrecognized`;
* :meth:`Patch.edits` turns that, with the patch's parameters, into
  :class:`~hermes_patch.core.edits.Edit` data (what to insert where), or says why
  nothing is needed.

The engine (:mod:`hermes_patch.core.engine`) decides the :class:`State` of every
patch the same way and does the inserting with libcst.

Every edit is a pure insertion of whole lines: optional blank lines, one
marker comment naming the patch (:func:`marker_line`), then one statement.
Undo is therefore generic (:func:`remove_blocks`): drop each marked
statement and the blank lines we put above it, which gives back the original
bytes exactly; the engine proves it before every write.
"""

from __future__ import annotations

import ast
import bisect
import enum
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Generic, Iterable, Mapping, TypeVar


from hermes_patch.core.errors import ConfigError
from hermes_patch.core.source import first_line, walk

if TYPE_CHECKING:  # libcst is imported only by commands that transform
    from packaging.specifiers import SpecifierSet

    from hermes_patch.core.edits import BadParams, Change, Example, NotNeeded, Unrecognized
    from hermes_patch.core.source import Source
    from hermes_patch.core.workspace import Workspace

__all__ = [
    "State",
    "Detection",
    "Site",
    "Block",
    "Param",
    "matching",
    "Check",
    "Patch",
    "AnyPatch",
    "MARKER_PREFIX",
    "marker_line",
    "find_blocks",
    "remove_blocks",
    "py_str",
]


class State(str, enum.Enum):
    """What a patch finds in the target. A closed set; see the README."""

    APPLIED = "applied"
    PENDING = "pending"
    NOT_NEEDED = "not-needed"
    UNKNOWN_SHAPE = "unknown-shape"
    DRIFTED = "drifted"


@dataclass(frozen=True)
class Site:
    """One top-level statement a transform must edit.

    Attributes:
        file: module file name inside the ``hermes_cli`` package
            (``"web_server.py"``).
        name: the id of the patch that edits it.
        first: first line (1-based, decorators included).
        last: last line (1-based, inclusive).
    """

    file: str
    name: str
    first: int
    last: int


@dataclass(frozen=True)
class Detection:
    """A patch's state on a workspace, as the engine decides it (:func:`hermes_patch.core.engine.detect_data`).

    Attributes:
        state: one :class:`State`.
        reason: one line for people (why this state).
        sites: statements to transform; non-empty only when ``PENDING``.
        replace: when ``PENDING`` because an earlier apply used other
            parameters, our old blocks are removed before re-applying.
        notes: warnings for ``status``: conditions the operator must act on
            (a sensitive action made public, a suffix in ``hosts``); they
            make ``status --strict`` exit 1.
        advice: information for ``status`` that needs no action (a release
            offering an upstream setting); never counts for ``--strict``.
        config_error: the state is ``UNKNOWN_SHAPE`` because this patch's own
            parameters are wrong or do not fit the release (``reason`` says
            how); the other patches are unaffected.
        out_of_range: why the release's version is outside the patch's
            :attr:`Patch.VERSIONS` although the code has a shape the patch
            knows; ``apply`` then needs ``--allow-version`` (or
            ``allow_version = true`` in the configuration).
        patch_bug: the state is ``UNKNOWN_SHAPE`` because the patch itself
            is wrong (its ``edits()`` returned something else than an
            outcome, or an edit that cannot be inserted), not the release.
    """

    state: State
    reason: str
    sites: tuple[Site, ...] = ()
    replace: bool = False
    notes: tuple[str, ...] = ()
    config_error: bool = False
    out_of_range: str | None = None
    advice: tuple[str, ...] = ()
    patch_bug: bool = False


@dataclass(frozen=True)
class Param:
    """One configuration parameter of a patch (``[patches.<id>] <name> = ...``).

    Attributes:
        default: the value used when the configuration does not set it.
        parse: validates the TOML value and returns the normalized value;
            raises ``ValueError`` with a message for people.
        doc: one line for ``hermes-patch list --verbose`` and the README.
    """

    default: Any
    parse: Callable[[Any], Any]
    doc: str


def matching(pattern: str, what: str) -> Callable[[object], str]:
    """A :class:`Param` parser for a string that must match ``pattern`` whole.

    The error a person reads is ``must be <what>``, e.g.
    ``matching(r"(/[a-z]+)*", 'a path prefix like "/hermes"')``. The value is
    returned as given; a pattern is the safe way to accept a string that
    ends up in generated code.
    """
    regex = re.compile(pattern)

    def parse(value: object) -> str:
        if not isinstance(value, str) or not regex.fullmatch(value):
            raise ValueError(f"must be {what}")
        return value

    return parse


@dataclass(frozen=True)
class Check:
    """One observation ``hermes-patch verify`` makes inside the target's interpreter.

    A patch declares its checks in :meth:`Patch.checks`; the probe script
    (:mod:`hermes_patch.integrations.probe`) runs them against the imported dashboard app
    and :mod:`hermes_patch.integrations.verify` judges them. In ``target``, ``headers``
    ``{token}`` and ``{session_header}`` stand for the module's
    ``_SESSION_TOKEN`` and ``_SESSION_HEADER_NAME``.

    The probe starts the release's own server (``start_server()``, so
    uvicorn runs with the release's settings) bound to ``bound_host`` and
    sends ``http`` and ``websocket`` checks over real TCP connections whose
    peer is ``peer``. ``{port}`` and ``{bound}`` (``host:port`` of that
    server) may be used in headers too, e.g. an Origin
    ``http://{bound}``.

    Attributes:
        what: for people, e.g. ``"status poll of hermes-update without the token"``.
        kind: ``"http"`` (a request of ``method``: 2xx/3xx is allowed,
            400/401/403 refused, 400 being the Host check's and a CORS
            preflight's refusal), ``"websocket"`` (a WebSocket handshake:
            HTTP 101 is allowed, 401/403 refused) or ``"call"`` (the module
            function ``target`` is called in the server's process with a
            Starlette ``WebSocket`` whose peer is ``peer``: ``True``/``None``
            is allowed, ``False`` or a reason string refused).
        target: a path with query (http, websocket) or a function name (call).
        expect: ``"allowed"`` or ``"refused"``.
        peer: the TCP peer of the connection (an IP address); one in
            127.0.0.0/8 is bound as the source address, any other is
            injected beneath uvicorn's proxy-header handling.
        bound_host: the address the dashboard is started on (``--host``).
        headers: request headers, ``(name, value)`` pairs; ``Host``
            defaults to ``{bound}``. A ``X-Forwarded-For`` goes through
            uvicorn's proxy-header handling as the release configures it.
        method: ``GET`` (default), ``HEAD`` or ``OPTIONS`` (a CORS preflight).
        control: a check that must pass whether or not the patch works (e.g.
            a loopback peer is allowed); when it fails the probe measured
            nothing and verify says ``cannot verify``.
    """

    what: str
    kind: str
    target: str
    expect: str
    peer: str = "127.0.0.1"
    bound_host: str = "127.0.0.1"
    headers: tuple[tuple[str, str], ...] = ()
    control: bool = False
    method: str = "GET"

    def __post_init__(self) -> None:
        if self.kind not in ("http", "websocket", "call") or self.expect not in ("allowed", "refused"):
            raise ValueError(f"bad check {self!r}: kind must be http/websocket/call, expect allowed/refused")
        if self.method not in ("GET", "HEAD", "OPTIONS"):
            raise ValueError(f"bad check {self!r}: method must be GET, HEAD or OPTIONS (verify never changes state)")

    def to_json(self) -> dict[str, Any]:
        """The check as the probe reads it (a JSON object)."""
        return {
            "what": self.what,
            "kind": self.kind,
            "target": self.target,
            "expect": self.expect,
            "peer": self.peer,
            "bound_host": self.bound_host,
            "headers": [list(h) for h in self.headers],
            "control": self.control,
            "method": self.method,
        }


def py_str(value: str) -> str:
    """A Python string literal for a configured ``value``: ``repr()``, in double quotes where that is the same.

    Every configured value a patch writes into generated code goes through
    here (after its :class:`Param` validated it), so nothing in a value can
    end the literal (issue 13: an IPv6 zone id once did). ``repr`` escapes
    quotes, backslashes, newlines and U+2028; the result is turned into the
    double-quoted form the catalog has always written when the value holds
    neither quote.

    Raises:
        ValueError: ``value`` is not a ``str``.
    """
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string")
    literal = repr(value)
    if literal.startswith("'") and '"' not in value and "'" not in value:
        literal = '"' + literal[1:-1] + '"'
    assert ast.literal_eval(literal) == value
    return literal


MARKER_PREFIX = "# hermes-patch: "
_MARKER_RE = re.compile(r"^[ \t]*# hermes-patch: (?P<id>[a-z0-9][a-z0-9-]*)\b.*$", re.M)


def marker_line(patch_id: str, note: str) -> str:
    """The comment that starts every block we insert: ``# hermes-patch: ID (note)``."""
    return f"{MARKER_PREFIX}{patch_id} ({note})" if note else f"{MARKER_PREFIX}{patch_id}"


@dataclass(frozen=True)
class Block:
    """One inserted block found in a file.

    Attributes:
        patch_id: the id on its marker line.
        first: first line we own (blank lines above the marker included).
        marker: the marker comment's line.
        last: last line of the marked statement.
        node: the marked statement's ``ast`` node.
    """

    patch_id: str
    first: int
    marker: int
    last: int
    node: ast.stmt = field(repr=False, compare=False)


def find_blocks(src: "Source", patch_id: str | None = None) -> list[Block] | str:
    """Find our marked blocks in a module.

    Args:
        src: the module (its text, line offsets and ast).
        patch_id: only blocks of this patch, or every patch's when ``None``.

    Returns:
        The blocks in file order, or a string saying why a marker is orphaned
        (no statement starts on the line after it): a hand edit we will not
        guess about.

    Only the top-level statements holding the line after a marker are
    walked (:meth:`Source.statements_at`): any statement starting on that
    line, at any depth, is inside one of them, and the walk keeps
    ``ast.walk``'s order, so the statement found is the one a walk of the
    whole tree would find first.
    """
    text, line_starts = src.text, src.line_starts
    markers = [
        (m.group("id"), _line_of(line_starts, m.start()))
        for m in _markers(text)
        if patch_id is None or m.group("id") == patch_id
    ]
    blocks: list[Block] = []
    for pid, line in markers:
        node = next(
            (n for n in walk(src.statements_at(line + 1)) if isinstance(n, ast.stmt) and first_line(n) == line + 1),
            None,
        )
        if node is None:
            return f"the marker comment for {pid} on line {line} is not followed by a statement"
        first = line
        while first > 1 and not text[line_starts[first - 2] : line_starts[first - 1]].strip():
            first -= 1
        blocks.append(Block(pid, first, line, node.end_lineno or line + 1, node))
    return blocks


def _markers(text: str) -> list[re.Match[str]]:
    """What ``_MARKER_RE.finditer(text)`` finds, matching only lines that hold the prefix.

    A match starts at a line start (``^`` after ``\n``) and cannot cross a
    line, so trying the regex at the start of each line holding
    :data:`MARKER_PREFIX` (found with ``str.find``) finds the same matches
    without scanning every line of a 19k-line file with the regex.
    """
    found = []
    last_start = -1
    at = text.find(MARKER_PREFIX)
    while at != -1:
        start = text.rfind("\n", 0, at) + 1
        if start != last_start:
            last_start = start
            match = _MARKER_RE.match(text, start)
            if match:
                found.append(match)
        at = text.find(MARKER_PREFIX, at + len(MARKER_PREFIX))
    return found


def _line_of(line_starts: tuple[int, ...], offset: int) -> int:
    return bisect.bisect_right(line_starts, offset)


def remove_blocks(text: str, line_starts: tuple[int, ...], blocks: Iterable[Block]) -> str:
    """Return ``text`` without the given blocks (the generic undo)."""
    pieces: list[str] = []
    pos = 0
    for block in sorted(blocks, key=lambda b: b.first):
        pieces.append(text[pos : line_starts[block.first - 1]])
        pos = line_starts[block.last]
    pieces.append(text[pos:])
    return "".join(pieces)


_ID_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


Found = TypeVar("Found")


class Patch(Generic[Found]):
    """Base class of every codemod in the catalog.

    Subclasses set the metadata below and implement :meth:`locate` and
    :meth:`edits` (optionally :meth:`checks` and ``EXAMPLES``); the engine
    does the rest (:func:`hermes_patch.core.engine.detect_data`). Metadata is checked when the subclass is defined;
    a mistake raises ``TypeError`` at import, never at a user's run.

    Class attributes:
        ID: the stable id used on the command line, in the config
            (``[patches.<ID>]``), in marker comments and in the ledger.
        DESCRIPTION: one line for ``hermes-patch list``.
        VERSIONS: PEP 440 specifier of the Hermes releases this patch knows.
        UPSTREAM: the report(s) or release(s) the rule comes from.
        PARAMS: configuration parameters, name to :class:`Param`.
        FILES: module files of ``hermes_cli`` the patch may read or edit,
            first the one it starts from (usually ``web_server.py``).
        SOURCE: where the class came from (``builtin``, a directory, an
            entry point); set by the registry.
    """

    ID: ClassVar[str]
    DESCRIPTION: ClassVar[str]
    VERSIONS: ClassVar[str | SpecifierSet]
    UPSTREAM: ClassVar[str]
    PARAMS: ClassVar[dict[str, Param]] = {}
    SOURCE: ClassVar[str] = "builtin"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if getattr(cls, "__abstract__", False) or cls.__dict__.get("__abstract__", False):
            return
        for attr in ("ID", "DESCRIPTION", "VERSIONS", "UPSTREAM"):
            if attr not in cls.__dict__ and not hasattr(cls, attr):
                raise TypeError(f"patch {cls.__qualname__} must define {attr}")
        if not isinstance(cls.ID, str) or not _ID_RE.match(cls.ID):
            raise TypeError(f"patch {cls.__qualname__}: ID {cls.ID!r} must be lower-case words joined by '-'")
        from packaging.specifiers import InvalidSpecifier, SpecifierSet  # here: a warm status defines no patch

        if isinstance(cls.VERSIONS, str):
            try:
                cls.VERSIONS = SpecifierSet(cls.VERSIONS)
            except InvalidSpecifier as exc:
                raise TypeError(f"patch {cls.ID}: VERSIONS is not a PEP 440 specifier: {exc}") from None
        if not isinstance(cls.VERSIONS, SpecifierSet):
            raise TypeError(f"patch {cls.ID}: VERSIONS must be a PEP 440 specifier string")
        if cls.locate is Patch.locate or cls.edits is Patch.edits:
            raise TypeError(f"patch {cls.ID} must define locate() and edits() (see docs/writing-a-patch.md)")
        if not cls.DESCRIPTION or "\n" in cls.DESCRIPTION:
            raise TypeError(f"patch {cls.ID}: DESCRIPTION must be one line")
        for name, param in cls.PARAMS.items():
            if name == "enabled" or not isinstance(param, Param):
                raise TypeError(f"patch {cls.ID}: parameter {name!r} is reserved or not a Param")
            if not _is_json(param.default):
                raise TypeError(
                    f"patch {cls.ID}: the default of parameter {name!r} is a {type(param.default).__name__}; "
                    "parameters are recorded in the ledger as JSON: use lists, strings, numbers, booleans or tables"
                )

    def __init__(self, params: Mapping[str, object] | None = None) -> None:
        """Bind the patch to its configuration.

        Args:
            params: raw values from ``[patches.<ID>]`` (without ``enabled``).

        Raises:
            ConfigError: an unknown key, or a value its :class:`Param` rejects.
        """
        raw = dict(params or {})
        unknown = sorted(set(raw) - set(self.PARAMS))
        if unknown:
            known = ", ".join(sorted(self.PARAMS)) or "none"
            raise ConfigError(
                f"[patches.{self.ID}] has unknown key(s) {', '.join(unknown)}; this patch takes: enabled, {known}."
            )
        self.params: dict[str, Any] = {}
        for name, param in self.PARAMS.items():
            if name in raw:
                try:
                    self.params[name] = param.parse(raw[name])
                except (ValueError, TypeError) as exc:
                    raise ConfigError(f"[patches.{self.ID}] {name}: {exc}") from None
                if not _is_json(self.params[name]):
                    raise ConfigError(
                        f"[patches.{self.ID}] {name}: the patch parses it to a {type(self.params[name]).__name__}, "
                        f"which the ledger cannot record as JSON; this is a bug in the patch {self.ID} (its Param's "
                        "parse must return lists, strings, numbers, booleans or tables)"
                    )
            else:
                self.params[name] = param.default

    # -- edits as data (the catalog's API) -------------------------------------

    #: Examples that :mod:`hermes_patch.testing` runs as tests (before / params / after or state).
    EXAMPLES: ClassVar[tuple["Example", ...]] = ()

    def locate(self, workspace: "Workspace") -> "Found | Unrecognized":
        """Find the facts of the release this patch needs, or say the shape is unknown.

        Runs on the release as shipped (:meth:`Workspace.pristine`: no
        hermes-patch block anywhere), reads ``ast`` only and does not depend
        on the parameters. Returns what the patch's :meth:`edits` and
        :meth:`checks` take (the type parameter: ``class MyPatch(Patch[MyFacts])``),
        or :class:`~hermes_patch.core.edits.Unrecognized`.
        """
        raise NotImplementedError

    def edits(self, found: Found) -> "Change | NotNeeded | BadParams":
        """What to insert where for what :meth:`locate` found, with this patch's parameters (pure).

        Returns a :class:`~hermes_patch.core.edits.Change`, a
        :class:`~hermes_patch.core.edits.NotNeeded`, or a
        :class:`~hermes_patch.core.edits.BadParams` when a parameter does not fit
        this release.
        """
        raise NotImplementedError

    def checks(self, found: Found) -> tuple[Check, ...]:
        """The observations that show the patch works, for ``hermes-patch verify`` (default: none)."""
        return ()

    @classmethod
    def specifier(cls) -> SpecifierSet:
        """:attr:`VERSIONS` as a PEP 440 :class:`~packaging.specifiers.SpecifierSet` (checked at class definition)."""
        from packaging.specifiers import SpecifierSet

        assert isinstance(cls.VERSIONS, SpecifierSet)
        return cls.VERSIONS

    def with_params(self, params: Mapping[str, object] | None) -> "Patch[Found]":
        """The same patch bound to other raw ``params`` (raises ``ConfigError`` like the constructor)."""
        return type(self)(params)

    def __repr__(self) -> str:
        return f"<patch {self.ID} {self.params!r}>"


def _is_json(value: object) -> bool:
    """Whether ``value`` is what the ledger can record: JSON (tuples count as lists)."""
    import json

    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


#: A patch whatever it finds: the engine, the registry and the shell never look inside ``found``.
AnyPatch = Patch[Any]
