"""Which heavy libraries each command imports (behaviour, not timing).

``status --json`` runs in CI and at every service start: it must not pay for
libcst (the codemods) or rich (human output). ``apply`` needs libcst, which
also proves the probe below sees an import when there is one.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import Runner, copy_fixture

# Runs the CLI as the installed script does, then reports at exit (after
# click's sys.exit) which of the watched modules were imported.
PROBE = """
import atexit, sys
WATCHED = ("libcst", "rich")
atexit.register(lambda: sys.stderr.write("\\nIMPORTED=" + ",".join(m for m in WATCHED if m in sys.modules) + "\\n"))
sys.argv = ["hermes-patch", *sys.argv[1:]]
from hermes_patch.cli import main
main()
"""


def imported(run: Runner, *args: str) -> tuple[int, set[str]]:
    cmd = [sys.executable, "-c", PROBE, *args]
    if args[0] != "list":
        cmd += ["--state-dir", str(run.state), "--config", str(run.config)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=run.env, timeout=300)
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("IMPORTED="), proc.stderr
    return proc.returncode, {m for m in last[len("IMPORTED=") :].split(",") if m}


@pytest.mark.parametrize(
    "config",
    ["", '[patches.relax-ws-peer-check]\ntrusted_proxies = ["127.0.0.5/32"]\n'],
    ids=["default", "trusted-proxies"],
)
@pytest.mark.slow
def test_status_json_imports_neither_libcst_nor_rich(tmp_path, run: Runner, config):
    run.configure(config)
    root = copy_fixture("r0_16", tmp_path / "sp")
    assert imported(run, "status", "--json", "--root", str(root)) == (1, set())  # cold, pending

    code, modules = imported(run, "apply", "--root", str(root))
    assert code == 0 and "libcst" in modules  # the probe does see imports

    assert imported(run, "status", "--json", "--root", str(root)) == (0, set())  # warm, from the ledger
    (run.state / "ledger.json").unlink()
    assert imported(run, "status", "--json", "--root", str(root)) == (0, set())  # cold on a patched file

    code, modules = imported(run, "status", "--json", "--file", str(tmp_path / "missing.py"))
    assert code == 2 and modules == set()  # the error paragraph too


def test_revert_needs_no_libcst(tmp_path, run: Runner):
    root = copy_fixture("r0_15", tmp_path / "sp")
    run("apply", "--root", str(root), check=0)
    code, modules = imported(run, "revert", "--root", str(root))
    assert code == 0 and "libcst" not in modules
