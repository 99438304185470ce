"""The Ansible module's own logic, in process: the configuration it writes is the TOML the tool reads.

The module renders its `config` parameter (the TOML file's keys as a dict,
from YAML) to TOML itself, since the standard library only reads TOML.
Every value the configuration can hold must come back from tomllib
unchanged, whatever characters it has.
"""

from __future__ import annotations

import importlib.util
import tomllib

import pytest

from conftest import REPO

pytest.importorskip("ansible.module_utils.basic")
_spec = importlib.util.spec_from_file_location(
    "hermes_patch_ansible_module", REPO / "ansible_collections/hermes_patch/hermes/plugins/modules/patch.py"
)
module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(module)


@pytest.mark.parametrize(
    "config",
    [
        {},
        {
            "patches": {
                "relax-ws-peer-check": {"trusted_proxies": ["127.0.0.5/32", "10.0.0.0/8"], "allow_catch_all": False}
            }
        },
        {
            "patch_dirs": ["~/my patches", "/srv/x"],
            "patches": {"public-action-status": {"actions": ["hermes-update"]}, "cors-origins": {"enabled": False}},
        },
        {"patches": {"trusted-hosts": {}}},
        {
            "patches": {
                "odd.id with space": {
                    "s": 'quote " backslash \\ newline \n tab \t del \x7f nul \x00 é 😀 \u2028',
                    "n": 3,
                    "f": 0.5,
                    "nested": [["a"], []],
                }
            }
        },
    ],
    ids=["empty", "lists-and-bool", "top-level-and-disabled", "empty-table", "every-character"],
)
def test_the_toml_it_writes_reads_back_unchanged(config):
    assert tomllib.loads(module.to_toml(config)) == config


def test_a_value_toml_cannot_hold_is_refused_with_its_place():
    with pytest.raises(ValueError, match=r"patches\.trusted-hosts\.hosts holds a NoneType"):
        module.to_toml({"patches": {"trusted-hosts": {"hosts": None}}})
