"""Claims the operator docs make about the real releases, checked against the real releases."""

from __future__ import annotations

import re

import pytest

from conftest import RELEASES, REPO, real_release


@pytest.mark.real
def test_api_console_exists_from_0_18_1_as_the_docs_say():
    """The README says `/api/console` exists from 0.18.1 (not 0.16): each real release's web_server.py agrees."""
    have = [
        v for v in RELEASES if "/api/console" in (real_release(v) / "hermes_cli" / "web_server.py").read_text("utf-8")
    ]
    assert have == RELEASES[RELEASES.index("0.18.1") :]
    docs = (REPO / "README.md").read_text() + "".join(p.read_text() for p in (REPO / "docs").glob("*.md"))
    claims = [docs[max(0, m.start() - 40) : m.end() + 40] for m in re.finditer(r"`/api/console`", docs)]
    assert claims and all("0.18.1" in c for c in claims), claims
