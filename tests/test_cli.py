"""The command line, as a user runs it: exact output lines, exit codes, errors."""

from __future__ import annotations

import json

from conftest import Runner, copy_fixture, tree_digest, states


def test_list_prints_sorted_id_versions_description(run: Runner):
    out = run("list", check=0).stdout.splitlines()
    assert [line.split()[0] for line in out] == [
        "cors-origins",
        "durable-action-result",
        "ignore-forwarded-for",
        "public-action-status",
        "relax-ws-peer-check",
        "stable-session-token",
        "trusted-hosts",
    ]
    assert all(line.split()[1] == ">=0.13.0" for line in out)


def test_list_verbose_shows_each_patchs_upstream_reference(run: Runner):
    from hermes_patch.registry import discover

    out = " ".join(run("list", "-v", check=0).stdout.split())
    for cls in discover(entry_points=False):
        assert f"upstream: {' '.join(cls.UPSTREAM.split())}" in out, cls.ID
    assert "upstream:" not in " ".join(run("list", check=0).stdout.split())


def test_status_exit_codes_follow_the_contract(tmp_path, run: Runner):
    root = copy_fixture("r0_14", tmp_path / "sp")
    assert run("status", "--root", str(root)).returncode == 1
    run("apply", "--root", str(root), check=0)
    assert run("status", "--root", str(root)).returncode == 0
    run.configure('[patches.relax-ws-peer-check]\ntrusted_proxies = ["127.0.0.5/32"]\n')
    assert run("status", "--root", str(root)).returncode == 1  # configuration changed: pending
    (root / "hermes_cli/web_server.py").write_text(
        (root / "hermes_cli/web_server.py").read_text().replace("def _ws_client_is_allowed(", "def _renamed(")
    )
    assert run("status", "--root", str(root)).returncode == 2


def test_json_is_alone_on_stdout(tmp_path, run: Runner):
    root = copy_fixture("r0_16", tmp_path / "sp")
    proc = run("status", "--json", "--root", str(root))
    doc = json.loads(proc.stdout)
    assert doc["schema"] == 1 and doc["exit_code"] == proc.returncode == 1
    assert states(doc) == {
        "cors-origins": "not-needed",
        "durable-action-result": "not-needed",
        "ignore-forwarded-for": "not-needed",
        "public-action-status": "pending",
        "relax-ws-peer-check": "not-needed",
        "stable-session-token": "not-needed",
        "trusted-hosts": "not-needed",
    }


def test_human_status_lines(tmp_path, run: Runner):
    root = copy_fixture("r0_15", tmp_path / "sp")
    out = run("status", "--root", str(root)).stdout.splitlines()
    assert out[0] == f"target {(root / 'hermes_cli/web_server.py').resolve()}"
    assert out[1].strip() == "release 0.15.2 · install file · writable · found by --root"
    assert [line.split()[:2] for line in out[3:10]] == [
        ["cors-origins", "not-needed"],
        ["durable-action-result", "not-needed"],  # the miniature keeps no action handles
        ["ignore-forwarded-for", "not-needed"],  # 0.15 passes proxy_headers itself
        ["public-action-status", "pending"],
        ["relax-ws-peer-check", "pending"],
        ["stable-session-token", "not-needed"],  # the miniature's token is a constant
        ["trusted-hosts", "not-needed"],
    ]
    assert out[2] == f"config {run.config}"  # the configuration file it read
    assert out[-2].startswith("note: no proxy setting is configured")  # advice, not a warning
    assert out[-1] == "action needed: 5 not-needed, 2 pending; run `hermes-patch apply`"


def test_apply_output_and_second_apply(tmp_path, run: Runner):
    root = copy_fixture("r0_15", tmp_path / "sp")
    first = run("apply", "--root", str(root), check=0)
    assert (
        first.stdout.splitlines()[0]
        == f"applied public-action-status, relax-ws-peer-check → {(root / 'hermes_cli/web_server.py').resolve()}"
    )
    assert first.stdout.splitlines()[1].startswith("restart: no running dashboard of this install was found here")
    assert run("apply", "--root", str(root), check=0).stdout.strip() == "nothing to apply"
    assert run("revert", "--root", str(root), check=0).stdout.startswith(
        "reverted public-action-status, relax-ws-peer-check"
    )
    assert run("revert", "--root", str(root), check=0).stdout.strip() == "nothing to revert"


def test_unknown_id_is_refused(tmp_path, run: Runner):
    root = copy_fixture("r0_15", tmp_path / "sp")
    before = tree_digest(root)
    proc = run("apply", "nope", "--root", str(root), check=2)
    assert "no patch has the id nope" in proc.stderr and "hermes-patch list" in proc.stderr
    assert tree_digest(root) == before


def test_errors_are_one_paragraph_on_stderr(tmp_path, run: Runner):
    proc = run("status", "--file", str(tmp_path / "missing.py"), check=2)
    assert proc.stdout == ""
    assert proc.stderr.startswith("error: ") and "does not exist" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = run("status", "--file", str(tmp_path), check=2)
    assert "is a directory" in proc.stderr and "--root" in proc.stderr


def test_state_dir_inside_the_hermes_tree_is_refused(tmp_path, run: Runner):
    root = copy_fixture("r0_15", tmp_path / "sp")
    proc = run("apply", "--root", str(root), env={}, check=None)
    assert proc.returncode == 0
    inside = run("status", "--root", str(root))  # sanity: default runner state is outside
    assert inside.returncode == 0
    bad = Runner(tmp_path / "x") if (tmp_path / "x").mkdir() is None else None
    bad.state = root / "hermes_cli" / ".hp-state"
    proc = bad("status", "--root", str(root), check=2)
    assert "inside the Hermes tree" in proc.stderr
