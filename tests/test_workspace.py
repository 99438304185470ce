"""hermes_patch.core.workspace: the package's module files and the ast questions patches ask of them.

On the miniatures (fixtures/releases): where a name is really defined when
upstream moved it to a sibling module (an import, a re-export, upstream
main's ``late()`` seam), which modules get a name from another, which files
are read at all; and on small packages written here, the binding rules a
patch relies on (what counts as a top-level binding, rebinding, loops).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from hermes_patch.core.errors import TargetError
from hermes_patch.core.workspace import MAX_HOPS, Binding, Workspace
from hermes_patch.fileio import on_disk

from conftest import FIXTURES


def package(name: str) -> Path:
    return FIXTURES / name / "hermes_cli"


def written(tmp_path: Path, files: dict[str, str]) -> Path:
    """A ``hermes_cli`` package in ``tmp_path`` holding ``files`` (relative name to text)."""
    pkg = tmp_path / "hermes_cli"
    for name, text in files.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    return pkg


def defined(b: Binding | None) -> tuple[str, str, str] | None:
    """(file, kind, name) of a defining binding, and the line ``first`` names, checked against the file."""
    if b is None:
        return None
    assert isinstance(b.node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign))
    return b.file, type(b.node).__name__, getattr(b.node, "name", "")


# -- following a name to where it is defined ----------------------------------------------------------


def test_a_name_defined_in_the_entry_module_resolves_there():
    ws = on_disk(package("r0_15"))
    b = ws.resolve("_ws_client_is_allowed")
    assert defined(b) == ("web_server.py", "FunctionDef", "_ws_client_is_allowed")
    text = (package("r0_15") / "web_server.py").read_text().splitlines()
    assert text[b.first - 1].startswith("def _ws_client_is_allowed(")
    assert list(ws.loaded()) == ["web_server.py"]  # nothing else was read


def test_an_import_from_a_sibling_module_is_followed():
    """0.20's announced layout: web_server.py imports the peer rules from ws_policy.py."""
    ws = on_disk(package("r0_20_moved"))
    assert [type(b.node).__name__ for b in ws.binding("_ws_client_is_allowed")] == ["ImportFrom"]
    b = ws.resolve("_ws_client_is_allowed")
    assert defined(b) == ("ws_policy.py", "FunctionDef", "_ws_client_is_allowed")
    lines = (package("r0_20_moved") / "ws_policy.py").read_text().splitlines()
    assert lines[b.first - 1] == 'def _ws_client_is_allowed(ws: "WebSocket") -> bool:'
    assert lines[b.last - 1].strip() and b.last > b.first
    assert sorted(ws.loaded()) == ["web_server.py", "ws_policy.py"]


def test_a_parenthesized_re_export_is_followed():
    """0.20.2's split: ``from hermes_cli.web_server_chat import (...)  # re-exported``."""
    ws = on_disk(package("r0_20_split"))
    assert defined(ws.resolve("_ws_client_reason")) == ("web_server_chat.py", "FunctionDef", "_ws_client_reason")
    assert defined(ws.resolve("_spawn_hermes_action")) == (
        "web_server_gateway.py",
        "FunctionDef",
        "_spawn_hermes_action",
    )


def test_upstream_mains_late_binding_seam_is_followed():
    """``x = late("x", "hermes_cli.mod")`` in web_routers/*.py (upstream main, September 2026)."""
    ws = on_disk(package("r0_21_main"))
    assert defined(ws.resolve("_ws_client_reason", "web_routers/chat_ws.py")) == (
        "web_server_chat.py",
        "FunctionDef",
        "_ws_client_reason",
    )
    assert defined(ws.resolve("_spawn_hermes_action", "web_routers/actions.py")) == (
        "web_server_gateway.py",
        "FunctionDef",
        "_spawn_hermes_action",
    )
    # The import of ``late`` itself leads to its definition in web_deps.py.
    assert defined(ws.resolve("late", "web_routers/chat_ws.py")) == ("web_deps.py", "FunctionDef", "late")


def test_late_without_a_module_means_web_server_and_late_outside_the_package_is_not_followed(tmp_path):
    pkg = written(
        tmp_path,
        {
            "web_server.py": "def handler():\n    pass\n",
            "routes.py": (
                "from hermes_cli.web_deps import late\n"
                'handler = late("handler")\n'
                'other = late("other", "somewhere_else.mod")\n'
                'computed = late(NAME, "hermes_cli.web_server")\n'
            ),
        },
    )
    ws = on_disk(pkg)
    assert defined(ws.resolve("handler", "routes.py")) == ("web_server.py", "FunctionDef", "handler")
    # Not the seam: the assignment itself is the definition.
    assert defined(ws.resolve("other", "routes.py")) == ("routes.py", "Assign", "")
    assert defined(ws.resolve("computed", "routes.py")) == ("routes.py", "Assign", "")


def test_relative_imports_are_followed_from_the_package_and_from_a_sub_package(tmp_path):
    pkg = written(
        tmp_path,
        {
            "web_server.py": "from .policy import check as allowed\n",
            "policy.py": "def check():\n    return True\n",
            "web_routers/__init__.py": "",
            "web_routers/chat.py": "from ..policy import check\nfrom . import sibling\n",
        },
    )
    ws = on_disk(pkg)
    b = ws.resolve("allowed")  # the alias is followed to the original name
    assert defined(b) == ("policy.py", "FunctionDef", "check")
    assert defined(ws.resolve("check", "web_routers/chat.py")) == ("policy.py", "FunctionDef", "check")
    assert ws.resolve("sibling", "web_routers/chat.py") is None  # `from . import x` names a module, not a binding


def test_names_from_outside_the_package_a_loop_or_a_missing_definition_resolve_to_none(tmp_path):
    ws = on_disk(package("r0_20_moved"))
    assert ws.resolve("FastAPI") is None  # from fastapi import FastAPI: outside the package
    assert ws.resolve("no_such_name") is None
    loop = on_disk(
        written(
            tmp_path,
            {"web_server.py": "from hermes_cli.a import x\n", "a.py": "from hermes_cli.web_server import x\n"},
        )
    )
    assert loop.resolve("x") is None
    gone = on_disk(written(tmp_path / "gone", {"web_server.py": "from hermes_cli.missing import x\n"}))
    assert gone.resolve("x") is None


def test_a_chain_longer_than_max_hops_is_not_followed(tmp_path):
    files = {"web_server.py": "from hermes_cli.m0 import x\n"}
    for i in range(MAX_HOPS):
        files[f"m{i}.py"] = f"from hermes_cli.m{i + 1} import x\n"
    files[f"m{MAX_HOPS}.py"] = "x = 1\n"
    assert on_disk(written(tmp_path, files)).resolve("x") is None
    files = {"web_server.py": "from hermes_cli.m1 import x\n", "m1.py": "x = 1\n"}
    assert defined(on_disk(written(tmp_path / "short", files)).resolve("x")) == ("m1.py", "Assign", "")


def test_importers_are_the_modules_that_get_a_name_from_a_file():
    ws = on_disk(package("r0_21_main"))
    assert ws.importers("_ws_client_reason", "web_server_chat.py") == ["web_routers/chat_ws.py"]
    assert "web_routers/actions.py" not in ws.loaded()  # only the files that mention the name were parsed
    assert ws.importers("_spawn_hermes_action", "web_server_gateway.py") == ["web_routers/actions.py"]
    assert ws.importers("_ws_client_reason", "web_server.py") == []


# -- what counts as a top-level binding ------------------------------------------------------------------

BINDINGS = """\
import os
from hermes_cli.other import name as name

@decorator
def name():
    pass

class name: ...
name = 1
name: int = 2
name: int
if os.environ:
    name = 3
try:
    name = 4
except Exception:
    pass
a = name = b = 5
"""


def test_binding_counts_top_level_defs_classes_assignments_and_imports_only(tmp_path):
    ws = on_disk(written(tmp_path, {"web_server.py": BINDINGS}))
    found = ws.binding("name")
    assert [(type(b.node).__name__, b.first, b.last) for b in found] == [
        ("ImportFrom", 2, 2),
        ("FunctionDef", 4, 6),  # the decorator's line is the first
        ("ClassDef", 8, 8),
        ("Assign", 9, 9),
        ("AnnAssign", 10, 10),  # `name: int` without a value binds nothing
        ("Assign", 18, 18),
    ]
    assert ws.binding("name", "missing.py") == []


def test_rebound_explains_that_the_last_binding_wins(tmp_path):
    ws = on_disk(written(tmp_path, {"web_server.py": "def f():\n    pass\n\n\ndef f():\n    return 1\n\ng = 1\n"}))
    first, second = ws.binding("f")
    assert ws.rebound("f", first) == (
        "f is bound 2 times at the top of web_server.py (lines 1, 5); the last one wins, so an edit of the first would do nothing"
    )
    assert ws.rebound("f", second) == (
        "f is bound 2 times at the top of web_server.py (lines 5, 1); the last one wins, so an edit of the first would do nothing"
    )
    assert ws.rebound("g", ws.binding("g")[0]) is None


def test_closest_suggests_similar_top_level_names():
    ws = on_disk(package("r0_15"))
    assert ws.closest("_ws_client_is_alowed") == "closest: _ws_client_is_allowed, _ws_host_origin_is_allowed"
    assert ws.closest("_is_acepted_host") == "closest: _is_accepted_host"
    assert ws.closest("zzzz") == "no similar top-level name"


# -- which files, and what is read ------------------------------------------------------------------------


def test_modules_lists_two_levels_sorted_and_skips_caches_hidden_folders_and_linked_folders(tmp_path):
    pkg = written(
        tmp_path,
        {
            "web_server.py": "",
            "b.py": "",
            "web_routers/z.py": "",
            "web_routers/a.py": "",
            "web_routers/deep/no.py": "",
            "__pycache__/web_server.py": "",
            ".hidden/x.py": "",
            "notes.txt": "",
        },
    )
    (pkg / "linked").symlink_to(pkg / "web_routers")
    assert on_disk(pkg).modules() == ["b.py", "web_server.py", "web_routers/a.py", "web_routers/z.py"]
    assert on_disk(package("r0_21_main")).modules() == [
        "__init__.py",
        "web_deps.py",
        "web_server.py",
        "web_server_chat.py",
        "web_server_gateway.py",
        "dashboard_auth/__init__.py",
        "dashboard_auth/public_paths.py",
        "web_routers/__init__.py",
        "web_routers/actions.py",
        "web_routers/chat_ws.py",
    ]


def test_files_mentioning_reads_bytes_and_prefers_an_edited_text(tmp_path):
    ws = on_disk(package("r0_20_split"))
    assert ws.files_mentioning("_ws_client_reason") == ["web_server.py", "web_server_chat.py"]
    assert ws.loaded() == {}  # a byte search parses nothing
    edited = ws.with_edits({"web_server.py": ws.entry_source().text.replace("_ws_client_reason", "_renamed")})
    assert edited.files_mentioning("_ws_client_reason") == ["web_server_chat.py"]
    assert edited.files_mentioning("_renamed") == ["web_server.py"]


def test_a_missing_sibling_is_none_and_a_missing_entry_is_an_error(tmp_path):
    ws = on_disk(package("r0_15"))
    assert ws.source("ws_policy.py") is None
    assert ws.source("ws_policy.py") is None  # remembered, not looked up again
    with pytest.raises(TargetError, match="does not exist"):
        on_disk(tmp_path / "hermes_cli").entry_source()


def test_a_file_with_lone_carriage_returns_is_refused_with_the_next_step(tmp_path):
    pkg = written(tmp_path, {})
    pkg.mkdir()
    (pkg / "web_server.py").write_bytes(b"a = 1\rb = 2\r")
    with pytest.raises(TargetError) as caught:
        on_disk(pkg).entry_source()
    message = str(caught.value)
    assert str(pkg / "web_server.py") in message and "carriage return" in message and "hermes-patch status" in message


def test_a_workspace_over_given_files_never_reads_the_disk(tmp_path):
    """What ``hermes-patch check`` does for a git ref or a wheel: module bytes by name, no disk."""
    files = {
        name: (package("r0_20_moved") / name).read_bytes()
        for name in ("web_server.py", "ws_policy.py", "dashboard_auth/public_paths.py")
    }
    ws = Workspace(tmp_path / "nowhere" / "hermes_cli", files=files)
    assert defined(ws.resolve("_ws_client_is_allowed")) == ("ws_policy.py", "FunctionDef", "_ws_client_is_allowed")
    assert ws.modules() == ["dashboard_auth/public_paths.py", "web_server.py", "ws_policy.py"]
    assert ws.source("web_server_chat.py") is None
    with pytest.raises(TargetError, match="does not exist in that code"):
        Workspace(tmp_path / "hermes_cli", files={"ws_policy.py": b""}).entry_source()
    assert not (tmp_path / "nowhere").exists()


# -- edits before they are written ------------------------------------------------------------------------


def test_with_edits_sees_the_edit_keeps_the_encoding_and_leaves_the_disk_alone(tmp_path):
    pkg = written(tmp_path, {})
    pkg.mkdir()
    web = pkg / "web_server.py"
    web.write_bytes("# -*- coding: latin-1 -*-\r\ndef f():\r\n    return 'é'\r\n".encode("latin-1"))
    ws = on_disk(pkg)
    text = ws.entry_source().text
    edited = ws.with_edits({"web_server.py": text.replace("def f():", "def f():\r\n    x = 'ü'")})
    src = edited.entry_source()
    assert src.data == "# -*- coding: latin-1 -*-\r\ndef f():\r\n    x = 'ü'\r\n    return 'é'\r\n".encode("latin-1")
    assert [type(s).__name__ for s in src.tree.body[0].body] == ["Assign", "Return"]
    assert ws.entry_source().text == text and web.read_bytes().count(b"\r\n") == 3  # the original is unchanged
    assert ws.with_edits({"web_server.py": src.text}) is edited  # the same edits: the same workspace, parsed once


def test_an_edit_of_a_sibling_is_seen_when_following_the_import():
    ws = on_disk(package("r0_20_moved"))
    policy = ws.source("ws_policy.py")
    assert policy is not None
    edited = ws.with_edits(
        {"ws_policy.py": policy.text.replace("def _ws_client_is_allowed(", "def _ws_client_is_allowed_old(")}
    )
    assert edited.resolve("_ws_client_is_allowed") is None  # the import now leads nowhere
    assert defined(ws.resolve("_ws_client_is_allowed")) == ("ws_policy.py", "FunctionDef", "_ws_client_is_allowed")
