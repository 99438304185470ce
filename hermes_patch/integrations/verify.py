"""``hermes-patch verify``: does each applied patch have its effect, through the target's own server?

``status`` reads text; this module observes behaviour. For every enabled
patch that ``status`` calls applied (or drifted), it collects the patch's
:class:`~hermes_patch.core.patch.Check` list (:meth:`Patch.probe`), runs the
probe script (:mod:`hermes_patch.integrations.probe`) with the interpreter Hermes runs
with, once per address the checks bind the dashboard to (in parallel): the
probe starts the release's own ``start_server()`` (so uvicorn runs with
that release's settings, proxy headers included) on a free port of a
loopback address, and sends real HTTP requests and WebSocket handshakes
from the peers a proxy topology has. Nothing listens beyond 127.0.0.0/8.
With ``--proxy``/``--public-host`` (:class:`Topology`) a ``topology`` line
checks the operator's own path too. Each observation is judged:

* ``effective``: every check came out as expected;
* ``not effective: why``: a check did not (the first one is named);
* ``cannot verify: why``: nothing could be observed (no interpreter known,
  fastapi/starlette missing there, the module fails to import, a control
  check failed, the patch declares no checks).

Patches that are ``pending`` are ``not applied``, ``not-needed`` ones say so;
neither runs the probe. Nothing is written to the install: the probe runs
with ``-I -B`` in a temporary directory that is also its ``HERMES_HOME`` and
``HOME``, and its process group is killed when it has answered.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from hermes_patch.context import Inspection
from hermes_patch.core.engine import checks_of
from hermes_patch.core.patch import Check, State

if TYPE_CHECKING:
    from hermes_patch.locate import Target
    from hermes_patch.core.workspace import Workspace

__all__ = ["Verdict", "VerifyResult", "verify_patches", "judge", "PROBE_TIMEOUT"]

#: Seconds the probe may take in all (importing the dashboard takes 3-6 s on 0.19).
PROBE_TIMEOUT = 180.0
#: Seconds one check may take inside the probe.
CHECK_TIMEOUT = 15.0
#: Seconds the dashboard may take to listen once imported.
START_TIMEOUT = 60.0
MODULE = "hermes_cli.web_server"

EFFECTIVE = "effective"
NOT_EFFECTIVE = "not effective"
CANNOT_VERIFY = "cannot verify"
NOT_APPLIED = "not applied"


@dataclass(frozen=True)
class Verdict:
    """One patch's line in ``verify``'s output.

    Attributes:
        id: the patch id.
        outcome: ``effective``, ``not effective``, ``cannot verify``,
            ``not applied``, ``not-needed``, ``disabled``, or the detection
            state for anything else.
        reason: why (empty for a plain ``effective``/``not-needed``).
        state: what ``status`` says about the patch.
    """

    id: str
    outcome: str
    reason: str
    state: str

    def line(self) -> str:
        """``<outcome>`` or ``<outcome>: <reason>``."""
        return f"{self.outcome}: {self.reason}" if self.reason else self.outcome


@dataclass(frozen=True)
class VerifyResult:
    """Every verdict, the target and the interpreter that was asked."""

    target: Target
    interpreter: Path | None
    verdicts: tuple[Verdict, ...]

    @property
    def exit_code(self) -> int:
        """1 when a patch status calls applied (or drifted) is not effective, else 0."""
        return 1 if any(v.outcome == NOT_EFFECTIVE for v in self.verdicts) else 0


def judge(checks: list[Check], observations: list[dict[str, str]]) -> tuple[str, str]:
    """Outcome and reason for one patch from its checks and the probe's observations.

    Args:
        checks: the patch's checks, in the order the probe ran them.
        observations: ``{"outcome": "allowed"|"refused"|"other", "detail": str}``
            per check, same order.

    Returns:
        ``(EFFECTIVE, "<n> checks")``, ``(NOT_EFFECTIVE, why)`` naming the
        first failed check, or ``(CANNOT_VERIFY, why)`` when a control
        failed or the observations do not match the checks.
    """
    if not checks:
        return CANNOT_VERIFY, "this patch has no checks for this target"
    if len(observations) != len(checks):
        return CANNOT_VERIFY, f"the probe returned {len(observations)} observations for {len(checks)} checks"
    for check, seen in zip(checks, observations):
        if check.control and seen.get("outcome") != check.expect:
            return (
                CANNOT_VERIFY,
                f"control check failed: {check.what} should be {check.expect}, got {seen.get('detail')}",
            )
    for check, seen in zip(checks, observations):
        if not check.control and seen.get("outcome") != check.expect:
            return NOT_EFFECTIVE, f"{check.what} should be {check.expect}, got {seen.get('detail')}"
    return EFFECTIVE, f"{len(checks)} checks passed"


def _probe_source() -> str:
    return (Path(__file__).with_name("probe.py")).read_text(encoding="utf-8")


class ProbeResult(TypedDict):
    """The probes' answers merged: the module file they imported, why they failed, each patch's observations."""

    file: str | None
    error: str | None
    results: dict[str, list[dict[str, str]]]


def run_probe(interpreter: Path, checks: dict[str, list[Check]], timeout: float = PROBE_TIMEOUT) -> ProbeResult:
    """Start the target's server once per bound address and return the merged JSON document.

    Checks are grouped by ``bound_host``; each group gets its own probe
    process (the release's ``start_server()`` on that loopback address, a
    free port, a throw-away ``HERMES_HOME``), all groups at once.

    Args:
        interpreter: the Python whose environment has hermes-agent.
        checks: patch id to its checks.

    Returns:
        ``{"file": str|None, "error": str|None, "results": {id: [observation, ...]}}``
        with each patch's observations in the order of its checks;
        failures to run a probe at all come back as ``error``, never raised.
    """
    groups: dict[str, dict[str, list[tuple[int, dict[str, Any]]]]] = {}
    for pid, items in checks.items():
        for index, check in enumerate(items):
            groups.setdefault(check.bound_host, {}).setdefault(pid, []).append((index, check.to_json()))
    with tempfile.TemporaryDirectory(prefix="hermes-patch-verify-") as tmp:
        procs = []
        for n, (host, group) in enumerate(sorted(groups.items())):
            payload = json.dumps(
                {
                    "module": MODULE,
                    "bound_host": host,
                    "checks": group,
                    "timeout": CHECK_TIMEOUT,
                    "start_timeout": START_TIMEOUT,
                }
            )
            procs.append((host, _spawn(interpreter, payload, Path(tmp) / f"probe-{n}")))
        docs = [(host, _collect(interpreter, proc, timeout)) for host, proc in procs]
    file: str | None = None
    slots: dict[str, dict[int, dict[str, str]]] = {}
    for host, doc in docs:
        if isinstance(doc, str):
            return {"file": None, "error": doc, "results": {}}
        if doc.get("error"):
            return {"file": doc.get("file"), "error": f"{doc['error']} (dashboard on {host})", "results": {}}
        file = file or doc.get("file")
        for pid, pairs in doc.get("results", {}).items():
            for index, observation in pairs:
                slots.setdefault(pid, {})[int(index)] = observation
    results = {
        pid: [slots.get(pid, {}).get(i, {"outcome": "other", "detail": "not observed"}) for i in range(len(items))]
        for pid, items in checks.items()
    }
    return {"file": file, "error": None, "results": results}


def _spawn(interpreter: Path, payload: str, tmp: Path) -> subprocess.Popen[str] | str:
    home = tmp / "hermes-home"
    home.mkdir(parents=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HERMES_", "PYTHON", "FORWARDED_ALLOW_IPS", "UVICORN_"))
    }
    env.update(HERMES_HOME=str(home), HOME=str(tmp), NO_COLOR="1", HERMES_DISABLE_LAZY_INSTALLS="1")
    try:
        return subprocess.Popen(
            # -X pycache_prefix: bytecode is read only from this private,
            # empty folder, never from the install's __pycache__ folders,
            # whose owner could differ from the files' (a forged .pyc).
            [str(interpreter), "-I", "-B", "-X", f"pycache_prefix={tmp / 'pycache'}", "-c", _probe_source(), payload],
            cwd=tmp,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        return f"could not run {interpreter}: {exc}"


def _collect(interpreter: Path, proc: subprocess.Popen[str] | str, timeout: float) -> dict[str, Any] | str:
    """The probe's JSON document, or why there is none. Kills what the probe left running."""
    from hermes_patch.integrations.probe import MARKER

    if isinstance(proc, str):
        return proc
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        return f"the probe did not finish within {timeout:.0f} s"
    finally:
        _kill(proc)
    for line in reversed(out.splitlines()):
        if line.startswith(MARKER):
            doc: dict[str, Any] = json.loads(line[len(MARKER) :])  # the probe's JSON object
            return doc
    tail = (err.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
    return f"the probe gave no answer ({tail})"


def _kill(proc: subprocess.Popen[str]) -> None:
    """End the probe's process group (the dashboard may have started children, e.g. a PTY)."""
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.communicate(timeout=5)
    except (subprocess.TimeoutExpired, ValueError):
        pass


@dataclass(frozen=True)
class Topology:
    """The operator's own path to the dashboard, from ``verify --proxy/--public-host``.

    Attributes:
        proxies: the proxy's address(es) as the dashboard sees them (the
            TCP peer of the proxy's connections).
        public_host: the name browsers use (Host and Origin), or ``None``
            when the proxy rewrites Host to the dashboard's own address and
            the browser's page is on the proxy's address.
    """

    proxies: tuple[str, ...]
    public_host: str | None

    @classmethod
    def parse(cls, proxies: tuple[str, ...], public_host: str | None) -> "Topology":
        """Validate the command-line values.

        Raises:
            ConfigError: an address that is not an IP address, or a host
                name :func:`hermes_patch.core.hostnames.parse_host` refuses.
        """
        import ipaddress

        from hermes_patch.core.errors import ConfigError
        from hermes_patch.core.hostnames import parse_host

        out = []
        for text in proxies or ("127.0.0.1",):
            try:
                out.append(str(ipaddress.ip_address(text.strip())))
            except ValueError:
                raise ConfigError(
                    f"--proxy {text!r} is not an IP address; give the address your proxy connects from, e.g. 127.0.0.1"
                ) from None
        host = None
        if public_host:
            try:
                host = parse_host(public_host, allow_suffix=False)
            except ValueError as exc:
                raise ConfigError(f"--public-host: {exc}") from None
        return cls(tuple(dict.fromkeys(out)), host)

    def checks(self) -> list[Check]:
        """What a browser behind this topology does: load the page, open /api/events; plus the look-alike negative."""
        browser = "198.51.100.23"
        events = "/api/events?token={token}&channel=hermes-patch-verify"
        out = [Check("GET / from 127.0.0.1 with the dashboard's own Host", "http", "/", "allowed", control=True)]
        for proxy in self.proxies:
            headers: list[tuple[str, str]] = [("X-Forwarded-For", browser)]
            via = f"through the proxy at {proxy} (X-Forwarded-For: {browser}"
            if self.public_host:
                shown = f"[{self.public_host}]" if ":" in self.public_host else self.public_host
                headers += [("Host", shown), ("Origin", f"https://{shown}")]
                via += f", Host and Origin {shown}"
            via += ")"
            out.append(
                Check(
                    f"page GET / {via}",
                    "http",
                    "/",
                    "allowed",
                    proxy,
                    headers=tuple(h for h in headers if h[0] != "Origin"),
                )
            )
            out.append(
                Check(f"WebSocket /api/events {via}", "websocket", events, "allowed", proxy, headers=tuple(headers))
            )
        if self.public_host and ":" not in self.public_host:
            fake = f"{self.public_host}.attacker.test"
            out.append(
                Check(
                    f"page GET / with look-alike Host {fake}",
                    "http",
                    "/",
                    "refused",
                    self.proxies[0],
                    headers=(("Host", fake),),
                )
            )
        return out


TOPOLOGY = "topology"


def verify_patches(app: Inspection, topology: Topology | None = None) -> VerifyResult:
    """Verify every enabled patch of ``app``'s target (see the module docstring).

    Args:
        app: the command's catalog and target (a :class:`~hermes_patch.app.App`).
        topology: the operator's path (``verify --proxy``); adds a
            ``topology`` line judged like a patch, whose failure exits 1.

    Raises:
        TargetError, ConfigError, StateError: as ``status`` does; nothing else.
    """
    status = app.status()
    target = app.target
    interpreter = target.interpreter
    verdicts: dict[str, Verdict] = {}
    todo: dict[str, list[Check]] = {}
    patches = {p.ID: p for p, _ in app.patches}
    ws: Workspace | None = None
    for report in status.reports:
        state = report.state.value
        if not report.enabled:
            verdicts[report.id] = Verdict(report.id, "disabled", "", state)
        elif report.state is State.NOT_NEEDED:
            verdicts[report.id] = Verdict(report.id, "not-needed", "", state)
        elif report.state is State.PENDING:
            verdicts[report.id] = Verdict(report.id, NOT_APPLIED, report.reason, state)
        elif report.state in (State.APPLIED, State.DRIFTED):
            if ws is None:
                ws = app.workspace()
            todo[report.id] = list(checks_of(patches[report.id], ws))
        else:
            verdicts[report.id] = Verdict(report.id, CANNOT_VERIFY, f"{state}: {report.reason}", state)
    states = {r.id: r.state.value for r in status.reports}
    drifted = {r.id for r in status.reports if r.state is State.DRIFTED}
    if topology is not None:
        todo[TOPOLOGY] = topology.checks()
        states[TOPOLOGY] = "your proxy"
    if todo:
        results = _observe(target, interpreter, {k: v for k, v in todo.items() if v})
        for pid, checks in todo.items():
            if isinstance(results, str) and checks:
                outcome, reason = CANNOT_VERIFY, results
            else:
                outcome, reason = judge(checks, results.get(pid, []) if isinstance(results, dict) else [])
            if pid in drifted and outcome != CANNOT_VERIFY:
                reason += " (status: drifted, the code changed after hermes-patch wrote it)"
            verdicts[pid] = Verdict(pid, outcome, reason, states[pid])
    order = [r.id for r in status.reports] + ([TOPOLOGY] if topology is not None else [])
    return VerifyResult(target, interpreter, tuple(verdicts[i] for i in order))


def _observe(
    target: Target, interpreter: Path | None, checks: dict[str, list[Check]]
) -> dict[str, list[dict[str, str]]] | str:
    """The probe's observations per patch id, or why there are none."""
    if not checks:
        return {}
    if interpreter is None:
        return "no interpreter known; pass --python (the Python that runs Hermes)"
    doc = run_probe(interpreter, checks)
    if doc.get("error"):
        return f"{doc['error']} (in {interpreter})"
    file = doc.get("file")
    if not file or Path(file).resolve() != Path(target.file).resolve():
        return f"{interpreter} imports {MODULE} from {file}, not from the target {target.file}"
    return doc["results"]
