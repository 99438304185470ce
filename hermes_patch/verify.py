"""``hermes-patch verify``: does each applied patch have its effect, in the target's own interpreter?

``status`` reads text; this module observes behaviour. For every enabled
patch that ``status`` calls applied (or drifted), it collects the patch's
:class:`~hermes_patch.patch.Check` list (:meth:`Patch.probe`), runs the
probe script (:mod:`hermes_patch.probe`) once with the interpreter Hermes
runs with, and judges each observation:

* ``effective``: every check came out as expected;
* ``not effective: why``: a check did not (the first one is named);
* ``cannot verify: why``: nothing could be observed (no interpreter known,
  fastapi/starlette missing there, the module fails to import, a control
  check failed, the patch declares no checks).

Patches that are ``pending`` are ``not applied``, ``not-needed`` ones say so;
neither runs the probe. Nothing is written: the probe runs with ``-I -B`` in
a temporary directory that is also its ``HERMES_HOME`` and ``HOME``.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hermes_patch.patch import Check

__all__ = ["Verdict", "VerifyResult", "verify_patches", "judge", "PROBE_TIMEOUT"]

#: Seconds the probe may take in all (importing the dashboard takes 3-6 s on 0.19).
PROBE_TIMEOUT = 180.0
#: Seconds one check may take inside the probe.
CHECK_TIMEOUT = 15.0
MODULE = "hermes_cli.web_server"

EFFECTIVE = "effective"
NOT_EFFECTIVE = "not effective"
CANNOT_VERIFY = "cannot verify"
NOT_APPLIED = "not applied"


@dataclass(frozen=True)
class Verdict:
    """One patch's line in ``verify``'s output.

    Attributes:
        id: the patch id.
        outcome: ``effective``, ``not effective``, ``cannot verify``,
            ``not applied``, ``not-needed``, ``disabled``, or the detection
            state for anything else.
        reason: why (empty for a plain ``effective``/``not-needed``).
        state: what ``status`` says about the patch.
    """

    id: str
    outcome: str
    reason: str
    state: str

    def line(self) -> str:
        """``<outcome>`` or ``<outcome>: <reason>``."""
        return f"{self.outcome}: {self.reason}" if self.reason else self.outcome


@dataclass(frozen=True)
class VerifyResult:
    """Every verdict, the target and the interpreter that was asked."""

    target: Any
    interpreter: Path | None
    verdicts: tuple[Verdict, ...]

    @property
    def exit_code(self) -> int:
        """1 when a patch status calls applied (or drifted) is not effective, else 0."""
        return 1 if any(v.outcome == NOT_EFFECTIVE for v in self.verdicts) else 0


def judge(checks: list[Check], observations: list[dict[str, str]]) -> tuple[str, str]:
    """Outcome and reason for one patch from its checks and the probe's observations.

    Args:
        checks: the patch's checks, in the order the probe ran them.
        observations: ``{"outcome": "allowed"|"refused"|"other", "detail": str}``
            per check, same order.

    Returns:
        ``(EFFECTIVE, "<n> checks")``, ``(NOT_EFFECTIVE, why)`` naming the
        first failed check, or ``(CANNOT_VERIFY, why)`` when a control
        failed or the observations do not match the checks.
    """
    if not checks:
        return CANNOT_VERIFY, "this patch has no checks for this target"
    if len(observations) != len(checks):
        return CANNOT_VERIFY, f"the probe returned {len(observations)} observations for {len(checks)} checks"
    for check, seen in zip(checks, observations):
        if check.control and seen.get("outcome") != check.expect:
            return CANNOT_VERIFY, f"control check failed: {check.what} should be {check.expect}, got {seen.get('detail')}"
    for check, seen in zip(checks, observations):
        if not check.control and seen.get("outcome") != check.expect:
            return NOT_EFFECTIVE, f"{check.what} should be {check.expect}, got {seen.get('detail')}"
    return EFFECTIVE, f"{len(checks)} checks passed"


def _probe_source() -> str:
    return (Path(__file__).with_name("probe.py")).read_text(encoding="utf-8")


def run_probe(interpreter: Path, checks: dict[str, list[Check]], timeout: float = PROBE_TIMEOUT) -> dict[str, Any]:
    """Run the probe with ``interpreter`` and return its JSON document.

    Args:
        interpreter: the Python whose environment has hermes-agent.
        checks: patch id to its checks.

    Returns:
        ``{"file": str|None, "error": str|None, "results": {id: [observation, ...]}}``;
        failures to run the probe at all come back as ``error``, never raised.
    """
    from hermes_patch.probe import MARKER

    payload = json.dumps({"module": MODULE, "checks": {k: [c.to_json() for c in v] for k, v in checks.items()}, "timeout": CHECK_TIMEOUT})
    with tempfile.TemporaryDirectory(prefix="hermes-patch-verify-") as tmp:
        home = Path(tmp) / "hermes-home"
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HERMES_", "PYTHON"))}
        env.update(HERMES_HOME=str(home), HOME=tmp, NO_COLOR="1")
        try:
            proc = subprocess.run(
                [str(interpreter), "-I", "-B", "-c", _probe_source(), payload],
                cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            return {"file": None, "error": f"the probe did not finish within {timeout:.0f} s", "results": {}}
        except OSError as exc:
            return {"file": None, "error": f"could not run {interpreter}: {exc}", "results": {}}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER):])
    tail = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
    return {"file": None, "error": f"the probe gave no answer ({tail})", "results": {}}


def verify_patches(app: Any) -> VerifyResult:
    """Verify every enabled patch of ``app``'s target (see the module docstring).

    Args:
        app: a :class:`hermes_patch.app.App`.

    Raises:
        TargetError, ConfigError, StateError: as ``status`` does; nothing else.
    """
    status = app.status()
    target = app.target
    interpreter = target.interpreter
    verdicts: dict[str, Verdict] = {}
    todo: dict[str, list[Check]] = {}
    patches = {p.ID: p for p, _ in app.patches}
    ws = None
    for report in status.reports:
        if not report.enabled:
            verdicts[report.id] = Verdict(report.id, "disabled", "", report.state)
        elif report.state == "not-needed":
            verdicts[report.id] = Verdict(report.id, "not-needed", "", report.state)
        elif report.state == "pending":
            verdicts[report.id] = Verdict(report.id, NOT_APPLIED, report.reason, report.state)
        elif report.state in ("applied", "drifted"):
            if ws is None:
                ws = app.workspace()
            todo[report.id] = list(patches[report.id].probe(ws))
        else:
            verdicts[report.id] = Verdict(report.id, CANNOT_VERIFY, f"{report.state}: {report.reason}", report.state)
    states = {r.id: r.state for r in status.reports}
    if todo:
        results = _observe(target, interpreter, {k: v for k, v in todo.items() if v})
        for pid, checks in todo.items():
            if isinstance(results, str) and checks:
                outcome, reason = CANNOT_VERIFY, results
            else:
                outcome, reason = judge(checks, results.get(pid, []) if isinstance(results, dict) else [])
            if states[pid] == "drifted" and outcome != CANNOT_VERIFY:
                reason += " (status: drifted, the code changed after hermes-patch wrote it)"
            verdicts[pid] = Verdict(pid, outcome, reason, states[pid])
    order = [r.id for r in status.reports]
    return VerifyResult(target, interpreter, tuple(verdicts[i] for i in order))


def _observe(target: Any, interpreter: Path | None, checks: dict[str, list[Check]]) -> dict[str, list[dict[str, str]]] | str:
    """The probe's observations per patch id, or why there are none."""
    if not checks:
        return {}
    if interpreter is None:
        return "no interpreter known; pass --python (the Python that runs Hermes)"
    doc = run_probe(interpreter, checks)
    if doc.get("error"):
        return f"{doc['error']} (in {interpreter})"
    file = doc.get("file")
    if not file or Path(file).resolve() != Path(target.file).resolve():
        return f"{interpreter} imports {MODULE} from {file}, not from the target {target.file}"
    return doc.get("results", {})
