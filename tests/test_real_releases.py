"""The 11 real hermes-agent releases, downloaded at test time, patched by the installed command.

Each release is installed once with ``pip install --no-deps --target`` (cached
under .cache/real), then copied per test; the copies are what we patch.
"""

from __future__ import annotations

import py_compile

import pytest

from conftest import RELEASES, Runner, copy_real, sha, states, tree_digest, update_button_states

pytestmark = pytest.mark.real

PAS, WS = "public-action-status", "relax-ws-peer-check"
FIXED_UPSTREAM = {"0.16.0", "0.17.0", "0.18.0", "0.18.1", "0.18.2", "0.19.0"}


def expected(version: str, proxies: bool) -> dict[str, str]:
    ws = "pending" if proxies or version not in FIXED_UPSTREAM else "not-needed"
    forwarded = "pending" if version in ("0.13.0", "0.14.0") else "not-needed"  # proxy_headers rule since 0.15.0
    return {
        PAS: "pending",
        WS: ws,
        "cors-origins": "not-needed",
        "trusted-hosts": "not-needed",
        "ignore-forwarded-for": forwarded,
        **update_button_states(version),
    }


@pytest.fixture(params=RELEASES)
def release(request, tmp_path):
    version = request.param
    return version, copy_real(version, tmp_path / "site-packages")


def test_status_json_shape_and_expected_states(release, run: Runner):
    version, root = release
    code, doc = run.status("--root", str(root))
    assert code == 1
    assert doc["schema"] == 1
    target = doc["target"]
    assert set(target) >= {"file", "version", "install_method", "sha256"}
    assert target["version"] == version and target["install_method"] == "pip"
    assert target["file"] == str((root / "hermes_cli/web_server.py").resolve())
    assert target["sha256"] == sha(root / "hermes_cli/web_server.py")
    assert all(set(p) >= {"id", "state", "reason"} and p["reason"] for p in doc["patches"])
    assert states(doc) == expected(version, proxies=False)


@pytest.mark.parametrize("proxies", [False, True], ids=["default", "trusted-proxies"])
def test_apply_idempotent_compiles_and_reverts_byte_exact(release, run: Runner, proxies, tmp_path):
    version, root = release
    if proxies:
        run.configure('[patches.relax-ws-peer-check]\ntrusted_proxies = ["127.0.0.5/32"]\n')
    web = root / "hermes_cli/web_server.py"
    original = tree_digest(root)
    code, doc = run.status("--root", str(root))
    assert states(doc) == expected(version, proxies)

    run("apply", "--root", str(root), check=0)
    patched = sha(web)
    assert patched != original["hermes_cli/web_server.py"]
    py_compile.compile(str(web), cfile=str(tmp_path / "out.pyc"), doraise=True)
    code, doc = run.status("--root", str(root))
    assert code == 0, doc
    assert set(states(doc).values()) <= {"applied", "not-needed"}
    assert states(doc)[PAS] == "applied"
    changed = {k for k, v in tree_digest(root).items() if original.get(k) != v}
    assert changed == {"hermes_cli/web_server.py"}  # dashboard_auth/public_paths.py never touched

    second = run("apply", "--root", str(root), check=0)
    assert "nothing to apply" in second.stdout
    assert sha(web) == patched

    run("revert", "--root", str(root), check=0)
    assert tree_digest(root) == original


def test_fast_path_and_whole_module_libcst_give_identical_bytes(release, run: Runner, tmp_path):
    version, root = release
    run.configure('[patches.relax-ws-peer-check]\ntrusted_proxies = ["127.0.0.5/32", "fd00::/8"]\n')
    slow_root = copy_real(version, tmp_path / "slow")
    run("apply", "--root", str(root), check=0)
    run("apply", "--root", str(slow_root), env={"HERMES_PATCH_NO_FAST_PATH": "1"}, check=0)
    assert sha(root / "hermes_cli/web_server.py") == sha(slow_root / "hermes_cli/web_server.py")


def test_revert_one_keeps_the_other(run: Runner, tmp_path):
    root = copy_real("0.15.2", tmp_path / "sp")
    run("apply", "--root", str(root), check=0)
    run("revert", WS, "--root", str(root), check=0)
    code, doc = run.status("--root", str(root))
    assert (
        states(doc) == {**expected("0.15.2", False), PAS: "applied", **update_button_states("0.15.2", applied=True)}
        and code == 1
    )
    run("revert", "--root", str(root), check=0)
    code, doc = run.status("--root", str(root))
    assert states(doc) == expected("0.15.2", False)


def test_dry_run_and_diff_write_nothing(run: Runner, tmp_path):
    root = copy_real("0.19.0", tmp_path / "sp")
    before = tree_digest(root)
    dry = run("apply", "--dry-run", "--root", str(root), check=0)
    diff = run("diff", "--root", str(root), check=0)
    assert diff.stdout.startswith("--- a/") and "+# hermes-patch: public-action-status" in diff.stdout
    assert diff.stdout in dry.stdout
    assert tree_digest(root) == before
    assert not (run.state / "ledger.json").exists()
