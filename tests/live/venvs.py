"""Venvs with a released hermes-agent, built once and restored to the release bytes before each use.

:func:`hermes_venv` builds (once, cached under ``<repo>/.cache``, or
``$HERMES_PATCH_TEST_CACHE`` when set) a venv with a released
``hermes-agent`` wheel and the dashboard's web deps; :func:`web_server_path`
finds ``hermes_cli/web_server.py`` in it, and :func:`fresh_web_server`
restores the release bytes before a test uses it.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, Sequence

from .processes import flock

__all__ = [
    "CACHE_DIR",
    "PRISTINE_RELPATHS",
    "fresh_web_server",
    "hermes_venv",
    "installed_version",
    "record_digest",
    "session_header_name",
    "site_packages",
    "web_server_path",
    "wheel_record_hashes",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Shared with tests/conftest.py: ``$HERMES_PATCH_TEST_CACHE`` lets several
#: checkouts use one set of built venvs and downloaded wheels.
CACHE_DIR = Path(os.environ.get("HERMES_PATCH_TEST_CACHE") or REPO_ROOT / ".cache")
VENVS_DIR = CACHE_DIR / "live-venvs"
PIP_CACHE_DIR = CACHE_DIR / "pip"

#: Packages the dashboard needs at run time besides the wheel's own deps.
DASHBOARD_EXTRAS = ("fastapi", "uvicorn[standard]", "websockets")

#: Files restored by :func:`fresh_web_server`, relative to site-packages.
#: ``public_paths.py`` exists from 0.16 on; patches could touch it too.
PRISTINE_RELPATHS = (
    "hermes_cli/web_server.py",
    "hermes_cli/dashboard_auth/public_paths.py",
)

_READY_MARKER = ".hermes-live-ready.json"
_PRISTINE_DIR = "pristine"


def site_packages(venv: Path) -> Path:
    """Return the venv's ``site-packages`` directory (found on disk, not imported)."""
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if not found:
        raise FileNotFoundError(f"no site-packages under {venv}")
    return found[0]


def _dist_info(venv: Path) -> Path:
    """Return the ``hermes_agent-*.dist-info`` directory inside ``venv``."""
    found = sorted(site_packages(venv).glob("hermes_agent-*.dist-info"))
    if len(found) != 1:
        raise FileNotFoundError(f"expected one hermes_agent dist-info in {venv}, found {found}")
    return found[0]


def installed_version(venv: Path) -> str:
    """Return the hermes-agent version installed in ``venv``, from its METADATA."""
    metadata = (_dist_info(venv) / "METADATA").read_text(encoding="utf-8")
    match = re.search(r"^Version:\s*(\S+)\s*$", metadata, re.MULTILINE)
    if not match:
        raise ValueError(f"no Version: line in {_dist_info(venv)}/METADATA")
    return match.group(1)


def web_server_path(venv: Path) -> Path:
    """Return the path of the installed ``hermes_cli/web_server.py`` in ``venv``."""
    path = site_packages(venv) / "hermes_cli" / "web_server.py"
    if not path.is_file():
        raise FileNotFoundError(path)
    return path


def session_header_name(web_server: Path) -> str:
    """Return ``_SESSION_HEADER_NAME`` as assigned in ``web_server`` (parsed, not imported)."""
    text = web_server.read_text(encoding="utf-8")
    match = re.search(r'^_SESSION_HEADER_NAME\s*(?::[^=]+)?=\s*["\']([^"\']+)["\']', text, re.MULTILINE)
    if not match:
        raise ValueError(f"_SESSION_HEADER_NAME not found in {web_server}")
    return match.group(1)


def wheel_record_hashes(venv: Path, *, all_paths: bool = False) -> dict[str, str]:
    """Map site-packages-relative paths to their ``sha256=...`` digests from RECORD.

    With ``all_paths`` the map also holds RECORD entries without a hash
    (``RECORD`` itself, generated scripts), with ``""`` as the digest.
    """
    hashes = {}
    with open(_dist_info(venv) / "RECORD", newline="", encoding="utf-8") as fh:
        for row in csv.reader(fh):
            if len(row) >= 2 and row[1].startswith("sha256="):
                hashes[row[0]] = row[1]
            elif row and all_paths:
                hashes[row[0]] = ""
    return hashes


def record_digest(data: bytes) -> str:
    """Hash ``data`` the way a wheel's RECORD does (urlsafe base64, no padding)."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode("ascii")


def _venv_ready(venv: Path, version: str) -> bool:
    """True when ``venv`` finished building for ``version`` and kept its pristine copies."""
    marker = venv / _READY_MARKER
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if info.get("version") != version or not (venv / "bin" / "hermes").exists():
        return False
    pristine = venv / _PRISTINE_DIR
    return all((pristine / rel).is_file() for rel in info.get("pristine", ())) and bool(info.get("pristine"))


def _pip_install(venv: Path, requirements: Sequence[str], timeout: float) -> None:
    """Install ``requirements`` into ``venv``, reusing the wheels kept in ``.cache/pip``.

    pip's own HTTP cache (``--cache-dir .cache/pip``) is used where pip is
    allowed to store responses, but some networks mark downloads
    ``no-store``.  So the files pip fetched are also kept in
    ``.cache/pip/wheelhouse``: the first try installs from there alone
    (no network at all); only if that cannot satisfy ``requirements`` does
    pip download into the wheelhouse and install from it.
    """
    python = str(venv / "bin" / "python")
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    wheelhouse = PIP_CACHE_DIR / "wheelhouse"
    wheelhouse.mkdir(parents=True, exist_ok=True)
    common = ["--quiet", "--cache-dir", str(PIP_CACHE_DIR)]
    offline = [python, "-m", "pip", "install", *common, "--no-index", "--find-links", str(wheelhouse), *requirements]
    if subprocess.run(offline, env=env, capture_output=True, timeout=timeout).returncode == 0:
        return
    with flock(PIP_CACHE_DIR / "wheelhouse.lock"):
        steps = [
            [python, "-m", "pip", "download", *common, "--dest", str(wheelhouse), *requirements],
            [python, "-m", "pip", "install", *common, "--find-links", str(wheelhouse), *requirements],
        ]
        for cmd in steps:
            result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
            if result.returncode != 0:
                raise RuntimeError(
                    f"building {venv.name} failed ({result.returncode}):\n$ {' '.join(cmd)}\n"
                    f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
                )


def hermes_venv(version: str, *, timeout: float = 1200.0) -> Path:
    """Return a venv with ``hermes-agent==version`` and the dashboard deps, building it once.

    Input: a released version string, e.g. ``"0.14.0"``.
    Output: the venv directory ``<cache>/live-venvs/hermes-agent-<version>`` (``<cache>`` is :data:`CACHE_DIR`).

    The build runs ``pip install hermes-agent==<version> fastapi
    uvicorn[standard] websockets`` (dependencies included), reusing the
    wheels kept under ``<cache>/pip`` (see :func:`_pip_install`).
    A ready marker is written last, so an
    interrupted build is wiped and redone on the next call; a per-version
    ``flock`` makes concurrent pytest processes wait for one builder.  The
    release bytes of :data:`PRISTINE_RELPATHS` are checked against the
    wheel's RECORD and copied to ``<venv>/pristine/`` for
    :func:`fresh_web_server`.
    """
    venv = VENVS_DIR / f"hermes-agent-{version}"
    with flock(VENVS_DIR / f"hermes-agent-{version}.lock"):
        if _venv_ready(venv, version):
            return venv
        if venv.exists():
            shutil.rmtree(venv)
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        _pip_install(venv, [f"hermes-agent=={version}", *DASHBOARD_EXTRAS], timeout)
        site = site_packages(venv)
        hashes = wheel_record_hashes(venv)
        kept = []
        for rel in PRISTINE_RELPATHS:
            src = site / rel
            if not src.is_file():
                continue
            data = src.read_bytes()
            if hashes.get(rel) != record_digest(data):
                raise RuntimeError(f"{src} does not match the wheel's RECORD hash")
            dst = venv / _PRISTINE_DIR / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(data)
            kept.append(rel)
        if "hermes_cli/web_server.py" not in kept:
            raise RuntimeError(f"hermes_cli/web_server.py missing from the {version} install")
        marker = {
            "version": version,
            "pristine": kept,
            "build_seconds": round(time.monotonic() - started, 1),
            "python": sys.version.split()[0],
        }
        (venv / _READY_MARKER).write_text(json.dumps(marker, sort_keys=True, indent=2) + "\n", encoding="utf-8")
        return venv


_USE_DEPTH: dict[Path, int] = {}
_USE_GUARD = threading.Lock()


def _restore_pristine(venv: Path) -> Path:
    """Put the release state back; return web_server.py's path.

    Writes the release bytes over each of :data:`PRISTINE_RELPATHS`,
    deletes their cached bytecode (a restore within the same second and
    at the same size would otherwise let a stale ``.pyc`` win), and
    removes files that the wheel did not install from those files'
    folders (backups or ledgers a patcher may leave next to them).
    """
    site = site_packages(venv)
    pristine = venv / _PRISTINE_DIR
    info = json.loads((venv / _READY_MARKER).read_text(encoding="utf-8"))
    installed = set(wheel_record_hashes(venv, all_paths=True))
    for rel in info["pristine"]:
        target = site / rel
        data = (pristine / rel).read_bytes()
        if target.is_symlink() or not target.is_file():
            target.unlink(missing_ok=True)
        if not target.is_file() or target.read_bytes() != data:
            target.write_bytes(data)
        for pyc in (target.parent / "__pycache__").glob(f"{target.stem}.*.pyc"):
            pyc.unlink(missing_ok=True)
        folder = Path(rel).parent.as_posix()
        for entry in target.parent.iterdir():
            if (entry.is_file() or entry.is_symlink()) and f"{folder}/{entry.name}" not in installed:
                entry.unlink()
    return web_server_path(venv)


@contextlib.contextmanager
def fresh_web_server(venv: Path) -> Iterator[Path]:
    """Use ``venv``'s web_server.py starting from the release bytes.

    Input: a venv from :func:`hermes_venv`.  Yields the path of the
    installed ``hermes_cli/web_server.py``, already restored to the bytes
    shipped in the wheel (``public_paths.py`` too, where the release has
    it), with files the wheel did not install removed from those folders.
    Tests may patch it freely inside the block.

    While the outermost block is open this process holds an exclusive
    lock on the venv, so two pytest processes never patch the same
    install at once.  Nested blocks in one process are allowed: each
    entry restores the release bytes again; the outermost exit restores
    them a last time and releases the lock.
    """
    venv = Path(venv).resolve()
    with _USE_GUARD:
        depth = _USE_DEPTH.get(venv, 0)
        _USE_DEPTH[venv] = depth + 1
    lock_cm = flock(venv.parent / f"{venv.name}.use.lock") if depth == 0 else contextlib.nullcontext()
    try:
        with lock_cm:
            path = _restore_pristine(venv)
            try:
                yield path
            finally:
                if depth == 0:
                    _restore_pristine(venv)
    finally:
        with _USE_GUARD:
            _USE_DEPTH[venv] -= 1
