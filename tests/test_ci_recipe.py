"""The README's CI recipe (`status --strict --json`), run verbatim on every real release with `hosts` set.

Advice (the dashboard.public_url route of 0.16+, no proxy setting yet) must
never fail --strict; warnings (a suffix in hosts, a sensitive action made
public) must. The recipe is read from the README, so the test breaks if the
README's command changes shape.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from conftest import RELEASES, REPO, Runner, copy_real, hermes_patch_exe


def readme_recipe() -> str:
    """The README's shell block that runs `hermes-patch status --strict`."""
    blocks = re.findall(r"```sh\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    found = [b for b in blocks if "hermes-patch status --strict" in b]
    assert len(found) == 1, "the README has exactly one CI recipe (a sh block running `hermes-patch status --strict`)"
    return found[0]


def run_recipe(recipe: str, root: Path, run: Runner, cwd: Path) -> tuple[int, dict, str]:
    script = re.sub(r"--python \S+", f"--root {root}", recipe).replace("hermes-patch ", f"{hermes_patch_exe()} ", 1)
    env = {**run.env, "HERMES_PATCH_CONFIG": str(run.config), "HERMES_PATCH_STATE_DIR": str(run.state)}
    proc = subprocess.run(["sh", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    evidence = next(cwd.glob("*.json"))
    return proc.returncode, json.loads(evidence.read_text()), proc.stderr


@pytest.mark.real
@pytest.mark.slow
@pytest.mark.parametrize("version", RELEASES)
def test_the_ci_recipe_passes_with_hosts_set(tmp_path: Path, run: Runner, version: str):
    recipe = readme_recipe()
    root = copy_real(version, tmp_path / "site-packages")
    run.configure('[patches.trusted-hosts]\nhosts = ["hermes.example.com"]\n')
    ci = tmp_path / "ci"
    ci.mkdir()
    code, doc, err = run_recipe(recipe, root, run, ci)
    assert (
        code == 1 and doc["exit_code"] == 1 and "hermes-patch status exited 1" in err
    )  # pending: the recipe fails, as it should

    run("apply", "--root", str(root), check=0)
    code, doc, err = run_recipe(recipe, root, run, ci)
    assert code == 0, (doc, err)
    assert doc["notes"] == [] and all(p["notes"] == [] for p in doc["patches"])
    public_url = any("dashboard.public_url" in a for p in doc["patches"] for a in p["advice"])
    assert public_url == (tuple(int(x) for x in version.split(".")) >= (0, 16, 0))  # advice is there, and does not fail

    run.configure('[patches.trusted-hosts]\nhosts = [".example.com"]\n')  # a suffix: a warning the operator must act on
    run("apply", "--root", str(root), check=0)
    code, doc, err = run_recipe(recipe, root, run, ci)
    assert code == 1 and any(".example.com" in n for p in doc["patches"] for n in p["notes"])
