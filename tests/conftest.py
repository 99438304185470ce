"""Shared test helpers: the installed command, fixture copies, real releases.

Tests run the *installed* ``hermes-patch`` (``pip install .`` into the test
venv; ``scripts/test`` does it). Real hermes-agent wheels are downloaded at
test time into ``.cache/`` (gitignored) and never committed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures" / "releases"
CACHE = Path(os.environ.get("HERMES_PATCH_TEST_CACHE", REPO / ".cache"))
RELEASES = [
    "0.13.0",
    "0.14.0",
    "0.15.0",
    "0.15.1",
    "0.15.2",
    "0.16.0",
    "0.17.0",
    "0.18.0",
    "0.18.1",
    "0.18.2",
    "0.19.0",
]


def hermes_patch_exe() -> str:
    """The installed ``hermes-patch`` script of the interpreter running the tests."""
    exe = Path(sys.executable).parent / "hermes-patch"
    if not exe.exists():
        found = shutil.which("hermes-patch")
        if not found:
            pytest.fail("hermes-patch is not installed in this environment; run `pip install .` (scripts/test does it)")
        return found
    return str(exe)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file below ``root``, by relative path."""
    return {
        str(p.relative_to(root)): sha(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


class Runner:
    """Runs the installed command with an isolated state dir and config."""

    def __init__(self, tmp: Path) -> None:
        self.state = tmp / "state"
        self.config = tmp / "config.toml"
        self.config.write_text("")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HERMES_PATCH_")}
        self.env["NO_COLOR"] = "1"
        self.env["COLUMNS"] = "200"

    def configure(self, text: str) -> None:
        self.config.write_text(text)

    @property
    def exe(self) -> str:
        return hermes_patch_exe()

    @property
    def common(self) -> list[str]:
        """The isolating options every target command gets."""
        return ["--state-dir", str(self.state), "--config", str(self.config)]

    def __call__(
        self, *args: str, env: dict[str, str] | None = None, check: int | None = None, input: str | None = None
    ) -> subprocess.CompletedProcess:
        cmd = [hermes_patch_exe(), *args]
        takes_target = args and args[0] not in ("list", "--help", "--version", "git-clean-filter", "hook")
        if args[:1] == ("hook",) and args[1:2] in (("install",), ("uninstall",), ("show",)):
            takes_target = True
        if takes_target:
            cut = 1 + args.index("--") if "--" in args else len(cmd)  # before `--`: the rest goes to hermes
            cmd[cut:cut] = self.common
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env={**self.env, **(env or {})}, timeout=300, input=input
        )
        if check is not None:
            assert proc.returncode == check, (
                f"exit {proc.returncode} != {check}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    def status(self, *target: str, env: dict[str, str] | None = None) -> tuple[int, dict]:
        proc = self("status", "--json", *target, env=env)
        assert proc.stdout, proc.stderr
        return proc.returncode, json.loads(proc.stdout)


TALLY: list[dict[str, str]] = []


def tally(subject: str, expected: str, observed: str) -> None:
    """Record one row of the safety tally (docs/safety-tally.md) (input or fault, expected, observed).

    Call it with ``observed`` computed from the real outcome *before* asserting,
    so a failing test still records what happened. ``scripts/tally`` collects
    the rows (``HERMES_PATCH_TALLY=<file>``) and prints the Markdown table.
    """
    TALLY.append({"subject": subject, "expected": expected, "observed": observed})


def pytest_sessionfinish(session, exitstatus) -> None:
    out = os.environ.get("HERMES_PATCH_TALLY")
    if out and TALLY:
        Path(out).write_text(json.dumps(TALLY, indent=1, ensure_ascii=False) + "\n")


def states(doc: dict) -> dict[str, str]:
    return {p["id"]: p["state"] for p in doc["patches"]}


@pytest.fixture
def run(tmp_path: Path) -> Runner:
    return Runner(tmp_path)


def copy_fixture(name: str, dest: Path) -> Path:
    """Copy fixture release ``name`` to ``dest``; return the root holding hermes_cli/."""
    shutil.copytree(FIXTURES / name, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


@pytest.fixture
def fixture_root(tmp_path: Path):
    def make(name: str) -> Path:
        return copy_fixture(name, tmp_path / name)

    return make


# -- real releases ------------------------------------------------------------------


def wheel(version: str) -> Path:
    """The hermes-agent ``version`` wheel in ``CACHE/wheels`` (downloaded once from the package registry)."""
    wheels = CACHE / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    pattern = f"hermes_agent-{version}-*.whl"
    if not list(wheels.glob(pattern)):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                f"hermes-agent=={version}",
                "-d",
                str(wheels),
            ],
            check=True,
            timeout=600,
        )
    return next(wheels.glob(pattern))


def real_release(version: str) -> Path:
    """A pristine ``pip install --no-deps --target`` of hermes-agent ``version`` (cached).

    Returns the target directory (it holds ``hermes_cli/`` and the dist-info).
    """
    target = CACHE / "real" / version
    done = target / ".complete"
    if done.exists():
        return target
    whl = wheel(version)
    if target.exists():
        shutil.rmtree(target)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-compile",
            "--target",
            str(target),
            str(whl),
        ],
        check=True,
        timeout=600,
    )
    done.write_text(whl.name)
    return target


def copy_real(version: str, dest: Path) -> Path:
    """Copy the parts of a real install that hermes-patch reads (Python files, dist-info) to ``dest``."""
    src = real_release(version)
    dest.mkdir(parents=True)
    shutil.copytree(
        src / "hermes_cli",
        dest / "hermes_cli",
        ignore=lambda d, names: [
            n for n in names if not (n.endswith(".py") or (Path(d) / n).is_dir()) or n == "__pycache__"
        ],
    )
    for dist in src.glob("hermes_agent-*.dist-info"):
        shutil.copytree(dist, dest / dist.name)
    return dest


# The catalog's patches that are not-needed on our miniatures (fixtures/releases) with the default
# configuration: two need configuration; the miniatures keep no action handles (_ACTION_PROCS) and a
# constant _SESSION_TOKEN. On the real releases see update_button_states().
UNCONFIGURED = {
    "trusted-hosts": "not-needed",
    "cors-origins": "not-needed",
    "durable-action-result": "not-needed",
    "stable-session-token": "not-needed",
}


def update_button_states(version: str, applied: bool = False) -> dict[str, str]:
    """States of durable-action-result and stable-session-token on a real release (before or after apply)."""
    done = "applied" if applied else "pending"
    own_token_var = tuple(int(p) for p in version.split(".")[:2]) >= (0, 16)
    return {"durable-action-result": done, "stable-session-token": "not-needed" if own_token_var else done}


# ignore-forwarded-for is pending on the 0.13/0.14 shapes (fixture r0_14) and not-needed from 0.15 (upstream's rule).
FORWARDED_OLD, FORWARDED_NEW = {"ignore-forwarded-for": "pending"}, {"ignore-forwarded-for": "not-needed"}


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(items) -> None:
    """``real`` and ``live`` tests are slow by nature (downloads, venvs, servers): mark them ``slow`` too.

    So ``-m "not live and not slow"`` (docs/testing.md's inner loop) skips them.
    """
    for item in items:
        if item.get_closest_marker("real") or item.get_closest_marker("live"):
            item.add_marker(pytest.mark.slow)
