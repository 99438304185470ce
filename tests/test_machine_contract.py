"""`apply`/`revert` with `--json` and `--check`: the documents validate against docs/, and say what really happened.

Every document here is real output of the installed command; each claim in
it (hashes, states, diff, "written") is compared with the files on disk.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from conftest import REPO, Runner, copy_fixture, copy_real, sha, tree_digest

WRITE = jsonschema.Draft202012Validator(json.loads((REPO / "docs" / "apply-schema.json").read_text()))
ERROR = jsonschema.Draft202012Validator(json.loads((REPO / "docs" / "error-schema.json").read_text()))
WEB = "hermes_cli/web_server.py"


def _doc(run: Runner, *args: str, code: int) -> dict:
    proc = run(*args, "--json", check=code)
    doc = json.loads(proc.stdout)
    (ERROR if code == 2 else WRITE).validate(doc)
    assert doc["exit_code"] == code
    return doc


def _states(doc: dict, when: str) -> dict[str, str]:
    return {p["id"]: p[when]["state"] for p in doc["patches"]}


def test_the_schemas_are_valid_json_schemas():
    for validator in (WRITE, ERROR):
        jsonschema.Draft202012Validator.check_schema(validator.schema)


def test_check_apply_revert_round_trip(tmp_path: Path, run: Runner):
    root = copy_fixture("r0_15", tmp_path / "sp")
    web = (root / WEB).resolve()
    pristine, tree = sha(web), tree_digest(root)
    expected_diff = run("diff", "--root", str(root), check=0).stdout

    check = _doc(run, "apply", "--check", "--root", str(root), code=1)
    assert tree_digest(root) == tree and not run.state.exists()  # wrote nothing, not even the state dir
    assert check["check"] is True and check["changed"] is True and check["diff"] == expected_diff
    assert check["target"]["sha256"] == pristine and check["target"]["file"] == str(web)
    [planned] = check["files"]
    assert planned == {
        "path": str(web),
        "sha256_before": pristine,
        "sha256_after": planned["sha256_after"],
        "written": False,
    }
    assert _states(check, "before") == {
        "cors-origins": "not-needed",
        "public-action-status": "pending",
        "relax-ws-peer-check": "pending",
        "trusted-hosts": "not-needed",
        "durable-action-result": "not-needed",
        "stable-session-token": "not-needed",
        "ignore-forwarded-for": "not-needed",
    }
    assert _states(check, "after") == {
        "cors-origins": "not-needed",
        "public-action-status": "applied",
        "relax-ws-peer-check": "applied",
        "trusted-hosts": "not-needed",
        "durable-action-result": "not-needed",
        "stable-session-token": "not-needed",
        "ignore-forwarded-for": "not-needed",
    }
    assert {p["id"] for p in check["patches"] if p["changed"]} == {"public-action-status", "relax-ws-peer-check"}

    done = _doc(run, "apply", "--root", str(root), code=0)
    assert sha(web) == planned["sha256_after"]  # --check predicted exactly the bytes apply wrote
    assert done["files"] == [{**planned, "written": True}] and done["changed"] is True and done["check"] is False
    assert done["diff"] == expected_diff and done["patches"] == check["patches"]

    again = _doc(run, "apply", "--root", str(root), code=0)
    assert again["changed"] is False and again["files"] == [] and again["diff"] == ""
    assert _states(again, "before") == _states(again, "after") == _states(done, "after")
    assert run("apply", "--check", "--root", str(root), check=0).stdout.strip() == "nothing to apply"
    assert _doc(run, "apply", "--check", "--root", str(root), code=0)["changed"] is False

    ledger = (run.state / "ledger.json").read_bytes()
    rcheck = _doc(run, "revert", "--check", "--root", str(root), code=1)
    assert (run.state / "ledger.json").read_bytes() == ledger and sha(web) == planned["sha256_after"]
    assert rcheck["files"] == [
        {"path": str(web), "sha256_before": planned["sha256_after"], "sha256_after": pristine, "written": False}
    ]
    assert "\n-# hermes-patch: public-action-status" in rcheck["diff"] and "\n+" not in rcheck["diff"].split("\n", 2)[2]
    reverted = _doc(run, "revert", "--root", str(root), code=0)
    assert sha(web) == pristine and reverted["files"][0]["written"] is True
    assert _states(reverted, "after")["public-action-status"] == "pending"
    assert _doc(run, "revert", "--check", "--root", str(root), code=0)["changed"] is False


def test_check_without_json_prints_the_diff_and_exits_1(tmp_path: Path, run: Runner):
    root = copy_fixture("r0_14", tmp_path / "sp")
    proc = run("apply", "--check", "--root", str(root), check=1)
    assert proc.stdout.startswith("--- a/") and "+# hermes-patch: relax-ws-peer-check" in proc.stdout
    assert (
        proc.stdout.splitlines()[-1]
        == "dry run: would apply ignore-forwarded-for, public-action-status, relax-ws-peer-check; nothing was written"
    )


def test_a_refusal_is_an_error_document_and_exit_2(tmp_path: Path, run: Runner):
    root = copy_fixture("r0_14", tmp_path / "sp")
    web = root / WEB
    web.write_text(web.read_text().replace("def _ws_client_is_allowed(", "def _renamed("))
    tree = tree_digest(root)
    for args in (("apply", "--check"), ("apply",)):
        doc = _doc(run, *args, "--root", str(root), code=2)
        assert doc["command"] == "apply" and doc["error"]["kind"] == "refused"
        assert "relax-ws-peer-check does not recognize the code" in doc["error"]["message"]
        proc = run(*args, "--root", str(root), check=2)  # without --json: the same paragraph, on stderr only
        assert proc.stdout == "" and proc.stderr == f"error: {doc['error']['message']}\n"
        assert tree_digest(root) == tree
        assert run.state.exists() is (args == ("apply",))  # --check does not even create the state dir


def test_config_and_target_errors_are_documents_too(tmp_path: Path, run: Runner):
    root = copy_fixture("r0_16", tmp_path / "sp")
    run.configure('[patches.relax-ws-peer-check]\ntrusted_proxies = ["10.0.0.5/24"]\n')
    doc = _doc(run, "apply", "--check", "--root", str(root), code=2)
    assert doc["error"]["kind"] == "config" and str(run.config) in doc["error"]["message"]
    run.configure("")
    doc = _doc(run, "revert", "--root", str(tmp_path / "missing"), code=2)
    assert (
        doc["command"] == "revert" and doc["error"]["kind"] == "target" and "does not exist" in doc["error"]["message"]
    )


def test_drift_refuses_revert_check_and_force_reports_it(tmp_path: Path, run: Runner):
    root = copy_fixture("r0_16", tmp_path / "sp")
    run("apply", "--root", str(root), check=0)
    web = root / WEB
    web.write_text(
        web.read_text().replace(
            '    "/api/actions/hermes-update/status",\n', '    "/api/actions/hermes-update/status",\n    "/api/mine",\n'
        )
    )
    drifted = sha(web)
    assert _doc(run, "revert", "--check", "--root", str(root), code=2)["error"]["kind"] == "refused"
    doc = _doc(run, "revert", "--check", "--force", "--root", str(root), code=1)
    assert {p["id"]: p["before"]["state"] for p in doc["patches"]}["public-action-status"] == "drifted"
    assert doc["files"][0]["sha256_before"] == drifted == sha(web)


@pytest.mark.parametrize(
    "broken",
    [
        lambda d: d.update(changed="yes"),
        lambda d: d["files"][0].pop("sha256_after"),
        lambda d: d["patches"][0]["after"].update(state="half-applied"),
        lambda d: d.update(exit_code=2),
        lambda d: d.update(extra=True),
    ],
    ids=["changed-not-bool", "missing-hash", "unknown-state", "error-code-in-a-result", "undocumented-field"],
)
def test_the_schema_rejects_what_it_does_not_document(tmp_path: Path, run: Runner, broken):
    doc = _doc(run, "apply", "--check", "--root", str(copy_fixture("r0_14", tmp_path / "sp")), code=1)
    broken(doc)
    assert not WRITE.is_valid(doc)


@pytest.mark.real
def test_a_real_release_round_trip_validates(tmp_path: Path, run: Runner):
    root = copy_real("0.19.0", tmp_path / "sp")
    web = root / WEB
    pristine = sha(web)
    check = _doc(run, "apply", "--check", "--root", str(root), code=1)
    assert check["target"]["version"] == "0.19.0" and sha(web) == pristine
    done = _doc(run, "apply", "--root", str(root), code=0)
    assert [f["sha256_after"] for f in done["files"]] == [f["sha256_after"] for f in check["files"]] == [sha(web)]
    assert _doc(run, "revert", "--root", str(root), code=0)["files"][0]["sha256_after"] == pristine == sha(web)


def test_apply_after_an_update_says_the_file_was_replaced(tmp_path: Path, run: Runner):
    root = copy_fixture("r0_15", tmp_path / "sp")
    run("apply", "--root", str(root), check=0)
    (root / WEB).write_bytes((REPO / "fixtures/releases/r0_16" / WEB).read_bytes())  # what `pip install --upgrade` does
    doc = _doc(run, "apply", "--root", str(root), code=0)
    assert doc["changed"] is True and doc["notes"] == [
        "web_server.py was replaced since hermes-patch last wrote it; the old backup will not be restored over it"
    ]


def test_a_crash_under_check_or_json_is_exit_2_never_1(tmp_path: Path, run: Runner):
    """A bug (here: a user patch whose locate raises) must not read as --check's "would change"."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "broken.py").write_text(
        "from hermes_patch.core.patch import Patch\n\n"
        "class Broken(Patch):\n"
        '    ID = "broken"\n    DESCRIPTION = "raises"\n    VERSIONS = ">=0.13.0"\n    UPSTREAM = "none"\n    PARAMS = {}\n\n'
        "    def locate(self, ws):\n        return 1 / 0\n\n"
        "    def edits(self, found):\n        raise AssertionError\n"
    )
    run.configure(f'patch_dirs = ["{plugins}"]\n')
    root = copy_fixture("r0_14", tmp_path / "sp")
    proc = run("apply", "--check", "--root", str(root), check=2)
    assert (
        "ZeroDivisionError" in proc.stderr
        and "error: hermes-patch stopped on an unexpected ZeroDivisionError: division by zero." in proc.stderr
    )
    doc = _doc(run, "apply", "--check", "--root", str(root), code=2)
    assert doc["error"]["kind"] == "error" and doc["error"]["message"].startswith(
        "hermes-patch stopped on an unexpected ZeroDivisionError"
    )
