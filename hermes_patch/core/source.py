"""Byte-exact source handling: decode, keep encoding and line endings, map lines.

A :class:`Source` is immutable. Edits produce new text, and
:meth:`Source.encode` turns it back into bytes with the same encoding (a
UTF-8 BOM stays, a PEP 263 ``latin-1`` file stays latin-1), so an insertion
of whole lines followed by its removal gives back the original bytes.
"""

from __future__ import annotations

import ast
import bisect
import hashlib
import io
import itertools
import re
import tokenize
import unicodedata
from collections import deque
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterable, Iterator

from hermes_patch.core.errors import TargetError
from hermes_patch.core.messages import Failure, restore_from_release

__all__ = ["Source", "sha256_hex", "first_line", "walk"]

# Python's tokenizer ends a line at \r\n, \r or \n only; str.splitlines would
# also split at \f, \x1c, \u2028 ..., and disagree with ast line numbers.
_NEWLINE_RE = re.compile(r"\r\n|\r|\n")


def sha256_hex(data: bytes) -> str:
    """Return the hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def first_line(node: ast.stmt) -> int:
    """First line of a statement, decorators included (ast's ``lineno`` is the ``def``)."""
    decorators: list[ast.expr] | None = getattr(node, "decorator_list", None)
    if decorators:
        return min(d.lineno for d in decorators)
    return node.lineno


def walk(nodes: Iterable[ast.AST]) -> Iterator[ast.AST]:
    """:func:`ast.walk` over several trees at once, breadth first.

    ``walk(some_statements)`` yields exactly the nodes that
    ``ast.walk(module)`` yields below those statements, in the same relative
    order (breadth-first order restricted to a subset of the top-level
    subtrees is the breadth-first order of that subset), minus the
    ``Module`` node itself. So a search that takes the first match finds the
    same node, as long as the statements left out cannot hold a match.
    """
    todo = deque(nodes)
    while todo:
        node = todo.popleft()
        todo.extend(ast.iter_child_nodes(node))
        yield node


@dataclass(frozen=True)
class Source:
    """One Python file: its bytes, its encoding, its text.

    Attributes:
        path: where the bytes came from (used in messages only).
        data: the exact bytes.
        encoding: the codec that round-trips ``data`` (``utf-8-sig`` when the
            file starts with a BOM; the PEP 263 coding otherwise).
        text: ``data`` decoded with ``encoding``.
    """

    path: Path
    data: bytes
    encoding: str
    text: str = field(repr=False)
    # For a result made by inserting whole lines into another source (see
    # :meth:`edited`): that source and, per insertion, (the line of the base
    # it follows, how many lines). Lets the result answer questions about
    # the statements near its insertions without parsing the whole file.
    base: "Source | None" = field(default=None, repr=False, compare=False)
    insertions: tuple[tuple[int, int], ...] = field(default=(), repr=False, compare=False)

    @classmethod
    def from_bytes(cls, data: bytes, path: Path) -> "Source":
        """Decode ``data`` the way the interpreter would.

        Raises:
            TargetError: empty input, a NUL byte, or bytes that do not decode
                with the declared (or default UTF-8) encoding.
        """
        if not data.strip():
            raise TargetError(
                Failure(
                    f"{path} is empty, so it is not a Hermes dashboard server",
                    path,
                    cause="a Hermes install keeps it at hermes_cli/web_server.py",
                    next_command=restore_from_release(path=path),
                )
            )
        if b"\x00" in data:
            raise TargetError(
                Failure(
                    f"{path} contains NUL bytes, so it is not Python source",
                    path,
                    next_command="point hermes-patch at hermes_cli/web_server.py (`hermes-patch status --file PATH`)",
                )
            )
        try:
            encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
            text = data.decode(encoding)
        except (SyntaxError, LookupError, UnicodeDecodeError) as exc:
            raise TargetError(
                Failure(
                    f"{path} cannot be decoded as Python source ({exc})",
                    path,
                    cause="Python reads UTF-8 unless the file declares another encoding on its first two lines "
                    "(PEP 263), and this file does neither correctly; the interpreter would refuse it too",
                    next_command=restore_from_release(path=path),
                )
            ) from None
        if text.encode(encoding) != data:
            raise TargetError(
                Failure(
                    f"{path} does not round-trip through its encoding {encoding!r}",
                    path,
                    cause="hermes-patch only edits files it can write back byte for byte",
                    next_command=restore_from_release(path=path),
                )
            )
        return cls(path=path, data=data, encoding=encoding, text=text)

    def edited(self, text: str) -> "Source":
        """A :class:`Source` for ``text``, an edit of this file (same path and encoding).

        When ``text`` is this file with whole lines inserted (what ``apply``
        makes), the result remembers where: its :attr:`spans` and
        :meth:`statements_at` then parse only the top-level statements that
        received lines (and any statement asked for), not the whole file;
        :attr:`tree` still parses it whole. A statement is parsed on its own
        only where that cannot change its meaning: see :meth:`_layout`.

        Raises:
            TargetError: the new text has characters the encoding lacks.
        """
        data = self.encode(text)
        starts = _line_starts(text)
        insertions = _insertions(self, text, starts)
        if insertions is None:
            result = Source(path=self.path, data=data, encoding=self.encoding, text=text)
        else:
            result = Source(
                path=self.path, data=data, encoding=self.encoding, text=text, base=self, insertions=insertions
            )
        result.__dict__["line_starts"] = starts  # the cached property's value, computed once
        return result

    def encode(self, text: str) -> bytes:
        """Encode ``text`` (an edit of :attr:`text`) with this file's encoding.

        Raises:
            TargetError: the new text has characters the encoding lacks.
        """
        try:
            return text.encode(self.encoding)
        except UnicodeEncodeError as exc:
            raise TargetError(
                f"the edit for {self.path} cannot be written in the file's encoding {self.encoding!r} ({exc})."
            ) from None

    @cached_property
    def sha256(self) -> str:
        """Hex sha256 of :attr:`data`."""
        return sha256_hex(self.data)

    @cached_property
    def line_starts(self) -> tuple[int, ...]:
        """Character offset of the start of each line; index 0 is line 1.

        One extra entry marks the end of the text, so line ``n`` spans
        ``line_starts[n-1]:line_starts[n]``.
        """
        return _line_starts(self.text)

    def lines(self, first: int, last: int) -> str:
        """Text of lines ``first``..``last`` (1-based, inclusive) with endings."""
        return self.text[self.line_starts[first - 1] : self.line_starts[last]]

    @cached_property
    def newline(self) -> str:
        """The file's first line ending (``"\\n"`` when it has none)."""
        match = _NEWLINE_RE.search(self.text)
        return match.group() if match else "\n"

    @cached_property
    def spans(self) -> tuple[tuple[int, int], ...]:
        """(first, last) line of each top-level statement of :attr:`tree`, in order.

        ``first`` includes decorators. Spans never overlap except when
        statements share a line (``a = 1; b = 2``).
        """
        layout = self._layout
        if layout is not None:
            return tuple(layout.spans)
        return tuple((first_line(node), node.end_lineno or node.lineno) for node in self.tree.body)

    @cached_property
    def _layout(self) -> "_Layout | None":
        """For a source made by inserting lines into a parsed base: its spans without a whole parse.

        The base's top-level statements are grouped where they share a line.
        A group that received lines is parsed on its own, and so is each run
        of inserted lines between groups; a group must parse to whole
        statements from its first line to its last, a run to whole
        statements (or comments), else ``None`` (and the whole file is parsed
        as usual). That is exact: the text before each piece ends with every
        bracket, string and block closed (a top-level statement of the base
        starts at column 0 after it), so a piece that parses alone parses the
        same in place, and so does what follows it (a base statement at
        column 0, or comments). The other groups' spans are the base's,
        shifted by the lines inserted above them; they are parsed when asked for.
        """
        base, insertions = self.base, self.insertions
        if base is None:
            return None
        try:
            base_spans = base.spans
        except TargetError:
            return None
        for after, _ in insertions:  # a line continued by a backslash would join the inserted line (helper-22)
            if after and base.lines(after, after).rstrip("\r\n").endswith("\\"):
                return None
        groups: list[tuple[int, int, int, int]] = []  # (first line, last line, first index, end index) in the base
        for index, (first, last) in enumerate(base_spans):
            if groups and first <= groups[-1][1]:
                g = groups[-1]
                groups[-1] = (g[0], max(g[1], last), g[2], index + 1)
            else:
                groups.append((first, last, index, index + 1))
        shift = [0] * (len(base.line_starts) + 1)  # shift[n]: lines inserted above base line n
        for after, count in insertions:
            shift[after + 1] += count
        shift = list(itertools.accumulate(shift))
        layout = _Layout()

        def parse(first: int, last: int, whole: bool) -> bool:
            try:
                body = ast.parse(self.lines(first, last)).body
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                return False
            for node in body:
                ast.increment_lineno(node, first - 1)
            got = [(first_line(n), n.end_lineno or n.lineno) for n in body]
            if whole and (not got or got[0][0] != first or max(end for _, end in got) != last):
                return False
            for node, span in zip(body, got):
                layout.nodes[len(layout.spans)] = node
                layout.spans.append(span)
            return True

        def run(after: int, count: int) -> bool:
            start = after + shift[after] + 1
            return not self.lines(start, start + count - 1).strip() or parse(start, start + count - 1, whole=False)

        pending = sorted(insertions)
        k = 0
        for first, last, begin, end in groups:
            while k < len(pending) and pending[k][0] < first:
                if not run(*pending[k]):
                    return None
                k += 1
            received = False
            while k < len(pending) and pending[k][0] < last:
                received = True
                k += 1
            if received:
                if not parse(first + shift[first], last + shift[last], whole=True):
                    return None
                continue
            group = (len(layout.spans), first + shift[first], last + shift[last])
            for a, b in base_spans[begin:end]:
                layout.groups[len(layout.spans)] = group
                layout.spans.append((a + shift[a], b + shift[b]))
        for after, count in pending[k:]:
            if not run(after, count):
                return None
        return layout

    def statement(self, index: int) -> ast.stmt:
        """Top-level statement ``index`` (of :attr:`spans`): from the whole tree, or parsed with its group alone (see :attr:`_layout`)."""
        layout = self._layout
        if layout is None or "tree" in self.__dict__:
            return self.tree.body[index]
        node = layout.nodes.get(index)
        if node is None:
            start, first, last = layout.groups[index]
            try:
                body = ast.parse(self.lines(first, last)).body
            except (SyntaxError, ValueError, RecursionError, MemoryError):  # not expected: the base parsed it
                return self.tree.body[index]
            for offset, parsed in enumerate(body):
                ast.increment_lineno(parsed, first - 1)
                layout.nodes[start + offset] = parsed
            node = layout.nodes[index]
        return node

    def statements_at(self, line: int) -> list[ast.stmt]:
        """The top-level statements whose span holds ``line`` (1-based), in order.

        Usually one or none; more only for statements sharing a line. Every
        statement of the module that starts on ``line``, at any depth, is
        inside one of them.
        """
        return [self.statement(i) for i in self._indexes_at(line)]

    def _indexes_at(self, line: int) -> list[int]:
        spans = self.spans
        index = bisect.bisect_right(spans, (line, float("inf"))) - 1
        found = []
        # Spans are sorted and overlap only on a shared line, so walking back
        # from the last statement starting at or before ``line`` can stop at
        # the first one that starts before it.
        while index >= 0 and spans[index][1] >= line:
            found.append(index)
            if spans[index][0] < line:
                break
            index -= 1
        return found[::-1]

    def mentioning(self, name: str) -> list[ast.stmt]:
        """The top-level statements whose text may hold the identifier ``name``, in order.

        Args:
            name: an ASCII identifier (``"_LOOPBACK_HOSTS"``).

        A statement is kept when ``name`` occurs in its lines, or when its
        text changes under NFKC normalization and the normalized text holds
        ``name`` (the parser normalizes identifiers with NFKC, PEP 3131, so
        ``ｎame`` is the name ``name``). Every ``ast.Name``, attribute or
        ``def`` spelled ``name`` is therefore inside a statement returned,
        and the others need no walking. The search runs at C speed
        (``str.find``); no tree is walked.
        """
        starts, text = self.line_starts, self.text
        found: set[int] = set()
        at = text.find(name)
        while at != -1:
            found.update(self._indexes_at(bisect.bisect_right(starts, at)))
            at = text.find(name, at + len(name))
        for index in self._unnormalized:
            first, last = self.spans[index]
            if name in unicodedata.normalize("NFKC", text[starts[first - 1] : starts[last]]):
                found.add(index)
        return [self.statement(i) for i in sorted(found)]

    @cached_property
    def _unnormalized(self) -> tuple[int, ...]:
        """Indexes of the top-level statements whose text is not NFKC-normalized."""
        text = self.text
        if text.isascii() or unicodedata.is_normalized("NFKC", text):
            return ()
        starts = self.line_starts
        out = []
        for index, (first, last) in enumerate(self.spans):
            segment = text[starts[first - 1] : starts[last]]
            if not segment.isascii() and not unicodedata.is_normalized("NFKC", segment):
                out.append(index)
        return tuple(out)

    @cached_property
    def tree(self) -> ast.Module:
        """The module's ``ast`` (C speed; no libcst here).

        Raises:
            TargetError: the text is not valid Python.
        """
        try:
            return ast.parse(self.text, filename=str(self.path))
        except SyntaxError as exc:
            raise TargetError(
                Failure(
                    f"{self.path} is not valid Python: {exc.msg} at line {exc.lineno}",
                    self.path,
                    cause="Hermes could not import it either",
                    next_command=restore_from_release(path=self.path, instead="fix it"),
                )
            ) from None
        except (RecursionError, MemoryError):
            raise TargetError(too_deep(self.path)) from None


@dataclass
class _Layout:
    """What :attr:`Source._layout` knows: every top-level span, the statements parsed so far, the unparsed groups."""

    spans: list[tuple[int, int]] = field(default_factory=list)
    nodes: dict[int, ast.stmt] = field(default_factory=dict)
    groups: dict[int, tuple[int, int, int]] = field(
        default_factory=dict
    )  # index -> (first index, first line, last line)


def _line_starts(text: str) -> tuple[int, ...]:
    """:attr:`Source.line_starts` of ``text``."""
    starts = [0]
    if "\r" in text:
        starts.extend(m.end() for m in _NEWLINE_RE.finditer(text))
    else:  # the usual case, 5x faster than the regex: only \n ends a line
        starts.extend(itertools.accumulate(len(line) + 1 for line in text.split("\n")[:-1]))
    if starts[-1] != len(text):
        starts.append(len(text))
    return tuple(starts)


def _insertions(base: Source, text: str, starts: tuple[int, ...]) -> tuple[tuple[int, int], ...] | None:
    """Where ``text`` is ``base.text`` with whole lines inserted: (base line they follow, count), else ``None``.

    Lines are matched greedily; where an inserted line equals the base line
    after it, another reading of the same text is found, which is as good:
    :meth:`Source._layout` checks the pieces it parses, whatever the reading.
    """
    if len(text) <= len(base.text) or not text.endswith(base.text[-1:]):
        return None
    old = _lines(base.text, base.line_starts)
    new = _lines(text, starts)
    found: list[tuple[int, int]] = []
    i = j = 0
    while j < len(new):
        if i < len(old) and new[j] == old[i]:
            i += 1
            j += 1
            continue
        start = j
        while j < len(new) and (i >= len(old) or new[j] != old[i]):
            j += 1
        found.append((i, j - start))
    if i != len(old):
        return None
    return tuple(found)


def _lines(text: str, starts: tuple[int, ...]) -> list[str]:
    return [text[a:b] for a, b in zip(starts, starts[1:])]


def too_deep(path: Path) -> Failure:
    """The failure for a file whose expressions nest deeper than the parsers' recursion allows."""
    return Failure(
        f"{path} holds an expression nested too deeply for hermes-patch's parsers (Python's own recursion limit)",
        path,
        cause="no Hermes release has one, so the file was changed by something else",
        next_command=restore_from_release(path=path),
    )
