"""Pytest wiring for the live tests (real dashboards, real nginx)."""

from __future__ import annotations

import pytest

from .harness import NginxUnavailable, ensure_nginx


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "live: runs real hermes-agent releases (venvs cached under .cache/) behind a real nginx",
    )


@pytest.fixture(scope="session")
def nginx_binary():
    """The nginx binary (installed from Debian's packages if missing and we are root); skips otherwise."""
    try:
        return ensure_nginx()
    except NginxUnavailable as exc:
        pytest.skip(f"nginx unavailable, live proxy tests skipped: {exc}")
