"""Ansible callback used by the agent tests: records every task result and the set_stats data.

Enabled with ANSIBLE_CALLBACKS_ENABLED=record_results; writes JSON to $RECORD_RESULTS_FILE at
the end of the playbook: {"results": [{task, action, host, status, result}], "custom": <the
aggregate set_stats data, what ansible-runner reports as artifact_data>, "stats": {host: counts}}.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):  # type: ignore[misc]
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "record_results"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self.results: list[dict[str, Any]] = []

    def _add(self, result: Any, status: str) -> None:
        self.results.append(
            {
                "task": result._task.get_name(),
                "action": result._task.action,
                "host": result._host.get_name(),
                "status": status,
                "result": result._result,
            }
        )

    def v2_runner_on_ok(self, result: Any) -> None:
        self._add(result, "ok")

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._add(result, "failed")

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._add(result, "skipped")

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._add(result, "unreachable")

    def v2_playbook_on_stats(self, stats: Any) -> None:
        record = {
            "results": self.results,
            "custom": stats.custom.get("_run", {}),
            "stats": {host: stats.summarize(host) for host in sorted(stats.processed)},
        }
        with open(os.environ["RECORD_RESULTS_FILE"], "w", encoding="utf-8") as handle:
            json.dump(record, handle, default=str, indent=1)
