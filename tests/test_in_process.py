"""The in-process runner (tests/conftest.py) against the installed script: the same bytes out, nothing leaked.

Most tests run hermes-patch in-process (issue 10); these show that a
command gives the same exit code, stdout and stderr both ways, including
where a process differs from a plain CliRunner (help width, warnings,
tracebacks, the environment, modules imported from patch_dirs).
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import click
import pytest

from conftest import ALL_PROCESSES, Runner, copy_fixture
from hermes_patch.cli import cli

ONLY_IN_PROCESS = pytest.mark.skipif(
    ALL_PROCESSES, reason="about the in-process runner (HERMES_PATCH_TEST_PROCESSES=1)"
)
PROXY = '[patches.relax-ws-peer-check]\ntrusted_proxies = ["127.0.0.5/32"]\n'


def both(tmp_path: Path, *args: str, config: str = "", **kw) -> tuple:
    """(in-process, process) results of ``hermes-patch *args`` on two identical copies of r0_15, with paths made equal."""
    out = []
    for how in ("inproc", "proc"):
        run = Runner(tmp_path / how, process=how == "proc") if (tmp_path / how).mkdir() is None else None
        run.configure(config)
        root = copy_fixture("r0_15", tmp_path / how / "sp")
        argv = [a.replace("{root}", str(root)) for a in args]
        proc = run(*argv, **kw)
        out.append(
            (
                proc.returncode,
                proc.stdout.replace(str(tmp_path / how), "<tmp>"),
                proc.stderr.replace(str(tmp_path / how), "<tmp>"),
            )
        )
    return tuple(out)


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("apply", "--help"),
        ("list", "-v"),
        ("status", "--root", "{root}"),
        ("status", "--json", "--root", "{root}"),
        ("apply", "--dry-run", "--root", "{root}"),
        ("apply", "nope", "--root", "{root}"),
        ("status", "--root", "{root}/missing"),
        ("verify", "--proxy", "not an address", "--root", "{root}"),
    ],
    ids=lambda a: " ".join(a).replace("{root}", "ROOT"),
)
def test_a_command_gives_the_same_output_in_process_and_as_a_process(tmp_path, args):
    inproc, proc = both(tmp_path, *args, config=PROXY)
    assert inproc == proc


def test_a_bad_configuration_is_the_same_paragraph_both_ways(tmp_path):
    inproc, proc = both(tmp_path, "status", "--root", "{root}", config="colour = 1\n")
    assert inproc == proc and inproc[0] == 2 and "unknown key(s) colour" in inproc[2]


def test_the_test_environment_does_not_leak_into_the_command_and_is_put_back(tmp_path, monkeypatch, run: Runner):
    elsewhere = tmp_path / "elsewhere.toml"
    elsewhere.write_text("colour = 1\n")
    monkeypatch.setenv("HERMES_PATCH_CONFIG", str(elsewhere))  # Runner drops HERMES_PATCH_* as before
    root = copy_fixture("r0_15", tmp_path / "sp")
    before = dict(os.environ)
    proc = run("status", "--root", str(root), env={"COLUMNS": "40"})
    assert proc.returncode == 1 and f"config {run.config}" in proc.stdout
    assert dict(os.environ) == before and sys.argv[0] != run.exe


@ONLY_IN_PROCESS
def test_an_escaping_exception_is_exit_2_with_the_traceback_for_the_report(run: Runner):
    """Never the interpreter's exit 1, which `status` means as "pending" (helper-22)."""

    @cli.command("test-boom", hidden=True)
    def boom() -> None:
        raise KeyError("boom")

    try:
        proc = run.raw("test-boom")
    finally:
        cli.commands.pop("test-boom")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("Traceback (most recent call last):") and "KeyError: 'boom'\n" in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: hermes-patch hit an internal error: KeyError: 'boom'") and "please report it" in last


@ONLY_IN_PROCESS
def test_a_warning_is_printed_on_stderr_as_a_process_prints_it(run: Runner):
    @cli.command("test-warn", hidden=True)
    def warn() -> None:
        warnings.warn("something odd", UserWarning, stacklevel=1)
        warnings.warn("hidden in a process", DeprecationWarning, stacklevel=1)
        click.echo("done")

    try:
        proc = run.raw("test-warn")
    finally:
        cli.commands.pop("test-warn")
    assert proc.returncode == 0 and proc.stdout == "done\n"
    assert proc.stderr.endswith(
        'UserWarning: something odd\n  warnings.warn("something odd", UserWarning, stacklevel=1)\n'
    )
    assert "hidden in a process" not in proc.stderr


def test_a_patch_module_changed_between_two_commands_is_imported_again(tmp_path, run: Runner):
    folder = tmp_path / "mine"
    folder.mkdir()
    module = folder / "mine.py"
    source = (Path(__file__).parent / "plugins" / "hermes_patch_example" / "forwarded_prefix.py").read_text()
    module.write_text(source)
    run.configure(f'patch_dirs = ["{folder}"]\n')
    first = run("list", "--config", str(run.config), check=0).stdout
    module.write_text(source.replace('ID = "forwarded-prefix"', 'ID = "forwarded-prefix-2"'))
    second = run("list", "--config", str(run.config), check=0).stdout
    assert "forwarded-prefix " in first and "forwarded-prefix-2 " in second and "forwarded-prefix " not in second


@ONLY_IN_PROCESS
def test_a_kill_fault_refuses_to_run_in_process(tmp_path, run: Runner):
    with pytest.raises(pytest.fail.Exception, match="would kill pytest"):
        run("apply", "--root", str(tmp_path), env={"HERMES_PATCH_FAULT": "rename:1"})
    with pytest.raises(pytest.fail.Exception, match="PYTHONPATH is read when an interpreter starts"):
        run("list", env={"PYTHONPATH": str(tmp_path)})
