"""trusted-hosts and cors-origins on the 11 real hermes-agent releases, through the installed command.

Each release is downloaded at test time (cached under .cache/real, never
committed) and copied per test. After ``apply`` the tests execute the
patched release code itself (``_is_accepted_host``, the WebSocket
Host/Origin guard, the CORS statement and our block; see hostcheck.py)
with look-alike inputs, next to the unpatched copy.
"""

from __future__ import annotations

import py_compile

import pytest

from conftest import RELEASES, Runner, copy_real, sha, states, tree_digest
from hostcheck import HostCheck, cors_allows, cors_regex

pytestmark = pytest.mark.real

TH, CO = "trusted-hosts", "cors-origins"
WS_GUARD_SINCE = "0.15.0"
PUBLIC_URL_SINCE = "0.16.0"
OURS = (
    '[patches.trusted-hosts]\nhosts = ["proxy.example", "fd7a:115c::5", ".tail1234.ts.net"]\n'
    '[patches.cors-origins]\norigins = ["https://proxy.example", "http://[fd7a::1]:8080"]\n'
)
CONFIG = (
    "[patches.public-action-status]\nenabled = false\n[patches.relax-ws-peer-check]\nenabled = false\n[patches.ignore-forwarded-for]\nenabled = false\n[patches.durable-action-result]\nenabled = false\n[patches.stable-session-token]\nenabled = false\n"
    + OURS
)
# Every patch of the catalog at once (relax-ws-peer-check is pending on every release with trusted_proxies).
ALL_FOUR = '[patches.relax-ws-peer-check]\ntrusted_proxies = ["127.0.0.5/32"]\n' + OURS


def _at_least(version: str, floor: str) -> bool:
    return tuple(map(int, version.split("."))) >= tuple(map(int, floor.split(".")))


@pytest.fixture(params=RELEASES)
def release(request, tmp_path):
    version = request.param
    return version, copy_real(version, tmp_path / "site-packages")


def test_apply_check_behaviour_idempotent_and_revert_byte_exact(release, run: Runner, tmp_path):
    version, root = release
    run.configure(CONFIG)
    web = root / "hermes_cli/web_server.py"
    original = tree_digest(root)
    before = HostCheck(root / "hermes_cli")
    upstream_cors = cors_regex(web)

    code, doc = run.status("--root", str(root))
    assert code == 1
    assert {k: v for k, v in states(doc).items() if k in (TH, CO)} == {TH: "pending", CO: "pending"}
    th = next(p for p in doc["patches"] if p["id"] == TH)
    assert "proxy.example" in th["reason"] and "400 (Invalid Host header)" in th["reason"]
    assert ("refuses its WebSocket upgrades" in th["reason"]) == _at_least(version, WS_GUARD_SINCE)
    assert any("dashboard.public_url" in n for n in th["advice"]) == _at_least(version, PUBLIC_URL_SINCE)
    assert not any("dashboard.public_url" in n for n in th["notes"])  # advice never fails --strict

    first = run("apply", "--root", str(root), check=0)
    assert first.stdout.startswith(f"applied {CO}, {TH}")
    patched = sha(web)
    py_compile.compile(str(web), cfile=str(tmp_path / "out.pyc"), doraise=True)
    assert {k for k, v in tree_digest(root).items() if original[k] != v} == {"hermes_cli/web_server.py"}
    code, doc = run.status("--root", str(root))
    assert {k: v for k, v in states(doc).items() if k in (TH, CO)} == {TH: "applied", CO: "applied"}

    after = HostCheck(root / "hermes_cli")
    for value in ["proxy.example", "proxy.example:443", "PROXY.EXAMPLE", "[fd7a:115c::5]:8443", "n1.tail1234.ts.net"]:
        assert not before.accepted(value, "127.0.0.1") and after.accepted(value, "127.0.0.1"), value
    for value in [
        "evil-proxy.example",
        "proxy.example.evil.test",
        "proxy.example.",
        "proxy.example@evil.test",
        "evil.test@proxy.example",
        "proxy.example:x",
        "tail1234.ts.net",
        "[fd7a:115c::6]",
        "fd7a:115c::5",
    ]:
        for bound in ("127.0.0.1", "localhost", "127.0.0.2", "0.0.0.0"):
            assert after.accepted(value, bound) == before.accepted(value, bound), (value, bound)
        assert not after.accepted(value, "127.0.0.1"), value
    assert after.has_ws_guard == before.has_ws_guard == _at_least(version, WS_GUARD_SINCE)
    if after.has_ws_guard:
        listed = {"Host": "proxy.example", "Origin": "https://proxy.example"}
        assert before.ws_reason(listed) is not None and after.ws_reason(listed) is None
        assert after.ws_reason({"Host": "proxy.example", "Origin": "http://proxy.example@evil.test"}) is not None
        assert after.ws_reason({"Host": "proxy.example.evil.test", "Origin": "https://proxy.example"}) is not None
        assert after.ws_reason({"Host": "localhost", "Origin": "null"}) == before.ws_reason(
            {"Host": "localhost", "Origin": "null"}
        )

    regex = cors_regex(web)
    assert upstream_cors in regex and cors_regex(web, old_starlette=True) == regex
    for origin in ["https://proxy.example", "http://[fd7a::1]:8080", "http://localhost:9119", "https://127.0.0.1"]:
        assert cors_allows(regex, origin), origin
    for origin in [
        "null",
        "https://evil-proxy.example",
        "https://proxy.example.evil.test",
        "http://proxy.example",
        "https://proxy.example:8443",
        "https://proxyXexample",
    ]:
        assert not cors_allows(regex, origin), origin
        assert not cors_allows(upstream_cors, origin)

    second = run("apply", "--root", str(root), check=0)
    assert "nothing to apply" in second.stdout
    assert sha(web) == patched

    run("revert", "--root", str(root), check=0)
    assert tree_digest(root) == original


@pytest.mark.parametrize("version", ["0.13.0", "0.19.0"])
def test_all_four_patches_fast_path_equals_whole_module_and_revert_is_byte_exact(version, run: Runner, tmp_path):
    run.configure(ALL_FOUR)
    fast, slow = copy_real(version, tmp_path / "fast"), copy_real(version, tmp_path / "slow")
    original = tree_digest(fast)
    run("apply", "--root", str(fast), check=0)
    run("apply", "--root", str(slow), env={"HERMES_PATCH_NO_FAST_PATH": "1"}, check=0)
    assert sha(fast / "hermes_cli/web_server.py") == sha(slow / "hermes_cli/web_server.py")
    code, doc = run.status("--root", str(fast))
    found = states(doc)
    assert found.pop("ignore-forwarded-for") == ("applied" if version == "0.13.0" else "not-needed")
    assert found.pop("stable-session-token") == (
        "applied" if version == "0.13.0" else "not-needed"
    )  # 0.16+ read the variable themselves
    assert code == 0 and set(found.values()) == {"applied"}
    run("revert", "--root", str(fast), check=0)
    assert tree_digest(fast) == original
