"""The agent job: digest the task against its state, run the commands, report, keep state.

``run_tasks`` is what ``runner-agent run`` calls, in a GitLab job and with ``--local`` alike.
Side effects come in through :class:`RunContext` (state store, playbook runner, clock, output),
so tests swap them without patching.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from runner_agent.core.errors import GitLabError, InvalidInput, LockedError, Problem
from runner_agent.core.redact import Redactor
from runner_agent.core.signals import deferred
from runner_agent.model.agents import Agent, AgentRegistry
from runner_agent.model.digest import digest
from runner_agent.model.placeholders import Placeholder, env_refusal, find_placeholders, resolve
from runner_agent.model.state import State, StateStore
from runner_agent.model.tasks import Task
from runner_agent.report.model import CommandResult, Report, Status, masked
from runner_agent.run.ansible_exec import (
    CHANGES_KEY,
    DRIFT_KEY,
    PlaybookResult,
    PlaybookSpec,
    run_playbook,
)
from runner_agent.run.history import record_revision
from runner_agent.run.secret_keys import SecretKeys

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

_STATUS = {"successful": Status.SUCCESS, "failed": Status.FAILED}


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class RunContext:
    registry: AgentRegistry
    store: StateStore
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    playbook_runner: Callable[..., PlaybookResult] = run_playbook
    clock: Callable[[], datetime] = _now
    on_output: Callable[[str], None] | None = None
    redactor: Redactor = field(default_factory=Redactor)
    secrets: tuple[str, ...] = ()  # the values the tasks' ${env:} resolve to, set by run_tasks
    log_sections: bool = False  # wrap each command's Ansible output in a GitLab log section
    # merged into the revision a run records (a rollback's "rollback of 7 to 5", state_of)
    revision_note: Mapping[str, Any] | None = None


class _Unresolved(Exception):
    """A placeholder of the task could not be resolved."""


class Interrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C or SIGTERM (GitLab cancelling or killing the job).

    ``reports`` has one report per task all the same: the finished ones as they ended, the
    one that was running as an error (no state written: the next run does it again), the
    rest as skipped. Raised by :func:`run_tasks`; a caller that does not catch it sees the
    KeyboardInterrupt it is.
    """

    def __init__(self, reports: list[Report]) -> None:
        super().__init__("interrupted")
        self.reports = reports


INTERRUPTED = "interrupted before it finished (Ctrl-C or SIGTERM): no state was written"


class _TaskInterrupted(KeyboardInterrupt):
    """Raised by :func:`run_task` when stopped: the report as far as the task got."""

    def __init__(self, report: Report) -> None:
        super().__init__("interrupted")
        self.report = report


def effective_version(task: Task, agent: Agent) -> str:
    """The version the task installs: its own, or else the agent's."""
    return task.version or agent.version


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


def _lookup(task: Task, ctx: RunContext) -> Callable[[Placeholder], Any]:
    outputs: dict[str, Any] = {}  # one read per identity, however many keys the task reads

    def lookup(p: Placeholder) -> Any:
        if p.kind == "env":
            return ctx.environ[p.name]
        if p.name not in outputs:
            state = ctx.store.read(p.name)
            outputs[p.name] = state.outputs if state else None
        value: Any = outputs[p.name]
        for part in p.key.split("."):
            if not isinstance(value, Mapping) or part not in value:
                raise LookupError(f"identity {p.name!r} has no output {p.key!r}")
            value = value[part]
        return value

    return lookup


def run_tasks(tasks: Sequence[Task], ctx: RunContext) -> list[Report]:
    """Run tasks in order. A task after a failure of its identity, or of an identity whose
    outputs it reads, is skipped."""
    ctx.secrets = tuple(resolve_env(tasks, ctx.environ))
    ctx.redactor.add(ctx.secrets)
    check_states(tasks, ctx.store)
    broken: set[str] = set()
    reports: list[Report] = []
    for task in tasks:
        blocked = broken & {task.identity, *task.outputs_from}
        if blocked:
            report = skipped_report(
                task, ctx, f"skipped: {', '.join(sorted(blocked))} failed earlier"
            )
        else:
            started = ctx.clock()
            try:
                report = run_task(task, ctx)
            except KeyboardInterrupt as exc:
                if isinstance(exc, _TaskInterrupted):
                    reports.append(exc.report)
                else:
                    reports.append(_interrupted_report(task, ctx, started))
                reports.extend(
                    skipped_report(t, ctx, "skipped: the run was interrupted")
                    for t in tasks[len(reports) :]
                )
                raise Interrupted(reports) from exc
        if report.status is not Status.SUCCESS:
            broken.add(task.identity)
        reports.append(report)
    return reports


def check_states(tasks: Sequence[Task], store: StateStore) -> None:
    """Read the state document of every identity the tasks run or read outputs from, so a
    damaged, linked or foreign one stops the run before anything runs. Raises
    UnreadableState (exit 2), or UnsafePath when the store cannot be written; a store that
    cannot answer is left to each task to report."""
    store.check_writable()
    for identity in dict.fromkeys(i for t in tasks for i in (t.identity, *t.outputs_from)):
        try:
            store.read(identity)
        except GitLabError:
            return


def _interrupted_report(task: Task, ctx: RunContext, started: datetime) -> Report:
    agent = ctx.registry.get(task.agent)
    report = Report(
        task.identity,
        task.agent,
        effective_version(task, agent),
        Status.ERROR,
        error=INTERRUPTED,
        started=started.isoformat(),
        source=task.where,
        **_links(ctx),
    )
    _finish(report, started, ctx)
    return _redacted(report, ctx.redactor)


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
        **_links(ctx),
    )


def _links(ctx: RunContext) -> dict[str, Any]:
    return {
        "pipeline_url": ctx.environ.get("CI_PIPELINE_URL", ""),
        "job_url": ctx.environ.get("CI_JOB_URL", ""),
    }


def run_task(task: Task, ctx: RunContext) -> Report:
    """Run one task to a report; the identity's state changes only when every command
    succeeded. Call through :func:`run_tasks`, which resolves secrets first."""
    agent = ctx.registry.get(task.agent)
    started = ctx.clock()
    report = Report(
        task.identity,
        task.agent,
        effective_version(task, agent),
        Status.SUCCESS,
        started=started.isoformat(),
        source=task.where,
        check=task.check,
        **_links(ctx),
    )
    first = task.command or "update"
    # a read-only command (an agent's `readonly`, such as cycle) runs beside others and
    # takes the lock only to record its result; every other command holds it throughout.
    # A dry run (task.check) changes nothing and records nothing: it takes no lock.
    exclusive = agent.takes_lock(first) and not task.check
    written = False  # the state document is the truth: a stop signal waits for its write

    def keep(state: State | None) -> None:
        nonlocal written
        with deferred():
            new = _next_state(task, agent, state, report, ctx)
            report.revision = record_revision(new, state, task, agent, report, ctx)
            ctx.store.write(new)
            written = True

    def keep_revision(state: State | None) -> None:
        """A run that failed after changing keys on some hosts: only its revision is kept,
        so those changes can be rolled back; the rest of the state stays as it was."""
        nonlocal written
        if not report.key_changes or not any(report.key_changes.values()):
            return
        with deferred():
            new = State.from_dict(state.to_dict()) if state else State(task.identity)
            report.revision = record_revision(new, state, task, agent, report, ctx)
            ctx.store.write(new)
            written = True

    try:
        with ctx.store.lock(task.identity, first) if exclusive else nullcontext():
            state = ctx.store.read(task.identity)
            try:
                config = resolve(task.config, _lookup(task, ctx))
            except (LookupError, ValueError) as exc:  # an output to read is missing
                raise _Unresolved(str(exc)) from exc
            _run_commands(
                task,
                agent,
                digest(task.command, effective_version(task, agent), state),
                config,
                report,
                ctx,
            )
            if report.status is Status.SUCCESS and exclusive:
                keep(state)
            elif exclusive:
                keep_revision(state)
        if report.status is Status.SUCCESS and not exclusive and not task.check:
            with ctx.store.lock(task.identity, first, wait=True):
                keep(ctx.store.read(task.identity))
    except KeyboardInterrupt as exc:
        if not written and report.status is Status.SUCCESS:  # what ran stays in the report
            report.status, report.error = Status.ERROR, INTERRUPTED
        elif not written:  # a command had failed already: that stays the outcome
            report.error = f"{report.error}; then {INTERRUPTED}" if report.error else INTERRUPTED
        _finish(report, started, ctx)
        raise _TaskInterrupted(_redacted(report, ctx.redactor)) from exc
    except LockedError as exc:
        report.status, report.error = Status.LOCKED, str(exc)
    except (_Unresolved, InvalidInput) as exc:  # a missing output, an unreadable state
        report.status, report.error = Status.ERROR, str(exc)
    except GitLabError as exc:  # in a GitLab job the state store is the package registry
        report.status, report.error = Status.ERROR, f"state store: {exc}"
    _finish(report, started, ctx)
    return _redacted(report, ctx.redactor)


def _finish(report: Report, started: datetime, ctx: RunContext) -> None:
    finished = ctx.clock()
    report.finished = finished.isoformat()
    report.duration = round((finished - started).total_seconds(), 3)


def _run_commands(
    task: Task,
    agent: Agent,
    commands: list[str],
    config: Mapping[str, Any],
    report: Report,
    ctx: RunContext,
) -> None:
    deadline = ctx.clock().timestamp() + task.timeout
    for command in commands:
        remaining = math.ceil(deadline - ctx.clock().timestamp())
        if remaining <= 0:
            report.status, report.timed_out = Status.ERROR, True
            report.error = f"timed out after {task.timeout}s"
            return
        result = _run_command(task, agent, command, config, remaining, ctx)
        report.commands.append(result)
        report.outputs.update(result.outputs)
        if result.status is not Status.SUCCESS:
            report.status, report.timed_out = result.status, result.timed_out
            report.error = result.error
            return


def _run_command(
    task: Task, agent: Agent, command: str, config: Mapping[str, Any], timeout: int, ctx: RunContext
) -> CommandResult:
    secret = SecretKeys.of(task, agent)
    extravars = {
        **config,
        "runner_agent_identity": task.identity,
        "runner_agent_command": command,
        "runner_agent_version": effective_version(task, agent),
        "runner_agent_no_log": bool(task.secret_env_names()),
    }
    hosts = task.inventory()
    spec = PlaybookSpec(
        agent=agent.name,
        roles_path=agent.roles_path,
        command=command,
        extravars=extravars,
        inventory=hosts,
        timeout=timeout,
        check=command == "cycle" or task.check,
        forks=_count_hosts(hosts),
    )
    on_output = None
    if ctx.on_output is not None:
        emit = ctx.on_output

        def on_output(line: str) -> None:
            emit(ctx.redactor.text(line))

    started = ctx.clock()
    section = f"ra_{abs(hash((task.identity, command, started))) % 10**8}"
    if ctx.on_output is not None and ctx.log_sections:
        ctx.on_output(_section("start", section, started, f"{task.identity}: {command}"))
    result = ctx.playbook_runner(spec, on_output=on_output, redactor=ctx.redactor)
    finished = ctx.clock()
    if ctx.on_output is not None and ctx.log_sections:
        ctx.on_output(_section("end", section, finished))
    outcome = CommandResult(
        command=command,
        status=_STATUS.get(result.status, Status.ERROR),
        rc=result.rc,
        hosts=result.hosts,
        failed_tasks=result.failed_tasks,
        results=result.results,
        outputs={k: v for k, v in result.stats_data.items() if k not in (DRIFT_KEY, CHANGES_KEY)},
        drift=secret.mask(result.stats_data.get(DRIFT_KEY)),
        changes=secret.mask(result.stats_data.get(CHANGES_KEY)),
        started=started.isoformat(),
        finished=finished.isoformat(),
        duration=round((finished - started).total_seconds(), 3),
        check_mode=spec.check,
    )
    if result.status == "timeout":
        outcome.timed_out = True
        outcome.error = f"timed out after {timeout}s"
    elif outcome.status is Status.ERROR:
        outcome.error = f"ansible-runner ended with status {result.status!r} (rc {result.rc})"
    elif outcome.status is Status.FAILED and not result.failed_tasks:
        detail = "; ".join(result.errors) or "see the job log"
        outcome.error = f"ansible-playbook failed (rc {result.rc}): {detail}"
    return outcome


def _section(edge: str, name: str, when: datetime, header: str = "") -> str:
    """A GitLab job log section marker: the command's Ansible output folds under its header."""
    collapsed = "[collapsed=true]" if edge == "start" else ""
    return f"\x1b[0Ksection_{edge}:{int(when.timestamp())}:{name}{collapsed}\r\x1b[0K{header}"


def _count_hosts(inventory: Mapping[str, Any]) -> int:
    count = 0
    for group in inventory.values():
        if isinstance(group, Mapping):
            count += len(group.get("hosts") or {})
            count += _count_hosts(group.get("children") or {})
    return max(count, 1)


def _next_state(
    task: Task, agent: Agent, state: State | None, report: Report, ctx: RunContext
) -> State:
    new = State.from_dict(state.to_dict()) if state else State(task.identity)
    new.agent = agent.name
    for result in report.commands:
        if result.command == "install":
            new.installed, new.installed_version = True, report.version
        elif result.command == "uninstall":
            new.installed, new.installed_version, new.outputs = False, None, {}
        if result.command != "uninstall":
            new.outputs.update(result.outputs)
    new.identity = task.identity  # the task's, whatever a document said (it was checked)
    new.outputs = ctx.redactor.values(new.outputs)
    new.last_command = ",".join(r.command for r in report.commands)
    new.last_status = report.status.value
    new.updated = ctx.clock().isoformat()
    new.record(
        {
            "commands": [r.command for r in report.commands],
            "status": report.status.value,
            "version": report.version,
            "started": report.started,
            "changed": report.changed,
            "drift": sum(len(v) for v in report.drift.values()),
            "pipeline_url": report.pipeline_url,
        }
    )
    return new


def _redacted(report: Report, redactor: Redactor) -> Report:
    return masked(report, redactor)
