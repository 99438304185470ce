"""Edits as data: what a patch inserts where, and how the engine renders and places it.

A patch of the catalog answers two questions (see :class:`~hermes_patch.core.patch.Patch`):
``locate(workspace)`` finds the facts of the release (or says
:class:`Unrecognized`), and ``edits(found)`` says what to insert where
(:class:`Change`) or why nothing is needed (:class:`NotNeeded`). Everything
else is the engine's: the marker comment, the indentation and newline
style of the target, where exactly the lines go, and the state
(applied / pending / not-needed / unknown-shape / drifted) decided once for
every patch by comparing the file with what the patch would write.

Placements (where an :class:`Edit` goes) are data too, matched the same way
on the ``ast`` (to decide the state and to find the statement libcst edits)
and on the libcst tree (to insert): :class:`After`, :class:`AfterCall`,
:class:`AtTop`, :class:`AfterIn`, :class:`BeforeLast`.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Union

from hermes_patch.core.source import first_line

if TYPE_CHECKING:
    from hermes_patch.core.source import Source

__all__ = [
    "After",
    "AfterCall",
    "AtTop",
    "AfterIn",
    "BeforeLast",
    "Where",
    "Edit",
    "Change",
    "NotNeeded",
    "Unrecognized",
    "BadParams",
    "Example",
    "Placement",
    "place",
    "render",
    "module_unit",
]

ENTRY = "web_server.py"


@dataclass(frozen=True)
class After:
    """After the first top-level statement of ``file`` that binds ``name`` (``def``, ``class``, assignment, import)."""

    name: str
    file: str = ENTRY

    def describe(self) -> str:
        return f"after `{self.name}`"


@dataclass(frozen=True)
class AfterCall:
    """After the first top-level expression statement ``func(first_arg, ...)`` of ``file``.

    ``func`` is dotted (``"app.add_middleware"``); ``first_arg`` the dotted
    first positional argument, or ``None`` for any.
    """

    func: str
    first_arg: str | None = None
    file: str = ENTRY

    def describe(self) -> str:
        return f"after `{self.func}({self.first_arg or '...'}, ...)`"


@dataclass(frozen=True)
class AtTop:
    """At the top of the body of the top-level function ``function`` of ``file``, after its docstring."""

    function: str
    file: str = ENTRY

    def describe(self) -> str:
        return f"at the top of `{self.function}`"


@dataclass(frozen=True)
class AfterIn:
    """After the first statement of ``function``'s own body that binds ``binds`` and whose code holds ``contains``."""

    function: str
    binds: str
    contains: str = ""
    file: str = ENTRY

    def describe(self) -> str:
        return f"after `{self.binds} = ...` in `{self.function}`"


@dataclass(frozen=True)
class BeforeLast:
    """Before the last statement of the body of the top-level function ``function`` of ``file``."""

    function: str
    file: str = ENTRY

    def describe(self) -> str:
        return f"before the last statement of `{self.function}`"


Where = Union[After, AfterCall, AtTop, AfterIn, BeforeLast]


@dataclass(frozen=True)
class Edit:
    """One statement to insert, behind a marker comment.

    Attributes:
        at: where it goes.
        code: the statement, unindented, with four spaces per nested level
            and ``\\n`` line ends; the engine turns both into the target's
            own indent unit and newline.
        note: words after the patch id on the marker line
            (``# hermes-patch: <id> (<note>)``); none when empty.
        what: what the block is, for messages (``"helper"``, ``"guard"``).
        blank_lines: empty lines above the marker (two above a top-level
            ``def``/``class``, as PEP 8 has it).
        unit_of: the top-level function whose body's indent is the unit of
            ``code``'s nested lines; default: the function the edit goes
            into, or the module's first indented block.
        verbatim: keep ``code``'s leading white space as written (only the
            placement's indent goes in front): for a statement copied from
            the release, whose continuation lines are not indentation.
    """

    at: Where
    code: str
    note: str = ""
    what: str = "block"
    blank_lines: int = 0
    unit_of: str | None = None
    verbatim: bool = False


@dataclass(frozen=True)
class Change:
    """What ``edits()`` returns when the release needs the patch.

    Attributes:
        edits: the insertions, in any order.
        pending: one line for ``status`` while not applied (why it is needed).
        applied: one line for ``status`` once applied (what now holds).
        notes: warnings the operator must act on (``status --strict`` exits 1).
        advice: information that needs no action.
    """

    edits: tuple[Edit, ...]
    pending: str
    applied: str
    notes: tuple[str, ...] = ()
    advice: tuple[str, ...] = ()


@dataclass(frozen=True)
class NotNeeded:
    """What ``edits()`` returns when the release already behaves as the patch would make it."""

    reason: str
    notes: tuple[str, ...] = ()
    advice: tuple[str, ...] = ()


@dataclass(frozen=True)
class Unrecognized:
    """What ``locate()`` returns when the code has a shape the patch does not know (``unknown-shape``)."""

    reason: str


@dataclass(frozen=True)
class BadParams:
    """What ``edits()`` returns when this patch's own parameters do not fit the release (a configuration error)."""

    reason: str


@dataclass(frozen=True)
class Example:
    """One example a patch carries; :mod:`hermes_patch.testing` runs every patch's examples as tests.

    Attributes:
        before: the module files, name to text; a plain string is ``web_server.py``.
        after: the expected text after ``apply`` (same form), or ``None``
            when ``state`` says nothing is written.
        params: the patch's ``[patches.<id>]`` values.
        state: the expected state before apply (``"pending"`` when ``after`` is given).
        reason: a piece of the expected reason, when the state is not pending.
    """

    before: str | dict[str, str]
    after: str | dict[str, str] | None = None
    params: dict[str, object] = field(default_factory=dict)
    state: str = "pending"
    reason: str = ""


# -- placing an edit on the ast --------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Where an edit goes in one file, found on its ``ast``.

    Attributes:
        first, last: the top-level statement libcst edits (decorators included).
        line: the line the rendered block is inserted before (1-based; one
            past the end for the end of the file).
        indent: the white space in front of the block's lines.
        unit: the indent unit for its nested lines.
    """

    first: int
    last: int
    line: int
    indent: str
    unit: str


def _indent_of(src: Source, line: int) -> str:
    text = src.lines(line, line)
    return text[: len(text) - len(text.lstrip(" \t"))]


def _function(src: Source, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    for stmt in src.tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name == name:
            return stmt
    return None


def _binds(stmt: ast.stmt, name: str) -> bool:
    """The ast twin of :func:`hermes_patch.core.codemod.binds_name`."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return stmt.name == name
    if isinstance(stmt, ast.Assign):
        return any(isinstance(t, ast.Name) and t.id == name for t in stmt.targets)
    if isinstance(stmt, ast.AnnAssign):
        return isinstance(stmt.target, ast.Name) and stmt.target.id == name and stmt.value is not None
    if isinstance(stmt, ast.ImportFrom):
        return any((a.asname or a.name) == name for a in stmt.names)
    return False


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _is_call(stmt: ast.stmt, func: str, first_arg: str | None) -> bool:
    if not isinstance(stmt, ast.Expr) or not isinstance(stmt.value, ast.Call):
        return False
    call = stmt.value
    if _dotted(call.func) != func:
        return False
    if first_arg is None:
        return True
    return bool(call.args) and not isinstance(call.args[0], ast.Starred) and _dotted(call.args[0]) == first_arg


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def _body_unit(src: Source, fn: ast.stmt) -> str:
    body = getattr(fn, "body", None)
    if not body:
        return "    "
    return _indent_of(src, body[0].lineno)[len(_indent_of(src, fn.lineno)) :] or "    "


def module_unit(src: Source) -> str:
    """The module's indent unit: the indent of the first indented block at the top level (four spaces if none)."""
    for stmt in src.tree.body:
        if (
            isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.If, ast.For, ast.Try))
            and stmt.body
        ):
            indent = _indent_of(src, stmt.body[0].lineno)
            if indent:
                return indent
    return "    "


def _unit(src: Source, edit: Edit, fn: ast.stmt | None) -> str:
    if edit.unit_of is not None:
        holder = _function(src, edit.unit_of)
        return _body_unit(src, holder) if holder is not None else "    "
    if fn is not None:
        return _body_unit(src, fn)
    return module_unit(src)


def _comment_or_blank(src: Source, line: int) -> bool:
    text = src.lines(line, line).strip()
    return not text or text.startswith("#")


def place(src: Source, edit: Edit) -> Placement | None:
    """Where ``edit`` goes in ``src`` (matched as libcst matches it), or ``None`` when its anchor is missing.

    The rules follow libcst's ownership of lines: a statement owns the
    comment and blank lines above it, so a block inserted after a statement
    starts on the line after that statement's last line, and a block at the
    top of a function starts right after the ``def`` line(s) or the docstring.
    """
    at = edit.at
    body = src.tree.body
    spans = src.spans
    if isinstance(at, (After, AfterCall)):
        for index, stmt in enumerate(body):
            hit = _binds(stmt, at.name) if isinstance(at, After) else _is_call(stmt, at.func, at.first_arg)
            if hit:
                first, last = spans[index]
                return Placement(first, last, last + 1, "", _unit(src, edit, None))
        return None
    fn = _function(src, at.function)
    if fn is None or not fn.body:
        return None
    first, last = first_line(fn), fn.end_lineno or fn.lineno
    inner = fn.body
    indent = _indent_of(src, inner[0].lineno)
    unit = _unit(src, edit, fn)
    if isinstance(at, AtTop):
        if _is_docstring(inner[0]):
            return Placement(first, last, (inner[0].end_lineno or inner[0].lineno) + 1, indent, unit)
        line = inner[0].lineno - 1
        while line > fn.lineno and _comment_or_blank(src, line):
            line -= 1
        return Placement(first, last, line + 1, indent, unit)
    if isinstance(at, AfterIn):
        for stmt in inner:
            if _binds(stmt, at.binds) and at.contains in src.lines(first_line(stmt), stmt.end_lineno or stmt.lineno):
                return Placement(first, last, (stmt.end_lineno or stmt.lineno) + 1, _indent_of(src, stmt.lineno), unit)
        return None
    final = inner[-1]
    indent = _indent_of(src, final.lineno)
    if len(inner) > 1 and not hasattr(inner[-2], "body"):
        line = (inner[-2].end_lineno or inner[-2].lineno) + 1
    else:
        line = final.lineno
        while (
            line - 1 > fn.lineno
            and _comment_or_blank(src, line - 1)
            and (not src.lines(line - 1, line - 1).strip() or _indent_of(src, line - 1) == indent)
        ):
            line -= 1
    return Placement(first, last, line, indent, unit)


def render(patch_id: str, edit: Edit, unit: str, indent: str, newline: str) -> str:
    """The lines of ``edit`` as the engine writes them: blank lines, the marker, the code.

    ``code``'s four-space levels become ``unit`` (unless ``edit.verbatim``);
    every non-blank line gets ``indent`` in front; lines end with ``newline``.
    """
    from hermes_patch.core.patch import marker_line

    lines = [""] * edit.blank_lines + [marker_line(patch_id, edit.note)]
    for line in edit.code.strip("\n").split("\n"):
        stripped = line.lstrip(" ")
        if edit.verbatim:
            lines.append(line)
            continue
        levels, rest = divmod(len(line) - len(stripped), 4)
        lines.append(unit * levels + " " * rest + stripped if stripped else "")
    return newline.join(indent + line if line else line for line in lines) + newline
