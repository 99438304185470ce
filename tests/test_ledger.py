"""The ledger: typed records loaded from JSON and dumped back byte for byte; damaged records named by field.

In-process (fast). The refusals as the CLI shows them are in test_hostile_inputs.py
and test_root_safety.py; the journal in test_journal.py and test_faults.py.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from hermes_patch.core.errors import StateError
from hermes_patch.ledger import StateDir
from hermes_patch.records import (
    ABSENT,
    AutoRefusal,
    Ledger,
    LedgerFormatError,
    NewerSchemaError,
    TargetRecord,
    dump_ledger,
    load_ledger,
)

# Ledgers as hermes-patch wrote them before the records were typed (paths replaced): three targets
# (a git checkout with its filter and hooks, a partial revert, an automatic apply that refused), and
# a write killed right after its journal was saved.
GOLDEN = sorted((Path(__file__).parent / "ledgers").glob("schema1-*.json"))


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_a_ledger_written_before_loads_and_dumps_to_the_same_bytes(path: Path):
    data = path.read_bytes()
    ledger = load_ledger(json.loads(data))
    assert dump_ledger(ledger) == data
    assert load_ledger(ledger.to_json()) == ledger


def test_the_golden_ledgers_hold_every_kind_of_record():
    records = [r for p in GOLDEN for r in load_ledger(json.loads(p.read_bytes())).targets.values()]
    assert any(r.pending and r.files == {} and r.version is ABSENT for r in records)  # a first write, killed
    assert any(r.auto_refusal for r in records)
    assert any(r.integrations and {"git-filter", "git-hooks"} <= set(r.integrations) for r in records)
    assert any(r.backups is None for r in records) and any(r.backups for r in records)


def test_absent_fields_stay_absent_and_null_stays_null():
    assert TargetRecord().to_json() == {}
    assert TargetRecord(version=None).to_json() == {"version": None}
    doc = {"schema": 1, "targets": {"/x": {"version": None, "future": [1]}}, "note": "kept"}
    assert load_ledger(doc).to_json() == doc
    assert load_ledger({"schema": 0, "targets": {}}).to_json() == {"schema": 1, "targets": {}}


def _golden() -> dict:
    return json.loads(GOLDEN[-1].read_bytes())  # the three targets


def _record(doc: dict, key: str = "/srv/hermes/a/hermes_cli") -> dict:
    return doc["targets"][key]


def _commit(doc: dict) -> dict:
    return json.loads(GOLDEN[0].read_bytes())["targets"]["/srv/hermes/b/hermes_cli"]["pending"]["commit"]


A = "targets['/srv/hermes/a/hermes_cli']"
# name: (change to the golden ledger, the message)
DAMAGE = {
    "a hash that is not a sha256": (
        lambda d: _record(d)["files"]["web_server.py"].update(patched="abc"),
        f"{A}.files['web_server.py'].patched: expected a sha256 hex string, got the string 'abc'",
    ),
    "files that are not an object": (
        lambda d: _record(d).update(files="oops"),
        f"{A}.files: expected an object, got the string 'oops'",
    ),
    "a file outside the package": (
        lambda d: _record(d)["files"].update({"../../etc/x.py": _record(d)["files"]["web_server.py"]}),
        f"{A}.files['../../etc/x.py']: expected a module file of the package (a relative .py path without '..')",
    ),
    "a record that is a number": (
        lambda d: d["targets"].update({"/srv/hermes/a/hermes_cli": 5}),
        f"{A}: expected an object, got the number 5",
    ),
    "a pending write without files": (
        lambda d: _record(d).update(pending={"kind": "apply"}),
        f"{A}.pending.files: missing",
    ),
    "a pending write of an unknown kind": (
        lambda d: _record(d).update(pending={"kind": "rm -rf", "files": {}, "commit": _commit(d)}),
        f'{A}.pending.kind: expected "apply" or "revert", got the string \'rm -rf\'',
    ),
    "a snapshot without inputs": (
        lambda d: _record(d).update(snapshot={"config_key": "x", "reports": []}),
        f"{A}.snapshot.inputs: missing",
    ),
    "a report whose enabled is a string": (
        lambda d: _record(d)["snapshot"]["reports"][0].update(enabled="yes"),
        f"{A}.snapshot.reports[0].enabled: expected true or false, got the string 'yes'",
    ),
    "a key a record never holds": (
        lambda d: _record(d)["files"]["web_server.py"].update(command="sh"),
        f"{A}.files['web_server.py']: holds the key 'command', which a record hermes-patch writes never has "
        "(original, patched)",
    ),
    "a backup that is not a sha256": (
        lambda d: _record(d)["backups"][0].append("../../x"),
        f"{A}.backups[0][2]: expected a sha256 hex string, got the string '../../x'",
    ),
    "a version that is a number": (
        lambda d: _record(d).update(version=15),
        f"{A}.version: expected a release version string or null, got the number 15",
    ),
    "no targets": (lambda d: d.pop("targets"), "targets: missing"),
    "a schema that is a string": (lambda d: d.update(schema="1"), "schema: expected an integer, got the string '1'"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_record_is_refused_naming_the_field(case):
    doc = _golden()
    DAMAGE[case][0](doc)
    with pytest.raises(LedgerFormatError) as info:
        load_ledger(doc)
    assert str(info.value) == DAMAGE[case][1]


def test_a_key_is_escaped_and_cut_in_the_message():
    doc = {"schema": 1, "targets": {"\x1b[31m" + "x" * 200: 5}}
    with pytest.raises(LedgerFormatError) as info:
        load_ledger(doc)
    assert "\x1b" not in str(info.value) and "\\x1b" in str(info.value) and len(str(info.value)) < 140


def test_a_newer_schema_is_not_checked_further():
    with pytest.raises(NewerSchemaError) as info:
        load_ledger({"schema": 2, "targets": {"/x": "whatever a newer version writes"}})
    assert info.value.schema == 2


# -- the state directory ------------------------------------------------------------------------


def _state(tmp_path: Path) -> StateDir:
    path = tmp_path / "state"
    path.mkdir(mode=0o700)
    return StateDir(path)


def test_state_dir_reads_and_writes_the_same_bytes(tmp_path: Path):
    state = _state(tmp_path)
    assert state.read() == Ledger() and state.load() == {"schema": 1, "targets": {}}
    data = GOLDEN[-1].read_bytes()
    state.ledger_path.write_bytes(data)
    state.ledger_path.chmod(0o600)
    ledger = state.read()
    assert state.load() == json.loads(data)
    state.write(ledger)
    assert state.ledger_path.read_bytes() == data
    state.save(json.loads(data))
    assert state.ledger_path.read_bytes() == data


def test_state_dir_refuses_a_damaged_ledger_naming_the_field_and_what_to_do(tmp_path: Path):
    state = _state(tmp_path)
    doc = _golden()
    _record(doc)["files"]["web_server.py"]["patched"] = "abc"
    state.ledger_path.write_text(json.dumps(doc))
    for read in (state.read, state.load):
        with pytest.raises(StateError) as info:
            read()
        message = str(info.value)
        assert f"the ledger {state.ledger_path} is corrupted: {A}.files['web_server.py'].patched" in message
        assert f"mv {state.ledger_path} {state.ledger_path}.bad" in message


def test_a_record_changed_through_the_types_dumps_like_the_dict_code_did(tmp_path: Path):
    """What the old code did by hand on the dict (record an automatic refusal) gives the same bytes typed."""
    doc = _golden()
    key = "/srv/hermes/a/hermes_cli"
    by_hand = copy.deepcopy(doc)
    by_hand["targets"][key]["auto_refusal"] = {"when": "now", "source": "hook", "message": "no.", "version": None}
    ledger = load_ledger(doc)
    from dataclasses import replace

    typed = ledger.with_target(key, replace(ledger.target(key), auto_refusal=AutoRefusal("now", "hook", "no.", None)))
    assert dump_ledger(typed) == (json.dumps(by_hand, indent=2, sort_keys=True) + "\n").encode()
