"""Backups in the state dir are pruned: the last KEEP_WRITES writes per target keep theirs, nothing else piles up."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from conftest import Runner, copy_fixture, sha

from hermes_patch.ledger import KEEP_WRITES


def _backups(run: Runner) -> set[str]:
    return {p.name for p in (run.state / "backups").iterdir()}


def test_old_backups_go_and_recent_ones_stay(tmp_path: Path, run: Runner):
    assert KEEP_WRITES == 5  # the README (Uninstall) says so
    root = copy_fixture("r0_16", tmp_path / "sp")
    other = copy_fixture("r0_14", tmp_path / "other")  # a second target sharing the state dir keeps its own
    run("apply", "--root", str(other), check=0)
    other_shas = _backups(run)
    web = root / "hermes_cli" / "web_server.py"
    seen: list[str] = []
    outputs = []
    for i in range(9):  # nine writes, each with different bytes: a new host every time
        run.configure(f'[patches.trusted-hosts]\nhosts = ["h{i}.example.com"]\n')
        outputs.append(run("apply", "--root", str(root), check=0).stdout)
        seen.append(sha(web))
    kept = _backups(run)
    ledger = json.loads((run.state / "ledger.json").read_text())
    record = ledger["targets"][str((root / "hermes_cli").resolve())]
    assert len(record["backups"]) == KEEP_WRITES
    assert set(seen[-KEEP_WRITES:]) <= kept  # the bytes of the last writes are all there
    assert not set(seen[: -KEEP_WRITES - 1]) & kept  # older ones are gone
    assert other_shas <= kept  # the other target's backups are untouched
    assert len(kept) <= len(other_shas) + KEEP_WRITES + 2  # this target: the original plus one per recent write
    assert any(
        f"pruned 1 old backup(s): the backups of the last {KEEP_WRITES} writes per target are kept" in o
        for o in outputs
    )
    assert not [o for o in outputs[:KEEP_WRITES] if any(line.startswith("pruned") for line in o.splitlines())]
    for name in kept:  # every kept backup is still whole
        assert hashlib.sha256((run.state / "backups" / name).read_bytes()).hexdigest() == name
    run("revert", "--root", str(root), check=0)
    assert hashlib.sha256(web.read_bytes()).hexdigest() in _backups(run)
