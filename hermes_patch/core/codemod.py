"""Reusable libcst transformers for the catalog: insert a marked statement.

Both transformers touch only the module's top-level statements
(``visit_Module`` returns ``False``, so libcst does not walk the rest), which
makes them equally correct on a whole module and on a module holding one
statement (the engine's fast path). Both are idempotent on their own: when
the statement they would insert is already there, they change nothing.

This module imports libcst; import it only in code that transforms.
"""

from __future__ import annotations

from typing import Callable, cast

import libcst as cst

__all__ = [
    "InsertAfter",
    "InsertIntoFunction",
    "InsertAfterInFunction",
    "binds_name",
    "is_call_statement",
    "dotted_name",
    "parse_statement",
]


def binds_name(stmt: cst.CSTNode, name: str) -> bool:
    """True when a top-level statement binds ``name`` (def, class, assignment, import-as)."""
    if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
        return stmt.name.value == name
    if isinstance(stmt, cst.SimpleStatementLine):
        for small in stmt.body:
            if isinstance(small, cst.Assign):
                if any(isinstance(t.target, cst.Name) and t.target.value == name for t in small.targets):
                    return True
            elif isinstance(small, cst.AnnAssign):
                if isinstance(small.target, cst.Name) and small.target.value == name and small.value is not None:
                    return True
            elif isinstance(small, cst.ImportFrom) and not isinstance(small.names, cst.ImportStar):
                for alias in small.names:
                    bound = alias.asname.name if alias.asname else alias.name
                    if isinstance(bound, cst.Name) and bound.value == name:
                        return True
    return False


def dotted_name(node: cst.BaseExpression) -> str | None:
    """``app.add_middleware`` for a ``Name``/``Attribute`` chain, else ``None``."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        base = dotted_name(node.value)
        return f"{base}.{node.attr.value}" if base else None
    return None


def is_call_statement(stmt: cst.CSTNode, func: str, first_arg: str | None = None) -> bool:
    """True for a top-level expression statement ``func(first_arg, ...)``.

    Args:
        func: the dotted callee, e.g. ``"app.add_middleware"``.
        first_arg: the dotted name of the first positional argument, or
            ``None`` for any. Matches the shape the ``ast`` side of a patch
            found (e.g. ``app.add_middleware(CORSMiddleware, ...)``).
    """
    if not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
        return False
    expr = stmt.body[0]
    if not isinstance(expr, cst.Expr) or not isinstance(expr.value, cst.Call):
        return False
    call = expr.value
    if dotted_name(call.func) != func:
        return False
    if first_arg is None:
        return True
    return (
        bool(call.args)
        and call.args[0].keyword is None
        and call.args[0].star == ""
        and dotted_name(call.args[0].value) == first_arg
    )


def parse_statement(code: str, module: cst.Module) -> cst.BaseStatement:
    """Parse one statement so that it renders exactly as ``code`` inside ``module``.

    libcst stores a block's indent as ``None`` when it equals the parsed
    code's own first indent, and renders ``None`` with the *host* module's
    default indent. A tab-indented insertion into a module whose first indent
    is four spaces (a one-statement fast-path module always says four spaces)
    would come out space-indented; spelling every indent out keeps it.
    """
    stmt = cst.parse_statement(code, config=module.config_for_parsing)
    unit = cst.parse_module(code).default_indent
    if unit == module.default_indent:
        return stmt
    # An indent-only transformer returns a statement of the same kind.
    return cast(cst.BaseStatement, stmt.visit(_ExplicitIndent(unit)))


class _ExplicitIndent(cst.CSTTransformer):
    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def leave_IndentedBlock(
        self, original_node: cst.IndentedBlock, updated_node: cst.IndentedBlock
    ) -> cst.IndentedBlock:
        return updated_node.with_changes(indent=self.unit) if updated_node.indent is None else updated_node


def _same_code(module: cst.Module, a: cst.CSTNode, b: cst.CSTNode) -> bool:
    return module.code_for_node(a) == module.code_for_node(b)


class InsertAfter(cst.CSTTransformer):
    """Insert one statement right after the top-level statement that binds ``anchor``.

    Args:
        anchor: the name whose binding statement we insert after, or a
            predicate on top-level statements for an anchor that binds no
            name (e.g. ``app.add_middleware(...)``; see
            :func:`is_call_statement`); the first match is used.
        render: given the module being edited, returns the code to insert
            (blank lines, the marker comment, one statement), written with
            ``module.default_newline``.
    """

    def __init__(self, anchor: str | Callable[[cst.BaseStatement], bool], render: Callable[[cst.Module], str]) -> None:
        super().__init__()
        self.anchor = anchor
        self.matches: Callable[[cst.BaseStatement], bool] = (
            (lambda stmt: binds_name(stmt, anchor)) if isinstance(anchor, str) else anchor
        )
        self.render = render

    def visit_Module(self, node: cst.Module) -> bool:
        return False

    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
        new = parse_statement(self.render(updated_node), updated_node)
        body: list[cst.BaseStatement] = list(updated_node.body)
        for index, stmt in enumerate(body):
            if self.matches(stmt):
                if index + 1 < len(body) and _same_code(updated_node, body[index + 1], new):
                    return updated_node
                body.insert(index + 1, new)
                return updated_node.with_changes(body=body)
        return updated_node


class InsertIntoFunction(cst.CSTTransformer):
    """Insert one statement at the top of a top-level function's body.

    The statement goes after the docstring, before upstream's first
    statement; upstream's own comments stay with their statements.

    Args:
        function: the function's name.
        render: given the module and the function node, returns the code to
            insert (the marker comment and one statement, unindented; nested
            lines indented with the function body's unit), written with
            ``module.default_newline``.
    """

    def __init__(self, function: str, render: Callable[[cst.Module, cst.FunctionDef], str]) -> None:
        super().__init__()
        self.function = function
        self.render = render

    def visit_Module(self, node: cst.Module) -> bool:
        return False

    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
        def edit(stmt: cst.FunctionDef, inner: list[cst.BaseStatement]) -> list[cst.BaseStatement] | None:
            new = parse_statement(self.render(updated_node, stmt), updated_node)
            at = 1 if inner and _is_docstring(inner[0]) else 0
            if at < len(inner) and _same_code(updated_node, inner[at], new):
                return None
            return [*inner[:at], new, *inner[at:]]

        return _edit_function_body(updated_node, self.function, edit)


class InsertAfterInFunction(cst.CSTTransformer):
    """Insert one statement right after a statement of a top-level function's body.

    Args:
        function: the function's name (``def`` or ``async def``).
        after: a predicate on the function body's own statements (not nested
            ones); the statement is inserted after the first match.
        render: given the module, returns the code to insert (the marker
            comment and one statement, unindented; nested lines indented with
            the function body's unit), written with ``module.default_newline``.

    Like the other transformers it touches nothing when the statement is
    already there, and nothing when the function or the anchor is missing.
    """

    def __init__(
        self, function: str, after: Callable[[cst.Module, cst.BaseStatement], bool], render: Callable[[cst.Module], str]
    ) -> None:
        super().__init__()
        self.function = function
        self.after = after
        self.render = render

    def visit_Module(self, node: cst.Module) -> bool:
        return False

    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
        def edit(stmt: cst.FunctionDef, inner: list[cst.BaseStatement]) -> list[cst.BaseStatement] | None:
            at = next((i for i, s in enumerate(inner) if self.after(updated_node, s)), None)
            if at is None:
                return None
            new = parse_statement(self.render(updated_node), updated_node)
            if at + 1 < len(inner) and _same_code(updated_node, inner[at + 1], new):
                return None
            return [*inner[: at + 1], new, *inner[at + 1 :]]

        return _edit_function_body(updated_node, self.function, edit)


def _edit_function_body(
    module: cst.Module,
    function: str,
    edit: Callable[[cst.FunctionDef, list[cst.BaseStatement]], list[cst.BaseStatement] | None],
) -> cst.Module:
    """``module`` with the body of its first top-level ``def function`` replaced by ``edit(def, body)``.

    Unchanged when the function is missing, is a one-liner (no indented
    block), or ``edit`` returns None (nothing to do).
    """
    body: list[cst.BaseStatement] = list(module.body)
    for index, stmt in enumerate(body):
        if isinstance(stmt, cst.FunctionDef) and stmt.name.value == function:
            if not isinstance(stmt.body, cst.IndentedBlock):
                return module
            new_inner = edit(stmt, list(stmt.body.body))
            if new_inner is None:
                return module
            body[index] = stmt.with_changes(body=stmt.body.with_changes(body=new_inner))
            return module.with_changes(body=body)
    return module


def _is_docstring(stmt: cst.BaseStatement) -> bool:
    return (
        isinstance(stmt, cst.SimpleStatementLine)
        and len(stmt.body) == 1
        and isinstance(stmt.body[0], cst.Expr)
        and isinstance(stmt.body[0].value, (cst.SimpleString, cst.ConcatenatedString))
    )


class InsertBeforeLast(cst.CSTTransformer):
    """Insert one statement right before the last statement of a top-level function's body.

    Args:
        function: the function's name.
        render: given the module, returns the code to insert (unindented),
            written with ``module.default_newline``.
    """

    def __init__(self, function: str, render: Callable[[cst.Module], str]) -> None:
        super().__init__()
        self.function = function
        self.render = render

    def visit_Module(self, node: cst.Module) -> bool:
        return False

    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
        def edit(stmt: cst.FunctionDef, inner: list[cst.BaseStatement]) -> list[cst.BaseStatement] | None:
            new = parse_statement(self.render(updated_node), updated_node)
            if len(inner) >= 2 and _same_code(updated_node, inner[-2], new):
                return None
            return [*inner[:-1], new, inner[-1]]

        return _edit_function_body(updated_node, self.function, edit)


def transformer_for(at: object, render: Callable[[cst.Module], str]) -> cst.CSTTransformer:
    """The transformer that inserts ``render(module)`` at the placement ``at`` (:mod:`hermes_patch.core.edits`).

    Raises:
        TypeError: ``at`` is not one of the placements.
    """
    from hermes_patch.core.edits import After, AfterCall, AfterIn, AtTop, BeforeLast

    if isinstance(at, After):
        return InsertAfter(at.name, render)
    if isinstance(at, AfterCall):
        func, first_arg = at.func, at.first_arg
        return InsertAfter(lambda stmt: is_call_statement(stmt, func, first_arg), render)
    if isinstance(at, AtTop):
        return InsertIntoFunction(at.function, lambda module, fn: render(module))
    if isinstance(at, AfterIn):
        binds, contains = at.binds, at.contains
        return InsertAfterInFunction(
            at.function,
            lambda module, stmt: binds_name(stmt, binds) and contains in module.code_for_node(stmt),
            render,
        )
    if isinstance(at, BeforeLast):
        return InsertBeforeLast(at.function, render)
    raise TypeError(f"{at!r} is not a placement")
