"""A miniature of `hermes update`: the steps that touch a git checkout or a pip install.

Mirrors REAL_TARGETS.md ("How people install it, and what `hermes update`
does"), checked against 0.19.0's ``_cmd_update_impl``,
``_stash_local_changes_if_needed`` and ``_restore_stashed_changes``:

* git install: ``git status --porcelain``; when it prints anything,
  ``git stash push --include-untracked``; ``git pull --ff-only``; then,
  interactively, ``git stash apply`` (and ``git stash drop`` when it
  applied cleanly) or, on a conflict, ``git reset --hard HEAD`` leaving the
  stash; a non-interactive run leaves the stash parked.
* pip install: ``python -m pip install --upgrade hermes-agent`` (here pinned,
  offline from the wheel cache, without dependencies).

Also usable as a fake ``hermes`` launcher (``launcher_main``), configured by
a JSON file next to the launcher, so ``hermes-patch update`` can run it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def git(checkout: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(checkout), *args], capture_output=True, text=True, check=check)


def git_update(checkout: Path, interactive: bool, branch: str = "main") -> dict:
    """Run `hermes update`'s git steps on ``checkout``; return what happened (stash ref, conflict, restored)."""
    log = {"stash": None, "conflict": False, "restored": False}
    if git(checkout, "status", "--porcelain").stdout.strip():
        git(checkout, "stash", "push", "--include-untracked", "-m", "hermes-update-autostash-test")
        log["stash"] = git(checkout, "rev-parse", "--verify", "refs/stash").stdout.strip()
    git(checkout, "pull", "--ff-only", "origin", branch)
    if log["stash"] and interactive:
        restore = git(checkout, "stash", "apply", log["stash"], check=False)
        unmerged = git(checkout, "diff", "--name-only", "--diff-filter=U").stdout.strip()
        if restore.returncode != 0 or unmerged:
            git(checkout, "reset", "--hard", "HEAD")
            log["conflict"] = True
        else:
            entries = [line.split() for line in git(checkout, "stash", "list", "--format=%gd %H").stdout.splitlines()]
            git(checkout, "stash", "drop", next(sel for sel, sha in entries if sha == log["stash"]))
            log["restored"] = True
    return log


def pip_update(python: Path, version: str, find_links: Path) -> None:
    """`hermes update` on a pip install: upgrade hermes-agent in place with pip (offline, no dependencies)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--upgrade",
            "--no-deps",
            "--no-compile",
            "--no-index",
            "--find-links",
            str(find_links),
            f"hermes-agent=={version}",
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )


def write_launcher(path: Path, python: Path, settings: dict) -> Path:
    """Write a fake ``hermes`` launcher at ``path`` whose shebang is ``python`` (how locate finds the env)."""
    settings = {"pip_python": sys.executable, **settings}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(settings))
    path.write_text(
        f"#!{python}\n"
        f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from hermes_update import launcher_main\n"
        "sys.exit(launcher_main(__file__))\n"
    )
    path.chmod(0o755)
    return path


def launcher_main(launcher: str) -> int:
    """Body of the fake launcher: record argv, do the configured update, exit with the configured code."""
    settings = json.loads(Path(launcher).with_suffix(".json").read_text())
    seen = {"argv": sys.argv[1:]}
    if "watch" in settings:  # the bytes `hermes update` found (hermes-patch update reverts first)
        seen["watched"] = Path(settings["watch"]).read_bytes().decode("utf-8")
    with open(settings["argv_log"], "a") as fh:
        fh.write(json.dumps(seen) + "\n")
    if sys.argv[1:2] != ["update"]:
        return 2
    mode = settings["mode"]
    if mode == "git":
        git_update(Path(settings["checkout"]), settings.get("interactive", False))
    elif mode == "pip":
        subprocess.run(
            [
                settings["pip_python"],
                "-m",
                "pip",
                "--python",
                sys.executable,
                "install",
                "--quiet",
                "--upgrade",
                "--no-deps",
                "--no-compile",
                "--no-index",
                "--find-links",
                settings["find_links"],
                f"hermes-agent=={settings['version']}",
            ],
            check=True,
        )
    elif mode == "write":  # replace a file, as a broken or unknown release would
        Path(settings["file"]).write_bytes(Path(settings["source"]).read_bytes())
    return int(settings.get("exit", 0))
