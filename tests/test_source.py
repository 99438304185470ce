"""The shortcuts that keep detection near the parse: each must agree with the slow, obvious way."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from hermes_patch.core.patch import _MARKER_RE, _markers, find_blocks
from hermes_patch.core.source import Source, first_line, walk

from conftest import FIXTURES, RELEASES, copy_real

from hermes_patch.app import App
from hermes_patch.core.errors import TargetError
from hermes_patch.core.engine import Refusal, plan_apply


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


# --- a result made by inserting lines (Source.edited): spans and statements without a whole parse ---


def assert_same_as_whole_parse(result: Source, every_line: bool = True) -> None:
    """``result``'s spans and every statement equal those of a whole parse of its text (line numbers included)."""
    whole = ast.parse(result.text).body
    assert result.spans == tuple((first_line(n), n.end_lineno) for n in whole)
    for index, node in enumerate(whole):
        assert ast.dump(result.statement(index), include_attributes=True) == ast.dump(node, include_attributes=True)
    for line in range(1, len(result.line_starts) + 1) if every_line else ():
        got = [ast.dump(n, include_attributes=True) for n in result.statements_at(line)]
        want = [ast.dump(n, include_attributes=True) for n in whole if first_line(n) <= line <= n.end_lineno]
        assert got == want, line


BASE = (
    '"""Doc."""\nfrom __future__ import annotations\n\nimport os\n# a comment\n\n\n'
    "@decorator\ndef f(a):\n    x = 1\n    return x\n\n\n"
    "a = (1,\n     2); b = 3; c = 4\n\n"
    "class K:\n    def m(self):\n        return 1\n\n"
    "def last():\n    pass\n"
)


def _insert(text: str, after: int, lines: str) -> str:
    kept = text.splitlines(keepends=True)
    return "".join(kept[:after]) + lines + "".join(kept[after:])


@pytest.mark.parametrize(
    "after, lines",
    [
        (10, "    # hermes-patch: p\n    y = 2\n"),  # inside a function
        (8, "# hermes-patch: p\n"),  # between a decorator and its def: a comment only
        (4, "\n# hermes-patch: p\nZ = 1\n"),  # a top-level statement after a statement
        (6, "# hermes-patch: p\ndef g():\n    return 2\n"),  # among comment lines
        (0, "# hermes-patch: p\n"),  # at the very top
        (22, "\n# hermes-patch: p\nZ = 1\n"),  # after the last line
        (18, "        # hermes-patch: p\n        y = 2\n"),  # in a method
        (15, "X = 1\n"),  # after a line shared by three statements
        (9, "    x = 1\n"),  # equals the line after it: another reading of the same text
    ],
)
def test_an_insertion_is_read_without_a_whole_parse_and_gives_what_a_whole_parse_gives(after, lines):
    base = src(BASE)
    assert base.spans  # the base is parsed whole
    result = base.edited(_insert(BASE, after, lines))
    assert result.base is base and result.insertions
    assert result._layout is not None, "this insertion can be read in pieces"
    assert "tree" not in result.__dict__
    assert_same_as_whole_parse(result)


def test_several_insertions_at_once():
    text = _insert(_insert(_insert(BASE, 18, "        y = 2\n"), 10, "    y = 2\n"), 4, "Z = 1\n")
    result = src(BASE).edited(text)
    assert len(result.insertions) == 3 and result._layout is not None
    assert_same_as_whole_parse(result)


@pytest.mark.parametrize(
    "after, lines",
    [
        (22, "    y = 2\n"),  # indented after the file's last def: it joins that def
        (11, "    y = 2\n"),  # after a function's last line: it joins the function
        (4, "x = (\n"),  # opens a bracket that swallows what follows
        (4, 's = """\n'),  # opens a string
        (9, "  y = 0\n"),  # a different indent inside a body
    ],
)
def test_an_insertion_that_may_change_its_neighbours_is_parsed_whole(after, lines):
    _parsed_whole(BASE, after, lines)


@pytest.mark.parametrize("tail", ["\ny = 2\n", "# c\ny = 2\n", ";\n", "; y = 2\n"])
def test_an_insertion_after_a_backslash_continuation_is_parsed_whole(tail):
    """``x = 1 \\`` continues onto the next line: an inserted line would join it (helper-22's finding)."""
    _parsed_whole("x = 1 \\\n" + tail, 1, "z = 3\n")


def _parsed_whole(base_text: str, after: int, lines: str) -> None:
    text = _insert(base_text, after, lines)
    result = src(base_text).edited(text)
    assert result._layout is None
    try:
        whole = ast.parse(text)
    except SyntaxError:
        with pytest.raises(TargetError, match="not valid Python"):
            _ = result.spans
        return
    assert result.spans == tuple((first_line(n), n.end_lineno) for n in whole.body)


def test_an_edit_that_is_not_an_insertion_has_no_base():
    base = src(BASE)
    assert base.edited(BASE.replace("x = 1", "x = 2")).base is None
    assert base.edited(BASE.replace("import os\n", "")).base is None


@pytest.mark.real
@pytest.mark.parametrize("version", RELEASES)
def test_apply_results_on_the_real_releases_are_read_in_pieces_and_exactly(version, tmp_path):
    """Every file ``apply`` changes on a real release (every patch pending) is read without a whole parse, exactly."""
    root = copy_real(version, tmp_path / "t")
    config = tmp_path / "config.toml"
    config.write_text(
        '[patches.relax-ws-peer-check]\ntrusted_proxies = ["127.0.0.5/32"]\n'
        '[patches.trusted-hosts]\nhosts = ["proxy.example"]\n[patches.cors-origins]\norigins = ["https://proxy.example"]\n'
    )
    app = App(root=root, config_path=config, state_dir=tmp_path / "state")
    ws = app.workspace()
    plan = plan_apply(ws, app.detect(ws, app.state.read().target(app.key)))
    assert not isinstance(plan, Refusal) and plan.after
    result = ws.with_edits(plan.after)
    for name in plan.after:
        src = result.source(name)
        assert src is not None and src._layout is not None, name
        assert_same_as_whole_parse(src, every_line=False)
