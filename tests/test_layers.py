"""The folder layout is the layering: the core imports only the core, the integrations never the application.

``hermes_patch/core`` takes text and returns outcomes (no disk, no
environment, no output); ``hermes_patch/integrations`` talk to git, systemd
and dashboards through a typed context (:mod:`hermes_patch.context`), never
through :mod:`hermes_patch.app` or the command line. Every import counts,
including the ones inside functions and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import hermes_patch

PACKAGE = Path(hermes_patch.__file__).parent


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (``from a import b`` counts as ``a`` and ``a.b``)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
    return out


def ours(names: set[str]) -> set[str]:
    modules = {
        "hermes_patch." + p.relative_to(PACKAGE).with_suffix("").as_posix().replace("/", ".")
        for p in PACKAGE.rglob("*.py")
    }
    packages = {m.removesuffix(".__init__") for m in modules}
    return {n for n in names if n in packages}


@pytest.mark.parametrize("path", sorted((PACKAGE / "core").glob("*.py")), ids=lambda p: p.name)
def test_the_core_imports_only_the_core_and_reads_no_environment(path):
    foreign = {m for m in ours(imported(path)) if not m.startswith("hermes_patch.core")}
    assert foreign == set()
    assert not {"os", "subprocess", "shutil", "socket", "rich", "click"} & imported(path)


@pytest.mark.parametrize("path", sorted((PACKAGE / "integrations").glob("*.py")), ids=lambda p: p.name)
def test_an_integration_never_imports_the_application_or_the_command_line(path):
    assert {"hermes_patch.app", "hermes_patch.cli"} & ours(imported(path)) == set()


def test_the_probe_is_read_by_verify_as_a_file_of_its_own_layer():
    assert (PACKAGE / "integrations" / "probe.py").is_file()
    assert "hermes_patch" not in {m.split(".")[0] for m in imported(PACKAGE / "integrations" / "probe.py")}
