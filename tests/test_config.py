"""hermes_patch.config: where the configuration is, what it may hold, and what a bad one says.

Each refusal is one paragraph that names the file, the key at fault and the
next command; nothing in the file is ever run. The CLI side (exit 2, the
paragraph on stderr) is in test_hostile_inputs.py and test_patches.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hermes_patch.config import Config, check_ids, config_from_bytes, default_config_path, load_config
from hermes_patch.core.errors import ConfigError

NEXT = "`hermes-patch status`"  # the next command every configuration refusal ends with


def paragraph(message: str, path: Path, *facts: str) -> bool:
    """One paragraph that names ``path`` once, each of ``facts`` and, last, the next command."""
    return (
        "\n" not in message.strip()
        and message.count(str(path)) == 1
        and all(fact in message for fact in facts)
        and message.rstrip(".").endswith(NEXT)
    )


def refusal(tmp_path: Path, text: str | bytes) -> str:
    """The message ``load_config`` refuses ``text`` with, checked for the file's path and the next step."""
    path = tmp_path / "config.toml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert paragraph(message, path), message
    return message


# -- where it is ----------------------------------------------------------------------------------


def test_the_environment_names_the_file_else_the_user_config_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HERMES_PATCH_CONFIG", "~/etc/hp.toml")
    assert default_config_path() == tmp_path / "etc" / "hp.toml"
    monkeypatch.delenv("HERMES_PATCH_CONFIG")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert default_config_path() == tmp_path / "xdg" / "hermes-patch" / "config.toml"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert default_config_path() == tmp_path / ".config" / "hermes-patch" / "config.toml"


def test_a_missing_default_file_means_defaults_and_a_missing_named_file_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HERMES_PATCH_CONFIG", str(tmp_path / "absent.toml"))
    config = load_config(None)
    assert config == Config(path=tmp_path / "absent.toml", exists=False)
    assert config.enabled("relax-ws-peer-check") and config.params("relax-ws-peer-check") == {}
    assert config.patch_dirs == () and config.allow_version is False
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "named.toml")
    assert paragraph(str(caught.value), tmp_path / "named.toml", "does not exist", "--config"), str(caught.value)


def test_an_unreadable_file_says_why(tmp_path):
    folder = tmp_path / "config.toml"
    folder.mkdir()
    with pytest.raises(ConfigError) as caught:
        load_config(folder)
    assert paragraph(str(caught.value), folder, "cannot be read: Is a directory"), str(caught.value)


# -- what it holds ----------------------------------------------------------------------------------


def test_a_full_configuration_is_read_as_written(tmp_path):
    (tmp_path / "mine").mkdir()
    path = tmp_path / "conf" / "config.toml"
    path.parent.mkdir()
    path.write_text(
        'patch_dirs = ["../mine", "extra"]\n'
        "allow_version = true\n"
        "[patches.relax-ws-peer-check]\n"
        'trusted_proxies = ["10.0.0.0/8"]\n'
        "[patches.public-action-status]\n"
        "enabled = false\n"
    )
    config = load_config(path)
    assert config.exists and config.path == path and config.allow_version is True
    # Relative folders are relative to the file, and resolved (a folder need not exist yet).
    assert config.patch_dirs == ((tmp_path / "mine").resolve(), (tmp_path / "conf" / "extra").resolve())
    assert config.params("relax-ws-peer-check") == {"trusted_proxies": ["10.0.0.0/8"]}
    assert not config.enabled("public-action-status") and config.params("public-action-status") == {}
    assert config.enabled("trusted-hosts")  # no table: on, with its defaults


def test_a_home_relative_patch_dir_is_expanded(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    config = config_from_bytes(b'patch_dirs = ["~/patches"]\n', tmp_path / "c" / "config.toml")
    assert config.patch_dirs == ((tmp_path / "patches").resolve(),)


def test_an_empty_file_is_the_defaults(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("")
    assert load_config(path) == Config(path=path, exists=True)


# -- what a bad one says: the key at fault, the file, the next command ---------------------------------------

BAD = {
    "TOML syntax": ("[patches\n", "is not valid TOML: "),
    "not UTF-8": (b"# caf\xe9\n", "is not valid TOML: "),
    "unknown top-level keys": (
        "colour = 1\nhooks = true\n",
        "unknown key(s) colour, hooks; the configuration takes python, patch_dirs, allow_version and [patches.<id>] tables.",
    ),
    "patches not a table": ("patches = 1\n", "`patches` must be tables, one per patch: [patches.<id>]."),
    "a patch entry not a table": ('[patches]\ntrusted-hosts = "x"\n', "`patches` must be tables"),
    "enabled not a boolean": (
        '[patches.trusted-hosts]\nenabled = "no"\n',
        "[patches.trusted-hosts] enabled must be true or false.",
    ),
    "patch_dirs not a list": ('patch_dirs = "/opt/p"\n', "patch_dirs must be a list of folder paths."),
    "patch_dirs holding a number": ("patch_dirs = [1]\n", "patch_dirs must be a list of folder paths."),
    "allow_version not a boolean": ("allow_version = 1\n", "allow_version must be true or false."),
    "nested too deeply": (
        "x = " + "[" * 2000 + "]" * 2000 + "\n",
        "nests arrays or tables too deeply to read (a configuration needs two levels)",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_configuration_is_one_paragraph_naming_what_is_wrong(case, tmp_path):
    text, expected = BAD[case]
    assert expected in refusal(tmp_path, text)


def test_a_toml_error_gives_the_line_and_column(tmp_path):
    message = refusal(tmp_path, 'allow_version = true\n[patches.trusted-hosts]\nhosts = ["a" "b"]\n')
    assert "is not valid TOML: " in message and "(at line 3, column 14)" in message


def test_unknown_patch_ids_are_refused_with_the_known_ones(tmp_path):
    config = config_from_bytes(b"[patches.nope]\n[patches.also-nope]\n[patches.trusted-hosts]\n", tmp_path / "c.toml")
    with pytest.raises(ConfigError) as caught:
        check_ids(config, ["trusted-hosts", "cors-origins"])
    message = str(caught.value)
    assert "no patch has the id also-nope, nope" in message and str(tmp_path / "c.toml") in message
    assert "cors-origins, trusted-hosts" in message and "`hermes-patch list`" in message
    check_ids(config_from_bytes(b"[patches.trusted-hosts]\n", tmp_path / "c.toml"), ["trusted-hosts"])


def test_a_patch_parameter_error_names_the_file_and_the_next_command(tmp_path):
    config = config_from_bytes(b"", tmp_path / "c.toml")
    message = str(config.error("[patches.x] prefix: must start with /"))
    assert paragraph(message, tmp_path / "c.toml", "[patches.x] prefix: must start with /"), message
    located = str(config.error(f"{tmp_path / 'c.toml'} says so; run `hermes-patch setup`"))
    assert located.count(str(tmp_path / "c.toml")) == 1 and located.count("`hermes-patch") == 1  # nothing added twice


def test_values_are_data_never_code(tmp_path):
    canary = tmp_path / "canary"
    text = f"[patches.x]\nv = \"__import__('os').system('touch {canary}')\"\n"
    config = config_from_bytes(text.encode(), tmp_path / "c.toml")
    assert config.params("x") == {"v": f"__import__('os').system('touch {canary}')"}
    assert not canary.exists()


# -- who may change it ------------------------------------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="the write-bit rule is checked for root and the running user")
def test_a_configuration_others_can_write_is_refused_with_the_chmod_to_run(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("")
    path.chmod(0o666)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert f"`chmod go-w {path}`" in message and "--config" in message
    path.chmod(0o644)
    assert load_config(path).exists


@pytest.mark.skipif(os.geteuid() != 0, reason="the write-bit rule is checked for root and the running user")
def test_a_patch_dir_others_can_write_is_refused(tmp_path):
    folder = tmp_path / "patches"
    folder.mkdir()
    folder.chmod(0o777)
    path = tmp_path / "config.toml"
    path.write_text(f'patch_dirs = ["{folder}"]\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert f"`chmod go-w {folder}`" in str(caught.value) and "patch_dirs" in str(caught.value)
