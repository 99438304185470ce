"""The bytes every patch writes stay the same across a redesign of the engine.

``tests/data/written-bytes.json`` holds, for each real release (0.13.0-0.19.0)
and each miniature in ``fixtures/releases``, under a few configurations, the
sha256 of every file ``apply`` writes (or the kind of refusal). It was
recorded by the code before issue 10's redesign (edits as data) with
``python tests/test_written_bytes.py --record`` and names that commit; this
test recomputes every entry with the installed hermes-patch and compares.
Re-record only when a change of written bytes is intended, and say why in
the commit.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import FIXTURES, RELEASES, copy_real  # noqa: E402

from hermes_patch.app import App  # noqa: E402
from hermes_patch.core.errors import HermesPatchError  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "written-bytes.json"

HOSTS = (
    '[patches.trusted-hosts]\nhosts = ["proxy.example", "fd7a:115c::5", ".tail1234.ts.net"]\n'
    '[patches.cors-origins]\norigins = ["https://proxy.example", "http://[fd7a::1]:8080"]\n'
)
# Configurations applied on every target; "then" applies a second one over the first (a re-apply with new parameters).
CONFIGS = {
    "defaults": [""],
    "all-parameters": ['[patches.relax-ws-peer-check]\ntrusted_proxies = ["127.0.0.5/32", "10.1.0.0/16"]\n' + HOSTS],
    "defaults-then-all": ["", '[patches.relax-ws-peer-check]\ntrusted_proxies = ["127.0.0.5/32"]\n' + HOSTS],
    "all-then-fewer": [
        '[patches.relax-ws-peer-check]\ntrusted_proxies = ["127.0.0.5/32"]\n' + HOSTS,
        '[patches.relax-ws-peer-check]\ntrusted_proxies = []\n[patches.trusted-hosts]\nhosts = ["proxy.example"]\n',
    ],
    "allow-version": ["allow_version = true\n"],
}
MINIATURES = sorted(p.name for p in FIXTURES.iterdir() if (p / "hermes_cli").is_dir())


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.py"))
        if "__pycache__" not in p.parts
    }


def written(target: str, config: str) -> list[dict[str, str]]:
    """Apply each configuration of ``CONFIGS[config]`` in turn on a fresh copy of ``target``.

    Returns, per step, the sha256 of every file that differs from the
    pristine copy, or ``{"refused": <error class>}``.
    """
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if target in MINIATURES:
            root = Path(shutil.copytree(FIXTURES / target, work / "t"))
        else:
            root = copy_real(target, work / "t")
        pristine = _tree(root)
        out = []
        for step, text in enumerate(CONFIGS[config]):
            cfg = work / f"config{step}.toml"
            cfg.write_text(text)
            try:
                App(root=root, config_path=cfg, state_dir=work / "state").apply()
            except HermesPatchError as exc:
                out.append({"refused": type(exc).__name__})
                continue
            now = _tree(root)
            out.append({name: sha for name, sha in now.items() if pristine.get(name) != sha})
        return out


CASES = [(t, c) for t in RELEASES + MINIATURES for c in CONFIGS]


@pytest.mark.slow
@pytest.mark.parametrize("target, config", CASES, ids=[f"{t}-{c}" for t, c in CASES])
def test_written_bytes_are_unchanged(target, config):
    recorded = json.loads(DATA.read_text())["cases"]
    assert written(target, config) == recorded[f"{target} {config}"]


def _record() -> None:
    import subprocess

    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    cases = {f"{t} {c}": written(t, c) for t, c in CASES}
    DATA.parent.mkdir(exist_ok=True)
    DATA.write_text(json.dumps({"recorded_at": commit, "cases": cases}, indent=1, sort_keys=True) + "\n")
    print(f"recorded {len(cases)} cases at {commit}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--record"]:
        _record()
