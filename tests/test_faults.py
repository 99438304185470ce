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
import re
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from conftest import FORWARDED_NEW, UNCONFIGURED, Runner, copy_fixture, sha, states, tally, tree_digest

PAS, WS = "public-action-status", "relax-ws-peer-check"
PROXY = '[patches.relax-ws-peer-check]\ntrusted_proxies = ["127.0.0.5/32"]\n'
# Steps the crash contract names; enumeration must reach each of them.
KNOWN_STEPS = {
    "temp-write",
    "fsync",
    "rename",
    "after-backup",
    "after-ledger-pending",
    "after-target-write",
    "after-ledger-commit",
}

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
@pytest.mark.slow
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
        killed = run(scenario.command, "--root", str(root), env={"HERMES_PATCH_FAULT": label}, process=True)
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
            problems.append(
                f"{label}: the next {scenario.command} did not give the same files as one clean {scenario.command}"
            )
        if stale(root):
            problems.append(f"{label}: temporary files left: {stale(root)}")
        if pending(run):
            problems.append(f"{label}: the journal was not cleared")
    failed = {p.split(":")[0] + ":" + p.split(":")[1] for p in problems}
    outcome = f"files whole, status explains, the next {scenario.command} gives one clean {scenario.command}, no temp file left"
    observed = f"{len(points) - len(failed)}/{len(points)} kill points: " + (
        outcome if not problems else "FAILED: " + "; ".join(problems[:3])
    )
    steps = ", ".join(f"{s}×{n}" for s, n in Counter(s for s, _ in points).items())
    tally(
        f"kill -9 at each step of {name} ({steps}; {temp_left} kills left a temp file, for the next command to remove)",
        f"{len(points)}/{len(points)} kill points: {outcome}",
        observed,
    )
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_a_crash_after_a_crash_still_completes(tmp_path):
    """A kill while a backup is written, then a kill after the journal: the third apply completes.

    The journal's roll-forward reads the backup of the new bytes; a backup
    left half-written by the first crash must not be trusted by the second run.
    """
    scenario = Scenario(tmp_path, "apply, one file")
    points = [p for p in enumerate_points(scenario) if p[0] in ("temp-write", "fsync", "rename")][:6]  # the two backups
    problems = []
    for step, nth in points:
        label = f"{step}:{nth}"
        root, run = scenario.fresh(label.replace(":", "-"))
        first = run("apply", "--root", str(root), env={"HERMES_PATCH_FAULT": label}, process=True)
        second = run("apply", "--root", str(root), env={"HERMES_PATCH_FAULT": "after-ledger-pending"}, process=True)
        third = run("apply", "--root", str(root))
        if (first.returncode, second.returncode) != (-signal.SIGKILL, -signal.SIGKILL):
            problems.append(f"{label}: not killed twice ({first.returncode}, {second.returncode})")
        if third.returncode != 0 or files(root) != scenario.end or pending(run):
            problems.append(
                f"{label}: the third apply did not complete: exit {third.returncode} {third.stderr.strip()}"
            )
    observed = f"{len(points) - len(problems)}/{len(points)} double kills completed by the next apply"
    tally(
        "kill -9 while a backup is written, then kill -9 after the journal is written",
        f"{len(points)}/{len(points)} double kills completed by the next apply",
        observed,
    )
    assert not problems, "\n".join(problems)


ENOSPC_EXPECTED = "exit 2, one paragraph saying the disk is full, files unchanged, no temp file, no journal left; the next apply completes"


def enospc_outcome(run: Runner, root: Path, proc: subprocess.CompletedProcess, before: dict[str, str]) -> str:
    paragraph = (
        proc.stdout == ""
        and proc.stderr.startswith("error: ")
        and len(proc.stderr.strip().splitlines()) == 1
        and "the disk is full" in proc.stderr
        and "`hermes-patch" in proc.stderr
    )
    return ", ".join(
        [
            f"exit {proc.returncode}",
            "one paragraph saying the disk is full"
            if paragraph
            else f"UNEXPECTED MESSAGE {proc.stderr.strip()[:200]!r}",
            "files unchanged" if files(root) == before else "FILES CHANGED",
            "no temp file" if not stale(root) else "TEMP FILE LEFT",
            "no journal left" if not pending(run) else "JOURNAL LEFT",
        ]
    )


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (root only); skipped where mounting is not allowed."""
    disk = tmp_path / "disk"
    disk.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()}); the injected ENOSPC test covers the same path")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


@pytest.mark.slow
def test_a_really_full_disk_leaves_the_target_untouched(small_disk, tmp_path):
    root = copy_fixture("r0_15", small_disk / "sp")
    run = Runner(tmp_path)  # the state dir is on another filesystem, as ~/.local/state usually is
    filler = small_disk / "filler"
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
    before = files(root)
    proc = run("apply", "--root", str(root))
    observed = enospc_outcome(run, root, proc, before)
    filler.unlink()
    done = run("apply", "--root", str(root))
    completed = done.returncode == 0 and states(run.status("--root", str(root))[1]) == {
        **UNCONFIGURED,
        **FORWARDED_NEW,
        PAS: "applied",
        WS: "applied",
    }
    observed += "; the next apply completes" if completed else "; the next apply FAILED"
    tally("disk full while writing (a full 1 MiB tmpfs)", ENOSPC_EXPECTED, observed)
    assert observed == ENOSPC_EXPECTED, proc.stderr


@pytest.mark.parametrize("name", ["apply, one file", "apply, two files"])
@pytest.mark.slow
def test_enospc_at_every_write_leaves_everything_as_it_was(name, tmp_path):
    """ENOSPC injected at each temp-write and fsync (backups, journal, targets, commit): a clean refusal."""
    scenario = Scenario(tmp_path, name)
    points = [p for p in enumerate_points(scenario) if p[0] in ("temp-write", "fsync")]
    bad = []
    for step, nth in points:
        label = f"{step}:{nth}"
        root, run = scenario.fresh(label.replace(":", "-"))
        proc = run("apply", "--root", str(root), env={"HERMES_PATCH_FAULT": f"{label}:enospc"})
        observed = enospc_outcome(run, root, proc, scenario.start)
        done = run("apply", "--root", str(root))
        observed += (
            "; the next apply completes"
            if done.returncode == 0 and files(root) == scenario.end
            else "; the next apply FAILED"
        )
        if observed != ENOSPC_EXPECTED:
            bad.append(f"{label}: {observed}")
    observed = f"{len(points) - len(bad)}/{len(points)} points: " + (ENOSPC_EXPECTED if not bad else "; ".join(bad[:3]))
    tally(
        f"ENOSPC injected at each temp-write and fsync of {name} ({len(points)} points)",
        f"{len(points)}/{len(points)} points: {ENOSPC_EXPECTED}",
        observed,
    )
    assert not bad, "\n".join(bad)


@pytest.mark.slow
def test_eight_applies_at_once_equal_one_apply(tmp_path):
    reference = copy_fixture("r0_16", tmp_path / "reference")
    (tmp_path / "r").mkdir()
    ref_run = Runner(tmp_path / "r")
    ref_run.configure(PROXY)
    ref_run("apply", "--root", str(reference), check=0)
    root = copy_fixture("r0_16", tmp_path / "sp")
    run = Runner(tmp_path)
    run.configure(PROXY)
    cmd = [run.exe, "apply", "--root", str(root), *run.common]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=run.env) for _ in range(8)
    ]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    applied_line = f"applied {PAS}, {WS} → {(root / 'hermes_cli/web_server.py').resolve()}"
    outs = sorted(out.splitlines()[0] for _, out, _ in results)  # the applied one then says what to restart
    same = tree_digest(root) == tree_digest(reference)
    ok = (
        [code for code, _, _ in results] == [0] * 8
        and all(err == "" for _, _, err in results)
        and outs == [applied_line] + ["nothing to apply"] * 7
    )
    observed = f"{'same sha256 as one apply' if same else 'DIFFERENT FILES'}, {'stderr empty, one applied and seven nothing to apply' if ok else f'UNEXPECTED OUTPUT {results}'}"
    expected = "same sha256 as one apply, stderr empty, one applied and seven nothing to apply"
    tally("eight `hermes-patch apply` started at once on one target", expected, observed)
    assert observed == expected
    assert sha(root / "hermes_cli/web_server.py") == sha(reference / "hermes_cli/web_server.py")
    assert not pending(run) and not stale(root)


@pytest.mark.slow
def test_hand_edit_after_apply_is_drift_and_nothing_is_lost(tmp_path):
    root = copy_fixture("r0_15", tmp_path / "sp")
    run = Runner(tmp_path)
    run("apply", "--root", str(root), check=0)
    web = root / "hermes_cli/web_server.py"
    text = web.read_text()
    edited = text.replace(
        "    if not client_host:\n        return True\n",
        "    if not client_host:  # local change\n        return False\n",
        1,
    )
    assert edited != text
    web.write_text(edited)

    code, doc = run.status("--root", str(root))
    report = {p["id"]: p for p in doc["patches"]}[WS]
    said = code == 1 and report["state"] == "drifted" and "_ws_client_is_allowed" in report["reason"]
    human = run("status", "--root", str(root)).stdout
    said = said and re.search(rf"^{WS}\s+drifted\s", human, re.M) is not None
    refused = run("revert", "--root", str(root))
    refusal_ok = (
        refused.returncode == 2
        and "--force" in refused.stderr
        and WS in refused.stderr
        and len(refused.stderr.strip().splitlines()) == 1
    )
    kept = web.read_text() == edited
    apply_refused = run("apply", "--root", str(root)).returncode == 2 and web.read_text() == edited
    forced = run("revert", "--force", "--root", str(root))
    after = web.read_text()
    hand_edit_kept = (
        forced.returncode == 0 and "# local change\n        return False" in after and "# hermes-patch:" not in after
    )
    expected = "status drifted naming the patch and function; revert and apply refuse (exit 2, names --force), file unchanged; revert --force removes only our lines"
    observed = "; ".join(
        [
            "status drifted naming the patch and function" if said else f"STATUS SAYS {report}",
            "revert and apply refuse (exit 2, names --force), file unchanged"
            if refusal_ok and kept and apply_refused
            else f"NOT REFUSED CLEANLY {refused.stderr!r}",
            "revert --force removes only our lines" if hand_edit_kept else "HAND EDIT LOST",
        ]
    )
    tally("hand edit of a patched function after apply", expected, observed)
    assert observed == expected


@pytest.mark.slow
def test_applies_on_different_targets_at_once_keep_every_ledger_record(tmp_path):
    """The ledger is shared by every target in a state dir: concurrent writers must not lose records."""
    run = Runner(tmp_path)
    roots = [copy_fixture("r0_15", tmp_path / f"t{i}") for i in range(6)]
    procs = [
        subprocess.Popen(
            [run.exe, "apply", "--root", str(r), *run.common],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=run.env,
        )
        for r in roots
    ]
    codes = [p.wait(timeout=300) for p in procs]
    for p in procs:
        p.communicate()
    records = json.loads((run.state / "ledger.json").read_text())["targets"]
    kept = sum(str((r / "hermes_cli").resolve()) in records for r in roots)
    warm = sum(json.loads(run("status", "--json", "--root", str(r)).stdout)["exit_code"] == 0 for r in roots)
    observed = f"exit {sorted(set(codes))}, {kept}/6 ledger records kept, {warm}/6 report applied"
    tally(
        "six applies at once on six targets sharing one state dir",
        "exit [0], 6/6 ledger records kept, 6/6 report applied",
        observed,
    )
    assert observed == "exit [0], 6/6 ledger records kept, 6/6 report applied"
