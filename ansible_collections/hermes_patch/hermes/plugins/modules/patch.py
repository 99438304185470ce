#!/usr/bin/python
# -*- coding: utf-8 -*-
# MIT License (see the hermes-patch repository)
"""Ansible module hermes_patch.hermes.patch: a thin wrapper over hermes-patch's machine contract."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: patch
short_description: Apply or revert hermes-patch's dashboard patches on a Hermes Agent install
version_added: "0.1.0"
description:
  - Runs C(hermes-patch apply --json) or C(hermes-patch revert --json) on the host and reports
    what the tool reports. The tool finds the install without importing it, proves every edit
    before writing it, and writes atomically; this module adds nothing to that logic.
  - C(changed) is the tool's own C(changed) - true only when a file was (in check mode, would be)
    written. A run on a host that is already patched, or after a package upgrade that the
    tool has patched since, reports C(changed=false).
  - Check mode runs C(--check), which computes and proves the same edits and writes nothing,
    not even the state directory. Diff mode returns the unified diff of the edit.
  - A refusal (a file of a shape no patch recognizes, drift, a read-only install, a bad
    configuration) fails this host only, with the tool's one-paragraph message as C(msg).
    Every file on that host is left byte-identical.
  - After the command the module runs C(hermes-patch status --json) and returns its document.
requirements:
  - hermes-patch installed on the host (C(pipx install hermes-patch), or a venv)
options:
  state:
    description: C(applied) applies every enabled pending patch; C(reverted) removes hermes-patch's edits, byte for byte.
    type: str
    choices: [applied, reverted]
    default: applied
  python:
    description: An interpreter whose environment has hermes-agent (C(--python)), for example C(~/.hermes/hermes-agent/venv/bin/python) or C(/opt/hermes/.venv/bin/python).
    type: path
  root:
    description: A Hermes git checkout or a site-packages directory (C(--root)).
    type: path
  file:
    description: The C(hermes_cli/web_server.py) to patch (C(--file)).
    type: path
  config:
    description:
      - The configuration, with the same keys as hermes-patch's TOML file (C(patches), C(patch_dirs));
        see the examples.
      - Written to a private temporary file for this run only. Hooks and units that run
        C(hermes-patch apply) later read the default file, so for a lasting setup write that
        file (C(~/.config/hermes-patch/config.toml)) and leave this empty, or use I(config_file).
    type: dict
  config_file:
    description: A configuration file on the host (C(--config)). Default, when neither this nor I(config) is set, is the tool's own default location.
    type: path
  state_dir:
    description: Where the tool keeps its ledger and backups (C(--state-dir)). Default C(~/.local/state/hermes-patch).
    type: path
  patches:
    description: Only these patch ids (default every enabled patch).
    type: list
    elements: str
    default: []
  force:
    description: With C(state=reverted), also revert drifted patches (removes only hermes-patch's marked lines).
    type: bool
    default: false
  executable:
    description: The C(hermes-patch) command. Default, C(hermes-patch) on C(PATH) or in C(~/.local/bin).
    type: path
notes:
  - Supports check mode and diff mode.
  - Without I(python), I(root) or I(file) the tool looks for the C(hermes) launcher on C(PATH), then C($HERMES_INSTALL_DIR), then C(~/.hermes/hermes-agent).
author:
  - hermes-patch contributors
"""

EXAMPLES = r"""
- name: Patch the dashboard of every Hermes host
  hermes_patch.hermes.patch:
    python: ~/.hermes/hermes-agent/venv/bin/python
    state: applied

- name: A same-host proxy at 127.0.0.5 and a public name
  hermes_patch.hermes.patch:
    root: /srv/hermes-agent
    config:
      patches:
        relax-ws-peer-check:
          trusted_proxies: ["127.0.0.5/32"]
        trusted-hosts:
          hosts: ["hermes.example.com"]

- name: Undo everything
  hermes_patch.hermes.patch:
    python: /opt/hermes/.venv/bin/python
    state: reverted
"""

RETURN = r"""
changed:
  description: True when the tool wrote a file (in check mode, would write one).
  type: bool
  returned: always
files:
  description: The files changed (would change), each with C(path), C(sha256_before), C(sha256_after), C(written).
  type: list
  elements: dict
  returned: success
patches:
  description: Each patch with C(id), C(enabled), C(changed), C(before) and C(after) (each C({state, reason})) and C(notes).
  type: list
  elements: dict
  returned: success
notes:
  description: The tool's notes for people (a file replaced by an update, a git stash).
  type: list
  elements: str
  returned: success
document:
  description: The whole C(apply --json) / C(revert --json) document (docs/apply-schema.json), or the error document on failure (docs/error-schema.json).
  type: dict
  returned: always
status:
  description: The C(hermes-patch status --json) document after the command (docs/status-schema.json).
  type: dict
  returned: when the tool could report a status
cmd:
  description: The command that ran.
  type: list
  elements: str
  returned: always
"""

import json
import os
import re
import tempfile

from ansible.module_utils.basic import AnsibleModule

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key):
    key = str(key)
    return key if _BARE_KEY.match(key) else _toml_string(key)


def _toml_string(text):
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append("\\u%04X" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_value(value, where):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v, where) for v in value) + "]"
    raise ValueError(
        "config: %s holds a %s; hermes-patch's configuration takes strings, numbers, booleans, lists and tables"
        % (where, type(value).__name__)
    )


def to_toml(config):
    """Render ``config`` (the TOML file's keys as a dict) as TOML text: scalars first, then one table per dict."""
    lines = []

    def table(path, body):
        scalars = [(k, v) for k, v in body.items() if not isinstance(v, dict)]
        tables = [(k, v) for k, v in body.items() if isinstance(v, dict)]
        if path and (scalars or not tables):
            lines.append("[" + ".".join(_toml_key(p) for p in path) + "]")
        for key, value in scalars:
            lines.append("%s = %s" % (_toml_key(key), _toml_value(value, ".".join([*map(str, path), str(key)]))))
        for key, value in tables:
            table([*path, key], value)

    table([], config or {})
    return "\n".join(lines) + "\n"


def _document(text):
    """The JSON document on stdout, or None when there is none."""
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and doc.get("schema") == 1 else None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["applied", "reverted"], default="applied"),
            python=dict(type="path"),
            root=dict(type="path"),
            file=dict(type="path"),
            config=dict(type="dict"),
            config_file=dict(type="path"),
            state_dir=dict(type="path"),
            patches=dict(type="list", elements="str", default=[]),
            force=dict(type="bool", default=False),
            executable=dict(type="path"),
        ),
        mutually_exclusive=[("python", "root", "file"), ("config", "config_file")],
        supports_check_mode=True,
    )
    p = module.params
    exe = p["executable"] or module.get_bin_path("hermes-patch", opt_dirs=[os.path.expanduser("~/.local/bin")])
    if not exe:
        module.fail_json(
            msg="hermes-patch is not installed on this host (not on PATH, not in ~/.local/bin). Install it (`pipx install hermes-patch`) or set executable.",
            changed=False,
        )

    common = []
    for option in ("python", "root", "file"):
        if p[option]:
            common += ["--" + option, p[option]]
    if p["config"] is not None:
        try:
            text = to_toml(p["config"])
        except ValueError as exc:
            module.fail_json(msg=str(exc), changed=False)
        fd, path = tempfile.mkstemp(prefix="hermes-patch-", suffix=".toml", dir=module.tmpdir)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        common += ["--config", path]
    elif p["config_file"]:
        common += ["--config", p["config_file"]]
    if p["state_dir"]:
        common += ["--state-dir", p["state_dir"]]

    verb = "apply" if p["state"] == "applied" else "revert"
    cmd = [exe, verb, "--json", *common]
    if module.check_mode:
        cmd.append("--check")
    if p["force"] and verb == "revert":
        cmd.append("--force")
    cmd += p["patches"]
    env = {"NO_COLOR": "1", "PYTHONIOENCODING": "utf-8"}
    rc, out, err = module.run_command(cmd, environ_update=env)
    doc = _document(out)
    if doc is None:
        module.fail_json(
            msg="%s printed no JSON document (exit %d): %s"
            % (exe, rc, (err.strip().splitlines() or ["no message"])[-1]),
            rc=rc,
            stdout=out,
            stderr=err,
            cmd=cmd,
            changed=False,
        )
    if "error" in doc:
        module.fail_json(msg=doc["error"]["message"], rc=rc, error=doc["error"], document=doc, cmd=cmd, changed=False)
    if rc not in ((0, 1) if module.check_mode else (0,)) or rc != doc.get("exit_code"):
        module.fail_json(
            msg="%s exited %d, which its document does not explain" % (exe, rc),
            rc=rc,
            document=doc,
            stderr=err,
            cmd=cmd,
            changed=False,
        )

    # no `rc` here: Ansible reads a non-zero rc as a failure, and 1 is --check's "would change"
    result = dict(
        changed=bool(doc["changed"]),
        files=doc["files"],
        patches=doc["patches"],
        notes=doc["notes"],
        document=doc,
        cmd=cmd,
    )
    done = [x["id"] for x in doc["patches"] if x["changed"]]
    verb_done = {"apply": "applied", "revert": "reverted"}[verb]
    if done:
        result["msg"] = "%s %s %s" % ("would have" if module.check_mode else "", verb_done, ", ".join(done))
        result["msg"] = result["msg"].strip()
    else:
        result["msg"] = "nothing to " + verb
    if module._diff and doc["diff"]:
        result["diff"] = dict(prepared=doc["diff"])

    src, sout, serr = module.run_command([exe, "status", "--json", *common], environ_update=env)
    status = _document(sout)
    if status is not None:
        result["status"] = status
    module.exit_json(**result)


if __name__ == "__main__":
    main()
