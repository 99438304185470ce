"""Placements and rendering (hermes_patch.core.edits): where the engine puts a block and how it writes it.

Each rule is checked against libcst, which does the real insertion: the
text the engine expects (``place`` + ``render``) must equal what the
transformer writes, or the proofs would refuse every apply.
"""

from __future__ import annotations

from pathlib import Path

import libcst as cst
import pytest

from hermes_patch.core.codemod import transformer_for
from hermes_patch.core.edits import After, AfterCall, AfterIn, AtTop, BeforeLast, Edit, place, render
from hermes_patch.core.source import Source

MODULE = '''import os

_TABLE = {"x"}  # comment


app.add_middleware(CORSMiddleware, allow_origins=[])


def run(host, port):
    """Docstring."""
    # upstream's comment stays with its statement
    cmd = [host]
    proc = _PROCS.get(host)
    uvicorn.run(app, host=host)


def tabbed():
\tif True:
\t\treturn 1
'''


def expected(text: str, edit: Edit) -> str:
    src = Source.from_bytes(text.encode(), Path("web_server.py"))
    where = place(src, edit)
    assert where is not None
    block = render("demo", edit, where.unit, where.indent, src.newline)
    at = src.line_starts[where.line - 1]
    return text[:at] + block + text[at:]


def written(text: str, edit: Edit) -> str:
    src = Source.from_bytes(text.encode(), Path("web_server.py"))
    where = place(src, edit)
    assert where is not None
    module = cst.parse_module(text)
    return module.visit(
        transformer_for(edit.at, lambda m: render("demo", edit, where.unit, "", m.default_newline))
    ).code


EDITS = {
    "after-name": Edit(After("_TABLE"), "_TABLE = _TABLE | {'y'}", note="n"),
    "after-call": Edit(AfterCall("app.add_middleware", "CORSMiddleware"), "app.add_middleware(X)"),
    "at-top-after-docstring": Edit(AtTop("run"), "if host:\n    return None"),
    "after-in": Edit(AfterIn("run", "proc", "_PROCS.get("), "if proc is None:\n    proc = 1"),
    "before-last": Edit(BeforeLast("run"), "return uvicorn.run(app, host=host, proxy_headers=False)"),
    "helper-with-blank-lines": Edit(After("run"), "def helper():\n    return 1", blank_lines=2),
    "tab-unit": Edit(AtTop("tabbed"), "if False:\n    return 0"),
}


@pytest.mark.parametrize("name", EDITS)
def test_the_engine_expects_what_libcst_writes(name):
    edit = EDITS[name]
    assert written(MODULE, edit) == expected(MODULE, edit)


@pytest.mark.parametrize("name", ["after-name", "at-top-after-docstring"])
def test_crlf_files_keep_crlf(name):
    text = MODULE.replace("\n", "\r\n")
    out = expected(text, EDITS[name])
    assert out.count("\r\n") == out.count("\n") and written(text, EDITS[name]) == out


def test_nested_levels_take_the_functions_unit_and_the_body_indent():
    out = expected(MODULE, EDITS["tab-unit"])
    assert "\t# hermes-patch: demo\n\tif False:\n\t\treturn 0\n\tif True:" in out


def test_at_top_without_docstring_goes_above_upstreams_leading_comment():
    text = "def f():\n    # first\n    x = 1\n"
    out = expected(text, Edit(AtTop("f"), "pass"))
    assert (
        out
        == "def f():\n    # hermes-patch: demo\n    pass\n    # first\n    x = 1\n"
        == written(text, Edit(AtTop("f"), "pass"))
    )


def test_a_missing_anchor_has_no_place():
    src = Source.from_bytes(MODULE.encode(), Path("web_server.py"))
    assert place(src, Edit(After("_NOPE"), "x = 1")) is None
    assert place(src, Edit(AfterIn("run", "nope"), "x = 1")) is None
    assert place(src, Edit(AtTop("nope"), "x = 1")) is None


def test_render_marks_the_block_with_the_id_and_note():
    edit = Edit(After("x"), "y = 1", note="why")
    assert render("demo", edit, "    ", "", "\n") == "# hermes-patch: demo (why)\ny = 1\n"
    assert render("demo", Edit(After("x"), "y = 1"), "    ", "  ", "\n") == "  # hermes-patch: demo\n  y = 1\n"
