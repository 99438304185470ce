"""``hermes-patch setup``: the configuration for one proxied dashboard, from its public URL.

An operator knows two things: the URL they type in the browser
(``https://hermes.example.com``) and, when the proxy runs on another
machine, the address the dashboard sees it connect from. From them:

* ``[patches.trusted-hosts] hosts`` gets the URL's host name: the dashboard
  answers 400 to any other Host, and from 0.15 refuses WebSocket upgrades
  whose Origin names it (unless it is a loopback name, which it accepts);
* ``[patches.cors-origins] origins`` gets nothing: the dashboard's own
  page served through the proxy is same-origin and needs no CORS (an
  origin there would only widen what other pages may call); a page on
  another site is added by hand (docs/proxies.md);
* ``[patches.relax-ws-peer-check] trusted_proxies`` gets the proxy's
  address as a one-address network (``10.0.0.5/32``), unless it is
  127.0.0.1 or ::1, which the dashboard accepts already.

Values are added to what the file holds (nothing is removed, duplicates are
not repeated), the document is edited with tomlkit so comments and every
other key stay as they were, the result is validated exactly as ``status``
will read it (the same parsers, the same release checks) before anything is
written, and the file is replaced atomically with mode 0600.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from hermes_patch.core.errors import ConfigError
from hermes_patch.core.messages import NOTHING_WRITTEN, Failure

if TYPE_CHECKING:
    from hermes_patch.app import App
    from hermes_patch.config import Config
    from hermes_patch.core.patch import AnyPatch

__all__ = ["PROXY_SETTINGS", "proxy_settings_configured", "Proposal", "propose", "merge", "write_config"]

# (patch id, parameter) of every setting a proxied dashboard may need.
PROXY_SETTINGS = (("trusted-hosts", "hosts"), ("cors-origins", "origins"), ("relax-ws-peer-check", "trusted_proxies"))
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
#: The next step for a configuration setup cannot merge into.
_FIX_FIRST = "fix it first (`hermes-patch status` shows the error), then run `hermes-patch setup` again"


def proxy_settings_configured(config: Config) -> bool:
    """Whether the configuration sets any of :data:`PROXY_SETTINGS` to a non-empty list."""
    return any(config.patches.get(pid, {}).get(key) for pid, key in PROXY_SETTINGS)


@dataclass
class Proposal:
    """What ``setup`` adds: values per (patch id, parameter), and lines explaining each choice."""

    values: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    explain: list[str] = field(default_factory=list)


def propose(url: str, proxy_addresses: list[str]) -> Proposal:
    """The settings for a dashboard reached at ``url`` through proxies at ``proxy_addresses``.

    Args:
        url: the dashboard's public URL, as typed in the browser.
        proxy_addresses: the proxy's address(es) as the dashboard sees them
            (an IP, or a network in CIDR form); empty for a same-host proxy.

    Raises:
        ConfigError: a URL that is not ``http(s)://host[:port][/path]``, a
            user name in it, a query or fragment, a host name browsers never
            send, an address that is not an IP or CIDR. Nothing is written.
    """
    from hermes_patch.core.hostnames import DEFAULT_PORTS, parse_host, parse_origin

    p = Proposal()
    text = url.strip()
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(
            f"--url {url!r} is not a URL ({exc}). Give the address you type in the browser, e.g. `hermes-patch setup --url https://hermes.example.com`."
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ConfigError(
            f"--url {url!r} is not an http or https URL. Give the address you type in the browser, e.g. `hermes-patch setup --url https://hermes.example.com`."
        )
    if "@" in parts.netloc:
        raise ConfigError(
            f"--url {url!r} carries a user name; give the URL without it, e.g. `hermes-patch setup --url {scheme}://{parts.netloc.rsplit('@', 1)[1]}`."
        )
    if parts.query or parts.fragment:
        raise ConfigError(
            f"--url {url!r} has a query or fragment; give the dashboard's address only, e.g. `hermes-patch setup --url {scheme}://{parts.netloc}{parts.path}`."
        )
    netloc = parts.netloc.rsplit(":", 1)[0] if port is not None and not parts.netloc.endswith("]") else parts.netloc
    try:
        host = parse_host(netloc, allow_suffix=False)
        origin = parse_origin(
            f"{scheme}://{netloc}" + (f":{port}" if port is not None and port != DEFAULT_PORTS[scheme] else "")
        )
    except ValueError as exc:
        raise ConfigError(
            Failure(
                f"--url {url!r}: {exc}",
                outcome=NOTHING_WRITTEN,
                next_command="run `hermes-patch setup` again with the URL as the browser shows it",
            )
        ) from None
    if host in _LOOPBACK_NAMES:
        p.explain.append(f"hosts: {host} is a loopback name, which the dashboard accepts already; nothing to add")
    else:
        p.values[("trusted-hosts", "hosts")] = [host]
        p.explain.append(f"hosts: {host}, the name the browser sends as Host and in the Origin of WebSocket upgrades")
        p.explain.append(
            f"origins: none; the page at {origin} is same-origin through the proxy and needs no CORS (add another "
            "site's page to [patches.cors-origins] origins only if it calls the API, docs/proxies.md)"
        )
    path = parts.path.rstrip("/")
    if path:
        p.explain.append(
            f"path {path}: the proxy serves the dashboard under a prefix; it must strip {path} and send "
            f"`X-Forwarded-Prefix: {path}` (0.19 builds the page's base path from that header only); see docs/proxies.md"
        )
    import ipaddress  # here, not at import: status reads this module for its advice only

    for text in proxy_addresses:
        raw = text.strip()
        try:
            net = (
                ipaddress.ip_network(raw, strict=True)
                if "/" in raw
                else ipaddress.ip_network(ipaddress.ip_address(raw.strip("[]")))
            )
        except ValueError:
            raise ConfigError(
                f"--proxy-address {text!r} is not an IP address or a network in CIDR form. Give the address the dashboard "
                "sees the proxy connect from, e.g. `--proxy-address 10.0.0.5` (its log or `ss -tn` on the dashboard's port shows it)."
            ) from None
        if net.num_addresses == 1 and str(net.network_address) in _LOOPBACK_NAMES:
            p.explain.append(
                f"trusted_proxies: {net.network_address} is the loopback address the dashboard accepts already; nothing to add"
            )
            continue
        p.values.setdefault(("relax-ws-peer-check", "trusted_proxies"), []).append(str(net))
        p.explain.append(
            f"trusted_proxies: {net}, the proxy's address as the dashboard sees it (its WebSocket connections are accepted)"
        )
    if not proxy_addresses:
        p.explain.append(
            "trusted_proxies: none (a proxy on the dashboard's own host connects from 127.0.0.1, which the dashboard accepts)"
        )
    return p


@dataclass(frozen=True)
class Merge:
    """The configuration text before and after, and what was added (``(id, key, value)``)."""

    before: str
    after: str
    added: tuple[tuple[str, str, str], ...]


def merge(
    text: str, proposal: Proposal, path: Path, catalog: dict[str, type[AnyPatch]], python: str | None = None
) -> Merge:
    """Add the proposal's values to the TOML ``text``; everything else stays byte for byte.

    ``catalog`` maps patch id to its class: existing entries are compared in
    the patch's normalized form, so ``Hermes.Example.com`` is not added again.
    ``python``: the interpreter ``setup --python`` named, kept as the
    top-level ``python`` so that later commands find the install without it.

    Raises:
        ConfigError: ``text`` is not valid TOML or the tables have the wrong type.
    """
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    try:
        doc = tomlkit.parse(text) if text.strip() else tomlkit.document()
    except TOMLKitError as exc:
        raise ConfigError(
            Failure(f"{path} is not valid TOML ({exc})", path, outcome=NOTHING_WRITTEN, next_command=_FIX_FIRST)
        ) from None
    added = []
    if python is not None and doc.get("python") != python:
        doc["python"] = python  # tomlkit puts a top-level key above the tables
        added.append(("", "python", python))
    for (pid, key), values in proposal.values.items():
        patches = doc.get("patches")
        if patches is None:
            patches = tomlkit.table(is_super_table=True)
            doc["patches"] = patches
        table = patches.get(pid)
        if table is None:
            table = tomlkit.table()
            patches[pid] = table
        current = table.get(key)
        if current is None:
            current = tomlkit.array()
            table[key] = current
        if not isinstance(current, list):
            raise ConfigError(
                Failure(
                    f"{path}: [patches.{pid}] {key} is not a list",
                    path,
                    outcome=NOTHING_WRITTEN,
                    next_command=_FIX_FIRST,
                )
            )
        parse = catalog[pid].PARAMS[key].parse
        try:
            have = set(parse([str(v) for v in current]))
        except ValueError as exc:
            raise ConfigError(
                Failure(f"{path}: [patches.{pid}] {key}: {exc}", path, outcome=NOTHING_WRITTEN, next_command=_FIX_FIRST)
            ) from None
        for value in values:
            if value not in have:
                current.append(value)
                have.add(value)
                added.append((pid, key, value))
    return Merge(text, tomlkit.dumps(doc), tuple(added))


def config_diff(m: Merge, path: Path) -> str:
    """The unified diff of the configuration file (``/dev/null`` when it is new)."""
    import difflib

    old = m.before.splitlines(keepends=True)
    new = m.after.splitlines(keepends=True)
    return "".join(difflib.unified_diff(old, new, str(path) if m.before else "/dev/null", str(path)))


def write_config(path: Path, data: bytes) -> None:
    """Write the configuration atomically with mode 0600 (the folder 0700 when created).

    The old file, when there is one, is made owner-only first, so no moment
    exists where the new text is readable by others.

    Raises:
        TargetError: the folder cannot be created or written (from :func:`hermes_patch.fileio.atomic_write`).
    """
    from hermes_patch.core.errors import TargetError
    from hermes_patch.fileio import atomic_write

    real = Path(os.path.realpath(path))
    old = os.umask(0o077)
    try:
        real.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise TargetError(
            Failure(
                f"cannot create {real.parent} for the configuration: {exc.strerror}",
                real.parent,
                outcome=NOTHING_WRITTEN,
                next_command="pass --config PATH",
            )
        ) from None
    finally:
        os.umask(old)
    if real.exists():
        try:
            os.chmod(real, 0o600)
        except OSError as exc:
            raise TargetError(
                Failure(f"cannot make {real} owner-only: {exc.strerror}", real, outcome=NOTHING_WRITTEN)
            ) from None
    atomic_write(real, data, mode=0o600)


def run_setup(app: App, url: str | None, proxy_addresses: list[str], yes: bool, dry_run: bool) -> int:
    """The ``setup`` command: ask (on a terminal) or take the flags, show, validate, write. Returns the exit code.

    On a terminal, missing answers are asked with click prompts and the
    write is confirmed; otherwise ``--url`` is required and the file is
    written without asking (``--dry-run`` shows and writes nothing).

    Raises:
        ConfigError, TargetError: bad input, an unreadable configuration,
            no Hermes install found; nothing is written.
    """
    import sys

    import click

    from hermes_patch.config import config_from_bytes
    from hermes_patch.console import print_diff, print_lines, print_status

    terminal = sys.stdin.isatty() and sys.stdout.isatty()
    given = app._config_path
    if given is not None and not Path(given).expanduser().exists():  # setup creates the file --config names
        from hermes_patch.config import Config

        app = app.with_config(Config(path=Path(given).expanduser(), exists=False))
    target = app.target  # no install, no setup: the states are the point
    if url is None:
        if not terminal:
            raise ConfigError(
                "setup needs the dashboard's public URL when it does not run on a terminal: `hermes-patch setup --url https://hermes.example.com` (add `--proxy-address 10.0.0.5` when the proxy runs on another host)."
            )
        url = click.prompt("The dashboard's public URL (what you type in the browser)")
        if not proxy_addresses:
            answer = click.prompt(
                "Does the proxy run on another host? Its address as the dashboard sees it (empty: same host)",
                default="",
                show_default=False,
            )
            proxy_addresses = [a for a in answer.replace(",", " ").split() if a]
    proposal = propose(url, list(proxy_addresses))
    config = app.config
    path = config.path
    before = path.read_text("utf-8") if config.exists else ""
    python = os.path.abspath(os.path.expanduser(str(app._python))) if app._python is not None else None
    m = merge(before, proposal, path, {c.ID: c for c in app.catalog}, python)
    new_config = config_from_bytes(m.after.encode("utf-8"), path)
    new_app = app.with_config(new_config)
    from hermes_patch.status import build_status

    result = build_status(new_app)  # validates every parameter against this release
    would = new_app.apply(dry_run=True)
    print_lines(
        [
            f"target {target.file} (release {target.version or 'unknown'})",
            f"configuration {path}" + ("" if config.exists else " (new file)"),
        ]
    )
    print_lines([f"  {line}" for line in proposal.explain])
    if m.added:
        print_diff(config_diff(m, path))
    else:
        print_lines(["the configuration already holds these settings; nothing to write"])
    print_lines(["with this configuration:"])
    print_status(result)
    files = sorted({line[len("+++ b") :] for line in would.diff.splitlines() if line.startswith("+++ b")})
    print_lines(
        [
            f"apply would write: {', '.join(would.patch_ids)} → {', '.join(files)}"
            if would.patch_ids
            else "apply would write nothing"
        ]
    )
    if not m.added or dry_run:
        if dry_run and m.added:
            print_lines(["dry run: nothing was written"])
        return 0
    if terminal and not yes and not click.confirm(f"Write {path}?", default=True):
        print_lines(["nothing was written"])
        return 1
    write_config(path, m.after.encode("utf-8"))
    print_lines(
        [
            f"wrote {path} (mode 0600; {len(m.added)} value(s) added, every other line kept)",
            "next: `hermes-patch apply`, then restart the dashboard (apply says how)",
        ]
    )
    return 0
