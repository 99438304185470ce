"""The codemod base class, its outcomes, and the marker that tags our edits.

A patch is a class in the catalog (``patches/<name>.py``) with metadata as
class attributes (validated when the class is defined, as Fixit does for
lint rules) and two halves kept apart:

* :meth:`Patch.detect` reads ``ast`` trees only (fast, no libcst) and returns
  a :class:`Detection`: one :class:`State` plus a reason and, when pending,
  the :class:`Site` list that says which top-level statements to transform.
* :meth:`Patch.transformer` returns a ``libcst`` transformer that edits those
  statements. It works on a whole module and on a module that holds just
  one of the statements (the engine's fast path), with identical output.

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
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from hermes_patch.errors import ConfigError

if TYPE_CHECKING:  # libcst is imported only by commands that transform
    import libcst

    from hermes_patch.workspace import Workspace

__all__ = [
    "State",
    "Detection",
    "Site",
    "Block",
    "Param",
    "Patch",
    "MARKER_PREFIX",
    "marker_line",
    "find_blocks",
    "remove_blocks",
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
        name: the name the statement binds (``"_PUBLIC_API_PATHS"``,
            ``"_ws_client_is_allowed"``); the transformer matches on it.
        first: first line (1-based, decorators included).
        last: last line (1-based, inclusive).
    """

    file: str
    name: str
    first: int
    last: int


@dataclass(frozen=True)
class Detection:
    """The outcome of :meth:`Patch.detect`.

    Attributes:
        state: one :class:`State`.
        reason: one line for people (why this state).
        sites: statements to transform; non-empty only when ``PENDING``.
        replace: when ``PENDING`` because an earlier apply used other
            parameters, our old blocks are removed before re-applying.
        notes: extra warnings for ``status`` (e.g. a sensitive action).
    """

    state: State
    reason: str
    sites: tuple[Site, ...] = ()
    replace: bool = False
    notes: tuple[str, ...] = ()


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


def find_blocks(text: str, line_starts: tuple[int, ...], tree: ast.Module, patch_id: str | None = None) -> list[Block] | str:
    """Find our marked blocks in a module.

    Args:
        text: the module text; ``line_starts`` its line offsets
            (:attr:`Source.line_starts`); ``tree`` its ast.
        patch_id: only blocks of this patch, or every patch's when ``None``.

    Returns:
        The blocks in file order, or a string saying why a marker is orphaned
        (no statement starts on the line after it): a hand edit we will not
        guess about.
    """
    markers = [
        (m.group("id"), _line_of(line_starts, m.start()))
        for m in _MARKER_RE.finditer(text)
        if patch_id is None or m.group("id") == patch_id
    ]
    if not markers:
        return []
    starts = _statements_starting_at(tree, {line + 1 for _, line in markers})
    blocks: list[Block] = []
    for pid, line in markers:
        node = starts.get(line + 1)
        if node is None:
            return f"the marker comment for {pid} on line {line} is not followed by a statement"
        first = line
        while first > 1 and not text[line_starts[first - 2] : line_starts[first - 1]].strip():
            first -= 1
        blocks.append(Block(pid, first, line, node.end_lineno or line + 1, node))
    return blocks


def _statements_starting_at(tree: ast.Module, lines: set[int]) -> dict[int, ast.stmt]:
    """The outermost statement starting on each of ``lines`` (decorators included).

    Descends only into statements that span one of the lines, so a 19,000
    line module costs a few hundred node visits instead of a full walk.
    """
    found: dict[int, ast.stmt] = {}
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                first, last = _first_line(child), child.end_lineno or child.lineno
                if not any(first <= line <= last for line in lines):
                    continue
                if first in lines:
                    found.setdefault(first, child)
                todo.append(child)
            elif isinstance(child, (ast.excepthandler, ast.match_case)):
                todo.append(child)
    return found


def _line_of(line_starts: tuple[int, ...], offset: int) -> int:
    return bisect.bisect_right(line_starts, offset)


def _first_line(node: ast.stmt) -> int:
    decorators = getattr(node, "decorator_list", None)
    if decorators:
        return min(d.lineno for d in decorators)
    return node.lineno


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


class Patch:
    """Base class of every codemod in the catalog.

    Subclasses set the metadata below and implement :meth:`detect` and
    :meth:`transformer`. Metadata is checked when the subclass is defined;
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
    VERSIONS: ClassVar[SpecifierSet]
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
        if isinstance(cls.VERSIONS, str):
            try:
                cls.VERSIONS = SpecifierSet(cls.VERSIONS)
            except InvalidSpecifier as exc:
                raise TypeError(f"patch {cls.ID}: VERSIONS is not a PEP 440 specifier: {exc}") from None
        if not isinstance(cls.VERSIONS, SpecifierSet):
            raise TypeError(f"patch {cls.ID}: VERSIONS must be a PEP 440 specifier string")
        if not cls.DESCRIPTION or "\n" in cls.DESCRIPTION:
            raise TypeError(f"patch {cls.ID}: DESCRIPTION must be one line")
        for name, param in cls.PARAMS.items():
            if name == "enabled" or not isinstance(param, Param):
                raise TypeError(f"patch {cls.ID}: parameter {name!r} is reserved or not a Param")

    def __init__(self, params: dict[str, Any] | None = None) -> None:
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
                f"[patches.{self.ID}] has unknown key(s) {', '.join(unknown)}; "
                f"this patch takes: enabled, {known}."
            )
        self.params: dict[str, Any] = {}
        for name, param in self.PARAMS.items():
            if name in raw:
                try:
                    self.params[name] = param.parse(raw[name])
                except (ValueError, TypeError) as exc:
                    raise ConfigError(f"[patches.{self.ID}] {name}: {exc}") from None
            else:
                self.params[name] = param.default

    # -- the two halves ----------------------------------------------------

    def detect(self, workspace: "Workspace") -> Detection:
        """Read the target and say what state this patch is in.

        Must not raise for expected situations (unknown shape, drift); may
        raise :class:`~hermes_patch.errors.ConfigError` when a parameter does
        not fit this release, and ``TargetError`` when a file cannot be read.
        """
        raise NotImplementedError

    def transformer(self, site: Site, workspace: "Workspace") -> "libcst.CSTTransformer":
        """Return a libcst transformer that edits the statement of ``site``.

        The transformer finds its statement by name among the module's
        top-level statements and must leave everything else as it is.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<patch {self.ID} {self.params!r}>"
