"""Test a patch on plain strings: run its ``EXAMPLES`` the way Fixit runs a rule's VALID/INVALID cases.

Every built-in patch and every user patch (``patch_dirs``, entry points) is
run through :func:`check_example` by the test suite
(``tests/test_examples.py``), so a patch's examples are its tests; a patch
author needs no test code of their own::

    from hermes_patch.testing import check_examples
    from my_patches import MyPatch

    def test_my_patch():
        check_examples(MyPatch)

An example runs in memory (no disk): its module files are a
:class:`~hermes_patch.core.workspace.Workspace` of bytes. A pending example is
applied with every proof the engine makes before a real write (compiles,
detects as applied, idempotent, undo gives the original bytes) and the
result must equal ``after`` byte for byte.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from hermes_patch.core.edits import Example
from hermes_patch.core.engine import Refusal, detect_all, plan_apply, prove
from hermes_patch.core.patch import AnyPatch
from hermes_patch.core.workspace import Workspace

__all__ = ["check_example", "check_examples", "ExampleFailed"]

ENTRY = "web_server.py"


class ExampleFailed(AssertionError):
    """An example did not hold; the message says which one and shows the difference."""


def _files(value: str | dict[str, str]) -> dict[str, str]:
    return {ENTRY: value} if isinstance(value, str) else dict(value)


def check_example(patch_class: type[AnyPatch], example: Example, index: int = 0) -> None:
    """Run one example of ``patch_class``.

    Raises:
        ExampleFailed: the state, the reason or the written text is not what the example says.
        HermesPatchError: the parameters are refused, or the engine refused to write (a proof failed).
    """
    label = f"{patch_class.ID} example {index}"
    before = _files(example.before)
    ws = Workspace(Path("/example/hermes_cli"), ENTRY, files={n: t.encode() for n, t in before.items()})
    patch = patch_class(example.params)
    pairs = [(patch, True)]
    (report,) = detect_all(ws, pairs, None)
    if report.state.value != example.state:
        raise ExampleFailed(
            f"{label}: state {report.state.value} ({report.detection.reason}); expected {example.state}"
        )
    if example.reason and example.reason not in report.detection.reason:
        raise ExampleFailed(f"{label}: reason {report.detection.reason!r} does not mention {example.reason!r}")
    if example.after is None:
        if example.state == "pending":
            raise ExampleFailed(f"{label}: a pending example must say what apply writes (after=...)")
        return
    plan = plan_apply(ws, [report])
    if isinstance(plan, Refusal):
        raise plan.error()
    reports = prove(ws, plan, pairs, None)
    if reports[0].state.value != "applied":
        raise ExampleFailed(f"{label}: after apply the state is {reports[0].state.value}")
    got = {name: plan.after.get(name, text) for name, text in before.items()}
    got.update({name: text for name, text in plan.after.items() if name not in got})
    want = _files(example.after)
    for name in sorted(set(got) | set(want)):
        if got.get(name) != want.get(name):
            diff = "".join(
                difflib.unified_diff(
                    (want.get(name) or "").splitlines(True),
                    (got.get(name) or "").splitlines(True),
                    f"{name} (expected)",
                    f"{name} (written)",
                )
            )
            raise ExampleFailed(f"{label}: apply wrote other text in {name}:\n{diff}")


def check_examples(patch_class: type[AnyPatch]) -> int:
    """Run every example of ``patch_class``; return how many ran (raises on the first that fails)."""
    for index, example in enumerate(patch_class.EXAMPLES):
        check_example(patch_class, example, index)
    return len(patch_class.EXAMPLES)
