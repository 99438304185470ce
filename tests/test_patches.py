"""Per-patch no-op/change pairs on our miniatures of each release shape.

In-process (fast): the engine and App, no subprocess. The CLI and the real
releases are covered by test_cli.py and test_real_releases.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from hermes_patch.app import App
from hermes_patch.core.errors import ConfigError, RefusedError

from conftest import copy_fixture, tree_digest

PAS, WS, IFF = "public-action-status", "relax-ws-peer-check", "ignore-forwarded-for"
# The catalog patches that are not-needed on the miniatures: two need configuration
# (tests/test_hosts_patches.py covers them); the miniatures keep no action handles and a constant
# token (tests/test_update_button.py covers durable-action-result and stable-session-token).
IDLE = {
    "cors-origins": "not-needed",
    "trusted-hosts": "not-needed",
    "durable-action-result": "not-needed",
    "stable-session-token": "not-needed",
}
# ignore-forwarded-for: pending on the 0.13/0.14 shape, upstream's rule from 0.15 (tests/test_ignore_forwarded_for.py).
OLD, NEW = {IFF: "pending"}, {IFF: "not-needed"}
PROXY = '[patches.relax-ws-peer-check]\ntrusted_proxies = ["127.0.0.5/32"]\n'

# fixture -> (default-config states, states with trusted_proxies)
EXPECTED = {
    "r0_14": ({PAS: "pending", WS: "pending", **IDLE, **OLD}, {PAS: "pending", WS: "pending", **IDLE, **OLD}),
    "r0_15": ({PAS: "pending", WS: "pending", **IDLE, **NEW}, {PAS: "pending", WS: "pending", **IDLE, **NEW}),
    "r0_16": ({PAS: "pending", WS: "not-needed", **IDLE, **NEW}, {PAS: "pending", WS: "pending", **IDLE, **NEW}),
    "r0_20_moved": ({PAS: "pending", WS: "not-needed", **IDLE, **NEW}, {PAS: "pending", WS: "pending", **IDLE, **NEW}),
    "r0_20_split": ({PAS: "pending", WS: "not-needed", **IDLE, **NEW}, {PAS: "pending", WS: "pending", **IDLE, **NEW}),
    "r0_21_main": ({PAS: "pending", WS: "not-needed", **IDLE, **NEW}, {PAS: "pending", WS: "pending", **IDLE, **NEW}),
}


def make_app(tmp_path: Path, root: Path, config: str = "") -> App:
    cfg = tmp_path / "config.toml"
    cfg.write_text(config)
    return App(root=root, config_path=cfg, state_dir=tmp_path / "state")


def states(app: App) -> dict[str, str]:
    return {r.id: r.state for r in app.status().reports}


@pytest.mark.parametrize("proxies", [False, True], ids=["default", "trusted-proxies"])
@pytest.mark.parametrize("shape", sorted(EXPECTED))
def test_apply_is_idempotent_and_revert_is_byte_exact(tmp_path, shape, proxies):
    root = copy_fixture(shape, tmp_path / "t")
    original = tree_digest(root)
    config = PROXY if proxies else ""
    assert states(make_app(tmp_path, root, config)) == EXPECTED[shape][proxies]

    applied = make_app(tmp_path, root, config).apply()
    assert set(applied.patch_ids) == {k for k, v in EXPECTED[shape][proxies].items() if v == "pending"}
    after = tree_digest(root)
    assert after != original
    for name, digest in after.items():
        if digest != original[name]:
            compile((root / name).read_bytes(), name, "exec")
    assert set(states(make_app(tmp_path, root, config)).values()) <= {"applied", "not-needed"}

    again = make_app(tmp_path, root, config).apply()
    assert again.patch_ids == ()
    assert tree_digest(root) == after

    make_app(tmp_path, root, config).revert()
    assert tree_digest(root) == original


def test_marker_comment_names_the_patch(tmp_path):
    root = copy_fixture("r0_15", tmp_path / "t")
    make_app(tmp_path, root, PROXY).apply()
    text = (root / "hermes_cli/web_server.py").read_text()
    assert text.count(f"# hermes-patch: {PAS}") == 1
    assert text.count(f"# hermes-patch: {WS}") == 2  # helper + one guard


def test_paths_are_concrete_and_only_for_configured_actions(tmp_path):
    root = copy_fixture("r0_16", tmp_path / "t")
    make_app(tmp_path, root).apply()
    tree = ast.parse((root / "hermes_cli/web_server.py").read_text())
    added = {
        n.value
        for node in tree.body
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "_PUBLIC_API_PATHS"
        for n in ast.walk(node.value)
        if isinstance(n, ast.Constant)
    }
    assert added == {"/api/actions/hermes-update/status", "/api/actions/gateway-restart/status"}
    assert not any("{" in p or "*" in p for p in added)


def test_shared_public_paths_module_is_never_touched(tmp_path):
    root = copy_fixture("r0_16", tmp_path / "t")
    shared = root / "hermes_cli/dashboard_auth/public_paths.py"
    before = shared.read_bytes()
    make_app(tmp_path, root, PROXY).apply()
    assert shared.read_bytes() == before


def test_revert_one_patch_keeps_the_other(tmp_path):
    root = copy_fixture("r0_14", tmp_path / "t")
    make_app(tmp_path, root).apply()
    make_app(tmp_path, root).revert([WS])
    assert states(make_app(tmp_path, root)) == {PAS: "applied", WS: "pending", **IDLE, IFF: "applied"}
    make_app(tmp_path, root).revert([PAS, IFF])
    assert tree_digest(root) == tree_digest(copy_fixture("r0_14", tmp_path / "pristine"))


def test_changed_configuration_reapplies_in_place(tmp_path):
    root = copy_fixture("r0_16", tmp_path / "t")
    make_app(tmp_path, root, PROXY).apply()
    other = '[patches.relax-ws-peer-check]\ntrusted_proxies = ["10.1.0.0/16"]\n[patches.public-action-status]\nactions = ["hermes-update"]\n'
    app = make_app(tmp_path, root, other)
    assert states(app) == {PAS: "pending", WS: "pending", **IDLE, **NEW}
    make_app(tmp_path, root, other).apply()
    text = (root / "hermes_cli/web_server.py").read_text()
    assert '"10.1.0.0/16"' in text and "127.0.0.5" not in text and "gateway-restart/status" not in text
    assert states(make_app(tmp_path, root, other)) == {PAS: "applied", WS: "applied", **IDLE, **NEW}
    make_app(tmp_path, root, other).revert()
    assert tree_digest(root) == tree_digest(copy_fixture("r0_16", tmp_path / "pristine"))


def test_already_fixed_upstream_is_not_needed(tmp_path):
    root = copy_fixture("r0_15", tmp_path / "t")
    ws = root / "hermes_cli/web_server.py"
    text = ws.read_text()
    fork = text.replace(
        '    "/api/dashboard/themes",\n',
        '    "/api/dashboard/themes",\n    "/api/actions/hermes-update/status",\n    "/api/actions/gateway-restart/status",\n',
    )
    assert fork != text
    ws.write_text(fork)
    assert states(make_app(tmp_path, root))[PAS] == "not-needed"


@pytest.mark.parametrize(
    "shape, old, new, patch_id, needle",
    [
        ("r0_14", "def _ws_client_is_allowed(", "def _ws_peer_ok(", WS, "def _ws_client_is_allowed"),
        (
            "r0_15",
            '_PUBLIC_API_PATHS: frozenset = frozenset({\n    "/api/status",',
            '_PUBLIC_API_PATHS: frozenset = _build_public({\n    "/api/status",',
            PAS,
            "not a frozenset literal",
        ),
        ("r0_15", "path not in _PUBLIC_API_PATHS", "not _is_public(path)", PAS, "exact membership"),
        (
            "r0_16",
            "_ACTION_LOG_FILES: Dict[str, str] = {",
            "_ACTION_LOG_FILES: Dict[str, str] = dict(**{",
            PAS,
            "_ACTION_LOG_FILES",
        ),
        ("r0_14", "    if not _ws_client_is_allowed(ws):\n", "    if not _peer_policy(ws):\n", WS, None),
    ],
    ids=["renamed-function", "set-built-by-helper", "membership-test-gone", "actions-not-literal", "policy-moved"],
)
def test_unrecognized_shapes_are_refused(tmp_path, shape, old, new, patch_id, needle):
    root = copy_fixture(shape, tmp_path / "t")
    ws = root / "hermes_cli/web_server.py"
    text = ws.read_text()
    assert old in text
    text = text.replace(old, new, 1)
    if needle is None:  # the policy moved into a function this patch does not know
        text += "\n\ndef _peer_policy(ws):\n    return ws.client.host in _LOOPBACK_HOSTS or _ws_client_is_allowed(ws)\n"
        needle = "_peer_policy"
    if new.startswith("_ACTION_LOG_FILES"):
        text = text.replace('"dump": "action-dump.log",\n}', '"dump": "action-dump.log",\n})')
    ws.write_text(text)
    before = tree_digest(root)
    app = make_app(tmp_path, root)
    report = next(r for r in app.status().reports if r.id == patch_id)
    assert report.state == "unknown-shape"
    assert needle in report.reason
    with pytest.raises(RefusedError):
        make_app(tmp_path, root).apply()
    assert tree_digest(root) == before


def test_hand_edit_of_patched_function_is_drift(tmp_path):
    root = copy_fixture("r0_15", tmp_path / "t")
    make_app(tmp_path, root).apply()
    ws = root / "hermes_cli/web_server.py"
    text = ws.read_text()
    edited = text.replace(
        "    if not client_host:\n        return True\n", "    if not client_host:\n        return False\n", 1
    )
    assert edited != text
    ws.write_text(edited)
    report = {r.id: r for r in make_app(tmp_path, root).status().reports}[WS]
    assert report.state == "drifted" and "_ws_client_is_allowed" in report.reason
    with pytest.raises(RefusedError, match="--force"):
        make_app(tmp_path, root).revert()
    assert ws.read_text() == edited
    make_app(tmp_path, root).revert([WS], force=True)
    result = ws.read_text()
    assert "# hermes-patch: relax-ws-peer-check" not in result and "return False" in result


def test_edit_inside_our_block_is_drift_even_without_ledger(tmp_path):
    root = copy_fixture("r0_14", tmp_path / "t")
    make_app(tmp_path, root).apply()
    ws = root / "hermes_cli/web_server.py"
    ws.write_text(
        ws.read_text().replace(
            '"/api/actions/gateway-restart/status",', '"/api/actions/gateway-restart/status", "/api/config",'
        )
    )
    cfg = tmp_path / "c.toml"
    cfg.write_text("")
    fresh = App(root=root, config_path=cfg, state_dir=tmp_path / "other-state")
    assert {r.id: r.state for r in fresh.status().reports}[PAS] == "drifted"


@pytest.mark.parametrize(
    "config, needle",
    [
        ('[patches.relax-ws-peer-check]\ntrusted_proxies = ["10.0.0.5/24"]\n', "10.0.0.0/24"),
        ('[patches.relax-ws-peer-check]\ntrusted_proxies = ["not-a-cidr"]\n', "not a network"),
        ('[patches.relax-ws-peer-check]\ntrusted_proxies = ["0.0.0.0/0"]\n', "allow_catch_all"),
        ('[patches.relax-ws-peer-check]\ntrusted_proxies = ["::/0"]\n', "allow_catch_all"),
        ('[patches.public-action-status]\nactions = ["dump"]\n', "dump"),
        ('[patches.public-action-status]\nactions = ["{name}"]\n', "not an action name"),
        ("[patches.public-action-status]\nbogus = 1\n", "unknown key"),
        ("[patches.no-such-patch]\nenabled = false\n", "no-such-patch"),
        ("[patches\n", "not valid TOML"),
        ("colour = 1\n", "unknown key"),
        ("[hooks]\nsystemd = true\n", "unknown key(s) hooks"),
    ],
    ids=[
        "host-bits",
        "garbage",
        "catch-all-v4",
        "catch-all-v6",
        "action-missing-in-release",
        "template",
        "unknown-param",
        "unknown-id",
        "toml-syntax",
        "unknown-top-key",
        "hooks-table-was-never-read",
    ],
)
def test_bad_configuration_is_a_clear_error(tmp_path, config, needle):
    root = copy_fixture("r0_14", tmp_path / "t")
    before = tree_digest(root)
    with pytest.raises(ConfigError, match=None) as err:
        make_app(tmp_path, root, config).apply()
    assert needle in str(err.value)
    assert tree_digest(root) == before


def test_catch_all_needs_the_explicit_override(tmp_path):
    root = copy_fixture("r0_16", tmp_path / "t")
    app = make_app(
        tmp_path, root, '[patches.relax-ws-peer-check]\ntrusted_proxies = ["0.0.0.0/0"]\nallow_catch_all = true\n'
    )
    assert states(app)[WS] == "pending"


def test_sensitive_actions_are_flagged(tmp_path):
    root = copy_fixture("r0_16", tmp_path / "t")
    app = make_app(tmp_path, root, '[patches.public-action-status]\nactions = ["hermes-update", "dump"]\n')
    report = {r.id: r for r in app.status().reports}[PAS]
    assert any("dump" in n and "sensitive" in n for n in report.notes)


def test_disabled_patch_is_left_alone(tmp_path):
    root = copy_fixture("r0_14", tmp_path / "t")
    app = make_app(tmp_path, root, "[patches.relax-ws-peer-check]\nenabled = false\n")
    assert app.apply().patch_ids == (IFF, PAS)
    result = make_app(tmp_path, root, "[patches.relax-ws-peer-check]\nenabled = false\n").status()
    assert result.exit_code == 0
    assert {r.id: (r.state, r.enabled) for r in result.reports}[WS] == ("pending", False)


GATED = {
    "proxy": PROXY,
    # the gate advice shows the normalized hosts: a warm status takes them from the ledger's record
    "hosts normalized": '[patches.trusted-hosts]\nhosts = ["Proxy.Example.COM"]\n',
    "hosts of a disabled patch": '[patches.trusted-hosts]\nhosts = ["proxy.example.com"]\nenabled = false\n',
    "bad hosts": '[patches.trusted-hosts]\nhosts = "proxy.example.com"\n',
}


@pytest.mark.parametrize("config", list(GATED))
def test_warm_status_matches_cold_status(tmp_path, config):
    root = copy_fixture("r0_16", tmp_path / "t")
    make_app(tmp_path, root, GATED[config]).apply(None if config != "bad hosts" else [PAS])
    warm = make_app(tmp_path, root, GATED[config]).status()
    assert warm.warm
    cold_app = App(root=root, config_path=tmp_path / "config.toml", state_dir=tmp_path / "empty-state")
    cold = cold_app.status()
    assert not cold.warm
    assert warm.reports == cold.reports and warm.sha256 == cold.sha256
    assert warm.advice == cold.advice and warm.notes == cold.notes
    if config == "hosts normalized":
        assert any("trusted-hosts (proxy.example.com)" in a for a in warm.advice)


def test_emptying_trusted_proxies_on_a_fixed_release_removes_our_edit(tmp_path):
    """0.16+ has the bind rule: with trusted_proxies emptied, re-apply leaves the release as shipped."""
    root = copy_fixture("r0_16", tmp_path / "t")
    make_app(tmp_path, root, PROXY).apply([WS])
    assert states(make_app(tmp_path, root))[WS] == "pending"
    result = make_app(tmp_path, root).apply([WS])
    assert result.patch_ids == (WS,)
    assert states(make_app(tmp_path, root))[WS] == "not-needed"
    assert tree_digest(root) == tree_digest(copy_fixture("r0_16", tmp_path / "pristine"))


def test_blocks_of_a_patch_not_in_the_catalog_are_reported(tmp_path):
    root = copy_fixture("r0_14", tmp_path / "t")
    web = root / "hermes_cli/web_server.py"
    web.write_text(
        web.read_text().replace(
            "app = FastAPI()\n", 'app = FastAPI()\n# hermes-patch: root-path (served under /h)\napp.root_path = "/h"\n'
        )
    )
    notes = make_app(tmp_path, root).status().notes
    assert any("root-path" in n and "not in the catalog" in n for n in notes)
    make_app(tmp_path, root).apply()
    warm = make_app(tmp_path, root).status()
    assert warm.warm and any("root-path" in n for n in warm.notes)


@pytest.mark.parametrize(
    "extra",
    ["\n\ndef _ws_client_is_allowed(ws):\n    return False\n", "\n_ws_client_is_allowed = lambda ws: False\n"],
    ids=["defined-twice", "rebound-later"],
)
def test_a_function_bound_twice_is_unknown_shape(tmp_path, extra):
    """Python keeps the last binding: a guard in the first would be dead code (found by the breaker)."""
    root = copy_fixture("r0_14", tmp_path / "t")
    web = root / "hermes_cli/web_server.py"
    web.write_text(web.read_text() + extra)
    report = {r.id: r for r in make_app(tmp_path, root).status().reports}[WS]
    assert report.state == "unknown-shape" and "bound 2 times" in report.reason


@pytest.mark.parametrize(
    "proxies, catch_all",
    [(["0.0.0.0/1", "128.0.0.0/1"], True), (["::/1", "8000::/1"], True), (["::ffff:127.0.0.5/128"], False)],
    ids=["v4-halves", "v6-halves", "v4-mapped"],
)
def test_trusted_proxies_edge_cidrs(tmp_path, proxies, catch_all):
    root = copy_fixture("r0_14", tmp_path / "t")
    config = f"[patches.relax-ws-peer-check]\ntrusted_proxies = {proxies!r}\n".replace("'", '"')
    if catch_all:
        # A parameter error is this patch's report (status stays a full document); apply refuses it.
        report = {r.id: r for r in make_app(tmp_path, root, config).status().reports}[WS]
        assert report.state == "unknown-shape" and "allow_catch_all" in report.reason
        with pytest.raises(ConfigError, match="allow_catch_all"):
            make_app(tmp_path, root, config).apply()
    else:
        make_app(tmp_path, root, config).apply()
        assert '("127.0.0.5/32",)' in (root / "hermes_cli/web_server.py").read_text()


def test_cr_only_line_endings_are_refused_by_status_and_apply_alike(tmp_path):
    """Found by the breaker: status said pending, apply refused as a bug. Now both refuse up front."""
    from hermes_patch.core.errors import TargetError

    root = copy_fixture("r0_14", tmp_path / "t")
    web = root / "hermes_cli/web_server.py"
    original = web.read_bytes().replace(b"\n", b"\r")
    web.write_bytes(original)
    for action in (lambda app: app.status(), lambda app: app.apply()):
        with pytest.raises(TargetError, match="lone carriage return"):
            action(make_app(tmp_path, root))
    assert web.read_bytes() == original
