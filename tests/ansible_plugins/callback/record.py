"""An Ansible callback for the tests: every task result and the recap, as JSON, in $HERMES_PATCH_ANSIBLE_RECORD.

ansible-core ships no JSON callback since 2.19 (it moved to ansible.posix);
this one records exactly what the default callback shows, so a test can
read both the human output and the results.
"""

from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: record
type: aggregate
short_description: records task results and stats as JSON for the hermes-patch tests
description:
  - Writes the task results and the stats as one JSON document to the file named by HERMES_PATCH_ANSIBLE_RECORD at the end of the play.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "record"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self.results: list[dict] = []

    def _add(self, result, status: str) -> None:
        host = getattr(result, "host", None) or result._host
        task = getattr(result, "task", None) or result._task
        data = getattr(result, "result", None)
        if not isinstance(data, dict):
            data = result._result
        self.results.append(
            {
                "host": host.get_name(),
                "task": task.get_name(),
                "status": status,
                "time": time.time(),
                "result": json.loads(json.dumps(dict(data), default=str)),
            }
        )

    def v2_runner_on_ok(self, result, **kwargs) -> None:
        self._add(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False, **kwargs) -> None:
        self._add(result, "failed")

    def v2_runner_on_unreachable(self, result, **kwargs) -> None:
        self._add(result, "unreachable")

    def v2_runner_on_skipped(self, result, **kwargs) -> None:
        self._add(result, "skipped")

    def v2_playbook_on_stats(self, stats) -> None:
        out = os.environ.get("HERMES_PATCH_ANSIBLE_RECORD")
        if out:
            summary = {host: stats.summarize(host) for host in sorted(stats.processed)}
            with open(out, "w", encoding="utf-8") as fh:
                json.dump({"results": self.results, "stats": summary}, fh, indent=1)
