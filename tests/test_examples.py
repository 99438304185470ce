"""Every patch's ``EXAMPLES`` run as tests (hermes_patch.testing), with no test code per patch.

The catalog is discovered as the CLI discovers it: the built-in patches,
installed entry points, and a user folder (``patch_dirs``) holding the
example patch of docs/writing-a-patch.md. A patch without examples fails
here, so a new patch cannot land without them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hermes_patch.registry import discover
from hermes_patch.testing import check_example

USER_DIR = Path(__file__).resolve().parent / "plugins" / "hermes_patch_example"
CATALOG = discover([USER_DIR])
CASES = [(cls, index) for cls in CATALOG for index in range(len(cls.EXAMPLES))]


@pytest.mark.parametrize("patch_class", CATALOG, ids=[c.ID for c in CATALOG])
def test_every_patch_has_examples_of_a_write_and_of_a_refusal(patch_class):
    states = {e.state for e in patch_class.EXAMPLES}
    assert "pending" in states and states - {"pending"}, f"{patch_class.ID}: EXAMPLES need a write and a no-write case"


@pytest.mark.parametrize("patch_class, index", CASES, ids=[f"{c.ID}-{i}" for c, i in CASES])
def test_example(patch_class, index):
    check_example(patch_class, patch_class.EXAMPLES[index], index)
