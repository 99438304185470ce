"""What the installed wheel ships besides the code: typing marker, licence, metadata.

The tests run against the installed distribution (``pip install .``, as
``scripts/test`` does), so they check the wheel users get, not the tree.
"""

from __future__ import annotations

from importlib.metadata import distribution
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_wheel_ships_py_typed_and_the_licence():
    dist = distribution("hermes-patch")
    files = {str(f) for f in dist.files or ()}
    assert "hermes_patch/py.typed" in files  # PEP 561: the package's annotations are for its users too
    licence = next(f for f in dist.files or () if str(f).endswith("licenses/LICENSE"))
    assert licence.read_text() == (REPO / "LICENSE").read_text()
    assert dist.metadata["License-Expression"] == "MIT"
    assert "Typing :: Typed" in dist.metadata.get_all("Classifier")
