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

from hermes_patch.engine import blocks_of
from hermes_patch.patch import MARKER_PREFIX, Detection, Patch, Site, State
from hermes_patch.workspace import Binding, Workspace

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


def render_helper(unit: str, newline: str) -> str:
    """The helper class (two blank lines, marker, class) with indent ``unit``."""
    i, ii, iii = unit, unit * 2, unit * 3
    lines = [
        "",
        "",
        f"{MARKER_PREFIX}durable-action-result ({NOTE})",
        f"class {HELPER}:",
        f'{i}"""Added by hermes-patch: actions record their exit code in their own log.',
        "",
        f"{i}A dashboard restarted while (or after) an action ran has no Popen handle;",
        f"{i}the status endpoint then reads the last run's result from the log instead.",
        f'{i}"""',
        "",
        f"{i}WRAPPER = {WRAPPER!r}",
        "",
        f"{i}@staticmethod",
        f"{i}def command(cmd, name):",
        f'{ii}"""``cmd`` run through the wrapper that writes the running and finished lines."""',
        f'{ii}return [cmd[0], "-c", {HELPER}.WRAPPER, name, *cmd]',
        "",
        f"{i}@staticmethod",
        f"{i}def recorded(name):",
        f'{ii}"""A Popen-like record of the last run of ``name`` found in its log, or None."""',
        f"{ii}import re",
        f"{ii}import types",
        "",
        f"{ii}try:",
        f'{iii}with open(_ACTION_LOG_DIR / _ACTION_LOG_FILES[name], "rb") as fh:',
        f"{iii}{i}fh.seek(0, 2)",
        f"{iii}{i}fh.seek(max(0, fh.tell() - 262144))",
        f'{iii}{i}text = fh.read().decode("utf-8", "replace")',
        f"{ii}except (KeyError, OSError):",
        f"{iii}return None",
        f'{ii}start = max(text.rfind("=== %s started " % name), text.rfind("=== %s completed " % name))',
        f'{ii}if start < 0 or text.startswith("=== %s completed " % name, start):',
        f"{iii}return None",
        f'{ii}tag = r"^=== %s %s \\(recorded by hermes-patch\\) ===$"',
        f'{ii}ran = re.search(tag % (re.escape(name), r"running, pid (\\d+)"), text[start:], re.M)',
        f'{ii}done = re.search(tag % (re.escape(name), r"finished, exit (-?\\d+)"), text[start:], re.M)',
        f"{ii}pid = int(ran.group(1)) if ran else None",
        f"{ii}if done:",
        f"{iii}code = int(done.group(1))",
        f'{ii}elif pid is not None and os.name == "posix" and {HELPER}._alive(pid):',
        f"{iii}code = None",
        f"{ii}else:",
        f"{iii}return None",
        f"{ii}return types.SimpleNamespace(pid=pid, poll=lambda: code, wait=lambda timeout=None: code)",
        "",
        f"{i}@staticmethod",
        f"{i}def _alive(pid):",
        f'{ii}"""True while ``pid`` runs and (where /proc exists) is our wrapper, not a reused pid."""',
        f"{ii}try:",
        f"{iii}os.kill(pid, 0)",
        f"{ii}except OSError:",
        f"{iii}return False",
        f"{ii}try:",
        f'{iii}with open("/proc/%d/cmdline" % pid, "rb") as fh:',
        f'{iii}{i}return b"recorded by hermes-patch" in fh.read()',
        f"{ii}except OSError:",
        f'{iii}return not os.path.isdir("/proc/self")',
    ]
    return newline.join(lines) + newline


def render_wrap(newline: str) -> str:
    """The statement after ``cmd = [...]`` in ``_spawn_hermes_action`` (unindented)."""
    return newline.join([f"{MARKER_PREFIX}durable-action-result", f"cmd = {HELPER}.command(cmd, name)"]) + newline


def render_read(unit: str, newline: str) -> str:
    """The statement after ``proc = _ACTION_PROCS.get(name)`` in ``get_action_status`` (unindented)."""
    return (
        newline.join(
            [f"{MARKER_PREFIX}durable-action-result", "if proc is None:", f"{unit}proc = {HELPER}.recorded(name)"]
        )
        + newline
    )


def _owned_lines(ws: Workspace, patch_id: str) -> set[int]:
    """Lines of the entry module inside our own blocks."""
    return {line for b in blocks_of(ws, patch_id, [ws.entry]).get(ws.entry, []) for line in range(b.first, b.last + 1)}


def _assigns(stmt: ast.stmt, name: str) -> bool:
    return (
        isinstance(stmt, ast.Assign)
        and len(stmt.targets) == 1
        and isinstance(stmt.targets[0], ast.Name)
        and stmt.targets[0].id == name
    )


def _is_procs_get(stmt: ast.stmt) -> bool:
    """``proc = _ACTION_PROCS.get(name)``."""
    value = stmt.value if _assigns(stmt, "proc") else None  # type: ignore[attr-defined]
    return (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Attribute)
        and value.func.attr == "get"
        and isinstance(value.func.value, ast.Name)
        and value.func.value.id == PROCS
        and len(value.args) == 1
        and isinstance(value.args[0], ast.Name)
        and value.args[0].id == "name"
    )


def _popen_of_cmd(fn: ast.AST) -> bool:
    """The function calls ``subprocess.Popen(cmd, ...)``."""
    return any(
        isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr == "Popen"
        and n.args
        and isinstance(n.args[0], ast.Name)
        and n.args[0].id == "cmd"
        for n in ast.walk(fn)
    )


def _params(fn: ast.AST) -> list[str]:
    return [a.arg for a in fn.args.args] if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) else []  # type: ignore[union-attr]


def _unit(src, fn: ast.AST) -> str:
    first = fn.body[0].lineno  # type: ignore[attr-defined]
    line = src.lines(first, first)
    return line[: len(line) - len(line.lstrip(" \t"))] or "    "


def _indent(code: str, prefix: str) -> str:
    return "".join(prefix + line if line.strip() else line for line in code.splitlines(keepends=True))


class DurableActionResult(Patch):
    ID = "durable-action-result"
    DESCRIPTION = "Dashboard actions (the Update button) write their exit code into their own log; a restarted dashboard's status poll reports it instead of 'exit ?'."
    VERSIONS = ">=0.13.0"
    UPSTREAM = "hermes-agent#47864, hermes-agent#62118; _ACTION_PROCS holds the only Popen handle in 0.13.0-0.19.0"

    def _shape(self, ws: Workspace) -> tuple[Binding, Binding, Binding] | Detection:
        """The three anchors (``_ACTION_PROCS``, the spawner, the status route), or the detection that explains their absence."""
        src = ws.entry_source()
        owned = _owned_lines(ws, self.ID)
        procs = [b for b in ws.binding(PROCS) if not (isinstance(b.node, ast.ClassDef))]
        if not procs:
            if ws.resolve(PROCS) is not None:
                return Detection(
                    State.UNKNOWN_SHAPE,
                    f"{PROCS} is imported into {src.path.name} from another module; this patch knows the releases that keep it in web_server.py",
                )
            return Detection(
                State.NOT_NEEDED,
                f"{src.path.name} keeps no action process handles ({PROCS} is not bound): a restart loses no result",
            )
        if len(procs) != 1 or not isinstance(procs[0].node, (ast.Assign, ast.AnnAssign)):
            return Detection(
                State.UNKNOWN_SHAPE,
                f"looked for one top-level assignment of {PROCS} in {src.path.name}; found {len(procs)} binding(s)",
            )
        if not any(
            isinstance(s, ast.Import) and any(a.name == "os" and a.asname is None for a in s.names)
            for s in src.tree.body
        ):
            return Detection(
                State.UNKNOWN_SHAPE, f"{src.path.name} has no top-level `import os`, which the inserted helper uses"
            )
        found: dict[str, Binding] = {}
        for name in (SPAWN, STATUS):
            bindings = ws.binding(name)
            if (
                len(bindings) != 1
                or not isinstance(bindings[0].node, (ast.FunctionDef, ast.AsyncFunctionDef))
                or "name" not in _params(bindings[0].node)
            ):
                return Detection(
                    State.UNKNOWN_SHAPE,
                    f"looked for one top-level def {name}(..., name) in {src.path.name}; found {len(bindings)} binding(s) ({ws.closest(name)})",
                )
            found[name] = bindings[0]
        spawn = found[SPAWN].node
        if sum(_assigns(s, "cmd") and s.lineno not in owned for s in spawn.body) != 1 or not _popen_of_cmd(spawn):  # type: ignore[attr-defined]
            return Detection(
                State.UNKNOWN_SHAPE,
                f"{SPAWN}() does not build one `cmd = [...]` and pass it to subprocess.Popen(cmd, ...)",
            )
        if sum(_is_procs_get(s) for s in found[STATUS].node.body) != 1:  # type: ignore[attr-defined]
            return Detection(
                State.UNKNOWN_SHAPE, f"{STATUS}() does not read its handle with one `proc = {PROCS}.get(name)`"
            )
        return procs[0], found[SPAWN], found[STATUS]

    def detect(self, ws: Workspace) -> Detection:
        shape = self._shape(ws)
        if isinstance(shape, Detection):
            return shape
        procs, spawn, status = shape
        blocks = blocks_of(ws, self.ID, [ws.entry]).get(ws.entry, [])
        if not blocks:
            return Detection(
                State.PENDING,
                f"the status poll reads the exit code only from this process's {PROCS}; a restarted dashboard answers exit_code null",
                sites=(
                    Site(ws.entry, PROCS, procs.first, procs.last),
                    Site(ws.entry, SPAWN, spawn.first, spawn.last),
                    Site(ws.entry, STATUS, status.first, status.last),
                ),
            )
        src = ws.entry_source()
        nl = src.newline
        if len(blocks) != 3:
            return Detection(
                State.DRIFTED, f"found {len(blocks)} {self.ID} blocks; expected 3 (partly applied or edited by hand)"
            )
        wrap = read = None
        for b in blocks:
            if spawn.first <= b.marker <= spawn.last:
                wrap = b
            elif status.first <= b.marker <= status.last:
                read = b
        helper = next((b for b in blocks if b is not wrap and b is not read), None)
        if wrap is None or read is None or helper is None or helper.first != procs.last + 1:
            return Detection(
                State.DRIFTED, f"the {self.ID} blocks are no longer after {PROCS}, in {SPAWN}() and in {STATUS}()"
            )
        unit = _unit(src, spawn.node)
        if src.lines(helper.first, helper.last) != render_helper(unit, nl):
            return Detection(
                State.DRIFTED, f"the {HELPER} helper (line {helper.marker}) was edited after hermes-patch wrote it"
            )
        owned = _owned_lines(ws, self.ID)
        cmd = next(s for s in spawn.node.body if _assigns(s, "cmd") and s.lineno not in owned)  # type: ignore[attr-defined]
        get = next(s for s in status.node.body if _is_procs_get(s))  # type: ignore[attr-defined]
        checks = (
            (wrap, cmd, render_wrap(nl), SPAWN),
            (read, get, render_read(_unit(src, status.node), nl), STATUS),
        )
        for block, anchor, code, fn in checks:
            indent = src.lines(anchor.lineno, anchor.lineno)
            indent = indent[: len(indent) - len(indent.lstrip(" \t"))]
            if block.marker != (anchor.end_lineno or anchor.lineno) + 1 or src.lines(
                block.marker, block.last
            ) != _indent(code, indent):
                return Detection(
                    State.DRIFTED,
                    f"the {self.ID} block in {fn}() (line {block.marker}) was moved or edited after hermes-patch wrote it",
                )
        return Detection(
            State.APPLIED,
            f"actions write their exit code into their log; {STATUS}() reads it when this process has no handle",
        )

    def transformer(self, site: Site, workspace: Workspace):
        from hermes_patch.codemod import InsertAfter, InsertAfterInFunction, binds_name

        src = workspace.entry_source()
        shape = self._shape(workspace)
        assert not isinstance(shape, Detection)
        _, spawn, status = shape
        if site.name == PROCS:
            unit = _unit(src, spawn.node)
            return InsertAfter(PROCS, lambda module: render_helper(unit, module.default_newline))
        if site.name == SPAWN:
            return InsertAfterInFunction(
                SPAWN,
                lambda module, stmt: binds_name(stmt, "cmd") and HELPER not in module.code_for_node(stmt),
                lambda module: render_wrap(module.default_newline),
            )
        unit = _unit(src, status.node)
        return InsertAfterInFunction(
            STATUS,
            lambda module, stmt: binds_name(stmt, "proc") and f"{PROCS}.get(" in module.code_for_node(stmt),
            lambda module: render_read(unit, module.default_newline),
        )
