"""The message catalogue: the paragraph each failure renders, and the advice written once."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from hermes_patch.core import messages as m
from hermes_patch.core.errors import StateError, TargetError
from hermes_patch.core.source import Source, too_deep


def test_a_failure_renders_headline_facts_cause_outcome_and_next_command_in_one_paragraph():
    failure = m.Failure(
        "/sp/hermes_cli/web_server.py does not fit",
        "/sp/hermes_cli/web_server.py",
        cause="the release moved the handler",
        next_command="run `hermes-patch status`",
        facts=(("patch", "public-action-status"), ("installed", "0.19.0")),
    )
    assert str(failure) == (
        "/sp/hermes_cli/web_server.py does not fit (patch public-action-status, installed 0.19.0); the release moved "
        "the handler. Nothing was changed. Run `hermes-patch status`."
    )
    assert "\n" not in str(failure)


def test_a_headline_without_its_path_is_led_by_it_and_empty_parts_are_left_out():
    assert str(m.Failure("is empty", Path("/x.py"), outcome="")) == "/x.py: is empty."
    assert str(m.Failure("something failed.", outcome=m.NOTHING_WRITTEN)) == "something failed. Nothing was written."


def test_a_failure_raises_as_its_paragraph():
    failure = m.lock_held("/state/locks/ledger.lock", 120)
    with pytest.raises(StateError) as err:
        raise StateError(failure)
    assert str(err.value) == (
        "another hermes-patch has held the lock /state/locks/ledger.lock for 120 s. "
        "Wait for it to finish and run the command again."
    )
    assert err.value.args[0] is failure  # the parts stay available to whoever catches it


@pytest.mark.parametrize(
    ("method", "version", "commands"),
    [
        (None, None, "`hermes update`, or `pip install --force-reinstall --no-deps hermes-agent==<version>`"),
        ("file", "0.19.0", "`hermes update`, or `pip install --force-reinstall --no-deps hermes-agent==0.19.0`"),
        ("git", "0.19.0", "`git checkout -- hermes_cli`"),
        ("pip", "0.19.0", "`pip install --force-reinstall --no-deps hermes-agent==0.19.0`"),
        ("uv", "0.19.0", "`uv pip install --reinstall --no-deps hermes-agent==0.19.0`"),
        ("uv-tool", None, "`uv tool install --reinstall hermes-agent==<version>`"),
        ("pipx", "0.16.0", "`pipx install --force hermes-agent==0.16.0`"),
    ],
    ids=lambda v: str(v),
)
def test_restore_from_the_release_names_the_command_of_the_install_method(method, version, commands):
    assert m.reinstall_commands(version, method) == commands
    assert str(m.restore_from_release(version, method)) == (
        f"restore the file from the release ({commands}), then run `hermes-patch status`"
    )
    assert str(m.restore_from_release(version, method, what="the Hermes files", then="")) == (
        f"restore the Hermes files from the release ({commands})"
    )


def test_restore_names_the_interpreter_and_the_checkout_file_when_known():
    python, web = "/srv/hermes/venv/bin/python", "/srv/hermes/hermes_cli/web_server.py"
    assert m.reinstall_commands("0.19.0", "pip", web, python) == (
        "`/srv/hermes/venv/bin/python -m pip install --force-reinstall --no-deps hermes-agent==0.19.0`"
    )
    assert m.reinstall_commands("0.19.0", "uv", web, python) == (
        "`uv pip install --python /srv/hermes/venv/bin/python --reinstall --no-deps hermes-agent==0.19.0`"
    )
    # `hermes update` would stash the damaged file and put it back: a checkout restores it from git
    assert m.reinstall_commands("0.19.0", "git", web) == "`git -C /srv/hermes/hermes_cli checkout -- web_server.py`"
    assert m.reinstall_commands(None, "git") == "`git checkout -- hermes_cli`"


def test_a_failure_is_written_for_the_install_once_it_is_known():
    generic = m.Failure("/w.py is empty", "/w.py", next_command=m.restore_from_release(path="/w.py", instead="fix it"))
    assert str(generic).endswith(
        f"Fix it, or restore the file from the release ({m.reinstall_commands()}), then run `hermes-patch status`."
    )
    known = generic.for_install("0.16.0", "pipx")
    assert str(known).endswith(
        "Fix it, or restore the file from the release (`pipx install --force hermes-agent==0.16.0`), then run "
        "`hermes-patch status`."
    )
    plain = m.Failure("x failed", next_command="run `hermes-patch status`")
    assert plain.for_install("0.16.0", "pip") is plain


def test_a_forged_record_names_the_ledger_and_the_way_out():
    assert str(m.forged_record("/s/ledger.json", "names 'x'", then="hermes-patch hook show")) == (
        "the ledger /s/ledger.json names 'x'; a record hermes-patch wrote never does, so it was forged or damaged. "
        "Nothing was changed. Move the ledger aside (`mv /s/ledger.json /s/ledger.json.bad`) and run "
        "`hermes-patch hook show`."
    )


def test_an_untrusted_path_names_the_owner_to_run_as_or_the_advice():
    by_owner = str(
        m.untrusted("the Hermes install", "/srv/hermes is owned by bob", "root", "sudo -u bob hermes-patch apply")
    )
    assert by_owner.startswith("/srv/hermes is owned by bob, so the Hermes install is not under root's sole control")
    assert by_owner.endswith("Nothing was changed. Run it as that user: `sudo -u bob hermes-patch apply`.")
    by_mode = str(
        m.untrusted("the configuration", "/c is writable by every user (mode 0666)", "root", advice="chmod it")
    )
    assert by_mode.endswith("Nothing was changed. Chmod it.")


def test_the_refusal_of_an_untrusted_path_names_the_running_user_and_the_owner_command():
    from hermes_patch.trust import refusal

    text = refusal("the Hermes install", ("/srv/hermes is owned by uid 0", 0))
    assert f"is not under {pwd.getpwuid(os.geteuid()).pw_name}'s sole control" in text
    assert "Run it as that user: `sudo -u root hermes-patch " in text


@pytest.mark.parametrize(
    ("data", "headline"),
    [
        (b"", "is empty, so it is not a Hermes dashboard server"),
        (b"\xff\xfe = 1\n", "cannot be decoded as Python source"),
    ],
    ids=["empty", "undecodable"],
)
def test_a_file_that_cannot_be_read_as_python_says_restore_it_from_the_release(data, headline):
    path = Path("/sp/hermes_cli/web_server.py")
    with pytest.raises(TargetError) as err:
        Source.from_bytes(data, path)
    text = str(err.value)
    assert text.startswith(f"{path} {headline}") and "\n" not in text
    assert text.endswith(
        f"Restore the file from the release ({m.reinstall_commands()}), then run `hermes-patch status`."
    )


def test_the_same_advice_is_written_the_same_way_for_every_file_it_applies_to():
    with pytest.raises(TargetError) as err:
        _ = Source.from_bytes(b"def broken(:\n", Path("/w.py")).tree
    restore = str(m.restore_from_release())
    assert str(err.value).endswith(f"Fix it, or {restore}.")
    assert str(too_deep(Path("/w.py"))).endswith(f"Nothing was changed. {restore[0].upper()}{restore[1:]}.")


@pytest.mark.parametrize(("method", "as_json"), [("pip", False), ("git", False), ("pip", True)])
def test_the_command_line_writes_the_restore_advice_for_the_install_it_found(tmp_path, run, method, as_json):
    import json

    from conftest import copy_fixture

    root = copy_fixture("r0_15", tmp_path / ("site-packages" if method == "pip" else "checkout"))
    if method == "pip":
        (root / "hermes_agent-0.15.2.dist-info").mkdir()
        (root / "hermes_agent-0.15.2.dist-info/INSTALLER").write_text("pip\n")
    else:
        (root / ".git").mkdir()
    web = root / "hermes_cli/web_server.py"
    web.write_bytes(b"")
    result = run("status", "--root", str(root), *(["--json"] if as_json else []), check=2)
    expected = {
        "pip": "`pip install --force-reinstall --no-deps hermes-agent==0.15.2`",
        "git": f"`git -C {web.parent} checkout -- web_server.py`",
    }[method]
    said = f"Restore the file from the release ({expected}), then run `hermes-patch status`."
    assert "is empty, so it is not a Hermes dashboard server" in result.stderr and said in result.stderr
    if as_json:  # the error document carries the same paragraph
        assert json.loads(result.stdout)["error"]["message"] == result.stderr.removeprefix("error: ").rstrip("\n")


def test_an_orphaned_marker_says_delete_it_or_restore_the_file():
    text = str(m.orphaned_marker("/w.py", "the marker comment for x on line 3 is not followed by a statement"))
    assert text == (
        "/w.py: the marker comment for x on line 3 is not followed by a statement; hermes-patch will not guess. "
        "Nothing was changed. Delete that comment line if it is not ours, or restore the file from the release "
        f"({m.reinstall_commands()}), then run `hermes-patch status`."
    )


def test_a_bug_says_whose_and_what_to_attach():
    assert m.report_bug("the traceback printed on stderr") == (
        "this is a bug; please report it with the traceback printed on stderr"
    )
    assert m.report_bug("`hermes-patch status --json`", "the patch(es) x") == (
        "this is a bug in the patch(es) x; please report it with `hermes-patch status --json`"
    )


def test_a_missing_target_and_a_folder_named_as_the_target_say_what_to_pass():
    assert str(m.target_missing("/x/web_server.py")) == (
        "/x/web_server.py does not exist. Check the path, or let hermes-patch find the install by itself: "
        "`hermes-patch status` (or `--python /path/to/venv/bin/python`)."
    )
    assert str(m.target_is_a_directory("/x/hermes_cli")) == (
        "/x/hermes_cli is a directory; --file takes the file hermes_cli/web_server.py. For a checkout or a "
        "site-packages directory use `hermes-patch status --root /x/hermes_cli`."
    )


# -- the advice lives in the catalogue only --------------------------------------------

#: A phrase of shared advice, and the catalogue entry that writes it.
CATALOGUED = {
    "force-reinstall": "reinstall_commands / restore_from_release",
    "forged or damaged": "forged_record",
    "held the lock": "lock_held",
    "ledger aside": "move_ledger_aside",
    "sole control": "untrusted",
    "pip install -U": "UPGRADE",
    "will not guess": "orphaned_marker",
    "please report it": "report_bug",
    "the user who owns the Hermes install": "RUN_AS_OWNER",
    "`hermes-patch status --python /path/to/venv/bin/python`": "FIND_BY_PYTHON",
}
#: Modules that still spell some of it out themselves (none left). Never grow it.
NOT_YET: dict[str, set[str]] = {}


def _message_text(path: Path) -> str:
    """Every string literal of a module (f-string parts included), docstrings and bare strings left out."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    bare = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    return "\n".join(
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in bare
    )


def test_shared_advice_is_written_in_the_catalogue_only():
    package = Path(m.__file__).parent.parent  # hermes_patch/, every layer
    found = {}
    for module in sorted(package.rglob("*.py")):
        if module.name == "messages.py":
            continue
        text = _message_text(module)
        name = str(module.relative_to(package))
        spelled = {phrase for phrase in CATALOGUED if phrase in text} - NOT_YET.get(name, set())
        if spelled:
            found[name] = {phrase: CATALOGUED[phrase] for phrase in sorted(spelled)}
    assert found == {}, f"use hermes_patch.core.messages instead of spelling these out: {found}"


def test_the_owner_command_leaves_out_roots_own_state_dir_and_configuration(monkeypatch):
    from hermes_patch.trust import run_as_owner_hint

    monkeypatch.setattr(
        "sys.argv", ["hermes-patch", "apply", "--state-dir", "/root/st", "--config=/root/c.toml", "--root", "/srv/h"]
    )
    assert run_as_owner_hint(0) == "sudo -u root hermes-patch apply --root /srv/h"
