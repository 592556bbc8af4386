"""A batch: tasks that share ansible-playbook runs, each still with its own lock, state and report.

Tasks of one batch are independent (:func:`batches`: no task in it follows another's
identity or reads another's outputs). Each task is prepared alone (lock, state, config,
digest); then its commands run in rounds, the n-th command of every task still going in
the n-th run, one play each (ansible_exec.run_plays). As a play ends its task's report
grows, and when the task is done its state is written and its lock let go, before the
plays of the other tasks end: a stop keeps what finished.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from runner_agent.core.errors import GitLabError, InvalidInput, LockedError
from runner_agent.core.redact import Redactor
from runner_agent.core.signals import deferred
from runner_agent.model.agents import Agent, check_config
from runner_agent.model.digest import digest
from runner_agent.model.placeholders import Placeholder, resolve
from runner_agent.model.state import State
from runner_agent.model.tasks import Task
from runner_agent.report.model import CommandResult, Report, Status
from runner_agent.run.ansible_exec import (
    CHANGES_KEY,
    DRIFT_KEY,
    PlaybookResult,
    PlaybookSpec,
    run_playbook,
    run_plays,
)
from runner_agent.run.context import (
    INTERRUPTED,
    RunContext,
    effective_version,
    finish,
    links,
    redacted,
)
from runner_agent.run.history import record_revision
from runner_agent.run.secret_keys import SecretKeys

__all__ = ["BatchInterrupted", "batches", "run_batch"]

_STATUS = {"successful": Status.SUCCESS, "failed": Status.FAILED}


class BatchInterrupted(KeyboardInterrupt):
    """A stop during a batch: one report per task of it, as far as each got."""

    def __init__(self, reports: list[Report]) -> None:
        super().__init__("interrupted")
        self.reports = reports


def batches(tasks: Sequence[Task], size: int) -> list[list[int]]:
    """Indexes of ``tasks`` in batches, in order: a task that follows a task of the current
    batch (same identity) or reads its outputs (``outputs_from``) starts the next batch, so
    it runs after that task's state is written, and is skipped when that task failed."""
    out: list[list[int]] = []
    identities: set[str] = set()
    for index, task in enumerate(tasks):
        needs = {task.identity, *task.outputs_from}
        if not out or needs & identities or len(out[-1]) >= max(size, 1):
            out.append([])
            identities = set()
        out[-1].append(index)
        identities.add(task.identity)
    return out


class _Unresolved(Exception):
    """A placeholder of the task could not be resolved."""


@dataclass
class _Job:
    """One task of the batch on its way to its report."""

    task: Task
    agent: Agent
    report: Report
    started: datetime
    exclusive: bool
    locks: ExitStack = field(default_factory=ExitStack)
    state: State | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    deadline: float = 0.0
    command_started: datetime | None = None  # the play of its current command is running
    written: bool = False  # its state is written: the report is final whatever comes
    final: Report | None = None

    @property
    def first(self) -> str:
        return self.task.command or "update"


def run_batch(tasks: Sequence[Task], ctx: RunContext) -> list[Report]:
    """Run independent tasks, sharing ansible-playbook runs; one report per task, in order.

    Raises BatchInterrupted on a stop (Ctrl-C or SIGTERM)."""
    jobs = [_job(task, ctx) for task in tasks]
    try:
        for job in jobs:
            _prepare(job, ctx)
        step = 0
        while live := [job for job in jobs if job.final is None]:
            _round(live, step, ctx)
            step += 1
    except KeyboardInterrupt as exc:
        with deferred():
            for job in jobs:
                job.locks.close()
        raise BatchInterrupted([_stopped(job, ctx) for job in jobs]) from exc
    finally:
        for job in jobs:
            job.locks.close()
    return [job.final for job in jobs if job.final is not None]


def _job(task: Task, ctx: RunContext) -> _Job:
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
        **links(ctx),
    )
    # a read-only command (an agent's `readonly`, such as cycle) runs beside others and
    # takes the lock only to record its result; every other command holds it throughout.
    # A dry run (task.check) changes nothing and records nothing: it takes no lock.
    exclusive = agent.takes_lock(task.command or "update") and not task.check
    return _Job(task, agent, report, started, exclusive)


def _prepare(job: _Job, ctx: RunContext) -> None:
    task = job.task
    try:
        if job.exclusive:
            job.locks.enter_context(ctx.store.lock(task.identity, job.first))
        job.state = ctx.store.read(task.identity)
        try:
            job.config = resolve(task.config, _lookup(task, ctx))
        except (LookupError, ValueError) as exc:  # an output to read is missing
            raise _Unresolved(str(exc)) from exc
        job.commands = digest(task.command, effective_version(task, job.agent), job.state)
        _check(job)
        job.deadline = ctx.clock().timestamp() + task.timeout
    except _Invalid as exc:  # as Ansible's own check in the play would have failed it
        _end(job, ctx, Status.FAILED, str(exc))
    except LockedError as exc:
        _end(job, ctx, Status.LOCKED, str(exc))
    except (_Unresolved, InvalidInput) as exc:  # a missing output, an unreadable state
        _end(job, ctx, Status.ERROR, str(exc))
    except GitLabError as exc:  # in a GitLab job the state store is the package registry
        _end(job, ctx, Status.ERROR, f"state store: {exc}")


class _Invalid(Exception):
    """The resolved config does not fit the agent's argument spec."""


def _check(job: _Job) -> None:
    """The resolved config against each command's argument spec, with Ansible's validator
    (what the role's entry point would check in a task of its own, per play)."""
    problems = []
    for command in job.commands:
        spec = job.agent.commands.get(command)
        for fld, message in check_config(job.config, spec.options if spec else {}):
            problems.append(f"{fld}: {message} (command {command})")
    if problems:
        raise _Invalid("; ".join(problems))


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


def _end(job: _Job, ctx: RunContext, status: Status, error: str = "") -> None:
    """The task is done: its report is final and its lock let go."""
    if status is not Status.SUCCESS:
        job.report.status, job.report.error = status, error
    finish(job.report, job.started, ctx)
    job.final = redacted(job.report, ctx.redactor)
    job.locks.close()


def _round(live: list[_Job], step: int, ctx: RunContext) -> None:
    """The ``step``-th command of every live task, one play each, in shared runs."""
    specs: list[PlaybookSpec] = []
    owners: list[_Job] = []
    for job in live:
        if step >= len(job.commands):  # every command ran (not reached: see _done)
            _succeed(job, ctx)
            continue
        remaining = math.ceil(job.deadline - ctx.clock().timestamp())
        if remaining <= 0:
            job.report.timed_out = True
            _fail(job, ctx, Status.ERROR, f"timed out after {job.task.timeout}s")
            continue
        specs.append(_spec(job, job.commands[step], remaining))
        owners.append(job)
    if not specs:
        return
    # while Ansible starts, the first play's task is the one being worked on: a stop then
    # reports it interrupted (the others of the run were not started: skipped)
    owners[0].command_started = ctx.clock()

    def on_start(index: int) -> None:
        job = owners[index]
        job.command_started = ctx.clock()
        if ctx.on_output is not None and ctx.log_sections:
            ctx.on_output(
                _section("start", _section_name(job), job.command_started, _header(job, step))
            )

    def on_done(index: int, result: PlaybookResult) -> None:
        job = owners[index]
        started = job.command_started or ctx.clock()
        job.command_started = None
        ended = ctx.clock()
        if ctx.on_output is not None and ctx.log_sections:
            ctx.on_output(_section("end", _section_name(job), ended))
        outcome = _command_result(job, specs[index], result, started, ended)
        job.report.commands.append(outcome)
        job.report.outputs.update(outcome.outputs)
        if outcome.status is not Status.SUCCESS:
            job.report.timed_out = outcome.timed_out
            _fail(job, ctx, outcome.status, outcome.error)
        elif step == len(job.commands) - 1:
            _succeed(job, ctx)

    _plays_runner(ctx)(
        specs,
        on_start=on_start,
        on_done=on_done,
        on_output=ctx.on_output,
        redactor=ctx.redactor,
    )


def _plays_runner(ctx: RunContext) -> Callable[..., Any]:
    """run_plays; a ``playbook_runner`` of the caller's own runs the plays one by one."""
    if ctx.playbook_runner is run_playbook:
        return run_plays
    one = ctx.playbook_runner

    def one_by_one(
        specs: Sequence[PlaybookSpec],
        *,
        on_start: Callable[[int], None],
        on_done: Callable[[int, PlaybookResult], None],
        on_output: Callable[[str], None] | None,
        redactor: Redactor,
    ) -> None:
        for index, spec in enumerate(specs):
            on_start(index)
            on_done(index, one(spec, on_output=on_output, redactor=redactor))

    return one_by_one


def _succeed(job: _Job, ctx: RunContext) -> None:
    """Every command succeeded: the identity's state changes (not in a dry run), then the
    task is done."""
    task = job.task
    try:
        if task.check:
            pass
        elif job.exclusive:
            _keep(job, job.state, ctx)
        else:
            with ctx.store.lock(task.identity, job.first, wait=True):
                _keep(job, ctx.store.read(task.identity), ctx)
    except (InvalidInput, LockedError) as exc:
        _end(job, ctx, Status.ERROR, str(exc))
        return
    except GitLabError as exc:
        _end(job, ctx, Status.ERROR, f"state store: {exc}")
        return
    _end(job, ctx, Status.SUCCESS)


def _keep(job: _Job, state: State | None, ctx: RunContext) -> None:
    # the state document is the truth: a stop signal waits for its write
    with deferred():
        new = _next_state(job, state, ctx)
        job.report.revision = record_revision(new, state, job.task, job.agent, job.report, ctx)
        ctx.store.write(new)
        job.written = True


def _fail(job: _Job, ctx: RunContext, status: Status, error: str) -> None:
    """A command failed or the task ran out of time: the task is done. When an exclusive
    run had changed keys on some hosts by then, only its revision is added to the state
    (under the lock it still holds), so those changes can be rolled back; the rest of the
    state stays as it was."""
    report = job.report
    if job.exclusive and any(report.key_changes.values()):
        report.status, report.error = status, error  # what a stop after the write reports
        try:
            with deferred():
                state = job.state
                new = State.from_dict(state.to_dict()) if state else State(job.task.identity)
                report.revision = record_revision(new, state, job.task, job.agent, report, ctx)
                ctx.store.write(new)
                job.written = True
        except (InvalidInput, LockedError) as exc:
            error = f"{error}; and its revision was not recorded: {exc}"
        except GitLabError as exc:
            error = f"{error}; and its revision was not recorded: state store: {exc}"
    _end(job, ctx, status, error)


def _stopped(job: _Job, ctx: RunContext) -> Report:
    """The report of a task when a stop came: as it ended, or interrupted, or not run."""
    if job.final is not None:
        return job.final
    report = job.report
    if job.written:  # state written: the task did succeed
        pass
    elif not report.commands and job.command_started is None:
        now = ctx.clock().isoformat()
        report.status, report.error = Status.SKIPPED, "skipped: the run was interrupted"
        report.started = report.finished = now
        report.version = job.task.version
        return redacted(report, ctx.redactor)
    else:
        report.status, report.error = Status.ERROR, INTERRUPTED
    finish(report, job.started, ctx)
    return redacted(report, ctx.redactor)


def _spec(job: _Job, command: str, timeout: int) -> PlaybookSpec:
    task = job.task
    hosts = task.inventory()
    return PlaybookSpec(
        agent=job.agent.name,
        roles_path=job.agent.roles_path,
        command=command,
        extravars={
            **job.config,
            "runner_agent_identity": task.identity,
            "runner_agent_command": command,
            "runner_agent_version": effective_version(task, job.agent),
            "runner_agent_no_log": bool(task.secret_env_names()),
        },
        inventory=hosts,
        timeout=timeout,
        check=command == "cycle" or task.check,
        forks=_count_hosts(hosts),
        validated=True,
    )


def _command_result(
    job: _Job, spec: PlaybookSpec, result: PlaybookResult, started: datetime, finished: datetime
) -> CommandResult:
    # secret keys' values masked both sides, though no redactor knows the value an endpoint
    # held (docs/agents.md, the check contract)
    secret = SecretKeys.of(job.task, job.agent)
    outcome = CommandResult(
        command=spec.command,
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
        outcome.error = f"timed out after {spec.timeout}s"
    elif outcome.status is Status.ERROR:
        outcome.error = f"ansible-runner ended with status {result.status!r} (rc {result.rc})"
    elif outcome.status is Status.FAILED and not result.failed_tasks:
        detail = "; ".join(result.errors) or "see the job log"
        outcome.error = f"ansible-playbook failed (rc {result.rc}): {detail}"
    return outcome


def _header(job: _Job, step: int) -> str:
    return f"{job.task.identity}: {job.commands[step]}"


def _section_name(job: _Job) -> str:
    return f"ra_{abs(hash((job.task.identity, id(job), len(job.report.commands)))) % 10**8}"


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


def _next_state(job: _Job, state: State | None, ctx: RunContext) -> State:
    report = job.report
    new = State.from_dict(state.to_dict()) if state else State(job.task.identity)
    new.agent = job.agent.name
    for result in report.commands:
        if result.command == "install":
            new.installed, new.installed_version = True, report.version
        elif result.command == "uninstall":
            new.installed, new.installed_version, new.outputs = False, None, {}
        if result.command != "uninstall":
            new.outputs.update(result.outputs)
    new.identity = job.task.identity  # the task's, whatever a document said (it was checked)
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
