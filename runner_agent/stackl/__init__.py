"""STACKL: an invocation in, tasks out; a report in, an automation result and outputs out.

STACKL's wire format: ``Invocation{action create|update|delete, stack_instance, service,
functional_requirement, infrastructure_target, tool, hosts, provisioning_parameters}``,
answered by ``AutomationResult{service, functional_requirement, status READY|FAILED,
error_message, hosts}`` and an outputs update ``{stack_instance, service,
infrastructure_target, outputs}`` (the ``set_stats`` data of the run).

- ``action``: create runs the digest (install when new or the version changed, then update);
  update runs update; delete runs uninstall.
- ``identity``: ``<stack_instance>/<service>/<functional_requirement>``, each part folded into
  the identity grammar, so every invocation for one real-world entity shares state and lock.
- ``tool`` names the agent (through ``agents`` when given, such as ``{"ansible": "kv_file"}``).
- ``provisioning_parameters`` become the task's config; ``hosts`` its hosts.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from runner_agent.core.errors import InvalidInput, Problem
from runner_agent.model.tasks import Task, tasks_from_data
from runner_agent.report.model import Report, Status

if TYPE_CHECKING:
    from runner_agent.gitlab.dispatch import Dispatcher
    from runner_agent.model.agents import AgentRegistry

__all__ = [
    "handle_invocation",
    "identity_for",
    "invocation_to_tasks",
    "report_to_outputs",
    "report_to_result",
]

ACTIONS = {"create": None, "update": "update", "delete": "uninstall"}
_UNSAFE = re.compile(r"[^a-z0-9._-]+")
_SOURCE = "<stackl>"

Result = dict[str, Any]
LocalRunner = Callable[[Sequence[Task]], Sequence[Report]]


def _segment(value: Any, name: str) -> str:
    text = _UNSAFE.sub("-", str(value).strip().lower()).strip("-._")
    if not text:
        raise InvalidInput(
            Problem(_SOURCE, f"{value!r} leaves nothing for an identity", field=name)
        )
    return text


def identity_for(invocation: Mapping[str, Any]) -> str:
    """``stack_instance/service/functional_requirement`` in the identity grammar."""
    parts = [
        _segment(invocation.get(key, ""), key)
        for key in ("stack_instance", "service", "functional_requirement")
    ]
    return "/".join(parts)


def invocation_to_tasks(
    invocation: Mapping[str, Any],
    *,
    registry: AgentRegistry | None = None,
    agents: Mapping[str, str] | None = None,
    tags: Sequence[str] = (),
) -> list[Task]:
    """The task a STACKL invocation asks for. Raises InvalidInput naming the bad field."""
    if not isinstance(invocation, Mapping):
        raise InvalidInput(Problem(_SOURCE, "an invocation is a mapping"))
    action = str(invocation.get("action", ""))
    if action not in ACTIONS:
        raise InvalidInput(
            Problem(_SOURCE, f"{action!r} is not create, update or delete", field="action")
        )
    tool = str(invocation.get("tool") or "")
    if not tool:
        raise InvalidInput(Problem(_SOURCE, "tool names the agent and is required", field="tool"))
    item: dict[str, Any] = {
        "identity": identity_for(invocation),
        "agent": (agents or {}).get(tool, tool),
        "config": dict(invocation.get("provisioning_parameters") or {}),
    }
    if ACTIONS[action]:
        item["command"] = ACTIONS[action]
    hosts = invocation.get("hosts")
    if hosts:
        item["hosts"] = list(hosts) if isinstance(hosts, list | tuple) else hosts
    if tags:
        item["runner"] = {"tags": list(tags)}
    return tasks_from_data([item], _SOURCE, registry)


def _hosts(report: Report) -> list[str]:
    seen: dict[str, None] = {}
    for command in report.commands:
        for host in command.hosts:
            seen.setdefault(host)
    return list(seen)


def _error(report: Report) -> str:
    if report.error:
        return report.error
    for command in report.commands:
        for failed in command.failed_tasks:
            return f"{failed.host}: {failed.task}: {failed.message}"
        if command.error:
            return command.error
    return ""


def _names(report: Report, invocation: Mapping[str, Any] | None) -> dict[str, Any]:
    if invocation is not None:
        return {
            k: invocation.get(k)
            for k in (
                "stack_instance",
                "service",
                "functional_requirement",
                "infrastructure_target",
            )
        }
    parts = report.identity.split("/")
    parts += [""] * (3 - len(parts))
    return {
        "stack_instance": parts[0],
        "service": parts[1],
        "functional_requirement": "/".join(parts[2:]),
        "infrastructure_target": None,
    }


def report_to_result(report: Report, invocation: Mapping[str, Any] | None = None) -> Result:
    """STACKL's AutomationResult for a report: READY when the run succeeded, else FAILED."""
    names = _names(report, invocation)
    ok = report.status in (Status.SUCCESS, Status.SKIPPED)
    return {
        "service": names["service"],
        "functional_requirement": names["functional_requirement"],
        "status": "READY" if ok else "FAILED",
        "error_message": "" if ok else _error(report) or f"run ended {report.status.value}",
        "hosts": _hosts(report),
    }


def report_to_outputs(report: Report, invocation: Mapping[str, Any] | None = None) -> Result:
    """STACKL's outputs update: the run's ``set_stats`` outputs for the stack instance."""
    names = _names(report, invocation)
    return {
        "stack_instance": names["stack_instance"],
        "service": names["service"],
        "infrastructure_target": names["infrastructure_target"],
        "outputs": dict(report.outputs),
    }


def _pick(reports: Sequence[Report], identity: str) -> Report:
    mine = [r for r in reports if r.identity == identity]
    if not mine:
        return Report(identity, "", None, Status.ERROR, error="the run returned no report")
    return mine[-1]


async def handle_invocation(
    invocation: Mapping[str, Any],
    *,
    dispatcher: Dispatcher | None = None,
    runner: LocalRunner | None = None,
    registry: AgentRegistry | None = None,
    agents: Mapping[str, str] | None = None,
    ref: str | None = None,
    timeout: float | None = None,
    interval: float = 10.0,
) -> tuple[Result, Result]:
    """Carry out one invocation and answer it: ``(automation result, outputs update)``.

    With ``dispatcher`` the task runs as a GitLab pipeline (submit, wait, reports); with
    ``runner`` it runs here (``runtime.run_tasks`` bound to a context). Blocking work runs in a
    thread, so a STACKL agent's event loop keeps serving. Raises InvalidInput for a bad
    invocation, LockedError, GitLabError and TimedOut as the dispatcher does.
    """
    if (dispatcher is None) == (runner is None):
        raise InvalidInput(Problem(_SOURCE, "give exactly one of dispatcher or runner"))
    tasks = invocation_to_tasks(invocation, registry=registry, agents=agents)
    if dispatcher is not None:
        handle = await asyncio.to_thread(dispatcher.submit, tasks, ref=ref)
        await asyncio.to_thread(dispatcher.wait, handle, timeout=timeout, interval=interval)
        found = await asyncio.to_thread(dispatcher.reports, handle)
        reports: Sequence[Report] = found.reports
    else:
        assert runner is not None
        reports = await asyncio.to_thread(runner, tasks)
    report = _pick(reports, tasks[0].identity)
    return report_to_result(report, invocation), report_to_outputs(report, invocation)
