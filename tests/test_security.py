"""Security: owner-only state, configuration as data, the OAuth gate never widened, no wildcard.

The threat model these encode is in docs/reference.md ("Threat model (details)") and docs/threat-model.md.
"""

from __future__ import annotations

import ast
import os
import stat
from pathlib import Path

import pytest

from behaviour import helper, peer_rule, public_paths
from conftest import (
    FORWARDED_NEW,
    UNCONFIGURED,
    Runner,
    copy_fixture,
    copy_real,
    states,
    tally,
    tree_digest,
    update_button_states,
)

PAS, WS = "public-action-status", "relax-ws-peer-check"
PROXY = '[patches.relax-ws-peer-check]\ntrusted_proxies = ["127.0.0.5/32"]\n'
SENSITIVE = ("dump", "backup", "security-audit")


def test_state_files_are_owner_only_even_with_a_permissive_umask(tmp_path):
    root = copy_fixture("r0_20_moved", tmp_path / "sp")
    run = Runner(tmp_path)
    run.configure(PROXY)
    old = os.umask(0o000)  # inherited by the command
    try:
        run("apply", "--root", str(root), check=0)
        run("revert", "--root", str(root), check=0)
    finally:
        os.umask(old)
    modes = {str(p.relative_to(run.state)): stat.S_IMODE(p.stat().st_mode) for p in [run.state, *run.state.rglob("*")]}
    dirs = {k: v for k, v in modes.items() if (run.state / k).is_dir()}
    plain = {k: v for k, v in modes.items() if not (run.state / k).is_dir()}
    kinds = {k.split("/")[0] for k in plain}
    assert {"ledger.json", "backups", "locks"} <= kinds, modes
    observed = (
        "state dir and subdirs 0700, ledger/backups/locks 0600"
        if set(dirs.values()) == {0o700} and set(plain.values()) == {0o600}
        else f"MODES {sorted((k, oct(v)) for k, v in modes.items())}"
    )
    tally("state files under umask 000", "state dir and subdirs 0700, ledger/backups/locks 0600", observed)
    assert observed == "state dir and subdirs 0700, ledger/backups/locks 0600"


CODE = "__import__('os').system('touch {canary}')"


DATA_NOT_CODE = {
    "code as an action": '[patches.public-action-status]\nactions = ["{code}"]\n',
    "code as a CIDR": '[patches.relax-ws-peer-check]\ntrusted_proxies = ["{code}"]\n',
    "a CIDR breaking out of its string literal": '[patches.relax-ws-peer-check]\ntrusted_proxies = ["127.0.0.5/32\\")\\n{code}\\n#"]\n',
    "an action breaking out of its string literal": '[patches.public-action-status]\nactions = ["hermes-update\\", \\"/api/config"]\n',
    "code as a boolean": '[patches.relax-ws-peer-check]\nallow_catch_all = "{code}"\n',
    "code as a patch id": '[patches."{code}"]\nenabled = false\n',
}


@pytest.mark.parametrize("case", list(DATA_NOT_CODE))
def test_configuration_values_are_data_never_code(case, tmp_path):
    config = DATA_NOT_CODE[case]
    canary = tmp_path / "canary"
    root = copy_fixture("r0_15", tmp_path / "sp")
    run = Runner(tmp_path)
    run.configure(config.replace("{code}", CODE.replace("{canary}", str(canary))))
    before = tree_digest(root)
    procs = [run(cmd, "--root", str(root)) for cmd in ("status", "apply", "diff")]
    refused = all(p.returncode == 2 and p.stderr.startswith("error: ") for p in procs)
    observed = ", ".join(
        [
            "refused as data (exit 2)" if refused else f"ACCEPTED (exits {[p.returncode for p in procs]})",
            "nothing ran" if not canary.exists() else "CODE RAN",
            "files unchanged" if tree_digest(root) == before else "FILES CHANGED",
        ]
    )
    tally(f"config value as code: {case}", "refused as data (exit 2), nothing ran, files unchanged", observed)
    assert observed == "refused as data (exit 2), nothing ran, files unchanged", [p.stderr for p in procs]


@pytest.mark.real
@pytest.mark.parametrize("version", ["0.16.0", "0.19.0"])
def test_the_oauth_gated_mode_is_never_widened(version, tmp_path):
    root = copy_real(version, tmp_path / "sp")
    run = Runner(tmp_path)
    run.configure(PROXY + '[patches.public-action-status]\nactions = ["hermes-update", "gateway-restart"]\n')
    package = root / "hermes_cli"
    shared_before = tree_digest(package / "dashboard_auth")
    rule_before = peer_rule(package)
    shared_set = public_paths(package)
    run("apply", "--root", str(root), check=0)
    assert states(run.status("--root", str(root))[1]) == {
        **UNCONFIGURED,
        PAS: "applied",
        WS: "applied",
        **update_button_states(version, applied=True),
        **FORWARDED_NEW,
    }

    untouched = tree_digest(package / "dashboard_auth") == shared_before
    allowed = helper(package)
    # In gated mode the helper never accepts, whatever the peer and bind.
    gated_closed = not any(
        allowed(_ws(peer, bind, gated=True))
        for peer in ("127.0.0.5", "127.0.0.1", "10.0.0.9")
        for bind in ("127.0.0.1", "0.0.0.0")
    )
    rule_after = peer_rule(package)
    gated_same = {k: v for k, v in rule_after.items() if k[2]} == {k: v for k, v in rule_before.items() if k[2]}
    added = public_paths(package) - shared_set
    exact = added == {"/api/actions/hermes-update/status", "/api/actions/gateway-restart/status"}
    expected = "dashboard_auth/ byte-identical; helper False in gated mode; gated decisions unchanged; only the two listed status paths added to web_server's own set"
    observed = "; ".join(
        [
            "dashboard_auth/ byte-identical" if untouched else "DASHBOARD_AUTH CHANGED",
            "helper False in gated mode" if gated_closed else "HELPER ACCEPTS IN GATED MODE",
            "gated decisions unchanged" if gated_same else "GATED DECISIONS CHANGED",
            "only the two listed status paths added to web_server's own set" if exact else f"ADDED {sorted(added)}",
        ]
    )
    tally(f"OAuth-gated mode after apply (real {version})", expected, observed)
    assert observed == expected


def _ws(peer: str, bind: str, gated: bool):
    from types import SimpleNamespace

    app = SimpleNamespace(state=SimpleNamespace(bound_host=bind, auth_required=gated))
    return SimpleNamespace(client=SimpleNamespace(host=peer), scope={"app": app})


def _our_paths(web: Path) -> set[str]:
    tree = ast.parse(web.read_bytes())
    text = web.read_text()
    out = set()
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and ast.unparse(node.targets[0]) == "_PUBLIC_API_PATHS"
            and isinstance(node.value, ast.BinOp)
        ):
            assert "# hermes-patch: public-action-status" in text.splitlines()[node.lineno - 2]
            out |= {n.value for n in ast.walk(node.value.right) if isinstance(n, ast.Constant)}
    return out


@pytest.mark.real
def test_no_template_no_wildcard_and_sensitive_actions_only_when_listed(tmp_path):
    root = copy_real("0.19.0", tmp_path / "sp")
    web = root / "hermes_cli/web_server.py"
    run = Runner(tmp_path)
    run("apply", "--root", str(root), check=0)
    default = _our_paths(web)
    default_ok = default == {"/api/actions/hermes-update/status", "/api/actions/gateway-restart/status"}
    no_pattern = not any(c in p for p in default for c in "{}*?[]")
    code, doc = run.status("--root", str(root))
    quiet = not any(p["notes"] for p in doc["patches"])

    run.configure('[patches.public-action-status]\nactions = ["hermes-update", "dump", "backup", "security-audit"]\n')
    run("apply", "--root", str(root), check=0)
    listed = _our_paths(web) == {f"/api/actions/{a}/status" for a in ("hermes-update", *SENSITIVE)}
    code, doc = run.status("--root", str(root))
    notes = {p["id"]: p["notes"] for p in doc["patches"]}[PAS]
    flagged = code == 0 and all(any(repr(a) in n and "sensitive" in n for n in notes) for a in SENSITIVE)
    human = run("status", "--root", str(root)).stdout
    flagged = flagged and all(f"'{a}' can carry sensitive output" in human for a in SENSITIVE)
    strict = run("status", "--strict", "--root", str(root)).returncode
    expected = "default: only hermes-update and gateway-restart, concrete paths, no warning; listed dump/backup/security-audit: applied and flagged sensitive in status (--strict exits 1)"
    observed = "; ".join(
        [
            "default: only hermes-update and gateway-restart, concrete paths, no warning"
            if default_ok and no_pattern and quiet
            else f"DEFAULT {sorted(default)}",
            "listed dump/backup/security-audit: applied and flagged sensitive in status (--strict exits 1)"
            if listed and flagged and strict == 1
            else f"LISTED NOT FLAGGED {notes} strict={strict}",
        ]
    )
    tally("sensitive actions (real 0.19.0)", expected, observed)
    assert observed == expected
