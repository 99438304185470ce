"""A real headless Chromium for the live tests: Debian's ``chromium`` driven by playwright.

playwright cannot download its own browsers on this machine, so we launch the
system browser through ``executable_path``. :func:`browser` yields a
playwright ``Browser``; :class:`PageRecord` collects what a person's page did
(HTTP responses, WebSockets opened or refused, console errors) so tests can
assert on outcomes; :func:`screenshot` keeps a PNG under ``artifacts/``
(gitignored, kept by CI as the test's evidence).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Screenshots land here; ``$HERMES_PATCH_ARTIFACTS`` overrides it.
ARTIFACTS = Path(os.environ.get("HERMES_PATCH_ARTIFACTS") or REPO_ROOT / "artifacts")

#: Chromium flags for a closed network: without the background-networking
#: flags Chromium keeps trying hosts it cannot reach.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def chromium_path() -> str | None:
    """Debian's chromium binary, or None when it is not installed."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


@contextlib.contextmanager
def browser() -> Iterator[object]:
    """A headless Chromium (playwright ``Browser``); skips the test when either is missing."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    exe = chromium_path()
    if exe is None:
        pytest.skip("Debian's chromium is not installed (scripts/test installs it as root)")
    with tempfile.TemporaryDirectory(prefix="hp-chromium-") as profile, sync_api.sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(profile, executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        try:
            yield ctx
        finally:
            ctx.close()


@dataclass
class PageRecord:
    """What one page did: ``responses`` (status, url), ``websockets`` (url, opened, closed), console errors."""

    responses: list[tuple[int, str]] = field(default_factory=list)
    websockets: dict[str, dict[str, bool]] = field(default_factory=dict)
    console_errors: list[str] = field(default_factory=list)

    def attach(self, page) -> None:
        """Start recording ``page``'s traffic."""
        page.on("response", lambda r: self.responses.append((r.status, r.url)))
        page.on("console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None)

        def on_ws(ws) -> None:
            entry = self.websockets.setdefault(ws.url, {"opened": False, "closed": False})
            ws.on("framereceived", lambda _: entry.__setitem__("opened", True))
            ws.on("framesent", lambda _: entry.__setitem__("opened", True))
            ws.on("close", lambda _: entry.__setitem__("closed", True))

        page.on("websocket", on_ws)

    def refused(self, pattern: str = r"/api/") -> list[tuple[int, str]]:
        """Responses 401/403 whose URL matches ``pattern``."""
        return [(s, u) for s, u in self.responses if s in (401, 403) and re.search(pattern, u)]


def screenshot(page, name: str) -> Path:
    """Save a full-page PNG as ``artifacts/screenshots/<name>.png`` and return its path."""
    out = ARTIFACTS / "screenshots" / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out), full_page=True)
    return out
