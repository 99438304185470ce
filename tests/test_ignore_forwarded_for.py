"""ignore-forwarded-for on our miniatures: states per shape, the exact edit, drift, unknown shapes, behaviour.

In-process (the engine and App). The real releases' states are in
test_real_releases.py; the live effect (a browser behind a same-host nginx
on real 0.14.0) in tests/live/test_topology_matrix.py.
"""

from __future__ import annotations

import ast
import types

import pytest

from hermes_patch.app import App

from conftest import copy_fixture, tree_digest

IFF = "ignore-forwarded-for"
ONLY_OURS = "[patches.public-action-status]\nenabled = false\n[patches.relax-ws-peer-check]\nenabled = false\n"
RULE = 'proxy_headers=bool(getattr(app.state, "auth_required", False))'


def make_app(tmp_path, root, config: str = ONLY_OURS) -> App:
    cfg = tmp_path / "config.toml"
    cfg.write_text(config)
    return App(root=root, config_path=cfg, state_dir=tmp_path / "state")


def report(app: App):
    return {r.id: r for r in app.status().reports}[IFF]


def test_the_0_14_shape_is_pending_and_the_edit_returns_upstreams_call_with_the_rule(tmp_path):
    root = copy_fixture("r0_14", tmp_path / "t")
    web = root / "hermes_cli/web_server.py"
    original, digest = web.read_text(), tree_digest(root)
    found = report(make_app(tmp_path, root))
    assert found.state == "pending" and "X-Forwarded-For replaces the WebSocket peer" in found.reason
    make_app(tmp_path, root).apply()
    text = web.read_text()
    added = [line for line in text.splitlines() if line not in original.splitlines()]
    assert added == [
        "    # hermes-patch: ignore-forwarded-for (0.15's proxy_headers rule: uvicorn keeps the TCP peer outside the gated mode)",
        f'    return uvicorn.run(app, host=host, port=port, log_level="warning", {RULE})',
    ]
    assert text.index(added[1]) < text.index('    uvicorn.run(app, host=host, port=port, log_level="warning")\n')
    assert report(make_app(tmp_path, root)).state == "applied"
    make_app(tmp_path, root).revert()
    assert tree_digest(root) == digest


@pytest.mark.parametrize("shape", ["r0_15", "r0_16", "r0_20_moved"])
def test_releases_with_upstreams_rule_are_not_needed(tmp_path, shape):
    root = copy_fixture(shape, tmp_path / "t")
    found = report(make_app(tmp_path, root))
    assert found.state == "not-needed"
    assert "already passes proxy_headers" in found.reason and "0.15.0+" in found.reason


def test_a_multi_line_call_keeps_its_continuation_lines(tmp_path):
    root = copy_fixture("r0_14", tmp_path / "t")
    web = root / "hermes_cli/web_server.py"
    web.write_text(
        web.read_text().replace(
            '    uvicorn.run(app, host=host, port=port, log_level="warning")\n',
            '    uvicorn.run(\n        app,\n        host=host,\n        port=port,\n        log_level="warning",\n    )\n',
        )
    )
    digest = tree_digest(root)
    make_app(tmp_path, root).apply()
    text = web.read_text()
    assert (
        f'    return uvicorn.run(\n        app,\n        host=host,\n        port=port,\n        log_level="warning", {RULE})\n'
        in text
    )
    compile(text, "web_server.py", "exec")
    assert report(make_app(tmp_path, root)).state == "applied"
    make_app(tmp_path, root).revert()
    assert tree_digest(root) == digest


def test_an_edited_block_or_a_changed_call_is_drift(tmp_path):
    root = copy_fixture("r0_14", tmp_path / "t")
    web = root / "hermes_cli/web_server.py"
    make_app(tmp_path, root).apply()
    patched = web.read_text()
    web.write_text(patched.replace("False)))\n", "True)))\n", 1))
    assert report(make_app(tmp_path, root)).state == "drifted"
    web.write_text(
        patched.replace(
            '    uvicorn.run(app, host=host, port=port, log_level="warning")\n',
            '    uvicorn.run(app, host=host, port=port, log_level="info")\n',
        )
    )
    found = report(make_app(tmp_path, root))
    assert found.state == "drifted" and "our copy of upstream's call" in found.reason
    assert (
        "differs from what hermes-patch writes there now" in found.reason
        and "the code it is made from changed" in found.reason
    )


@pytest.mark.parametrize(
    "old, new, why",
    [
        (
            '    uvicorn.run(app, host=host, port=port, log_level="warning")\n',
            '    uvicorn.run(app, host=host, port=port, log_level="warning")\n    print("bye")\n',
            "does not end with its only uvicorn.run",
        ),
        ("    import uvicorn\n\n", "\n", "does not `import uvicorn` itself"),
        ('log_level="warning")\n', 'log_level="warning", **extra)\n', "passes *args or **kwargs"),
        ("def start_server(", "def start_dashboard(", "looked for def start_server()"),
    ],
    ids=["code-after-the-call", "module-level-import", "double-star", "renamed"],
)
def test_shapes_we_do_not_know_are_unknown(tmp_path, old, new, why):
    root = copy_fixture("r0_14", tmp_path / "t")
    web = root / "hermes_cli/web_server.py"
    text = web.read_text()
    assert old in text
    web.write_text(text.replace(old, new, 1))
    found = report(make_app(tmp_path, root))
    assert found.state == "unknown-shape" and why in found.reason, found.reason


@pytest.mark.parametrize(
    "auth_required, expected", [(None, False), (False, False), (True, True)], ids=["0.14-no-gate", "loopback", "gated"]
)
def test_the_patched_start_server_passes_the_015_rule(tmp_path, auth_required, expected):
    """Run the patched start_server() with a recording stand-in for uvicorn: proxy headers only in the gated mode."""
    root = copy_fixture("r0_14", tmp_path / "t")
    make_app(tmp_path, root).apply()
    tree = ast.parse((root / "hermes_cli/web_server.py").read_text())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "start_server")
    calls = []
    fake = types.ModuleType("uvicorn")
    fake.run = lambda app, **kwargs: calls.append(kwargs)  # type: ignore[attr-defined]
    state = types.SimpleNamespace() if auth_required is None else types.SimpleNamespace(auth_required=auth_required)
    namespace = {"app": types.SimpleNamespace(state=state)}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), "web_server.py", "exec"), namespace)
    import sys

    saved = sys.modules.get("uvicorn")
    sys.modules["uvicorn"] = fake
    try:
        namespace["start_server"](host="127.0.0.1", port=9119)
    finally:
        if saved is None:
            sys.modules.pop("uvicorn", None)
        else:
            sys.modules["uvicorn"] = saved
    assert calls == [{"host": "127.0.0.1", "port": 9119, "log_level": "warning", "proxy_headers": expected}]
