"""`status --json` output validates against the documented schema (docs/status-schema.json), in every state."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from conftest import REPO, Runner, copy_fixture, copy_real

SCHEMA = json.loads((REPO / "docs" / "status-schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def test_the_schema_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def _status(run: Runner, root: Path, *extra: str) -> dict:
    proc = run("status", "--json", "--root", str(root), *extra)
    doc = json.loads(proc.stdout)
    VALIDATOR.validate(doc)
    assert doc["exit_code"] == proc.returncode
    return doc


def test_every_state_and_note_validates(tmp_path: Path, run: Runner):
    root = copy_fixture("r0_16", tmp_path / "sp")
    assert {p["state"] for p in _status(run, root)["patches"]} == {"pending", "not-needed"}
    run("apply", "--root", str(root), check=0)
    assert {p["state"] for p in _status(run, root)["patches"]} == {"applied", "not-needed"}
    run.configure(
        '[patches.public-action-status]\nactions = ["hermes-update", "dump"]\n[patches.relax-ws-peer-check]\nenabled = false\n'
    )
    doc = _status(run, root, "--strict")
    assert (
        doc["exit_code"] == 1
        and any(p["notes"] for p in doc["patches"])
        and not {p["id"]: p for p in doc["patches"]}["relax-ws-peer-check"]["enabled"]
    )
    web = root / "hermes_cli" / "web_server.py"
    web.write_text(
        web.read_text().replace(
            '    "/api/actions/hermes-update/status",\n', '    "/api/actions/hermes-update/status",\n    "/api/mine",\n'
        )
    )
    assert "drifted" in {p["state"] for p in _status(run, root)["patches"]}
    run.configure("")
    other = copy_fixture("r0_14", tmp_path / "other")
    web = other / "hermes_cli" / "web_server.py"
    web.write_text(web.read_text().replace("def _ws_client_is_allowed(", "def _renamed("))
    doc = _status(run, other)
    assert doc["exit_code"] == 2 and "unknown-shape" in {p["state"] for p in doc["patches"]}


def test_target_notes_validate(tmp_path: Path, run: Runner):
    root = copy_fixture("r0_15", tmp_path / "sp")
    run("apply", "--root", str(root), check=0)
    (root / "hermes_cli" / "web_server.py").write_bytes(
        (REPO / "fixtures/releases/r0_16/hermes_cli/web_server.py").read_bytes()
    )
    doc = _status(run, root)
    assert doc["notes"] and doc["notes"][0].startswith("web_server.py was replaced since hermes-patch last wrote it")


@pytest.mark.real
def test_a_real_release_validates(tmp_path: Path, run: Runner):
    root = copy_real("0.19.0", tmp_path / "sp")
    _status(run, root)
    run("apply", "--root", str(root), check=0)
    assert _status(run, root)["target"]["version"] == "0.19.0"


@pytest.mark.parametrize(
    "broken",
    [
        lambda d: d["patches"][0].update(state="half-applied"),
        lambda d: d.update(schema=2),
        lambda d: d["target"].pop("sha256"),
        lambda d: d.update(extra=True),
    ],
    ids=["unknown-state", "other-schema", "missing-field", "undocumented-field"],
)
def test_the_schema_rejects_what_it_does_not_document(tmp_path: Path, run: Runner, broken):
    doc = _status(run, copy_fixture("r0_14", tmp_path / "sp"))
    broken(doc)
    assert not VALIDATOR.is_valid(doc)
