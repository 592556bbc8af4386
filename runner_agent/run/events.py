"""ansible-runner events of a run of several plays, sorted into one result per play.

Events name the play (``play``) and the host alias (``host``, see plays.py), so each lands
with its task. Host counts are taken from the events rather than from ``playbook_on_stats``
(one total per host for the whole run): the same rules as Ansible's AggregateStats
(ansible-core lib/ansible/plugins/strategy/__init__.py, ``_process_pending_results``), but a
failure the play's own rescue caught still counts as failed. ``set_stats`` data is read from
each play's ``set_stats`` results (``ansible_stats``), as Ansible merges it into the run's
``_run`` custom stats (lib/ansible/executor/stats.py), per play.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runner_agent.core.redact import Redactor
from runner_agent.report.model import FailedTask, HostStats, TaskResult
from runner_agent.run.plays import RESCUE_TASK, Layout

__all__ = ["CHANGES_KEY", "DRIFT_KEY", "PlaybookResult", "PlaysCollector"]

DRIFT_KEY = "runner_agent_drift"
CHANGES_KEY = "runner_agent_changes"  # per host: keys written or removed, with values
_OUTCOMES = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_unreachable": "unreachable",
    "runner_on_skipped": "skipped",
}


@dataclass
class PlaybookResult:
    status: str  # ansible-runner's: successful, failed, timeout, canceled, error
    rc: int | None
    hosts: dict[str, HostStats] = field(default_factory=dict)
    results: list[TaskResult] = field(default_factory=list)
    failed_tasks: list[FailedTask] = field(default_factory=list)
    stats_data: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # Ansible's [ERROR] lines, for the report


@dataclass
class _Play:
    result: PlaybookResult = field(default_factory=lambda: PlaybookResult(status="", rc=None))
    started: float | None = None  # time.monotonic()
    ended: bool = False
    failed_hosts: set[str] = field(default_factory=set)


class PlaysCollector:
    """ansible-runner's ``event_handler``: keeps no event on disk (returns False).

    ``on_start(index)`` is called as a play starts, ``on_done(index, result)`` as soon as it
    has ended (the next play starts, or
    the run's stats arrive), in the thread that called ansible-runner.
    """

    def __init__(
        self,
        layout: Layout,
        count: int,
        on_output: Callable[[str], None] | None = None,
        on_done: Callable[[int, PlaybookResult], None] | None = None,
        on_start: Callable[[int], None] | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self.on_start = on_start
        self.redactor = redactor or Redactor()
        self.layout = layout
        self.plays = [_Play() for _ in range(count)]
        self.current: int | None = None
        self.on_output = on_output
        self.on_done = on_done
        self.errors: list[str] = []  # before any play started: the whole run's

    def __call__(self, event: dict[str, Any]) -> bool:
        # secrets are masked here, where Ansible's text enters the toolkit: before a line is
        # streamed and before a message is squashed or cut
        stdout = self.redactor.text(str(event.get("stdout") or ""))
        if self.on_output and stdout:
            self.on_output(stdout)
        if "[ERROR]" in stdout:
            text = " ".join(stdout.split("[ERROR]:", 1)[-1].split())[:1000]
            if self.current is None:
                self.errors = [*self.errors, text][-3:]
            else:
                result = self.plays[self.current].result
                result.errors = [*result.errors, text][-3:]
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        if kind == "playbook_on_play_start":
            self._end_current()
            index = self.layout.plays.get(str(data.get("play") or data.get("name") or ""))
            if index is not None:
                self.current = index
                self.plays[index].started = time.monotonic()
                if self.on_start is not None:
                    self.on_start(index)
        elif kind in _OUTCOMES:
            self._task(kind, data)
        elif kind == "playbook_on_stats":
            self._end_current()
        return False

    def _end_current(self) -> None:
        if self.current is None:
            return
        index, self.current = self.current, None
        play = self.plays[index]
        if play.ended:
            return
        play.ended = True
        play.result.status = "failed" if play.failed_hosts else "successful"
        play.result.rc = 2 if play.failed_hosts else 0
        if self.on_done is not None:
            self.on_done(index, play.result)

    def _where(self, data: Mapping[str, Any]) -> tuple[int | None, str]:
        alias = str(data.get("host", ""))
        if alias in self.layout.hosts:
            return self.layout.hosts[alias]
        return self.current, alias

    def _task(self, kind: str, data: Mapping[str, Any]) -> None:
        index, host = self._where(data)
        if index is None:
            return
        play = self.plays[index]
        task = str(data.get("task", ""))
        res = data.get("res") or {}
        if task == RESCUE_TASK:  # the agent failed on this host; the marker is no result
            play.failed_hosts.add(host)
            return
        outcome = _OUTCOMES[kind]
        stats = play.result.hosts.setdefault(host, HostStats())
        if outcome == "failed" and data.get("ignore_errors"):
            outcome = "ok"
        if outcome == "ok":
            stats.ok += 1
            if res.get("changed"):
                outcome, stats.changed = "changed", stats.changed + 1
            self._stats(play.result, res)
        elif outcome == "failed":
            stats.failed += 1
        elif outcome == "unreachable":
            stats.unreachable += 1
            play.failed_hosts.add(host)
        else:
            stats.skipped += 1
        failed = outcome in ("failed", "unreachable")
        message = _message(self.redactor.values(res)) if failed else ""
        task = self.redactor.text(task)  # a templated name shows values
        play.result.results.append(
            TaskResult(host, task, outcome, float(data.get("duration") or 0.0), message)
        )
        if message:
            play.result.failed_tasks.append(
                FailedTask(host, task, message, unreachable=outcome == "unreachable")
            )

    def _stats(self, result: PlaybookResult, res: Mapping[str, Any]) -> None:
        items = res.get("results") if isinstance(res.get("results"), list) else [res]
        for item in items or []:
            stats = item.get("ansible_stats") if isinstance(item, Mapping) else None
            if not isinstance(stats, Mapping) or not stats.get("data"):
                continue
            if "per_host" not in stats or stats["per_host"]:
                continue  # per-host stats are not the run's (ansible-runner's artifact_data)
            for key, value in self.redactor.values(dict(stats["data"])).items():
                result.stats_data[key] = _aggregate(
                    result.stats_data, key, value, bool(stats.get("aggregate"))
                )
        for per_host_key in (DRIFT_KEY, CHANGES_KEY):
            per_host = result.stats_data.get(per_host_key)
            if isinstance(per_host, Mapping):  # keyed by inventory_hostname: the alias
                result.stats_data[per_host_key] = {
                    self.layout.hosts.get(str(k), (0, str(k)))[1]: v for k, v in per_host.items()
                }

    def finish(self, status: str, rc: int | None, timed_out: int | None) -> None:
        """After the run: a play that started and did not end (the run stopped in it) ends
        with the run's status, ``timeout`` when it is ``timed_out``."""
        self.current = None
        for index, play in enumerate(self.plays):
            if play.started is None or play.ended:
                continue
            play.ended = True
            play.result.status = "timeout" if index == timed_out else status
            play.result.rc = rc
            if play.result.status == "successful" and play.failed_hosts:
                play.result.status = "failed"
            if not play.result.errors:
                play.result.errors = list(self.errors)
            if self.on_done is not None:
                self.on_done(index, play.result)


def _aggregate(current: Mapping[str, Any], key: str, value: Any, aggregate: bool) -> Any:
    """AggregateStats.update_custom_stats / set_custom_stats for one key."""
    if not aggregate or key not in current:
        return value
    old = current[key]
    if not isinstance(value, type(old)):
        return old
    if isinstance(value, Mapping):
        return _merge(old, value)
    try:
        return old + value
    except TypeError:
        return old


def _merge(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Ansible's merge_hash (recursive, lists replaced), lib/ansible/utils/vars.py."""
    out = dict(old)
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _message(res: Mapping[str, Any]) -> str:
    for key in ("msg", "stderr", "module_stderr", "reason"):
        value = res.get(key)
        if value:
            return " ".join(str(value).split())[:2000]
    return json.dumps(res, sort_keys=True, default=str)[:2000]
