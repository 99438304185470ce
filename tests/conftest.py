"""Shared test helpers: the command runner, fixture copies, real releases.

Tests run the *installed* ``hermes-patch`` (``pip install .`` into the test
venv; ``scripts/test`` does it): in-process through click's ``CliRunner``
(:class:`Runner`, the ``run`` fixture), or as its own process where the
process boundary is what a test studies (``@pytest.mark.process``,
``Runner(..., process=True)``). Real hermes-agent wheels are downloaded at
test time into ``.cache/`` (gitignored) and never committed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import locale
import os
import shutil
import subprocess
import sys
import traceback
import warnings
from pathlib import Path

import click.formatting
import pytest
from click.testing import CliRunner

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


#: ``HERMES_PATCH_TEST_PROCESSES=1`` runs every command as its own process, as before issue 10: the same tests
#: passing both ways shows the in-process runner hides nothing (and gives the before/after timing).
ALL_PROCESSES = os.environ.get("HERMES_PATCH_TEST_PROCESSES") == "1"


class Runner:
    """Runs ``hermes-patch`` with an isolated state dir and config, in-process or as its own process.

    In-process (the ``run`` fixture's default) it calls the click group through
    :class:`click.testing.CliRunner` with the environment, ``argv`` and
    streams the installed command would get, so a command costs what its
    work costs (about 0.05 s on a miniature) rather than an interpreter
    start and the imports (0.3-1 s). ``process=True`` runs the installed
    script instead: for tests where the process boundary is what is studied
    (kill points and faults, concurrency and locks, a second user, what git
    and systemd run). Both return a :class:`subprocess.CompletedProcess`.
    """

    def __init__(self, tmp: Path, process: bool = False) -> None:
        self.state = tmp / "state"
        self.config = tmp / "config.toml"
        self.config.write_text("")
        self.process = process
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

    def argv(self, *args: str) -> list[str]:
        """The arguments after ``hermes-patch``, with :attr:`common` where the command takes a target."""
        argv = list(args)
        takes_target = args and args[0] not in ("list", "--help", "--version", "git-clean-filter", "hook")
        if args[:1] == ("hook",) and args[1:2] in (("install",), ("uninstall",), ("show",)):
            takes_target = True
        if takes_target:
            cut = args.index("--") if "--" in args else len(argv)  # before `--`: the rest goes to hermes
            argv[cut:cut] = self.common
        return argv

    def __call__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        check: int | None = None,
        input: str | bytes | None = None,
        process: bool | None = None,
    ) -> subprocess.CompletedProcess:
        """Run ``hermes-patch *args`` with :attr:`common` added where the command takes a target."""
        return self.raw(*self.argv(*args), env=env, check=check, input=input, process=process)

    def raw(
        self,
        *argv: str,
        env: dict[str, str] | None = None,
        check: int | None = None,
        input: str | bytes | None = None,
        process: bool | None = None,
    ) -> subprocess.CompletedProcess:
        """Run ``hermes-patch *argv`` as given; ``process`` overrides :attr:`process` for this call (a call that is killed)."""
        full_env = {**self.env, **(env or {})}
        if (self.process if process is None else process) or ALL_PROCESSES:
            proc = subprocess.run(
                [hermes_patch_exe(), *argv],
                capture_output=True,
                text=not isinstance(input, bytes),
                env=full_env,
                timeout=300,
                input=input,
            )
        else:
            proc = invoke(list(argv), full_env, input)
        if check is not None:
            assert proc.returncode == check, (
                f"exit {proc.returncode} != {check}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    def status(self, *target: str, env: dict[str, str] | None = None) -> tuple[int, dict]:
        proc = self("status", "--json", *target, env=env)
        assert proc.stdout, proc.stderr
        return proc.returncode, json.loads(proc.stdout)


def invoke(argv: list[str], env: dict[str, str], input: str | bytes | None = None) -> subprocess.CompletedProcess:
    """Run ``hermes-patch *argv`` in this interpreter, as the installed script would run in a process.

    What a process would start fresh is set for the call and put back after
    it: ``os.environ`` is exactly ``env``, ``sys.argv`` is the script's, the
    working directory and umask are restored, stdin/stdout/stderr are pipes
    (not terminals), click's help width comes from ``COLUMNS``; module state
    that outlives a call (the patch modules loaded from patch_dirs, the
    identities of the files read, fault counters) is dropped. Output is decoded as ``subprocess.run(text=True)``
    does (universal newlines); bytes ``input`` gives bytes output. An
    exception that escapes the command is a traceback on stderr and exit 1,
    as in a process.
    """
    from hermes_patch import fileio
    from hermes_patch.cli import cli

    fault = env.get("HERMES_PATCH_FAULT", "")
    if fault and not fault.endswith(":enospc"):  # fileio's fault points kill or stop the process they run in
        pytest.fail(f"HERMES_PATCH_FAULT={fault} would kill pytest: run that call with process=True")
    for name in {*env, *os.environ}:
        if name.startswith("PYTHON") and env.get(name) != os.environ.get(name):
            pytest.fail(f"{name} is read when an interpreter starts: mark the test @pytest.mark.process")

    def forget() -> None:
        """Drop the module state a new process would not have."""
        for name in [n for n in sys.modules if n.startswith("hermes_patch._user")]:
            del sys.modules[name]  # patch_dirs modules: a process imports them afresh
        fileio._READ.clear()
        fileio._fault_counts.clear()

    overrides: dict[str, str | None] = {k: None for k in os.environ if k not in env}
    overrides.update(env)
    argv0, cwd, umask = sys.argv, os.getcwd(), os.umask(0o022)
    os.umask(umask)
    sys.argv = [hermes_patch_exe(), *argv]
    forget()
    try:
        result = _AsAProcess().invoke(cli, argv, input=input, env=overrides, prog_name="hermes-patch")
    finally:
        sys.argv = argv0
        os.chdir(cwd)  # what a process changes ends with it
        os.umask(umask)
        forget()
    stdout, stderr = result.stdout_bytes, result.stderr_bytes
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        trace = "".join(traceback.format_exception(result.exception)).encode()
        stderr += trace
    code = result.exit_code
    if isinstance(input, bytes):
        return subprocess.CompletedProcess([hermes_patch_exe(), *argv], code, stdout, stderr)
    return subprocess.CompletedProcess([hermes_patch_exe(), *argv], code, _text(stdout), _text(stderr))


class _AsAProcess(CliRunner):
    """click's CliRunner, with what its isolation leaves out: the help width and the warnings of a process."""

    @contextlib.contextmanager
    def isolation(self, *args, **kwargs):
        with super().isolation(*args, **kwargs) as streams, warnings.catch_warnings():
            click.formatting.FORCED_WIDTH = None  # as a process: the width comes from COLUMNS (restored after)
            _process_warnings()
            yield streams


def _process_warnings() -> None:
    """Warnings as a new interpreter shows them: Python's default filters, printed on (the captured) stderr.

    Under pytest a warning is collected by pytest; a process prints it on
    stderr, where the tests that want an empty stderr see it.
    """
    warnings.resetwarnings()
    for category in (ResourceWarning, ImportWarning, PendingDeprecationWarning, DeprecationWarning):
        warnings.simplefilter("ignore", category)
    warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    warnings.showwarning = show


def _text(data: bytes) -> str:
    """What ``subprocess.run(text=True)`` makes of ``data``: decoded, universal newlines."""
    return data.decode(locale.getpreferredencoding(False)).replace("\r\n", "\n").replace("\r", "\n")


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
def run(request, tmp_path: Path) -> Runner:
    """A :class:`Runner` in-process; as its own process for tests marked ``process``."""
    return Runner(tmp_path, process=request.node.get_closest_marker("process") is not None)


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

    So ``-m "not live and not slow"`` (docs/testing.md's inner loop) skips them. ``live`` tests also run
    hermes-patch as its own process (``process``).
    """
    for item in items:
        if item.get_closest_marker("real") or item.get_closest_marker("live"):
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("live"):  # the operator's commands beside a live dashboard: their own processes
            item.add_marker(pytest.mark.process)
