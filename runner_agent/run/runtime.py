"""The agent job: digest each task against its state, run the commands, report, keep state.

``run_tasks`` is what ``runner-agent run`` calls, in a GitLab job and with ``--local`` alike.
Independent tasks share ansible-playbook runs (batch.py); each keeps its own lock, state,
events and report. Side effects come in through :class:`RunContext` (state store, playbook
runner, clock, output), so tests swap them without patching.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from runner_agent.core.errors import GitLabError, InvalidInput, Problem
from runner_agent.model.placeholders import Placeholder, env_refusal, find_placeholders
from runner_agent.model.state import StateStore
from runner_agent.model.tasks import Task
from runner_agent.report.model import Report, Status
from runner_agent.run.batch import BatchInterrupted, batches, run_batch
from runner_agent.run.context import RunContext, effective_version, skipped_report

__all__ = [
    "Interrupted",
    "RunContext",
    "check_states",
    "effective_version",
    "resolve_env",
    "run_task",
    "run_tasks",
    "skipped_report",
]


class Interrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C or SIGTERM (GitLab cancelling or killing the job).

    ``reports`` has one report per task all the same: the finished ones as they ended, the
    ones that were running (or had run some of their commands) as an error (no state written:
    the next run does them again), the rest as skipped. Raised by :func:`run_tasks`; a caller
    that does not catch it sees the KeyboardInterrupt it is.
    """

    def __init__(self, reports: list[Report]) -> None:
        super().__init__("interrupted")
        self.reports = reports


def resolve_env(tasks: Sequence[Task], environ: Mapping[str, str]) -> list[str]:
    """The secret values the tasks' ``${env:NAME}`` placeholders resolve to.

    Raises InvalidInput naming every variable that is not set or not allowed
    (:func:`~runner_agent.model.placeholders.env_refusal`), before anything runs.
    """
    secrets: list[str] = []
    problems = []
    for task in tasks:
        for path, found in find_placeholders(task.config):
            if isinstance(found, Placeholder) and found.kind == "env":
                refused = env_refusal(found.name, environ)
                if refused:
                    problems.append(Problem(task.source, refused, task.document, f"config.{path}"))
                elif found.name in environ:
                    secrets.append(environ[found.name])
                else:
                    problems.append(
                        Problem(
                            task.source,
                            f"environment variable {found.name} is not set",
                            task.document,
                            f"config.{path}",
                        )
                    )
    if problems:
        raise InvalidInput(problems)
    return secrets


def run_tasks(
    tasks: Sequence[Task], ctx: RunContext, failed_before: Mapping[str, str] | None = None
) -> list[Report]:
    """Run tasks in order, independent ones side by side in shared ansible-playbook runs. A
    task after a failure of its identity, or of an identity whose outputs it reads, is skipped;
    ``failed_before`` names identities that failed before this run (another job's report:
    ``run --after``) with the reason their followers give.

    Raises InvalidInput (a secret's variable is not set) before anything runs, and
    Interrupted on a stop."""
    ctx.secrets = tuple(resolve_env(tasks, ctx.environ))
    ctx.redactor.add(ctx.secrets)
    check_states(tasks, ctx.store)
    earlier = dict(failed_before or {})
    broken: set[str] = set(earlier)
    reports: dict[int, Report] = {}
    for batch in batches(tasks, ctx.batch_size):
        runnable = []
        for index in batch:
            task = tasks[index]
            blocked = broken & {task.identity, *task.outputs_from}
            if blocked:
                reasons = [earlier[i] for i in sorted(blocked) if i in earlier]
                why = (
                    reasons[0]
                    if reasons
                    else f"skipped: {', '.join(sorted(blocked))} failed earlier"
                )
                reports[index] = skipped_report(task, ctx, why)
                broken.add(task.identity)
            else:
                runnable.append(index)
        try:
            done = run_batch([tasks[i] for i in runnable], ctx)
        except BatchInterrupted as exc:
            reports.update(zip(runnable, exc.reports, strict=True))
            for index, task in enumerate(tasks):
                if index not in reports:
                    reports[index] = skipped_report(task, ctx, "skipped: the run was interrupted")
            raise Interrupted([reports[i] for i in range(len(tasks))]) from exc
        for index, report in zip(runnable, done, strict=True):
            reports[index] = report
            if report.status is not Status.SUCCESS:
                broken.add(report.identity)
    return [reports[i] for i in range(len(tasks))]


def check_states(tasks: Sequence[Task], store: StateStore) -> None:
    """Read the state document of every identity the tasks run or read outputs from, so a
    damaged, linked or foreign one stops the run before anything runs; the same for a link
    at the lock of an identity a task runs. Raises UnreadableState (exit 2), or UnsafePath
    (exit 2) when the store cannot be written or a lock taken; a store that cannot answer is
    left to each task to report."""
    store.check_writable()
    for identity in dict.fromkeys(t.identity for t in tasks):
        store.check_lock(identity)
    for identity in dict.fromkeys(i for t in tasks for i in (t.identity, *t.outputs_from)):
        try:
            store.read(identity)
        except GitLabError:
            return


def run_task(task: Task, ctx: RunContext) -> Report:
    """Run one task to a report; the identity's state changes only when every command
    succeeded. Call through :func:`run_tasks`, which resolves secrets first."""
    try:
        (report,) = run_batch([task], ctx)
    except BatchInterrupted as exc:
        raise Interrupted(exc.reports) from exc
    return report
