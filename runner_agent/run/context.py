"""What a run is given (RunContext) and the small report helpers every part of it shares."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from runner_agent.core.redact import Redactor
from runner_agent.model.agents import Agent, AgentRegistry
from runner_agent.model.state import StateStore
from runner_agent.model.tasks import Task
from runner_agent.report.model import Report, Status, masked
from runner_agent.run.ansible_exec import PlaybookResult, run_playbook

__all__ = [
    "INTERRUPTED",
    "RunContext",
    "effective_version",
    "finish",
    "links",
    "redacted",
    "skipped_report",
]

INTERRUPTED = "interrupted before it finished (Ctrl-C or SIGTERM): no state was written"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class RunContext:
    """A run's side effects. ``playbook_runner`` runs one command; while it is the default,
    the commands of tasks that can share an ansible-playbook run share one (``batch_size``
    at most per run; 1 runs every command in a run of its own)."""

    registry: AgentRegistry
    store: StateStore
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    playbook_runner: Callable[..., PlaybookResult] = run_playbook
    clock: Callable[[], datetime] = _now
    on_output: Callable[[str], None] | None = None
    redactor: Redactor = field(default_factory=Redactor)
    secrets: tuple[str, ...] = ()  # the values the tasks' ${env:} resolve to, set by run_tasks
    log_sections: bool = False  # wrap each command's Ansible output in a GitLab log section
    batch_size: int = 200  # tasks per batch (docs/performance.md)
    # merged into the revision a run records (a rollback's "rollback of 7 to 5", state_of)
    revision_note: Mapping[str, Any] | None = None


def effective_version(task: Task, agent: Agent) -> str:
    """The version the task installs: its own, or else the agent's."""
    return task.version or agent.version


def links(ctx: RunContext) -> dict[str, Any]:
    return {
        "pipeline_url": ctx.environ.get("CI_PIPELINE_URL", ""),
        "job_url": ctx.environ.get("CI_JOB_URL", ""),
    }


def skipped_report(task: Task, ctx: RunContext, why: str) -> Report:
    """The report of a task that was not run, and why."""
    now = ctx.clock().isoformat()
    return Report(
        task.identity,
        task.agent,
        task.version,
        Status.SKIPPED,
        error=why,
        started=now,
        finished=now,
        source=task.where,
        **links(ctx),
    )


def finish(report: Report, started: datetime, ctx: RunContext) -> None:
    finished = ctx.clock()
    report.finished = finished.isoformat()
    report.duration = round((finished - started).total_seconds(), 3)


def redacted(report: Report, redactor: Redactor) -> Report:
    return masked(report, redactor)
