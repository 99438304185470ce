"""The git clean filter: our blocks out, everything else byte for byte, never a failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import FIXTURES, Runner, copy_fixture
from hermes_patch.integrations.git_clean import clean

WEB = "hermes_cli/web_server.py"


@pytest.mark.parametrize("shape", ["r0_14", "r0_15", "r0_16"])
def test_clean_gives_back_upstream_bytes(tmp_path: Path, run: Runner, shape: str):
    root = copy_fixture(shape, tmp_path / "sp")
    run.configure('[patches.relax-ws-peer-check]\ntrusted_proxies = ["127.0.0.5/32"]\n')
    run("apply", "--root", str(root), check=0)
    patched = (root / WEB).read_bytes()
    assert patched != (FIXTURES / shape / WEB).read_bytes()
    assert clean(patched) == (FIXTURES / shape / WEB).read_bytes()
    proc = run("git-clean-filter", input=patched, check=0)
    assert proc.stdout == (FIXTURES / shape / WEB).read_bytes() and proc.stderr == b""


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"print('no marker')\n",
        b"# hermes-patch: public-action-status (orphan)\n",  # a marker with no statement after it
        b"# hermes-patch: x\nthis is not python(\n",
        b"\xff\xfe# hermes-patch: x\nbad encoding\n",
        b"# hermes-patch: x\nx = 1\x00\n",
    ],
    ids=["empty", "no-marker", "orphan-marker", "syntax-error", "undecodable", "nul-byte"],
)
def test_what_it_cannot_read_passes_through_unchanged(data: bytes, run: Runner):
    assert clean(data) == data
    proc = run("git-clean-filter", input=data)
    assert proc.returncode == 0 and proc.stdout == data


def test_crlf_and_user_edits_are_kept(tmp_path: Path, run: Runner):
    root = copy_fixture("r0_14", tmp_path / "sp")
    web = root / WEB
    web.write_bytes(web.read_bytes().replace(b"\n", b"\r\n"))
    pristine = web.read_bytes()
    run("apply", "--root", str(root), check=0)
    mine = web.read_bytes() + b"# my own line\r\n"
    assert clean(mine) == pristine + b"# my own line\r\n"
