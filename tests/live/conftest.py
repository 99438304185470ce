"""Pytest wiring for the live tests (real dashboards, real nginx)."""

from __future__ import annotations


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "live: runs real hermes-agent releases (venvs cached under .cache/) behind a real nginx",
    )
