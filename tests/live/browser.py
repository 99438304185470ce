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
def browser(extra_args: tuple[str, ...] = ()) -> Iterator[object]:
    """A headless Chromium (playwright ``Browser``); skips the test when either is missing.

    ``extra_args`` go on Chromium's command line, e.g.
    ``--host-resolver-rules=MAP hermes.example.test 127.0.0.1`` so a public
    name reaches a loopback proxy without DNS.
    """
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    exe = chromium_path()
    if exe is None:
        pytest.skip("Debian's chromium is not installed (scripts/test installs it as root)")
    with tempfile.TemporaryDirectory(prefix="hp-chromium-") as profile, sync_api.sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            profile, executable_path=exe, headless=True, args=[*CHROMIUM_ARGS, *extra_args]
        )
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
    #: WebSocket URL -> HTTP status of its handshake (101 = upgraded), from the DevTools protocol.
    handshakes: dict[str, int] = field(default_factory=dict)

    def attach(self, page, context=None) -> None:
        """Start recording ``page``'s traffic; with its ``context``, also each WebSocket handshake's HTTP status."""
        page.on("response", lambda r: self.responses.append((r.status, r.url)))
        page.on("console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None)

        def on_ws(ws) -> None:
            entry = self.websockets.setdefault(ws.url, {"opened": False, "closed": False})
            ws.on("framereceived", lambda _: entry.__setitem__("opened", True))
            ws.on("framesent", lambda _: entry.__setitem__("opened", True))
            ws.on("close", lambda _: entry.__setitem__("closed", True))

        page.on("websocket", on_ws)
        if context is not None:
            urls: dict[str, str] = {}
            cdp = context.new_cdp_session(page)
            cdp.send("Network.enable")

            def created(event) -> None:
                urls[event["requestId"]] = event["url"]
                self.handshakes.setdefault(event["url"], 0)
                self.websockets.setdefault(event["url"], {"opened": False, "closed": False})

            def answered(event) -> None:
                url = urls.get(event["requestId"])
                if url is not None:
                    self.handshakes[url] = int(event["response"]["status"])
                    if self.handshakes[url] == 101:
                        self.websockets[url]["opened"] = True

            cdp.on("Network.webSocketCreated", created)
            cdp.on("Network.webSocketHandshakeResponseReceived", answered)

    def opened(self, pattern: str = r"/api/") -> list[str]:
        """URLs (token removed) of WebSockets matching ``pattern`` that carried a frame."""
        return sorted(
            re.sub(r"token=[^&]+", "token=T", u)
            for u, e in self.websockets.items()
            if e["opened"] and re.search(pattern, u)
        )

    def failed(self, pattern: str = r"/api/") -> list[str]:
        """URLs (token removed) of WebSockets matching ``pattern`` that never carried a frame."""
        return sorted(
            re.sub(r"token=[^&]+", "token=T", u)
            for u, e in self.websockets.items()
            if not e["opened"] and re.search(pattern, u)
        )

    def refused(self, pattern: str = r"/api/") -> list[tuple[int, str]]:
        """Responses 401/403 whose URL matches ``pattern``."""
        return [(s, u) for s, u in self.responses if s in (401, 403) and re.search(pattern, u)]


def screenshot(page, name: str) -> Path:
    """Save a full-page PNG as ``artifacts/screenshots/<name>.png`` and return its path."""
    out = ARTIFACTS / "screenshots" / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out), full_page=True)
    return out
