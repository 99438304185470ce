"""``hermes-patch check``: each patch's state on code that is not installed yet.

Before ``hermes update`` replaces the dashboard, an operator (or a CI job
watching upstream main) wants to know whether the patches will come back.
:func:`check` reads the incoming ``hermes_cli`` package without checking it
out or writing anything:

* ``--ref REF`` on a git install: ``git fetch`` (unless told not to), then
  the files at ``REF`` from git's object store (``git ls-tree`` and ``git
  cat-file --batch``, the plumbing under ``git show``); the working tree,
  the index and HEAD are not touched.
* ``--wheel FILE``: the module files inside a downloaded hermes-agent wheel
  (a zip archive), and the release from its ``METADATA``.

The result is what ``status --json`` would report after the update: the same
catalog, configuration and rules (:func:`hermes_patch.core.engine.detect_all`),
with the target naming the incoming code.
"""

from __future__ import annotations

import re
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hermes_patch.context import Catalog
from hermes_patch.core.errors import TargetError
from hermes_patch.integrations.git_repo import git, git_env

if TYPE_CHECKING:
    from hermes_patch.results import StatusResult

__all__ = ["Incoming", "check", "git_package_files", "wheel_package_files", "upstream_ref"]

_MAX_MEMBER = 16 * 1024 * 1024
_MAX_TOTAL = 128 * 1024 * 1024
_PRINTABLE_VERSION = re.compile(r"[0-9A-Za-z.+!_-]{1,64}")
_VERSION_RE = re.compile(r"""^__version__\s*(?::\s*str\s*)?=\s*["']([^"']+)["']""", re.M)
# The modules patches read live in the package and one sub-package below it (Workspace.modules).
_MAX_DEPTH = 1


@dataclass(frozen=True)
class Incoming:
    """The incoming code as ``status`` describes a target.

    Attributes:
        file: ``REF:hermes_cli/web_server.py`` or ``WHEEL!hermes_cli/web_server.py``.
        version: the release of the incoming code, or ``None``.
        install_method: ``git`` (a ref) or ``pip`` (a wheel).
        found_by: for people: ``check --ref origin/main (commit 1a2b3c4d5e6f)``.
        commit: the commit a ref resolved to, else ``None``.
    """

    file: str
    version: str | None
    install_method: str
    found_by: str
    commit: str | None = None
    read_only: str | None = "incoming code: check reads it, nothing is written"
    symlink: None = None

    @property
    def writable(self) -> bool:
        return False


def _git(root: Path, *args: str, input: bytes | None = None) -> bytes:
    if input is None:
        return git(root, *args, text=False).stdout
    env = git_env()
    proc = subprocess.run(["git", "-C", str(root), *args], input=input, capture_output=True, env=env, check=False)
    if proc.returncode != 0:
        last = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise TargetError(f"`git {' '.join(args)}` failed in {root}: {last[-1] if last else proc.returncode}.")
    return proc.stdout


def upstream_ref(root: Path) -> str | None:
    """The branch ``git pull`` (and so ``hermes update``) merges: ``@{upstream}`` of HEAD, e.g. ``origin/main``; ``None`` if none."""
    proc = git(root, "rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{upstream}", check=False)
    name = proc.stdout.strip()
    return name if proc.returncode == 0 and name else None


def git_package_files(root: Path, ref: str, package: str, fetch: bool = True) -> tuple[str, dict[str, bytes]]:
    """The module files of ``package`` at ``ref`` in the checkout ``root``: (commit, name relative to the package → bytes).

    Args:
        fetch: run ``git fetch`` first (the remote of ``ref`` when it names
            one, else the default remote), so ``origin/main`` means what
            upstream has now.

    Raises:
        TargetError: git failed, the ref does not name a commit, or the
            package is not in it. Nothing was changed in the working tree.
    """
    if fetch:
        remotes = _git(root, "remote").decode().split()
        remote = ref.split("/", 1)[0] if "/" in ref and ref.split("/", 1)[0] in remotes else None
        _git(root, "fetch", "--quiet", *([remote] if remote else []))
    try:
        commit = _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").decode().strip()
    except TargetError:
        raise TargetError(
            f"{ref!r} does not name a commit in {root}. Use a branch, tag or commit the repository has "
            f"(e.g. `hermes-patch check --ref origin/main`); `git -C {root} branch -a` lists them."
        ) from None
    listing = _git(root, "ls-tree", "-r", "-z", commit, "--", f"{package}/")
    wanted: list[tuple[str, str]] = []
    for entry in listing.split(b"\0"):
        if not entry:
            continue
        meta, _, path = entry.partition(b"\t")
        mode, kind, oid = meta.decode().split()
        name = path.decode("utf-8", "surrogateescape")[len(package) + 1 :]
        if kind == "blob" and mode.startswith("100") and name.endswith(".py") and name.count("/") <= _MAX_DEPTH:
            wanted.append((name, oid))
    if not any(name == "web_server.py" for name, _ in wanted):
        raise TargetError(
            f"{ref} (commit {commit[:12]}) holds no {package}/web_server.py, so there is no dashboard to patch in it."
        )
    out = _git(root, "cat-file", "--batch", input="".join(f"{oid}\n" for _, oid in wanted).encode())
    files: dict[str, bytes] = {}
    pos = 0
    for name, _oid in wanted:
        header_end = out.index(b"\n", pos)
        _, _, size = out[pos:header_end].decode().split()
        start = header_end + 1
        files[name] = out[start : start + int(size)]
        pos = start + int(size) + 1
    return commit, files


def wheel_package_files(wheel: Path, package: str) -> tuple[str | None, dict[str, bytes]]:
    """The module files of ``package`` inside a wheel and the wheel's version (``METADATA``).

    Raises:
        TargetError: not a readable zip archive, or no ``package/web_server.py`` in it.
    """
    if not wheel.is_file():
        raise TargetError(
            f"{wheel} is not a regular file. Pass the .whl file of a hermes-agent release (`pip download --no-deps hermes-agent==X -d DIR`)."
        )
    try:
        with zipfile.ZipFile(wheel) as zf:
            files = {}
            version = None
            total = 0
            for info in zf.infolist():
                name = info.filename
                wanted = name.startswith(package + "/") and name.endswith(".py") and name.count("/") <= _MAX_DEPTH + 1
                metadata = name.endswith(".dist-info/METADATA") and name.count("/") == 1
                if not (wanted or metadata):
                    continue
                # A release's largest module is about 1 MB; a zip bomb must not fill memory.
                total += info.file_size
                if info.file_size > _MAX_MEMBER or total > _MAX_TOTAL:
                    raise TargetError(
                        f"{wheel}: {name} unpacks to {info.file_size:,} bytes, more than any hermes-agent release holds ({_MAX_MEMBER:,} per file, {_MAX_TOTAL:,} in all); it was not read. Pass the .whl file of a hermes-agent release."
                    )
                with zf.open(info) as member:
                    data = member.read(_MAX_MEMBER + 1)
                if len(data) > _MAX_MEMBER:
                    raise TargetError(
                        f"{wheel}: {name} unpacks to more than its header says; it was not read. Pass the .whl file of a hermes-agent release."
                    )
                if wanted:
                    files[name[len(package) + 1 :]] = data
                else:
                    for line in data.decode("utf-8", "replace").splitlines():
                        if line.startswith("Version:"):
                            version = line.split(":", 1)[1].strip()
                            break
                        if not line:
                            break
    except (OSError, zipfile.BadZipFile) as exc:
        raise TargetError(
            f"{wheel} cannot be read as a wheel ({exc}). Pass the .whl file of a hermes-agent release (`pip download --no-deps hermes-agent==X -d DIR`)."
        ) from None
    if "web_server.py" not in files:
        raise TargetError(
            f"{wheel} holds no {package}/web_server.py, so it is not a hermes-agent release with a dashboard."
        )
    if version is not None and not _PRINTABLE_VERSION.fullmatch(version):
        version = None  # shown to people: never pass escape sequences through (the shape decides, not this label)
    return version, files


def check(app: Catalog, ref: str | None = None, wheel: Path | None = None, fetch: bool = True) -> StatusResult:
    """Each patch's state on the incoming code, as a :class:`~hermes_patch.app.StatusResult`.

    Args:
        app: the catalog and configuration of this run (and, for ``ref``, the
            installed git checkout whose repository is read).
        ref: a git ref of that checkout (``origin/main``, a tag, a commit).
        wheel: a downloaded hermes-agent wheel.
        fetch: ``git fetch`` before reading ``ref``.

    Raises:
        TargetError: no git checkout for ``ref``, or the code cannot be read.
    """
    from hermes_patch.results import StatusResult, view
    from hermes_patch.core.engine import PatchReport, detect_all
    from hermes_patch.core.source import sha256_hex
    from hermes_patch.core.workspace import Workspace

    if (ref is None) == (wheel is None):
        raise TargetError(
            "check takes exactly one of --ref REF (a git install) and --wheel FILE (a downloaded release)."
        )
    if ref is not None:
        target = app.target
        if target.install_method != "git" or target.root is None:
            raise TargetError(
                f"--ref needs a git install, and {target.file} is a {target.install_method} install (found by {target.found_by}). "
                "For a release from the package registry use `hermes-patch check --wheel FILE`."
            )
        package = target.package_dir.relative_to(target.root).as_posix()
        commit, files = git_package_files(Path(target.root), ref, package, fetch)
        init = files.get("__init__.py", b"").decode("utf-8", "replace")
        match = _VERSION_RE.search(init)
        incoming = Incoming(
            f"{ref}:{package}/web_server.py",
            match.group(1) if match else None,
            "git",
            f"check --ref {ref} (commit {commit[:12]})",
            commit,
        )
        base = Path(f"{ref}:") / package  # the name of the last part is the package's: imports are resolved with it
    else:
        assert wheel is not None
        package = "hermes_cli"
        version, files = wheel_package_files(wheel, package)
        if version is None:
            match = _VERSION_RE.search(files.get("__init__.py", b"").decode("utf-8", "replace"))
            version = match.group(1) if match else None
        incoming = Incoming(f"{wheel}!{package}/web_server.py", version, "pip", f"check --wheel {wheel}")
        base = Path(f"{wheel}!") / package
    ws = Workspace(base, files=files)
    reports = detect_all(ws, app.patches, incoming.version, app.param_errors)
    views = []
    for r in reports:
        if r.detection.config_error and r.id not in app.param_errors:
            from dataclasses import replace

            r = PatchReport(r.patch, r.enabled, replace(r.detection, reason=str(app.config.error(r.detection.reason))))
        views.append(view(r))
    return StatusResult(incoming, sha256_hex(files["web_server.py"]), tuple(views))
