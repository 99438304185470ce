"""trusted-hosts and cors-origins on our miniatures: no-op/change pairs, shapes, behaviour, configuration.

In-process (the engine and App). The real releases are in
test_real_releases_hosts.py, the live dashboard behind nginx in
tests/live/test_live_hosts.py.
"""

from __future__ import annotations

import ast
import re

import pytest

from hermes_patch.app import App
from hermes_patch.core.errors import ConfigError, RefusedError

from conftest import copy_fixture, tree_digest
from hostcheck import HostCheck, cors_allows, cors_regex

TH, CO = "trusted-hosts", "cors-origins"
SHAPES = ["r0_14", "r0_15", "r0_16", "r0_20_moved"]
# Where each miniature keeps _is_accepted_host.
HOST_FILE = {
    "r0_14": "web_server.py",
    "r0_15": "web_server.py",
    "r0_16": "web_server.py",
    "r0_20_moved": "ws_policy.py",
}
ONLY_OURS = "[patches.public-action-status]\nenabled = false\n[patches.relax-ws-peer-check]\nenabled = false\n[patches.ignore-forwarded-for]\nenabled = false\n"
HOSTS = ONLY_OURS + '[patches.trusted-hosts]\nhosts = ["proxy.example", "FD7A:115C::5", ".tail1234.ts.net"]\n'
ORIGINS = ONLY_OURS + '[patches.cors-origins]\norigins = ["https://proxy.example", "http://[fd7a::1]:8080"]\n'
CONFIG = {TH: HOSTS, CO: ORIGINS}


def make_app(tmp_path, root, config: str = "") -> App:
    cfg = tmp_path / "config.toml"
    cfg.write_text(config)
    return App(root=root, config_path=cfg, state_dir=tmp_path / "state")


def reports(app: App) -> dict:
    return {r.id: r for r in app.status().reports}


# -- no-op / change pairs ---------------------------------------------------------------


@pytest.mark.parametrize("patch_id", [TH, CO])
@pytest.mark.parametrize("shape", SHAPES)
def test_without_configuration_nothing_to_do(tmp_path, shape, patch_id):
    root = copy_fixture(shape, tmp_path / "t")
    before = tree_digest(root)
    report = reports(make_app(tmp_path, root, ONLY_OURS))[patch_id]
    assert report.state == "not-needed"
    key = "hosts" if patch_id == TH else "origins"
    assert f"[patches.{patch_id}]" in report.reason and f"{key} = [" in report.reason
    assert make_app(tmp_path, root, ONLY_OURS).apply().patch_ids == ()
    assert tree_digest(root) == before


@pytest.mark.parametrize("patch_id", [TH, CO])
@pytest.mark.parametrize("shape", SHAPES)
def test_configured_applies_idempotent_and_reverts_byte_exact(tmp_path, shape, patch_id, monkeypatch):
    root = copy_fixture(shape, tmp_path / "t")
    original = tree_digest(root)
    config = CONFIG[patch_id]
    assert reports(make_app(tmp_path, root, config))[patch_id].state == "pending"

    assert make_app(tmp_path, root, config).apply().patch_ids == (patch_id,)
    after = tree_digest(root)
    changed = {name for name, digest in after.items() if digest != original[name]}
    edited = f"hermes_cli/{HOST_FILE[shape]}" if patch_id == TH else "hermes_cli/web_server.py"
    assert changed == {edited}
    compile((root / edited).read_bytes(), edited, "exec")
    assert reports(make_app(tmp_path, root, config))[patch_id].state == "applied"
    assert make_app(tmp_path, root, config).apply().patch_ids == ()
    assert tree_digest(root) == after

    slow = copy_fixture(shape, tmp_path / "slow")
    monkeypatch.setenv("HERMES_PATCH_NO_FAST_PATH", "1")
    (tmp_path / "slow-state").mkdir()
    make_app(tmp_path / "slow-state", slow, config).apply()
    assert tree_digest(slow) == after  # whole-module libcst gives the same bytes as the fast path
    monkeypatch.delenv("HERMES_PATCH_NO_FAST_PATH")

    make_app(tmp_path, root, config).revert([patch_id])
    assert tree_digest(root) == original


@pytest.mark.parametrize("shape", SHAPES)
def test_the_whole_catalog_together(tmp_path, shape):
    config = (
        HOSTS.replace(ONLY_OURS, "")
        + ORIGINS.replace(ONLY_OURS, "")
        + '[patches.relax-ws-peer-check]\ntrusted_proxies = ["127.0.0.5/32"]\n'
    )
    root = copy_fixture(shape, tmp_path / "t")
    original = tree_digest(root)
    forwarded = {"ignore-forwarded-for"} if shape == "r0_14" else set()  # upstream's proxy_headers rule from 0.15
    assert set(make_app(tmp_path, root, config).apply().patch_ids) == {
        TH,
        CO,
        "public-action-status",
        "relax-ws-peer-check",
        *forwarded,
    }
    # the miniatures keep no action handles and a constant token: durable-action-result and stable-session-token are not-needed
    found = {r.id: r.state for r in make_app(tmp_path, root, config).status().reports if r.state != "applied"}
    expected = {"durable-action-result": "not-needed", "stable-session-token": "not-needed"}
    assert found == (expected if forwarded else {**expected, "ignore-forwarded-for": "not-needed"})
    make_app(tmp_path, root, config).revert([TH])
    assert reports(make_app(tmp_path, root, config))[TH].state == "pending"
    make_app(tmp_path, root, config).revert()
    assert tree_digest(root) == original


def test_trusted_hosts_edit_is_a_guard_and_a_helper(tmp_path):
    root = copy_fixture("r0_16", tmp_path / "t")
    make_app(tmp_path, root, HOSTS).apply()
    text = (root / "hermes_cli/web_server.py").read_text()
    assert text.count("# hermes-patch: trusted-hosts") == 2
    tree = ast.parse(text)
    names = [getattr(s, "name", None) for s in tree.body]
    assert names[names.index("_is_accepted_host") + 1] == "_hermes_patch_trusted_host"
    fn = tree.body[names.index("_is_accepted_host")]
    assert (
        ast.unparse(fn.body[1]) == "if _hermes_patch_trusted_host(host_header):\n    return True"
    )  # after the docstring
    helper = tree.body[names.index("_hermes_patch_trusted_host")]
    consts = {
        ast.unparse(s.targets[0]): ast.literal_eval(s.value)
        for s in helper.body
        if isinstance(s, ast.Assign) and ast.unparse(s.targets[0]) in ("hosts", "suffixes")
    }
    assert consts == {"hosts": ("proxy.example", "fd7a:115c::5"), "suffixes": (".tail1234.ts.net",)}


def test_cors_edit_follows_the_middleware_call(tmp_path):
    root = copy_fixture("r0_14", tmp_path / "t")
    make_app(tmp_path, root, ORIGINS).apply()
    lines = (root / "hermes_cli/web_server.py").read_text().splitlines()
    marker = lines.index("# hermes-patch: cors-origins (the dashboard's CORS rule also allows the configured origins)")
    assert lines[marker - 1] == ")" and lines[marker + 1] == "for _hermes_patch_cors in app.user_middleware:"
    assert r'r"\A(?:https://proxy\.example|http://\[fd7a::1\]:8080)\Z",' in lines[marker + 7]


# -- behaviour ----------------------------------------------------------------------------

ACCEPTED = [
    "proxy.example",
    "proxy.example:443",
    "PROXY.Example:8443",
    " proxy.example ",
    "[fd7a:115c::5]",
    "[FD7A:115C:0:0::5]:443",
    "node.tail1234.ts.net",
    "a.b.tail1234.ts.net:8443",
]
REFUSED = [
    "evil-proxy.example",
    "proxy.example.evil.test",
    "proxy.example.",
    "proxy.example.:443",
    "xproxy.example",
    "proxy.example@evil.test",
    "evil.test@proxy.example",
    "user:pw@proxy.example",
    "proxy.example:",
    "proxy.example:https",
    "proxy.example:80:80",
    "proxy.example:123456",
    "proxy.example evil",
    "proxy\u2024example",
    "pr\u043exy.example",
    "proxy%2eexample",
    "*.tail1234.ts.net",
    "tail1234.ts.net",
    "eviltail1234.ts.net",
    "tail1234.ts.net.evil.test",
    "[fd7a:115c::5",
    "fd7a:115c::5",
    "[fd7a:115c::6]",
    "[fd7a:115c::5]x",
    "[fd7a:115c::5%eth0]",
    "",
    "[]",
    ":443",
]
# Values whose answer upstream decides alone, before and after the patch.
UPSTREAM = ["localhost", "localhost:9119", "127.0.0.1:9119", "[::1]:9119", "127.0.0.2", "evil.test", "0.0.0.0"]
BINDS = ["127.0.0.1", "localhost", "::1", "0.0.0.0", "127.0.0.2"]


@pytest.fixture(params=SHAPES)
def host_checks(request, tmp_path):
    shape = request.param
    before = HostCheck(copy_fixture(shape, tmp_path / "before") / "hermes_cli")
    root = copy_fixture(shape, tmp_path / "after")
    make_app(tmp_path, root, HOSTS).apply()
    return shape, before, HostCheck(root / "hermes_cli")


def test_listed_hosts_are_accepted_and_look_alikes_are_not(host_checks):
    _, before, after = host_checks
    for value in ACCEPTED:
        assert not before.accepted(value, "127.0.0.1"), value
        assert after.accepted(value, "127.0.0.1"), value
    for value in REFUSED:
        assert not after.accepted(value, "127.0.0.1"), repr(value)


def test_everything_else_is_decided_exactly_as_before(host_checks):
    _, before, after = host_checks
    for bound in BINDS:
        for value in REFUSED + UPSTREAM:
            assert after.accepted(value, bound) == before.accepted(value, bound), (value, bound)


def test_websocket_guard_uses_the_allowlist_for_host_and_origin(host_checks):
    shape, before, after = host_checks
    if not before.has_ws_guard:
        assert shape == "r0_14"  # 0.13/0.14: no Host/Origin guard on WebSocket upgrades
        return
    listed = {"Host": "proxy.example", "Origin": "https://proxy.example"}
    assert before.ws_reason(listed) is not None
    assert after.ws_reason(listed) is None
    assert after.ws_reason({"Host": "proxy.example:443", "Origin": "https://proxy.example:443"}) is None
    for origin in [
        "http://proxy.example@evil.test",
        "https://evil-proxy.example",
        "https://proxy.example.evil.test",
        "https://proxy.example.",
    ]:
        assert after.ws_reason({"Host": "proxy.example", "Origin": origin}) is not None, origin
    for host in ["evil-proxy.example", "proxy.example.evil.test", "proxy.example."]:
        assert after.ws_reason({"Host": host, "Origin": "https://proxy.example"}) is not None, host
    for headers in [
        {"Host": "localhost:9119"},
        {"Host": "localhost", "Origin": "null"},
        {"Host": "evil.test", "Origin": "https://proxy.example"},
    ]:
        assert after.ws_reason(headers) == before.ws_reason(headers), headers


def test_cors_allows_listed_origins_only(tmp_path):
    root = copy_fixture("r0_16", tmp_path / "t")
    web = root / "hermes_cli/web_server.py"
    upstream = cors_regex(web)
    make_app(tmp_path, root, ORIGINS).apply()
    for old in (False, True):
        regex = cors_regex(web, old_starlette=old)
        assert regex != upstream and upstream in regex
        for origin in [
            "https://proxy.example",
            "http://[fd7a::1]:8080",
            "http://localhost:5173",
            "https://127.0.0.1",
            "http://[::1]:9119",
        ]:
            assert cors_allows(regex, origin), origin
        for origin in [
            "null",
            "https://proxy.example.evil.test",
            "https://evil-proxy.example",
            "http://proxy.example",
            "https://proxy.example:8443",
            "https://proxy.example/",
            "https://proxyXexample",
            "https://proxy.example\n",
            "https://proxy.example@evil.test",
            "http://[fd7a::1]",
            "https://localhost.evil.test",
        ]:
            assert not cors_allows(regex, origin), repr(origin)


# -- states and reasons ------------------------------------------------------------------


def test_public_url_release_recommends_the_upstream_setting(tmp_path):
    with_it = reports(make_app(tmp_path, copy_fixture("r0_16", tmp_path / "a"), HOSTS))[TH]
    assert with_it.state == "pending"
    # Advice, not a warning: it never fails `status --strict`.
    assert any("dashboard.public_url" in n and "--host 0.0.0.0" in n for n in with_it.advice)
    assert not any("public_url" in n for n in with_it.notes)
    without = reports(make_app(tmp_path, copy_fixture("r0_15", tmp_path / "b"), HOSTS))[TH]
    assert not any("public_url" in n for n in without.notes + without.advice)
    idle = reports(make_app(tmp_path, copy_fixture("r0_16", tmp_path / "c"), ONLY_OURS))[TH]
    assert idle.state == "not-needed" and "dashboard.public_url" in idle.reason
    assert not idle.notes  # nothing to warn about: `status --strict` stays 0


def test_reason_describes_what_the_dashboard_does(tmp_path):
    """Reasons speak of the dashboard's behaviour (400, refused upgrades), not of internal function names."""
    r14 = reports(make_app(tmp_path, copy_fixture("r0_14", tmp_path / "a"), HOSTS))[TH]
    assert "400 (Invalid Host header)" in r14.reason and "WebSocket" not in r14.reason
    r16 = reports(make_app(tmp_path, copy_fixture("r0_16", tmp_path / "b"), HOSTS))[TH]
    assert (
        "refuses its WebSocket upgrades when the Origin names another host" in r16.reason
        and "proxy.example" in r16.reason
    )
    for r in (r14, r16):
        assert "_is_accepted_host" not in r.reason and "()" not in r.reason


def test_suffix_is_flagged(tmp_path):
    report = reports(make_app(tmp_path, copy_fixture("r0_15", tmp_path / "t"), HOSTS))[TH]
    assert any(".tail1234.ts.net" in n and "DNS-rebinding" in n for n in report.notes)
    exact = ONLY_OURS + '[patches.trusted-hosts]\nhosts = ["proxy.example"]\n'
    assert not reports(make_app(tmp_path, copy_fixture("r0_15", tmp_path / "u"), exact))[TH].notes


def test_origin_upstream_already_allows_is_not_needed(tmp_path):
    config = ONLY_OURS + '[patches.cors-origins]\norigins = ["http://localhost:5173"]\n'
    report = reports(make_app(tmp_path, copy_fixture("r0_15", tmp_path / "t"), config))[CO]
    assert report.state == "not-needed" and "already allows" in report.reason


@pytest.mark.parametrize(
    "patch_id, other",
    [
        (TH, ONLY_OURS + '[patches.trusted-hosts]\nhosts = ["hermes.other.example"]\n'),
        (CO, ONLY_OURS + '[patches.cors-origins]\norigins = ["https://hermes.other.example"]\n'),
    ],
)
def test_changed_configuration_reapplies_in_place(tmp_path, patch_id, other):
    root = copy_fixture("r0_20_moved", tmp_path / "t")
    original = tree_digest(root)
    make_app(tmp_path, root, CONFIG[patch_id]).apply()
    report = reports(make_app(tmp_path, root, other))[patch_id]
    assert report.state == "pending" and "the configuration now has" in report.reason
    assert make_app(tmp_path, root, other).apply().patch_ids == (patch_id,)
    text = "".join((root / "hermes_cli" / f).read_text() for f in ("web_server.py", "ws_policy.py"))
    written = (lambda name: name) if patch_id == TH else re.escape
    assert written("hermes.other.example") in text and written("proxy.example") not in text
    assert reports(make_app(tmp_path, root, other))[patch_id].state == "applied"
    make_app(tmp_path, root, other).revert()
    assert tree_digest(root) == original


@pytest.mark.parametrize("patch_id", [TH, CO])
def test_emptied_configuration_is_pending_and_apply_removes_the_edit(tmp_path, patch_id):
    """Trust the operator took out of the configuration must not stay in Hermes (fail closed)."""
    root = copy_fixture("r0_15", tmp_path / "t")
    original = tree_digest(root)
    make_app(tmp_path, root, CONFIG[patch_id]).apply()
    report = reports(make_app(tmp_path, root, ONLY_OURS))[patch_id]
    assert report.state == "pending" and "hermes-patch apply" in report.reason
    assert make_app(tmp_path, root, ONLY_OURS).apply([patch_id]).patch_ids == (patch_id,)
    assert reports(make_app(tmp_path, root, ONLY_OURS))[patch_id].state == "not-needed"
    assert tree_digest(root) == original


# -- shapes we do not know, and drift -------------------------------------------------------


# A second Host / Origin decision that bypasses _is_accepted_host: the allowlist would not reach it.
ORIGIN_CHECK = '\n\ndef _ws_origin_ok(ws):\n    return ws.headers.get("origin", "").startswith("http://localhost")\n'


@pytest.mark.parametrize(
    "shape, file, old, new, patch_id, needle",
    [
        ("r0_15", "web_server.py", "def _is_accepted_host(", "def _host_ok(", TH, "def _is_accepted_host"),
        (
            "r0_16",
            "web_server.py",
            "def _is_accepted_host(host_header: str, bound_host: str)",
            "def _is_accepted_host(host_header: str)",
            TH,
            "(host_header, bound_host)",
        ),
        ("r0_16", "web_server.py", "", ORIGIN_CHECK, TH, "_ws_origin_ok() (web_server.py:"),
        ("r0_20_moved", "ws_policy.py", "", ORIGIN_CHECK, TH, "_ws_origin_ok() (ws_policy.py:"),
        (
            "r0_14",
            "web_server.py",
            "app.add_middleware(\n    CORSMiddleware,",
            "app.add_middleware(\n    CORSMiddleware,\n    allow_origins=[],\n)\napp.add_middleware(\n    CORSMiddleware,",
            CO,
            "found 2",
        ),
        (
            "r0_15",
            "web_server.py",
            'allow_origin_regex=r"^https?://',
            'allow_origin_regex=_ORIGINS or r"^https?://',
            CO,
            "no string allow_origin_regex",
        ),
        (
            "r0_16",
            "web_server.py",
            'allow_origin_regex=r"^https?://',
            'allow_origin_regex=r"(?i)^https?://',
            CO,
            "cannot be extended",
        ),
    ],
    ids=[
        "function-renamed",
        "one-parameter",
        "ws-guard-own-check",
        "moved-guard-own-check",
        "two-cors-calls",
        "regex-not-literal",
        "global-flag",
    ],
)
def test_unrecognized_shapes_are_refused(tmp_path, shape, file, old, new, patch_id, needle):
    root = copy_fixture(shape, tmp_path / "t")
    path = root / "hermes_cli" / file
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1) if old else text + new)
    before = tree_digest(root)
    report = reports(make_app(tmp_path, root, CONFIG[patch_id]))[patch_id]
    assert report.state == "unknown-shape", report.reason
    assert needle in report.reason
    with pytest.raises(RefusedError):
        make_app(tmp_path, root, CONFIG[patch_id]).apply()
    assert tree_digest(root) == before


@pytest.mark.parametrize(
    "patch_id, old, new, needle",
    [
        (
            TH,
            "    if not text.isascii():\n        return False\n",
            "    if not text.isascii():\n        return True\n",
            "helper",
        ),
        (
            TH,
            "    if _hermes_patch_trusted_host(host_header):\n        return True\n",
            "    if _hermes_patch_trusted_host(host_header) or True:\n        return True\n",
            "guard",
        ),
        (CO, r'r"\A(?:https://proxy\.example|', r'r"\A(?:https://.*|', "edited"),
    ],
    ids=["helper-edited", "guard-edited", "cors-block-edited"],
)
def test_hand_edit_of_our_block_is_drift(tmp_path, patch_id, old, new, needle):
    root = copy_fixture("r0_16", tmp_path / "t")
    make_app(tmp_path, root, CONFIG[patch_id]).apply()
    web = root / "hermes_cli/web_server.py"
    text = web.read_text()
    assert old in text
    web.write_text(text.replace(old, new, 1))
    fresh = App(root=root, config_path=tmp_path / "config.toml", state_dir=tmp_path / "other-state")
    report = reports(fresh)[patch_id]
    assert report.state == "drifted" and needle in report.reason
    with pytest.raises(RefusedError, match="--force"):
        make_app(tmp_path, root, CONFIG[patch_id]).revert()
    make_app(tmp_path, root, CONFIG[patch_id]).revert([patch_id], force=True)
    assert f"# hermes-patch: {patch_id}" not in web.read_text()


# -- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "table, needle",
    [
        ('[patches.trusted-hosts]\nhosts = "proxy.example"\n', "must be a list"),
        ('[patches.trusted-hosts]\nhosts = ["*"]\n', "wildcards are not accepted"),
        ('[patches.trusted-hosts]\nhosts = ["*.ts.net"]\n', "'.ts.net'"),
        ('[patches.trusted-hosts]\nhosts = [".net"]\n', "top-level domain"),
        (
            '[patches.trusted-hosts]\nhosts = ["https://proxy.example"]\n',
            "list only the host name, e.g. 'proxy.example'",
        ),
        ('[patches.trusted-hosts]\nhosts = ["proxy.example:443"]\n', "ports are ignored"),
        ('[patches.trusted-hosts]\nhosts = ["proxy.example."]\n', "ends with a dot"),
        ('[patches.trusted-hosts]\nhosts = ["bücher.example"]\n', "xn--bcher-kva.example"),
        ('[patches.trusted-hosts]\nhosts = ["user@proxy.example"]\n', "not a host name"),
        ('[patches.trusted-hosts]\nhosts = ["bad_label-.example"]\n', "not a host name"),
        ('[patches.trusted-hosts]\nhosts = ["fe80::1%eth0"]\n', "zone index"),
        ('[patches.trusted-hosts]\nhosts = ["10.0.0.300"]\n', "not one"),
        ('[patches.trusted-hosts]\nallow = ["x"]\n', "unknown key"),
        ('[patches.cors-origins]\norigins = ["*"]\n', "every web site"),
        ('[patches.cors-origins]\norigins = ["null"]\n', "never accepted"),
        ('[patches.cors-origins]\norigins = ["proxy.example"]\n', "scheme://host"),
        ('[patches.cors-origins]\norigins = ["ftp://proxy.example"]\n', "http or https"),
        ('[patches.cors-origins]\norigins = ["https://proxy.example/"]\n', "write 'https://proxy.example'"),
        ('[patches.cors-origins]\norigins = ["https://proxy.example:443"]\n', "default port 443"),
        ('[patches.cors-origins]\norigins = ["https://proxy.example:99999"]\n', "not an origin"),
        ('[patches.cors-origins]\norigins = ["https://*.proxy.example"]\n', "wildcards"),
        ('[patches.cors-origins]\norigins = ["https://u@proxy.example"]\n', "user name"),
    ],
)
def test_bad_configuration_is_a_clear_error(tmp_path, table, needle):
    root = copy_fixture("r0_16", tmp_path / "t")
    before = tree_digest(root)
    with pytest.raises(ConfigError) as err:
        make_app(tmp_path, root, table).apply()
    assert needle in str(err.value)
    assert "[patches." in str(err.value) and str(err.value).startswith(str(tmp_path))
    assert tree_digest(root) == before


def test_values_are_normalized(tmp_path):
    config = ONLY_OURS + (
        '[patches.trusted-hosts]\nhosts = ["Proxy.Example", "proxy.example", "[FD7A::1]", "100.64.0.5"]\n'
        '[patches.cors-origins]\norigins = ["HTTPS://Proxy.Example", "http://[FD7A:0::1]:8080"]\n'
    )
    app = make_app(tmp_path, copy_fixture("r0_16", tmp_path / "t"), config)
    params = {p.ID: p.params for p, _ in app.patches}
    assert params[TH]["hosts"] == ("proxy.example", "fd7a::1", "100.64.0.5")
    assert params[CO]["origins"] == ("https://proxy.example", "http://[fd7a::1]:8080")


def test_one_patch_applies_while_another_waits_to_be_reapplied_with_new_parameters(tmp_path):
    """helper-22: `apply cors-origins` while trusted-hosts' block is from its last apply's hosts (the ledger has them)."""
    root = copy_fixture("r0_16", tmp_path / "t")
    first = ONLY_OURS + '[patches.trusted-hosts]\nhosts = ["a.example"]\n'
    make_app(tmp_path, root, first).apply([TH])
    second = (
        ONLY_OURS
        + '[patches.trusted-hosts]\nhosts = ["b.example"]\n[patches.cors-origins]\norigins = ["https://b.example"]\n'
    )
    app = make_app(tmp_path, root, second)
    assert {r.id: r.state.value for r in app.status().reports if r.id in (TH, CO)} == {TH: "pending", CO: "pending"}
    assert make_app(tmp_path, root, second).apply([CO]).patch_ids == (CO,)
    after = {r.id: r.state.value for r in make_app(tmp_path, root, second).status().reports if r.id in (TH, CO)}
    assert after == {TH: "pending", CO: "applied"}  # still ours, from a.example: re-applied by the next apply
    make_app(tmp_path, root, second).apply()
    text = (root / "hermes_cli/web_server.py").read_text()
    assert "b.example" in text and "a.example" not in text
