"""The catalog: built-in patches found with pkgutil (each class once), user folders, duplicate ids."""

from __future__ import annotations

import importlib

import pytest

from hermes_patch.core.errors import ConfigError
from hermes_patch.core.edits import NotNeeded, Unrecognized
from hermes_patch.core.patch import Param, Patch
from hermes_patch.registry import builtin, discover


def test_every_builtin_module_is_imported_under_its_own_name_once():
    classes = builtin()
    assert [c.ID for c in classes] == sorted(c.ID for c in classes) and len(classes) >= 7
    for cls in classes:
        assert cls.__module__.startswith("hermes_patch.patches.")
        assert getattr(importlib.import_module(cls.__module__), cls.__name__) is cls
    assert discover(entry_points=False) == classes  # the same class objects, not copies


METHODS = "    def locate(self, ws):\n        return None\n\n    def edits(self, found):\n        return None\n"


def test_a_user_folder_joins_after_the_builtins_and_a_duplicate_id_is_refused(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "extra.py").write_text(
        "from hermes_patch.core.patch import Patch\n"
        "class Extra(Patch):\n"
        "    ID = 'extra-one'\n    DESCRIPTION = 'x'\n    VERSIONS = '>=0.13'\n    UPSTREAM = 'x'\n" + METHODS
    )
    found = discover([folder], entry_points=False)
    assert found[-1].ID == "extra-one" and found[-1].SOURCE == f"patch_dirs {folder}"
    (folder / "dup.py").write_text(
        "from hermes_patch.core.patch import Patch\n"
        "class Dup(Patch):\n"
        "    ID = 'trusted-hosts'\n    DESCRIPTION = 'x'\n    VERSIONS = '>=0.13'\n    UPSTREAM = 'x'\n" + METHODS
    )
    with pytest.raises(ConfigError, match="two patches share the id 'trusted-hosts'"):
        discover([folder], entry_points=False)


def test_metadata_mistakes_fail_when_the_class_is_defined():
    with pytest.raises(TypeError, match="PEP 440"):
        type("Bad", (Patch,), {"ID": "bad", "DESCRIPTION": "x", "VERSIONS": "not a spec", "UPSTREAM": "x"})
    with pytest.raises(TypeError, match="must define locate"):
        type("Bad", (Patch,), {"ID": "bad", "DESCRIPTION": "x", "VERSIONS": ">=1", "UPSTREAM": "x"})
    with pytest.raises(TypeError, match="lower-case"):
        type("Bad", (Patch,), {"ID": "Bad_Id", "DESCRIPTION": "x", "VERSIONS": ">=1", "UPSTREAM": "x"})


def test_parameters_must_be_what_the_ledger_records_as_json():
    """helper-22: a frozenset default or parsed value crashed `list` and `apply` with a traceback."""

    def patch_with(param: Param) -> type:
        return type(
            "P",
            (Patch,),
            {
                "ID": "p",
                "DESCRIPTION": "x",
                "VERSIONS": ">=1",
                "UPSTREAM": "x",
                "PARAMS": {"names": param},
                "locate": lambda self, ws: Unrecognized("x"),
                "edits": lambda self, found: NotNeeded("x"),
            },
        )

    with pytest.raises(TypeError, match="the default of parameter 'names' is a frozenset"):
        patch_with(Param(default=frozenset(), parse=frozenset, doc="names"))
    cls = patch_with(Param(default=[], parse=frozenset, doc="names"))
    with pytest.raises(
        ConfigError, match=r"\[patches.p\] names: the patch parses it to a frozenset.*bug in the patch p"
    ):
        cls({"names": ["a"]})
