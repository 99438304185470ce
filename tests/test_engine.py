"""The engine on plain strings: how it decides a data patch's state, plans, refuses and proves.

A tiny patch defined here (one insertion after ``_TABLE``, parameter
``names``) is enough: the decisions are the engine's, not the patch's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hermes_patch.core.edits import After, AtTop, Change, Edit, NotNeeded, Unrecognized
from hermes_patch.core.engine import (
    Refusal,
    detect_all,
    owned_statements,
    plan_apply,
    plan_revert,
    prove,
    statement_drift,
)
from hermes_patch.core.errors import VerificationError
from hermes_patch.core.patch import Param, Patch, State
from hermes_patch.core.workspace import Workspace


class Extend(Patch[str]):
    ID = "extend-table"
    DESCRIPTION = "Extend _TABLE (test patch)."
    VERSIONS = ">=0.13.0"
    UPSTREAM = "none: a test"
    PARAMS = {"names": Param(default=("a",), parse=lambda v: tuple(v), doc="names")}

    def locate(self, ws: Workspace) -> str | Unrecognized:
        if len(ws.binding("_TABLE")) != 1:
            return Unrecognized("no _TABLE")
        return ws.entry_source().lines(ws.binding("_TABLE")[0].first, ws.binding("_TABLE")[0].last)

    def edits(self, found: str) -> Change | NotNeeded:
        names = self.params["names"]
        if not names:
            return NotNeeded("no names configured")
        code = "_TABLE = _TABLE | {" + ", ".join(repr(n) for n in names) + "}"
        return Change((Edit(After("_TABLE"), code, note="test"),), pending="to extend", applied="extended")


SOURCE = "import os\n_TABLE = {'x'}\n\n\ndef f():\n    return _TABLE\n"


def ws_of(text: str) -> Workspace:
    return Workspace(Path("/t/hermes_cli"), files={"web_server.py": text.encode()})


def state(text: str, params: dict | None = None, earlier: dict | None = None) -> tuple[State, str]:
    (report,) = detect_all(
        ws_of(text), [(Extend(params), True)], None, earlier={"extend-table": earlier} if earlier else None
    )
    return report.state, report.detection.reason


def applied(text: str, params: dict | None = None) -> str:
    ws = ws_of(text)
    pairs = [(Extend(params), True)]
    plan = plan_apply(ws, detect_all(ws, pairs, None))
    assert not isinstance(plan, Refusal)
    prove(ws, plan, pairs, None)
    return plan.after.get("web_server.py", text)


def test_pending_then_applied_with_the_marker_and_the_files_newline():
    assert state(SOURCE)[0] is State.PENDING
    out = applied(SOURCE)
    assert out == SOURCE.replace(
        "_TABLE = {'x'}\n", "_TABLE = {'x'}\n# hermes-patch: extend-table (test)\n_TABLE = _TABLE | {'a'}\n"
    )
    assert state(out) == (State.APPLIED, "extended")
    crlf = applied(SOURCE.replace("\n", "\r\n"))
    assert "# hermes-patch: extend-table (test)\r\n_TABLE = _TABLE | {'a'}\r\n" in crlf


def test_not_needed_and_unknown_shape_come_from_the_patch():
    assert state(SOURCE, {"names": []}) == (State.NOT_NEEDED, "no names configured")
    assert state("x = 1\n") == (State.UNKNOWN_SHAPE, "no _TABLE")


def test_a_block_from_other_parameters_is_pending_only_when_they_are_known():
    out = applied(SOURCE, {"names": ["b"]})
    # no ledger: the defaults' rendering is known, ["b"] is not -> a hand edit as far as we can tell
    assert state(out)[0] is State.DRIFTED
    # the ledger says the last apply used ["b"]: ours, to be replaced
    assert state(out, earlier={"names": ["b"]})[0] is State.PENDING
    # written with the defaults and now configured otherwise: pending without any ledger
    assert state(applied(SOURCE), {"names": ["c"]})[0] is State.PENDING


def test_a_hand_edit_of_our_block_is_drift_and_blocks_apply_and_revert():
    edited = applied(SOURCE).replace("{'a'}", "{'a', 'evil'}")
    found, reason = state(edited)
    assert found is State.DRIFTED and "edited" in reason
    ws = ws_of(edited)
    reports = detect_all(ws, [(Extend(), True)], None)
    refused = plan_apply(ws, reports)
    assert isinstance(refused, Refusal) and refused.kind == "refused" and "drifted" in refused.message
    assert isinstance(plan_revert(ws, reports), Refusal)
    forced = plan_revert(ws, reports, force=True)
    assert not isinstance(forced, Refusal) and forced.after["web_server.py"] == SOURCE


def test_a_block_moved_away_from_its_anchor_is_drift():
    out = applied(SOURCE)
    block = "# hermes-patch: extend-table (test)\n_TABLE = _TABLE | {'a'}\n"
    moved = out.replace(block, "") + block
    assert state(moved)[0] is State.DRIFTED


def test_an_orphaned_marker_is_an_error_naming_the_line():
    from hermes_patch.core.errors import TargetError

    with pytest.raises(TargetError, match="line 3"):
        state(SOURCE.replace("\n\n\ndef", "\n# hermes-patch: extend-table\n\n\ndef"))


def test_revert_gives_back_the_original_bytes():
    out = applied(SOURCE)
    ws = ws_of(out)
    plan = plan_revert(ws, detect_all(ws, [(Extend(), True)], None))
    assert not isinstance(plan, Refusal) and plan.after["web_server.py"] == SOURCE


class Broken(Extend):
    ID = "broken-edit"

    def edits(self, found: str) -> Change:
        # libcst parses it; Python's compiler refuses it (no binding for nonlocal)
        return Change((Edit(AtTop("f"), "nonlocal zzz"),), pending="p", applied="a")


def test_a_proof_that_fails_is_a_verification_error_and_nothing_is_planned_to_write():
    ws = ws_of(SOURCE)
    pairs = [(Broken(), True)]
    plan = plan_apply(ws, detect_all(ws, pairs, None))
    assert not isinstance(plan, Refusal) and "nonlocal zzz" in plan.after["web_server.py"]
    with pytest.raises(VerificationError, match="does not compile"):
        prove(ws, plan, pairs, None)


class Guard(Extend):
    ID = "guard-f"

    def edits(self, found: str) -> Change:
        return Change((Edit(AtTop("f"), "assert _TABLE"),), pending="p", applied="a")


def test_a_hand_edit_elsewhere_in_a_statement_we_own_is_drift_against_the_recorded_hashes():
    ws = ws_of(SOURCE)
    pairs = [(Guard(), True)]
    plan = plan_apply(ws, detect_all(ws, pairs, None))
    assert not isinstance(plan, Refusal)
    prove(ws, plan, pairs, None)
    done = ws.with_edits(plan.after)
    recorded = {"guard-f": {key: sha for key, (sha, _) in owned_statements(done, "guard-f").items()}}
    assert list(recorded["guard-f"]) == ["web_server.py:f"]
    reports = detect_all(done, pairs, None)
    assert statement_drift(done, reports, recorded) == reports
    # the patch's own detection still finds its block; only the recorded hash of f tells
    edited = ws_of(plan.after["web_server.py"].replace("return _TABLE", "return None"))
    reports = detect_all(edited, pairs, None)
    assert [r.state for r in reports] == [State.APPLIED]
    (drifted,) = statement_drift(edited, reports, recorded)
    assert drifted.state is State.DRIFTED
    assert drifted.detection.reason == "f in web_server.py (line 5) was changed after hermes-patch applied it"
    assert statement_drift(edited, reports, {}) == reports  # nothing recorded: nothing to compare


class Counted(Extend):
    ID = "counted-table"
    calls: list[str] = []

    def locate(self, ws: Workspace) -> str | Unrecognized:
        Counted.calls.append(ws.entry_source().text)
        return super().locate(ws)


def test_the_proof_reuses_locate_only_for_the_very_same_release_as_shipped():
    """The result of an apply strips back to the text detection read: locate() ran once; another text runs it again."""
    Counted.calls = []
    ws = ws_of(SOURCE)
    pairs = [(Counted(), True)]
    plan = plan_apply(ws, detect_all(ws, pairs, None))
    assert not isinstance(plan, Refusal)
    (report,) = prove(ws, plan, pairs, None)
    assert report.state is State.APPLIED and Counted.calls == [SOURCE]
    other = SOURCE.replace("import os", "import sys")
    (report,) = detect_all(ws.with_edits({"web_server.py": other}), pairs, None)
    assert report.state is State.PENDING and Counted.calls == [SOURCE, other]


class BrokenAtTheTop(Extend):
    ID = "broken-at-top"

    def edits(self, found: str) -> Change:
        # a top-level statement that Python's compiler refuses (return outside a function)
        return Change((Edit(After("_TABLE"), "return 1"),), pending="p", applied="a")


def test_the_compile_proof_covers_an_inserted_top_level_statement():
    ws = ws_of(SOURCE)
    pairs = [(BrokenAtTheTop(), True)]
    plan = plan_apply(ws, detect_all(ws, pairs, None))
    assert not isinstance(plan, Refusal)
    with pytest.raises(VerificationError, match="does not compile"):
        prove(ws, plan, pairs, None)


class InsertsCode(Extend):
    ID = "inserts-code"
    CODE = ""

    def edits(self, found: str) -> Change:
        return Change((Edit(After("_TABLE"), self.CODE),), pending="p", applied="a")


@pytest.mark.parametrize(
    "source",
    [SOURCE, '"""Doc."""\nfrom __future__ import annotations\n' + SOURCE, "global os\n" + SOURCE],
    ids=["plain", "with-future-imports", "module-global"],
)
@pytest.mark.parametrize(
    "code", ["from __future__ import division", "global _TABLE"], ids=["future-mid-file", "global-after-assignment"]
)
def test_the_compile_proof_sees_what_only_the_whole_module_refuses(source, code):
    """Statements that compile alone but not in place (helper-22): a mid-file __future__ import, a late module global."""
    with pytest.raises(SyntaxError):
        compile(applied_text(source, code), "web_server.py", "exec")  # what the write would have been
    ws = ws_of(source)
    patch = type("P", (InsertsCode,), {"CODE": code})()
    pairs = [(patch, True)]
    plan = plan_apply(ws, detect_all(ws, pairs, None))
    assert not isinstance(plan, Refusal)
    with pytest.raises(VerificationError, match="does not compile"):
        prove(ws, plan, pairs, None)


def applied_text(source: str, code: str) -> str:
    return source.replace("_TABLE = {'x'}\n", "_TABLE = {'x'}\n" + code + "\n")


@pytest.mark.parametrize(
    "code, note, says",
    [
        ("x = = 1", "", "is not valid Python"),
        ("f(", "", "is not valid Python"),
        ('s = """', "", "is not valid Python"),
        ("a = 1\nb = 2", "", "holds 2 statements where an edit inserts one"),
        ("@decorator", "", "is not valid Python"),
        ("", "", "holds 0 statements"),
        ("x = 1", "two\nlines", "has a line break in its note"),
    ],
)
def test_a_patch_whose_edit_cannot_be_inserted_is_named_not_the_target(code, note, says):
    """helper-22: such a patch was reported as `web_server.py cannot be parsed by libcst`."""

    class Bad(InsertsCode):
        def edits(self, found: str) -> Change:
            return Change((Edit(After("_TABLE"), code, note=note, what="helper"),), pending="p", applied="a")

    (report,) = detect_all(ws_of(SOURCE), [(Bad(), True)], None)
    assert report.state is State.UNKNOWN_SHAPE and report.detection.patch_bug
    assert report.detection.reason.startswith("the patch inserts-code is broken: its helper (after `_TABLE`) " + says)
    assert report.detection.reason.endswith("this is a bug in the patch, not in the Hermes files")
    refusal = plan_apply(ws_of(SOURCE), [report])
    assert isinstance(refusal, Refusal) and refusal.message.startswith("the patch inserts-code is broken: ")
    assert "Fix the patch, or switch these off" in refusal.message and "newer than hermes-patch" not in refusal.message


def test_a_patch_whose_edits_returns_something_else_is_broken_not_the_target():
    class Odd(InsertsCode):
        def edits(self, found: str) -> Change:
            return "hello"  # type: ignore[return-value]

    (report,) = detect_all(ws_of(SOURCE), [(Odd(), True)], None)
    assert report.state is State.UNKNOWN_SHAPE and report.detection.patch_bug
    assert report.detection.reason.startswith(
        "the patch inserts-code is broken: its edits() returned 'hello', not a Change, NotNeeded or BadParams"
    )
