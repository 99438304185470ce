"""Faults: kill -9 at every step of apply and revert, a full disk, eight writers at once, a hand edit.

The kill points are not listed by hand: a normal run with
``HERMES_PATCH_FAULT_LOG`` records every step it reaches (the temp-write,
fsync and rename of each atomic write, for backups, the ledger and the
targets, and the app-level steps between them), and the test then kills a
fresh copy at each of them with ``HERMES_PATCH_FAULT=<step>:<N>``. A step
added to the code is therefore covered without touching this file.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from conftest import Runner, copy_fixture, sha, states, tally, tree_digest

PAS, WS = "public-action-status", "relax-ws-peer-check"
PROXY = '[patches.relax-ws-peer-check]\ntrusted_proxies = ["127.0.0.5/32"]\n'
# Steps the crash contract names; enumeration must reach each of them.
KNOWN_STEPS = {"temp-write", "fsync", "rename", "after-backup", "after-ledger-pending", "after-target-write", "after-ledger-commit"}

SCENARIOS = {
    # name: (fixture, config, command that is killed, command run first)
    "apply, one file": ("r0_15", "", "apply", None),
    "revert, one file": ("r0_15", "", "revert", "apply"),
    "apply, two files": ("r0_20_moved", PROXY, "apply", None),
    "revert, two files": ("r0_20_moved", PROXY, "revert", "apply"),
}


def fault_points(run: Runner, args: list[str], log: Path) -> list[tuple[str, int]]:
    """Every (step, N) a normal run of ``args`` reaches, in order."""
    log.unlink(missing_ok=True)
    run(*args, env={"HERMES_PATCH_FAULT_LOG": str(log)}, check=0)
    seen: Counter[str] = Counter()
    points = []
    for step in log.read_text().split():
        seen[step] += 1
        points.append((step, seen[step]))
    return points


def stale(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob(".*.hermes-patch.tmp"))


def files(root: Path) -> dict[str, str]:
    """sha256 of every file below ``root`` except our temporary files (checked on their own)."""
    return {k: v for k, v in tree_digest(root).items() if not k.endswith(".hermes-patch.tmp")}


def pending(run: Runner) -> bool:
    ledger = run.state / "ledger.json"
    if not ledger.exists():
        return False
    return any("pending" in rec for rec in json.loads(ledger.read_text())["targets"].values())


class Scenario:
    """One kill scenario: where it starts, where it must end, and a fresh copy per kill."""

    def __init__(self, tmp_path: Path, name: str) -> None:
        self.fixture, self.config, self.command, self.first = SCENARIOS[name]
        self.tmp = tmp_path
        ref = self.fresh("reference")
        self.start = tree_digest(ref[0])
        ref[1](self.command, "--root", str(ref[0]), check=0)
        self.end = tree_digest(ref[0])
        assert self.start != self.end

    def fresh(self, label: str) -> tuple[Path, Runner]:
        work = self.tmp / label
        work.mkdir()
        root = copy_fixture(self.fixture, work / "sp")
        run = Runner(work)
        run.configure(self.config)
        if self.first:
            run(self.first, "--root", str(root), check=0)
        return root, run


def enumerate_points(scenario: Scenario) -> list[tuple[str, int]]:
    root, run = scenario.fresh("count")
    points = fault_points(run, [scenario.command, "--root", str(root)], scenario.tmp / "steps.log")
    assert tree_digest(root) == scenario.end
    return points


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_kill_at_every_step_leaves_whole_files_and_the_next_command_completes(name, tmp_path):
    scenario = Scenario(tmp_path, name)
    points = enumerate_points(scenario)
    assert KNOWN_STEPS <= {s for s, _ in points}, "a step of the crash contract is no longer reached"
    two_files = "two files" in name
    problems: list[str] = []
    temp_left = 0
    for step, nth in points:
        label = f"{step}:{nth}"
        root, run = scenario.fresh(label.replace(":", "-"))
        killed = run(scenario.command, "--root", str(root), env={"HERMES_PATCH_FAULT": label})
        if killed.returncode != -signal.SIGKILL:
            problems.append(f"{label}: not killed (exit {killed.returncode}) {killed.stderr}")
            continue
        after_kill = files(root)
        # Each file is whole (old or new bytes); with one file, the tree is the start or the end.
        whole = after_kill in (scenario.start, scenario.end) or (
            two_files and all(after_kill[f] in (scenario.start[f], scenario.end[f]) for f in after_kill)
        )
        if not whole:
            problems.append(f"{label}: a file is neither its old nor its new bytes")
        temp_left += bool(stale(root))
        status = run("status", "--json", "--root", str(root))
        try:
            doc = json.loads(status.stdout)
        except ValueError:
            problems.append(f"{label}: status failed: {status.stderr}")
            continue
        if pending(run) and not any("interrupted" in note for note in doc["notes"]):
            problems.append(f"{label}: status does not explain the interrupted write: {doc['notes']}")
        if stale(root) and not any("temporary file" in note for note in doc["notes"]):
            problems.append(f"{label}: status does not mention the temporary file left behind")
        if after_kill not in (scenario.start, scenario.end) and not pending(run):
            problems.append(f"{label}: a half-written edit without a journal")
        done = run(scenario.command, "--root", str(root))
        if done.returncode != 0 or done.stderr:
            problems.append(f"{label}: the next {scenario.command} failed: exit {done.returncode} {done.stderr}")
        if files(root) != scenario.end:
            problems.append(f"{label}: the next {scenario.command} did not give the same files as one clean {scenario.command}")
        if stale(root):
            problems.append(f"{label}: temporary files left: {stale(root)}")
        if pending(run):
            problems.append(f"{label}: the journal was not cleared")
        code, doc = run.status("--root", str(root))
        want = {"apply": {"applied"}, "revert": {"pending"}}[scenario.command]
        if set(states(doc).values()) != want:
            problems.append(f"{label}: status after completion says {states(doc)}")
    failed = {p.split(":")[0] + ":" + p.split(":")[1] for p in problems}
    outcome = f"files whole, status explains, the next {scenario.command} gives one clean {scenario.command}, no temp file left"
    observed = f"{len(points) - len(failed)}/{len(points)} kill points: " + (outcome if not problems else "FAILED: " + "; ".join(problems[:3]))
    steps = ", ".join(f"{s}×{n}" for s, n in Counter(s for s, _ in points).items())
    tally(f"kill -9 at each step of {name} ({steps}; {temp_left} kills left a temp file, for the next command to remove)", f"{len(points)}/{len(points)} kill points: {outcome}", observed)
    assert not problems, "\n".join(problems)
