"""durable-action-result: an action's exit code outlives the dashboard process that started it.

Upstream rule (every release 0.13.0-0.19.0): ``_spawn_hermes_action`` starts
``python -m hermes_cli.main <subcommand>`` detached, its output appended to
``$HERMES_HOME/logs/<action>.log``, and keeps the ``Popen`` handle in the
module-level ``_ACTION_PROCS``. ``GET /api/actions/<name>/status`` reads the
exit code from that handle only. ``hermes update`` ends by stopping the
running dashboard (0.14.0 ``hermes_cli/main.py``,
``_kill_stale_dashboard_processes``); a supervisor starts a new one, whose
``_ACTION_PROCS`` is empty, so it answers ``running: false, exit_code:
null`` and the page shows "Action failed (exit ?)" after a successful
update (hermes-agent#47864, #62118; 0.16's in-memory ``_ACTION_RESULTS``
does not survive a restart either).

The edit makes the action leave its result where a restarted dashboard
finds it, in the action's own log:

* a helper class after ``_ACTION_PROCS`` (``_HermesPatchActionResult``);
* in ``_spawn_hermes_action``, right after ``cmd = [...]``: the command is
  run through a small wrapper (``python -c``, the same interpreter) that
  writes ``=== <name> running, pid N (recorded by hermes-patch) ===``,
  runs the real command with the same stdin, stdout, cwd and environment,
  forwards SIGTERM/SIGINT/SIGHUP to it (its handlers are in place before the
  running line is written; a signal that comes before the command starts is
  passed on once it has), writes ``=== <name> finished, exit
  N (recorded by hermes-patch) ===`` and exits with the same status (a
  signal death is re-raised, so the handle's code is the command's);
* in ``get_action_status``, right after ``proc = _ACTION_PROCS.get(name)``:
  when this process has no handle, the last run in the log answers: its
  exit code when the finish line is there, ``running`` while the wrapper's
  pid is alive (Linux checks ``/proc/<pid>/cmdline`` against pid reuse),
  otherwise nothing (upstream's answer). A run that upstream recorded
  without spawning (0.16+ ``_record_completed_action``, "=== <name>
  completed ===") is left to upstream.

No new file is created: the lines land in the log the dashboard already
keeps (with the mode upstream gives it), and a page tailing the log shows
them. A module with no ``_ACTION_PROCS`` keeps no action handles, so the
fault cannot occur there (not-needed).
"""

from __future__ import annotations

import ast
from typing import NamedTuple

from hermes_patch.core.edits import AfterIn, After, Change, Edit, Example, NotNeeded, Unrecognized
from hermes_patch.core.patch import Patch
from hermes_patch.core.workspace import Workspace

PROCS = "_ACTION_PROCS"
SPAWN = "_spawn_hermes_action"
STATUS = "get_action_status"
HELPER = "_HermesPatchActionResult"
NOTE = "an action's exit code outlives the dashboard that started it"

#: The wrapper run as ``python -c WRAPPER <name> <cmd...>``. It must not
#: contain "hermes dashboard" or "hermes_cli.main dashboard": upstream's
#: ``_find_stale_dashboard_pids`` matches those in every command line.
WRAPPER = (
    "import os, signal, subprocess, sys\n"
    "name, cmd = sys.argv[1], sys.argv[2:]\n"
    "child, early = None, []\n"
    "def forward(n, frame):\n"
    "    early.append(n) if child is None else child.send_signal(n)\n"
    "for sig in ('SIGTERM', 'SIGINT', 'SIGHUP'):\n"
    "    if hasattr(signal, sig):\n"
    "        signal.signal(getattr(signal, sig), forward)\n"
    "def note(text):\n"
    "    os.write(1, ('=== %s %s (recorded by hermes-patch) ===\\n' % (name, text)).encode())\n"
    "note('running, pid %d' % os.getpid())\n"
    "try:\n"
    "    child = subprocess.Popen(cmd)\n"
    "except OSError:\n"
    "    note('finished, exit 127')\n"
    "    sys.exit(127)\n"
    "for n in early:\n"
    "    child.send_signal(n)\n"
    "code = child.wait()\n"
    "note('finished, exit %d' % code)\n"
    "if code < 0 and hasattr(os, 'kill'):\n"
    "    try:\n"
    "        signal.signal(-code, signal.SIG_DFL)\n"
    "    except (OSError, ValueError):\n"
    "        pass\n"
    "    os.kill(os.getpid(), -code)\n"
    "sys.exit(code if 0 <= code < 256 else 1)\n"
)

HELPER_CODE = f'''
class {HELPER}:
    """Added by hermes-patch: actions record their exit code in their own log.

    A dashboard restarted while (or after) an action ran has no Popen handle;
    the status endpoint then reads the last run's result from the log instead.
    """

    WRAPPER = {WRAPPER!r}

    @staticmethod
    def command(cmd, name):
        """``cmd`` run through the wrapper that writes the running and finished lines."""
        return [cmd[0], "-c", {HELPER}.WRAPPER, name, *cmd]

    @staticmethod
    def recorded(name):
        """A Popen-like record of the last run of ``name`` found in its log, or None."""
        import re
        import types

        try:
            with open(_ACTION_LOG_DIR / _ACTION_LOG_FILES[name], "rb") as fh:
                fh.seek(0, 2)
                fh.seek(max(0, fh.tell() - 262144))
                text = fh.read().decode("utf-8", "replace")
        except (KeyError, OSError):
            return None
        start = max(text.rfind("=== %s started " % name), text.rfind("=== %s completed " % name))
        if start < 0 or text.startswith("=== %s completed " % name, start):
            return None
        tag = r"^=== %s %s \\(recorded by hermes-patch\\) ===$"
        ran = re.search(tag % (re.escape(name), r"running, pid (\\d+)"), text[start:], re.M)
        done = re.search(tag % (re.escape(name), r"finished, exit (-?\\d+)"), text[start:], re.M)
        pid = int(ran.group(1)) if ran else None
        if done:
            code = int(done.group(1))
        elif pid is not None and os.name == "posix" and {HELPER}._alive(pid):
            code = None
        else:
            return None
        return types.SimpleNamespace(pid=pid, poll=lambda: code, wait=lambda timeout=None: code)

    @staticmethod
    def _alive(pid):
        """True while ``pid`` runs and (where /proc exists) is our wrapper, not a reused pid."""
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as fh:
                return b"recorded by hermes-patch" in fh.read()
        except OSError:
            return not os.path.isdir("/proc/self")
'''

EDITS = (
    # The helper's nested lines use the spawner's indent unit, as upstream's functions around it do.
    Edit(After(PROCS), HELPER_CODE, note=NOTE, what="helper", blank_lines=2, unit_of=SPAWN),
    Edit(AfterIn(SPAWN, "cmd"), f"cmd = {HELPER}.command(cmd, name)", what="wrapped command"),
    Edit(
        AfterIn(STATUS, "proc", f"{PROCS}.get("),
        f"if proc is None:\n    proc = {HELPER}.recorded(name)",
        what="read of the log",
    ),
)

_BEFORE = (
    "import os\nimport subprocess\n\n_ACTION_PROCS = {}\n\n\n"
    "def _spawn_hermes_action(subcommand, name):\n"
    '    cmd = ["python", "-m", "hermes_cli.main", *subcommand]\n'
    "    _ACTION_PROCS[name] = subprocess.Popen(cmd)\n\n\n"
    "def get_action_status(name):\n"
    "    proc = _ACTION_PROCS.get(name)\n"
    "    return proc and proc.poll()\n"
)
_AFTER = (
    _BEFORE.replace("{}\n", "{}\n\n\n# hermes-patch: durable-action-result (" + NOTE + ")" + HELPER_CODE, 1)
    .replace(
        "*subcommand]\n",
        f"*subcommand]\n    # hermes-patch: durable-action-result\n    cmd = {HELPER}.command(cmd, name)\n",
    )
    .replace(
        ".get(name)\n",
        f".get(name)\n    # hermes-patch: durable-action-result\n    if proc is None:\n        proc = {HELPER}.recorded(name)\n",
    )
)


class Handles(NamedTuple):
    """Whether the entry module (``file``) keeps the actions' Popen handles in ``_ACTION_PROCS``."""

    file: str
    kept: bool


class DurableActionResult(Patch[Handles]):
    ID = "durable-action-result"
    DESCRIPTION = "Dashboard actions (the Update button) write their exit code into their own log; a restarted dashboard's status poll reports it instead of 'exit ?'."
    VERSIONS = ">=0.13.0"
    UPSTREAM = "hermes-agent#47864, hermes-agent#62118; _ACTION_PROCS holds the only Popen handle in 0.13.0-0.19.0"
    EXAMPLES = (
        Example(_BEFORE, _AFTER),
        Example("import os\n", state="not-needed", reason="keeps no action process handles"),
        Example(
            "from hermes_cli.actions import _ACTION_PROCS\n", state="unknown-shape", reason="one top-level assignment"
        ),
        Example(_BEFORE.replace("import os\n", ""), state="unknown-shape", reason="`import os`"),
        Example(_BEFORE.replace("Popen(cmd)", "Popen(cmd[0])"), state="unknown-shape", reason="subprocess.Popen(cmd"),
    )

    def locate(self, ws: Workspace) -> Handles | Unrecognized:
        """Whether the release keeps its actions' Popen handles in ``_ACTION_PROCS`` (the three anchors checked)."""
        src = ws.entry_source()
        file = src.path.name
        procs = [b for b in ws.binding(PROCS) if not isinstance(b.node, ast.ClassDef)]
        if not procs:
            if ws.resolve(PROCS) is not None:
                return Unrecognized(
                    f"{PROCS} is imported into {file} from another module; this patch knows the releases that keep it in web_server.py"
                )
            return Handles(file, kept=False)
        if len(procs) != 1 or not isinstance(procs[0].node, (ast.Assign, ast.AnnAssign)):
            return Unrecognized(
                f"looked for one top-level assignment of {PROCS} in {file}; found {len(procs)} binding(s)"
            )
        if not any(
            isinstance(s, ast.Import) and any(a.name == "os" and a.asname is None for a in s.names)
            for s in src.tree.body
        ):
            return Unrecognized(f"{file} has no top-level `import os`, which the inserted helper uses")
        functions = []
        for name in (SPAWN, STATUS):
            bindings = ws.binding(name)
            fn = bindings[0].node if len(bindings) == 1 else None
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) or all(
                a.arg != "name" for a in fn.args.args
            ):
                return Unrecognized(
                    f"looked for one top-level def {name}(..., name) in {file}; found {len(bindings)} binding(s) ({ws.closest(name)})"
                )
            functions.append(fn)
        spawn, status = functions
        if sum(_assigns(s, "cmd") for s in spawn.body) != 1 or not _popen_of_cmd(spawn):
            return Unrecognized(f"{SPAWN}() does not build one `cmd = [...]` and pass it to subprocess.Popen(cmd, ...)")
        if sum(_is_procs_get(s) for s in status.body) != 1:
            return Unrecognized(f"{STATUS}() does not read its handle with one `proc = {PROCS}.get(name)`")
        return Handles(file, kept=True)

    def edits(self, handles: Handles) -> Change | NotNeeded:
        if not handles.kept:
            return NotNeeded(
                f"{handles.file} keeps no action process handles ({PROCS} is not bound): a restart loses no result"
            )
        return Change(
            EDITS,
            pending=f"the status poll reads the exit code only from this process's {PROCS}; a restarted dashboard answers exit_code null",
            applied=f"actions write their exit code into their log; {STATUS}() reads it when this process has no handle",
        )


def _assigns(stmt: ast.stmt, name: str) -> bool:
    return isinstance(stmt, ast.Assign) and [ast.unparse(t) for t in stmt.targets] == [name]


def _is_procs_get(stmt: ast.stmt) -> bool:
    """``proc = _ACTION_PROCS.get(name)``."""
    call = stmt.value if isinstance(stmt, ast.Assign) and _assigns(stmt, "proc") else None
    return (
        isinstance(call, ast.Call)
        and ast.unparse(call.func) == f"{PROCS}.get"
        and len(call.args) == 1
        and _first_arg(call, "name")
    )


def _popen_of_cmd(fn: ast.AST) -> bool:
    """The function calls ``subprocess.Popen(cmd, ...)``."""
    return any(
        isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr == "Popen"
        and _first_arg(n, "cmd")
        for n in ast.walk(fn)
    )


def _first_arg(call: ast.Call, name: str) -> bool:
    return bool(call.args) and isinstance(call.args[0], ast.Name) and call.args[0].id == name
