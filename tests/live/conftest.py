"""Pytest wiring for the live tests (real dashboards, real nginx)."""

from __future__ import annotations

import threading

import pytest

from .nginx import ensure_nginx, NginxUnavailable
from .venvs import hermes_venv

#: The releases the live tests run; their venvs are built while other tests run.
LIVE_VERSIONS = ("0.14.0", "0.19.0")


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "live: runs real hermes-agent releases (venvs cached under .cache/) behind a real nginx",
    )


@pytest.hookimpl(trylast=True)  # after -m / -k deselection
def pytest_collection_modifyitems(session, config, items):
    """Run the live tests last and build their venvs in the meantime.

    A cold build takes minutes (downloads from the package registry); a
    background thread overlaps it with the other tests. ``hermes_venv``'s
    per-version lock makes the first live test wait for it, and a build
    that failed in the background is simply redone (and reported) there.
    """
    live = [item for item in items if item.get_closest_marker("live")]
    if not live:
        return
    others = [item for item in items if not item.get_closest_marker("live")]
    items[:] = others + live
    if others and not config.option.collectonly:
        threading.Thread(target=_prebuild, name="live-venvs", daemon=True).start()


def _prebuild() -> None:
    for version in LIVE_VERSIONS:
        try:
            hermes_venv(version)
        except Exception:
            pass  # the test that needs it builds again and shows the error


@pytest.fixture(scope="session")
def nginx_binary():
    """The nginx binary (installed from Debian's packages if missing and we are root); skips otherwise."""
    try:
        return ensure_nginx()
    except NginxUnavailable as exc:
        pytest.skip(f"nginx unavailable, live proxy tests skipped: {exc}")
