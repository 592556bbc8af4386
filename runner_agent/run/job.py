"""The agent job's work, as ``runner-agent run`` does it: run the tasks (or report them
skipped when a task they follow did not succeed), then deliver the reports: files for
GitLab (report JSON, JUnit, dotenv), an HTML page, and, in a dispatched job, the upload the
caller hands in (the GitLab side lives a layer beside this one)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from runner_agent.core.errors import InvalidInput, LockedError
from runner_agent.core.signals import deferred
from runner_agent.model.tasks import Task
from runner_agent.report.files import write_dotenv, write_reports
from runner_agent.report.model import Report, Status, merge_reports
from runner_agent.run.runtime import Interrupted, RunContext, run_tasks, skipped_report

__all__ = ["Deliveries", "blocked_by", "deliver", "failed_before", "run_job", "run_or_roll_back"]


@dataclass(frozen=True)
class Deliveries:
    """Where a job's reports go: ``report`` one file (a summary for several tasks),
    ``reports`` one file per task (a grouped job: the collect job counts every task's), and
    ``dotenv`` every task's status and outputs within GitLab's limits."""

    report: Path | None = None
    dotenv: Path | None = None
    html: Path | None = None
    publish: Callable[[list[Report]], None] | None = None  # a dispatched job's upload
    reports: tuple[Path, ...] = ()  # per task, in the tasks' order
    expected: int | None = None  # tasks the HTML page's summary counts (missing ones too)


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


def failed_before(after: Sequence[Path]) -> tuple[str, dict[str, str]]:
    """What the reports in ``after`` leave: why every task must be skipped (a report missing
    or unreadable: what its job held is unknown), else the identities whose report did not
    succeed -> why the tasks following them are skipped."""
    found: dict[str, str] = {}
    for path in after:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            status = data.get("status")
        except (OSError, ValueError, AttributeError, RecursionError):
            return blocked_by([path]), {}
        if status != Status.SUCCESS.value:
            why = f"skipped: the task before this one ended {status} ({path})"
            found.setdefault(str(data.get("identity")), why)
    return "", found


def deliver(reports: list[Report], to: Deliveries) -> None:
    """Write the report files, then publish. Raises OSError, InvalidInput (the HTML page).

    The dotenv is made first: a task whose variables GitLab's limits leave out says so in
    its report's notes."""
    if to.dotenv:
        write_dotenv(to.dotenv, reports)
    if to.report:
        write_reports(to.report, reports)
    for path, report in zip(to.reports, reports, strict=False):
        write_reports(path, [report])
    if to.html:
        from runner_agent.report.html import write_html

        write_html(to.html, reports, summary=merge_reports(reports, expected=to.expected))
    if to.publish is not None:
        to.publish(reports)


def run_or_roll_back(
    tasks: Sequence[Task], ctx: RunContext, failed: Mapping[str, str] | None = None
) -> list[Report]:
    """Run the tasks; a task with ``rollback`` (a dispatched ``runner-agent rollback``) rolls
    its identity back instead (docs/safety.md): a lock held elsewhere or a bad revision is
    that task's report (locked, error), as the job must report every task."""
    if not any(t.rollback is not None for t in tasks):
        return run_tasks(tasks, ctx, failed)
    from runner_agent.run.rollback import rollback

    reports: list[Report] = []
    for task in tasks:
        if task.rollback is None:
            reports.extend(run_tasks([task], ctx, failed))
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
    """Run the tasks and deliver their reports. ``after`` names reports of tasks run before
    (another job's): a missing one skips every task; one that did not succeed skips the tasks
    that follow its identity (same identity, or reading its outputs) and their followers, or
    every task when none does (a report given for the whole run). A stop (Interrupted) still
    delivers what each task did, then goes on. Raises InvalidInput (a secret not set)."""
    blocked, failed = failed_before(after)
    related = {i for t in tasks for i in (t.identity, *t.outputs_from)}
    if failed and not related & set(failed):  # a report given for the whole run
        blocked = next(iter(failed.values()))
    if blocked:
        reports = [skipped_report(t, ctx, blocked) for t in tasks]
    else:
        try:
            reports = run_or_roll_back(tasks, ctx, failed)
        except Interrupted as exc:
            # uploads give up STOP_GRACE seconds after the signal: the runner kills soon
            with deferred():
                deliver(exc.reports, to)
            raise
    with deferred():  # a stop now waits for the reports (state is already written)
        deliver(reports, to)
    return reports
