"""The shortcuts that keep detection near the parse: each must agree with the slow, obvious way."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from hermes_patch.patch import _MARKER_RE, _markers, find_blocks
from hermes_patch.source import Source, first_line, walk

from conftest import FIXTURES


def src(text: str) -> Source:
    return Source.from_bytes(text.encode("utf-8"), Path("m.py"))


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
@pytest.mark.parametrize("tail", [True, False], ids=["final-newline", "no-final-newline"])
def test_line_starts_match_the_tokenizer_line_ends(newline, tail):
    text = newline.join(["a = 1", "b = '\x0c\u2028'", "", "c = 3"]) + (newline if tail else "")
    expected = [0] + [m.end() for m in re.finditer(r"\r\n|\r|\n", text)]
    if expected[-1] != len(text):
        expected.append(len(text))
    s = src(text)
    assert list(s.line_starts) == expected
    assert s.lines(4, 4).startswith("c = 3")


def test_mixed_line_endings_use_the_exact_path():
    s = src("a = 1\r\nb = 2\nc = 3\rd = 4\n")
    assert [s.lines(n, n) for n in range(1, 5)] == ["a = 1\r\n", "b = 2\n", "c = 3\r", "d = 4\n"]


def _top(tree: ast.Module) -> dict[int, ast.stmt]:
    """id of every node -> its top-level statement."""
    owner = {}
    for stmt in tree.body:
        for node in ast.walk(stmt):
            owner[id(node)] = stmt
    return owner


@pytest.mark.parametrize("fixture", ["r0_14", "r0_16", "r0_20_moved"])
def test_walk_of_some_statements_keeps_ast_walk_order(fixture):
    s = src((FIXTURES / fixture / "hermes_cli/web_server.py").read_text())
    body = s.tree.body
    subset = body[1::3]
    owner = _top(s.tree)
    # Load/Store and operator nodes are shared singletons: they have no single owner.
    shared = (ast.expr_context, ast.boolop, ast.operator, ast.unaryop, ast.cmpop)
    expected = [n for n in ast.walk(s.tree) if n is not s.tree and not isinstance(n, shared) and owner[id(n)] in subset]
    assert [id(n) for n in walk(subset) if not isinstance(n, shared)] == [id(n) for n in expected]
    assert len(expected) > 100


def test_statements_at_finds_every_statement_on_a_line():
    s = src("import os\nx = (1,\n     2); y = 3; z = 4\n\n\ndef f():\n    return 1\n")
    x, y, z, f = s.tree.body[1:]
    assert s.statements_at(1) == [s.tree.body[0]]
    assert s.statements_at(2) == [x]
    assert s.statements_at(3) == [x, y, z]
    assert s.statements_at(4) == []
    assert s.statements_at(7) == [f]
    assert s.statements_at(99) == []


def test_mentioning_covers_every_use_of_a_name_including_nfkc_spellings():
    # The second assignment spells the name with a fullwidth L; the parser reads it as _LOOPBACK_HOSTS.
    text = (
        "_LOOPBACK_HOSTS = {'127.0.0.1'}\n"
        "_\uff2cOOPBACK_HOSTS = {'::1'}\n"
        "other = 1  # ellipsis \u2026 does not name it\n"
        "def f(ws):\n    return ws.client.host in _LOOPBACK_HOSTS\n"
        "def g():\n    return 2\n"
        "# _LOOPBACK_HOSTS in a comment between statements\n"
        "class C:\n    def m(self):\n        return _LOOPBACK_HOSTS\n"
    )
    s = src(text)
    users = {
        stmt for stmt in s.tree.body for n in ast.walk(stmt) if (isinstance(n, ast.Name) and n.id == "_LOOPBACK_HOSTS")
    }
    found = s.mentioning("_LOOPBACK_HOSTS")
    assert users <= set(found)
    assert [getattr(n, "name", None) or n.targets[0].id for n in found] == [
        "_LOOPBACK_HOSTS",
        "_LOOPBACK_HOSTS",
        "f",
        "C",
    ]
    assert s.mentioning("nowhere") == []


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
def test_marker_search_finds_what_the_regex_finds(newline):
    lines = [
        "x = 1",
        "# hermes-patch: relax-ws-peer-check (first)",
        "def h(): pass",
        "s = '# hermes-patch: not-a-marker'  # hermes-patch: neither",
        "    # hermes-patch: public-action-status # hermes-patch: twice on one line",
        "y = 2",
        "#  hermes-patch: spaced-wrong",
    ]
    text = newline.join(lines) + newline
    assert [(m.start(), m.group("id")) for m in _markers(text)] == [
        (m.start(), m.group("id")) for m in _MARKER_RE.finditer(text)
    ]


def test_find_blocks_takes_the_statement_a_full_walk_would():
    text = (
        "import os\n"
        "\n"
        "# hermes-patch: one (a)\n"
        "A = 1\n"
        "def f():\n"
        "    if True:\n"
        "        # hermes-patch: two (b)\n"
        "        @staticmethod\n"
        "        def g(): pass\n"
        "# hermes-patch: three (c)\n"
        "a = 1; b = 2\n"
    )
    s = src(text)
    starts: dict[int, ast.stmt] = {}
    for node in ast.walk(s.tree):
        if isinstance(node, ast.stmt):
            starts.setdefault(first_line(node), node)
    blocks = find_blocks(s)
    assert isinstance(blocks, list)
    assert [(b.patch_id, b.first, b.marker, b.last) for b in blocks] == [
        ("one", 2, 3, 4),
        ("two", 7, 7, 9),
        ("three", 10, 10, 11),
    ]
    assert all(b.node is starts[b.marker + 1] for b in blocks)
    assert [b.patch_id for b in find_blocks(s, "two")] == ["two"]
    orphan = find_blocks(src(text + "# hermes-patch: four (d)\n"))
    assert isinstance(orphan, str) and "four on line 12" in orphan
