"""The agent job's work, as ``runner-agent run`` does it: run the tasks (or report them
skipped when a task they follow did not succeed), then deliver the reports: files for
GitLab (report JSON, JUnit, dotenv), an HTML page, and, in a dispatched job, the upload the
caller hands in (the GitLab side lives a layer beside this one)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from runner_agent.core.errors import InvalidInput, LockedError
from runner_agent.core.signals import deferred
from runner_agent.model.tasks import Task
from runner_agent.report.files import write_dotenv, write_reports
from runner_agent.report.model import Report, Status, merge_reports
from runner_agent.run.runtime import Interrupted, RunContext, run_tasks, skipped_report

__all__ = ["Deliveries", "blocked_by", "deliver", "run_job", "run_or_roll_back"]


@dataclass(frozen=True)
class Deliveries:
    """Where a job's reports go; ``dotenv`` takes one task's report."""

    report: Path | None = None
    dotenv: Path | None = None
    html: Path | None = None
    publish: Callable[[list[Report]], None] | None = None  # a dispatched job's upload


def blocked_by(after: Sequence[Path]) -> str:
    """Why the tasks must not run: a report they follow is missing or did not succeed;
    empty when they may run."""
    for path in after:
        try:
            status = json.loads(path.read_text(encoding="utf-8")).get("status")
        except (OSError, ValueError, AttributeError, RecursionError):
            return f"skipped: {path} is missing (the task before this one left no report)"
        if status != Status.SUCCESS.value:
            return f"skipped: the task before this one ended {status} ({path})"
    return ""


def deliver(reports: list[Report], to: Deliveries) -> None:
    """Write the report files, then publish. Raises OSError, InvalidInput (the HTML page)."""
    if to.report:
        write_reports(to.report, reports)
    if to.dotenv:
        write_dotenv(to.dotenv, reports[0])
    if to.html:
        from runner_agent.report.html import write_html

        write_html(to.html, reports, summary=merge_reports(reports))
    if to.publish is not None:
        to.publish(reports)


def run_or_roll_back(tasks: Sequence[Task], ctx: RunContext) -> list[Report]:
    """Run the tasks; a task with ``rollback`` (a dispatched ``runner-agent rollback``) rolls
    its identity back instead (docs/safety.md): a lock held elsewhere or a bad revision is
    that task's report (locked, error), as the job must report every task."""
    if not any(t.rollback is not None for t in tasks):
        return run_tasks(tasks, ctx)
    from runner_agent.run.rollback import rollback

    reports: list[Report] = []
    for task in tasks:
        if task.rollback is None:
            reports.extend(run_tasks([task], ctx))
            continue
        to = str(task.rollback.get("to", "previous"))
        force = bool(task.rollback.get("force", False))
        try:
            reports.extend(rollback(task.identity, to, ctx, check=task.check, force=force))
        except (LockedError, InvalidInput) as exc:
            report = skipped_report(task, ctx, f"rollback: {exc}")
            report.status = Status.LOCKED if isinstance(exc, LockedError) else Status.ERROR
            reports.append(report)
    return reports


def run_job(
    tasks: Sequence[Task], ctx: RunContext, *, after: Sequence[Path], to: Deliveries
) -> list[Report]:
    """Run the tasks, or skip them all when ``after`` names a report that is missing or did
    not succeed; deliver the reports either way. A stop (Interrupted) still delivers what
    each task did, then goes on. Raises InvalidInput (a secret not set: nothing ran)."""
    blocked = blocked_by(after)
    if blocked:
        reports = [skipped_report(t, ctx, blocked) for t in tasks]
    else:
        try:
            reports = run_or_roll_back(tasks, ctx)
        except Interrupted as exc:
            # uploads give up STOP_GRACE seconds after the signal: the runner kills soon
            with deferred():
                deliver(exc.reports, to)
            raise
    with deferred():  # a stop now waits for the reports (state is already written)
        deliver(reports, to)
    return reports
