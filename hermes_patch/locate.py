"""Find the installed Hermes: its ``web_server.py``, release, install method.

Never imports Hermes. An interpreter is asked only where ``hermes_cli``
would be found (``importlib.util.find_spec`` does not run the package), and
the version is read from ``hermes_cli/__init__.py`` (``__version__ = "X"``)
or the distribution's ``METADATA``, as REAL_TARGETS.md records for every
release from 0.13.0 on.

Without an explicit target the search follows the installer's layout: the
``hermes`` launcher on ``PATH`` and the interpreter on its shebang line, then
``$HERMES_INSTALL_DIR``, then ``~/.hermes/hermes-agent`` with its ``venv/``
or ``.venv/``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from hermes_patch.core.errors import TargetError
from hermes_patch.fileio import check_writable
from hermes_patch.core.messages import (
    FIND_BY_PYTHON,
    RUN_AS_OWNER,
    Failure,
    remove_others_write,
    target_is_a_directory,
    target_missing,
)

__all__ = ["Target", "locate", "read_version", "install_method"]

PACKAGE = "hermes_cli"
ENTRY = "web_server.py"
_VERSION_RE = re.compile(r"""^__version__\s*(?::\s*str\s*)?=\s*["']([^"']+)["']""", re.M)


@dataclass(frozen=True)
class Target:
    """The file to patch and the install around it.

    Attributes:
        file: the real ``web_server.py`` (symlinks resolved).
        package_dir: the ``hermes_cli`` directory holding it; for a symlinked
            ``web_server.py`` inside a package, the package holding the link
            (its siblings and version live there).
        version: the release (``"0.19.0"``), or ``None`` when unknown.
        install_method: ``git``, ``pip``, ``uv``, ``uv-tool``, ``pipx``,
            ``docker``, ``nix``, ``homebrew`` or ``file`` (a bare file).
        root: the git checkout or site-packages directory, if any.
        interpreter: the Python that runs Hermes, if known.
        found_by: how it was found, for people (``--file``, ``launcher ...``).
        symlink: the path given when it was a symlink (we edit the real file).
        read_only: why the file cannot be written, or ``None``.
        launcher: the ``hermes`` launcher the target was found by, if any
            (``hermes-patch update`` runs ``<launcher> update``).
    """

    file: Path
    package_dir: Path
    version: str | None
    install_method: str
    root: Path | None
    interpreter: Path | None
    found_by: str
    symlink: Path | None = None
    read_only: str | None = None
    launcher: Path | None = None

    @property
    def writable(self) -> bool:
        return self.read_only is None

    @property
    def entry(self) -> str:
        """The module patches start from, as named in ``package_dir`` (the link's name when linked)."""
        linked = self.symlink is not None and self.symlink.parent.resolve() == self.package_dir
        return self.symlink.name if linked else self.file.name  # type: ignore[union-attr]

    @property
    def tree_root(self) -> Path:
        """The Hermes tree we must keep our own files out of."""
        return self.root or self.package_dir


def read_version(package_dir: Path) -> str | None:
    """The release version from ``hermes_cli/__init__.py``, else from ``*.dist-info/METADATA``."""
    try:
        text = (package_dir / "__init__.py").read_text("utf-8", errors="replace")
        match = _VERSION_RE.search(text)
        if match:
            return match.group(1)
    except OSError:
        pass
    for dist in sorted(package_dir.parent.glob("hermes_agent-*.dist-info"), reverse=True):
        try:
            for line in (dist / "METADATA").read_text("utf-8", errors="replace").splitlines():
                if line.startswith("Version:"):
                    return line.split(":", 1)[1].strip()
                if not line:
                    break
        except OSError:
            continue
    return None


def install_method(package_dir: Path) -> tuple[str, Path | None]:
    """How the package was installed and its root (checkout or site-packages)."""
    parent = package_dir.parent
    text = str(package_dir)
    if (parent / ".git").exists():
        return "git", parent
    if text.startswith("/nix/store/"):
        return "nix", parent
    if "/Cellar/" in text or "/homebrew/" in text.lower():
        return "homebrew", parent
    if text.startswith("/opt/hermes/"):
        return "docker", parent
    dists = sorted(parent.glob("hermes_agent-*.dist-info"))
    if dists:
        installer = ""
        try:
            installer = (dists[-1] / "INSTALLER").read_text().strip()
        except OSError:
            pass
        if "/pipx/venvs/" in text:
            return "pipx", parent
        if installer == "uv":
            return ("uv-tool" if "/uv/tools/" in text else "uv"), parent
        return "pip", parent
    if parent.name in ("site-packages", "dist-packages"):
        return "pip", parent
    return "file", None


def _target(file: Path, found_by: str, interpreter: Path | None = None) -> Target:
    given = file
    try:
        real = file.resolve()
    except (RuntimeError, OSError) as exc:  # a symlink loop (RuntimeError on 3.11), an unreadable link
        raise TargetError(
            f"{given} cannot be resolved ({exc}); it is a symlink that never reaches a file. Point "
            f"--file at the real hermes_cli/{ENTRY}, or let hermes-patch find the install: `hermes-patch status`."
        ) from None
    if real.is_dir():
        raise TargetError(target_is_a_directory(given))
    if not real.exists():
        raise TargetError(target_missing(given))
    package_dir = real.parent
    if given.is_symlink() and (given.parent / "__init__.py").is_file():
        package_dir = given.parent.resolve()  # a linked module: its package is where the link is
    method, root = install_method(package_dir)
    return Target(
        file=real,
        package_dir=package_dir,
        version=read_version(package_dir),
        install_method=method,
        root=root,
        interpreter=interpreter,
        found_by=found_by,
        symlink=given if given.is_symlink() else None,
        read_only=check_writable(real),
    )


def _from_root(root: Path, found_by: str, interpreter: Path | None = None) -> Target:
    root = root.expanduser()
    if not root.exists():
        raise TargetError(
            Failure(
                f"{root} does not exist",
                root,
                cause="--root takes a Hermes git checkout or a site-packages directory",
                outcome="",
                next_command=f"to let the interpreter say where Hermes is, run {FIND_BY_PYTHON}",
            )
        )
    for candidate in (root / PACKAGE / ENTRY, root / ENTRY):
        if candidate.is_file():
            return _target(candidate, found_by, interpreter)
    raise TargetError(
        f"{root} holds no {PACKAGE}/{ENTRY}. --root takes a Hermes git checkout (the folder with "
        f"{PACKAGE}/ in it, e.g. ~/.hermes/hermes-agent) or the site-packages directory Hermes is "
        f"installed in. Try {FIND_BY_PYTHON}."
    )


#: The next step when the interpreter named (or found) cannot say where Hermes is.
_OTHER_PYTHON = (
    "check that it runs (`PYTHON -V`), or name the interpreter Hermes runs with: "
    "`hermes-patch status --python PYTHON` (`head -1 $(command -v hermes)` shows it)"
)

_FIND_SPEC = (
    "import importlib.util, json, sys\n"
    "spec = importlib.util.find_spec('hermes_cli')\n"
    "print(json.dumps({'origin': getattr(spec, 'origin', None), "
    "'locations': list(getattr(spec, 'submodule_search_locations', None) or [])}))\n"
)


def _from_python(python: Path, found_by: str) -> Target:
    exe = shutil.which(str(python)) if os.sep not in str(python) else str(python.expanduser())
    if not exe or not Path(exe).exists():
        raise TargetError(
            f"the interpreter {python} does not exist. --python takes the Python of the environment Hermes is installed in (e.g. ~/.hermes/hermes-agent/venv/bin/python)."
        )
    exe = os.path.abspath(exe)  # verify runs it from another working directory
    guard_interpreter(Path(exe))
    import subprocess
    import tempfile

    try:
        # -X pycache_prefix (a private empty folder): no bytecode from the
        # install's __pycache__ folders is read (a forged .pyc would run here).
        with tempfile.TemporaryDirectory(prefix="hermes-patch-pycache-") as pycache:
            out = subprocess.run(
                [exe, "-I", "-B", "-X", f"pycache_prefix={pycache}", "-c", _FIND_SPEC],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TargetError(
            Failure(f"could not run {exe} to find Hermes ({exc})", exe, outcome="", next_command=_OTHER_PYTHON)
        ) from None
    if out.returncode != 0:
        last = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode
        raise TargetError(
            Failure(f"{exe} failed while looking for hermes_cli: {last}", exe, outcome="", next_command=_OTHER_PYTHON)
        )
    info = json.loads(out.stdout.strip().splitlines()[-1])
    locations = info.get("locations") or []
    if not locations:
        raise TargetError(
            f"{exe} has no hermes_cli package: hermes-agent is not installed in that environment. "
            "Name the interpreter Hermes runs with (`head -1 $(command -v hermes)` shows it)."
        )
    return _target(Path(locations[0]) / ENTRY, found_by, Path(exe))


def guard(path: Path, what: str) -> None:
    """Refuse ``path`` when another user could change it (see :mod:`hermes_patch.trust`).

    Raises:
        RefusedError: naming the owner and ``sudo -u OWNER hermes-patch ...``.
    """
    from hermes_patch.trust import refusal, why_untrusted

    found = why_untrusted(path)
    if found:
        from hermes_patch.core.errors import RefusedError

        raise RefusedError(
            refusal(
                what,
                found,
                f"{remove_others_write(found[0].split(' is ')[0])}, or {RUN_AS_OWNER}",
            )
        )


def guard_interpreter(exe: Path) -> None:
    """Refuse an interpreter another user could steer, *before* it runs.

    The interpreter file and its folders, and for a venv its ``pyvenv.cfg``
    and ``site-packages`` (whose ``.pth`` files run at every start: ``-I``
    does not skip them), must be trusted.
    """
    what = f"the interpreter {exe} (hermes-patch runs it to find Hermes and to verify)"
    guard(exe, what)
    venv = exe.parent.parent
    if (venv / "pyvenv.cfg").is_file():
        guard(venv / "pyvenv.cfg", what)
        for site in sorted(venv.glob("lib*/python3*/site-packages")):
            guard(site, what)


def guard_target(target: "Target") -> None:
    """Refuse a Hermes install another user could change: the file, its package, the tree, a checkout's ``.git``.

    Called for every command that reads, runs or writes the install, before
    git or the interpreter run.
    """
    what = f"the Hermes install at {target.tree_root}"
    paths = [target.file, target.package_dir, target.tree_root]
    if target.symlink is not None:
        paths.append(target.symlink)
    if target.interpreter is not None:
        guard_interpreter(target.interpreter)
    if target.install_method == "git" and target.root is not None:
        git_dir = target.root / ".git"
        paths += [git_dir, git_dir / "config", git_dir / "info", git_dir / "info" / "attributes", git_dir / "hooks"]
        paths += _git_indirections(git_dir)
    for path in dict.fromkeys(paths):
        guard(path, what)


def _git_indirections(git_dir: Path) -> list[Path]:
    """The files git also reads as configuration for ``git_dir``: its ``commondir`` and ``include.path`` files.

    git follows ``.git/commondir`` to another git dir (its config and hooks
    then apply) and ``[include]`` / ``[includeIf]`` ``path`` entries to other
    files; each may belong to another user, who would then set
    ``core.fsmonitor`` or ``remote.*.uploadpack`` for root (breaker run).
    """
    found: list[Path] = []
    configs = [git_dir / "config"]
    try:
        common = (git_dir / "commondir").read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        common = ""
    if common:
        other = Path(os.path.normpath(git_dir / common))
        found += [git_dir / "commondir", other, other / "config", other / "hooks", other / "info"]
        configs.append(other / "config")
    for config in configs:
        try:
            text = config.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        section = ""
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("["):
                section = line.lower()
            elif (
                section.startswith(("[include]", "[includeif"))
                and "=" in line
                and line.split("=", 1)[0].strip().lower() == "path"
            ):
                value = line.split("=", 1)[1].strip().strip('"')
                included = Path(os.path.expanduser(value))
                found.append(included if included.is_absolute() else config.parent / included)
    return found


def _launcher_python(launcher: Path) -> Path | None:
    try:
        with open(launcher, "rb") as fh:
            first = fh.readline(512).decode("utf-8", "replace").strip()
    except OSError:
        return None
    if not first.startswith("#!"):
        return None
    parts = first[2:].split()
    if not parts:
        return None
    if Path(parts[0]).name == "env" and len(parts) > 1:
        found = shutil.which(parts[-1])
        return Path(found) if found else None
    return Path(parts[0])


def locate(
    file: Path | None = None, python: Path | None = None, root: Path | None = None, configured: Path | None = None
) -> Target:
    """Find the target from explicit options or the user's install.

    Args:
        file: ``--file``: a ``web_server.py`` (symlinks are followed; the real
            file is edited and the link kept).
        python: ``--python``: an interpreter whose environment has hermes-agent.
        root: ``--root``: a Hermes git checkout or a site-packages directory.
        configured: the configuration's ``python``, used when none of the three is given.

    Raises:
        TargetError: more than one option given, or nothing usable found; the
            message lists what was tried and what to pass.
    """
    given = [name for name, value in (("--file", file), ("--python", python), ("--root", root)) if value is not None]
    if len(given) > 1:
        raise TargetError(f"{' and '.join(given)} both name a target; pass only one.")
    if file is not None:
        return _target(file.expanduser(), "--file")
    if python is not None:
        return _from_python(python, "--python")
    if root is not None:
        return _from_root(root, "--root")
    if configured is not None:
        return _from_python(configured, "python in the configuration")
    tried = []
    launcher = shutil.which("hermes")
    if launcher:
        guard(
            Path(launcher),
            f"the `hermes` launcher {launcher} (hermes-patch reads its interpreter and `update` runs it)",
        )
        interp = _launcher_python(Path(launcher))
        if interp is not None and interp.exists():
            try:
                return replace(_from_python(interp, f"launcher {launcher}"), launcher=Path(launcher))
            except TargetError as exc:
                tried.append(f"the launcher {launcher} ({exc})")
        else:
            tried.append(f"the launcher {launcher} (no usable interpreter on its first line)")
    else:
        tried.append("a `hermes` launcher on PATH (none)")
    install_dir = Path(os.environ.get("HERMES_INSTALL_DIR") or "~/.hermes/hermes-agent").expanduser()
    if (install_dir / PACKAGE / ENTRY).is_file():
        venv_python = next(
            (p for p in (install_dir / "venv/bin/python", install_dir / ".venv/bin/python") if p.exists()), None
        )
        return _from_root(install_dir, f"install dir {install_dir}", venv_python)
    tried.append(f"{install_dir} (no {PACKAGE}/{ENTRY})")
    command = _command()
    raise TargetError(
        "no Hermes install found. Tried " + "; ".join(tried) + ". Name it explicitly: "
        f"`hermes-patch {command} --python /path/to/venv/bin/python`, `--root /path/to/hermes-agent`, "
        "or `--file /path/to/hermes_cli/web_server.py`; to name it once for every command, run "
        "`hermes-patch setup --python /path/to/venv/bin/python --url URL` (it keeps `python = ...` in the "
        "configuration), or put the venv's bin folder on PATH."
    )


def _command() -> str:
    """The hermes-patch subcommand being run (for a hint), ``status`` when it cannot tell."""
    import sys

    words = [a for a in sys.argv[1:] if not a.startswith("-")]
    known = {"status", "apply", "revert", "diff", "setup", "verify", "update", "check", "doctor", "hook"}
    return next((w for w in words if w in known), "status")
