"""User patches without forking: a folder named in the configuration, and the `hermes_patch.patches` entry point group.

The example patch (tests/plugins/hermes_patch_example/forwarded_prefix.py) is
the one docs/writing-a-patch.md shows, verbatim; tests/live/test_live_subpath.py
shows it working behind a prefix-stripping nginx on the real 0.19.0. The entry point comes from a real dist-info
(tests/plugins/hermes_patch_example-0.1.0.dist-info) found on ``sys.path``
by ``importlib.metadata``, exactly as for a pip-installed package.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import FORWARDED_OLD, UNCONFIGURED, REPO, Runner, copy_fixture, states, tree_digest

PLUGINS = REPO / "tests" / "plugins"
EXAMPLE = PLUGINS / "hermes_patch_example" / "forwarded_prefix.py"
ENTRY_POINT = {"PYTHONPATH": str(PLUGINS)}
# The entry point is found on sys.path, which PYTHONPATH sets when an interpreter starts: those runs are processes.
BY_ENTRY_POINT = pytest.mark.process
PAS, WS, RP = "public-action-status", "relax-ws-peer-check", "forwarded-prefix"


def test_the_docs_show_the_example_verbatim():
    doc = (REPO / "docs" / "writing-a-patch.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    assert EXAMPLE.read_text() in blocks


def _list_sources(run: Runner, env: dict | None = None) -> dict[str, str]:
    lines = run("list", "--config", str(run.config), env=env, check=0).stdout.splitlines()
    return {line.split()[0]: line[line.rindex("  (") + 3 : -1] for line in lines}


@pytest.mark.parametrize(
    "source", ["patch_dirs", pytest.param("entry-point", marks=[BY_ENTRY_POINT, pytest.mark.slow])]
)
def test_a_user_patch_is_listed_applied_and_reverted(tmp_path: Path, run: Runner, source: str):
    env = ENTRY_POINT if source == "entry-point" else None
    folder = f'patch_dirs = ["{EXAMPLE.parent}"]\n' if source == "patch_dirs" else ""
    run.configure(folder)
    expected = (
        f"patch_dirs {EXAMPLE.parent}"
        if source == "patch_dirs"
        else "entry point hermes_patch_example.forwarded_prefix:ForwardedPrefix from hermes-patch-example 0.1.0"
    )
    assert _list_sources(run, env) == {
        **{k: "builtin" for k in UNCONFIGURED},
        "ignore-forwarded-for": "builtin",
        PAS: "builtin",
        WS: "builtin",
        RP: expected,
    }

    root = copy_fixture("r0_14", tmp_path / "sp")
    original = tree_digest(root)
    code, doc = run.status("--root", str(root), env=env)
    assert states(doc)[RP] == "not-needed"  # nothing configured: the patch has nothing to do

    run.configure(folder + '[patches.forwarded-prefix]\nprefix = "/hermes"\n')
    code, doc = run.status("--root", str(root), env=env)
    assert states(doc) == {**UNCONFIGURED, **FORWARDED_OLD, PAS: "pending", WS: "pending", RP: "pending"}
    run("apply", RP, "--root", str(root), env=env, check=0)
    lines = (root / "hermes_cli" / "web_server.py").read_text().splitlines()
    at = lines.index("app = FastAPI()")
    assert lines[at + 1 : at + 4] == [
        "# hermes-patch: forwarded-prefix (served under /hermes)",
        '@app.middleware("http")',
        "async def _hermes_patch_forwarded_prefix(request, call_next):",
    ]
    code, doc = run.status("--root", str(root), env=env)
    assert states(doc) == {**UNCONFIGURED, **FORWARDED_OLD, PAS: "pending", WS: "pending", RP: "applied"}
    run("apply", "--root", str(root), env=env, check=0)
    assert set(states(run.status("--root", str(root), env=env)[1]).values()) == {"applied", "not-needed"}
    run("revert", "--root", str(root), env=env, check=0)
    assert tree_digest(root) == original


def test_a_user_patch_parameter_is_validated(tmp_path: Path, run: Runner):
    run.configure(f'patch_dirs = ["{EXAMPLE.parent}"]\n[patches.forwarded-prefix]\nprefix = "hermes/"\n')
    root = copy_fixture("r0_14", tmp_path / "sp")
    proc = run("status", "--root", str(root), check=2)
    assert (
        proc.stderr.startswith("error: ")
        and '[patches.forwarded-prefix] prefix: must be a path prefix like "/hermes"' in proc.stderr
    )


@BY_ENTRY_POINT
def test_two_sources_with_one_id_are_refused(tmp_path: Path, run: Runner):
    run.configure(f'patch_dirs = ["{EXAMPLE.parent}"]\n')
    proc = run("list", "--config", str(run.config), env=ENTRY_POINT, check=2)
    assert "two patches share the id 'forwarded-prefix'" in proc.stderr


def test_a_missing_patch_dir_is_refused(tmp_path: Path, run: Runner):
    run.configure(f'patch_dirs = ["{tmp_path / "nope"}"]\n')
    proc = run("list", "--config", str(run.config), check=2)
    assert "does not exist" in proc.stderr and "patch_dirs" in proc.stderr


BROKEN = """
from hermes_patch.core.edits import After, Change, Edit, Unrecognized
from hermes_patch.core.patch import Patch


class Broken(Patch[str]):
    ID = "broken"
    DESCRIPTION = "A user patch whose locate raises."
    VERSIONS = ">=0.13.0"
    UPSTREAM = "none: a test"

    def locate(self, ws):
        return [][0]

    def edits(self, found):
        return Change((Edit(After("app"), "x = 1"),), pending="p", applied="a")
"""


@pytest.mark.parametrize("command", ["status", "diff", "apply", "revert"])
def test_a_user_patch_that_raises_is_named_and_exits_2(tmp_path: Path, run: Runner, command: str):
    """helper-22: a bug in a user patch is exit 2 naming its file and line, never a traceback's exit 1 (= pending)."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "broken.py").write_text(BROKEN)
    run.configure(f'patch_dirs = ["{folder}"]\n')
    root = copy_fixture("r0_16", tmp_path / "t")
    before = tree_digest(root)
    proc = run(command, "--root", str(root), check=2)
    assert proc.stderr.startswith(
        f"error: the patch module {folder / 'broken.py'} raised IndexError: list index out of range (line "
    )
    assert "in locate)" in proc.stderr and "Traceback" not in proc.stderr
    assert tree_digest(root) == before


def test_a_patch_module_that_exits_at_import_is_refused(tmp_path: Path, run: Runner):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "quits.py").write_text("import sys\nsys.exit(0)\n")
    run.configure(f'patch_dirs = ["{folder}"]\n')
    proc = run("status", "--root", str(copy_fixture("r0_16", tmp_path / "t")), check=2)
    assert f"the patch module {folder / 'quits.py'} failed to import: SystemExit: 0" in proc.stderr


@pytest.mark.parametrize("where", ["locate", "edits"])
def test_a_user_patch_that_calls_sys_exit_does_not_decide_the_exit_code(tmp_path: Path, run: Runner, where: str):
    """helper-23: sys.exit(0) in locate() made `status` print nothing and exit 0."""
    folder = tmp_path / "mine"
    folder.mkdir()
    body = BROKEN.replace("return [][0]", "import sys; sys.exit(0)" if where == "locate" else "return 'x'")
    if where == "edits":
        body = body.replace(
            'return Change((Edit(After("app"), "x = 1"),), pending="p", applied="a")', "raise SystemExit(0)"
        )
    (folder / "broken.py").write_text(body)
    run.configure(f'patch_dirs = ["{folder}"]\n')
    proc = run("status", "--root", str(copy_fixture("r0_16", tmp_path / "t")), check=2)
    assert f"the patch module {folder / 'broken.py'} raised SystemExit: 0" in proc.stderr
    assert f"in {where})" in proc.stderr


def test_a_usage_error_is_clicks_own_message():
    """helper-23: a mistyped option was reported as an internal error with a traceback."""
    from click.testing import CliRunner

    from hermes_patch.cli import cli

    result = CliRunner().invoke(cli, ["list", "--bogus"])
    assert (
        result.exit_code == 2
        and "Error: No such option '--bogus'" in result.output
        and "Traceback" not in result.output
    )
