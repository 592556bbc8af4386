"""One STACKL invocation carried out: stack instance in, task run, outputs sent, result out.

:func:`handle_invocation` is what the arq worker's ``invoke_automation`` awaits. It never
raises for what can go wrong with the work (invalid invocation, unknown agent, STACKL or GitLab
unreachable, locked, timed out, failed task): each is a FAILED result naming it, with the
invocation's keys all kept, because STACKL core awaits a result and reads those keys
(``update_status`` in ``stackl/core/core/agent_broker/agent_task_broker.py``). Only a
cancellation goes through: the arq worker being stopped hands the job back to the queue.

The work runs in a *backend*: :class:`GitLabBackend` dispatches the task as a pipeline of the
agent project (the normal dispatcher: coalescing, locks, one pipeline per dispatch id) and waits;
:class:`LocalBackend` runs it here, state in a local folder (labs and tests, like
``run --local``). Blocking calls run in threads, so the worker's event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from runner_agent.core.errors import (
    GitLabError,
    InvalidInput,
    LockedError,
    RunnerAgentError,
    TimedOut,
)
from runner_agent.gitlab.dispatch import Dispatcher, Handle, pipeline_name
from runner_agent.model.agents import AgentRegistry
from runner_agent.model.state import LocalStateStore
from runner_agent.report.model import Report, Status
from runner_agent.run.runtime import RunContext, run_tasks
from runner_agent.stackl.client import StacklClient, StacklError, StacklNotFound
from runner_agent.stackl.invocation import (
    Invocation,
    Mapped,
    map_invocation,
    parse_invocation,
)
from runner_agent.stackl.result import (
    TIMEOUT_MESSAGE,
    failed_result,
    report_to_outputs,
    report_to_result,
)

__all__ = [
    "Backend",
    "GitLabBackend",
    "LocalBackend",
    "dispatch_id_for",
    "handle_invocation",
    "prepare",
]

log = logging.getLogger("runner_agent.stackl")

_SAFE_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,100}$")
# how long past its own deadline a job may take to say so (a poll, a cancel, a report)
DEADLINE_SLACK = 60.0


def dispatch_id_for(job_id: str) -> str:
    """The dispatch id of an arq job: the same on every try, so a retry finds the pipeline its
    first try started (``stackl-<job id>``, or a hash of an id that is not a dispatch id)."""
    if _SAFE_ID.fullmatch(job_id):
        return f"stackl-{job_id}"
    return "stackl-" + hashlib.sha256(job_id.encode()).hexdigest()[:40]


class Backend(Protocol):
    """Where the task runs. ``decode_secrets``: whether STACKL's secret values are handed to
    the run (only a local run can take them without sending them anywhere)."""

    decode_secrets: bool

    async def run(
        self, mapped: Mapped, *, dispatch_id: str | None, timeout: float | None
    ) -> Report:
        """The task's report. Raises TimedOut, LockedError, GitLabError, InvalidInput."""
        ...


def _pick(reports: Sequence[Report], identity: str) -> Report:
    mine = [r for r in reports if r.identity == identity]
    if not mine:
        return Report(identity, "", None, Status.ERROR, error="the run returned no report")
    return mine[-1]


@dataclass
class LocalBackend:
    """Runs the task on this machine, state documents in ``state_dir``."""

    registry: AgentRegistry
    state_dir: Path
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)
    decode_secrets: bool = True

    async def run(
        self, mapped: Mapped, *, dispatch_id: str | None, timeout: float | None
    ) -> Report:
        ctx = RunContext(
            registry=self.registry,
            store=LocalStateStore(self.state_dir),
            environ={**self.environ, **mapped.secret_env},
        )
        # the task's own timeout (the job's) bounds Ansible
        reports = await asyncio.to_thread(run_tasks, [mapped.task], ctx)
        return _pick(reports, mapped.task.identity)


@dataclass
class GitLabBackend:
    """Dispatches the task to the agent project and waits for its report."""

    dispatcher: Dispatcher
    ref: str | None = None
    interval: float = 10.0
    max_interval: float = 60.0
    decode_secrets: bool = False

    async def run(
        self, mapped: Mapped, *, dispatch_id: str | None, timeout: float | None
    ) -> Report:
        return await asyncio.to_thread(self._run, mapped, dispatch_id, timeout)

    def find(self, dispatch_id: str) -> Handle | None:
        """The pipeline an earlier try of this dispatch started, if any. Raises GitLabError."""
        name = pipeline_name(dispatch_id)
        api = self.dispatcher.api
        found = [p for p in api.list_pipelines(name=name) if p.get("name") == name]
        if not found:
            return None
        newest = max(found, key=lambda p: int(p["id"]))
        return Handle(
            gitlab_url=api.url,
            project=str(newest.get("project_id") or api.project),
            pipeline_id=int(newest["id"]),
            dispatch_id=dispatch_id,
            ref=str(newest.get("ref", "")),
            web_url=str(newest.get("web_url", "")),
        )

    def _run(self, mapped: Mapped, dispatch_id: str | None, timeout: float | None) -> Report:
        handle = self.find(dispatch_id) if dispatch_id else None
        if handle is not None:
            log.info(
                "following pipeline %s of an earlier try", handle.web_url or handle.pipeline_id
            )
        else:
            handle = self.dispatcher.submit([mapped.task], ref=self.ref, dispatch_id=dispatch_id)
            log.info("dispatched %s: %s", handle.dispatch_id, handle.web_url)
        try:
            self.dispatcher.wait(
                handle, timeout=timeout, interval=self.interval, max_interval=self.max_interval
            )
        except TimedOut:
            if dispatch_id is not None and handle.dispatch_id == dispatch_id:
                self._cancel(handle)  # ours alone: a joined run belongs to someone else too
            raise
        return _pick(self.dispatcher.reports(handle).reports, mapped.task.identity)

    def _cancel(self, handle: Handle) -> None:
        try:
            self.dispatcher.cancel(handle)
        except RunnerAgentError as exc:
            log.warning("could not cancel pipeline %s: %s", handle.pipeline_id, exc)


async def prepare(
    invocation: Any,
    *,
    stackl: StacklClient,
    registry: AgentRegistry,
    timeout: float | None = None,
    tags: Sequence[str] = (),
    decode_secrets: bool = False,
) -> tuple[Invocation, Mapped]:
    """The invocation read and its task built from the stack instance STACKL holds. Raises
    StacklInvalid, StacklNotFound, StacklError."""
    parsed = parse_invocation(invocation)
    try:
        instance = await asyncio.to_thread(stackl.get_stack_instance, parsed.stack_instance)
    except StacklNotFound:
        raise StacklNotFound(f"STACKL has no stack instance {parsed.stack_instance!r}") from None
    mapped = map_invocation(
        parsed,
        instance,
        registry=registry,
        timeout=None if timeout is None else max(1, int(timeout)),
        tags=tags,
        decode_secrets=decode_secrets,
    )
    return parsed, mapped


def _redact(text: str, secrets: Mapping[str, str]) -> str:
    for value in sorted(secrets.values(), key=len, reverse=True):
        if value:
            text = text.replace(value, "********")
    return text


async def handle_invocation(
    invocation: Any,
    *,
    stackl: StacklClient,
    backend: Backend,
    registry: AgentRegistry,
    job_id: str | None = None,
    timeout: float | None = None,
    tags: Sequence[str] = (),
) -> dict[str, Any]:
    """Carry out one invocation and answer it as STACKL's agent does: the invocation plus
    ``status`` (READY or FAILED) and ``error_message``; outputs go to STACKL's ``/outputs``
    first. Raises nothing but asyncio.CancelledError."""
    secrets: dict[str, str] = {}
    deadline = None if timeout is None else timeout + DEADLINE_SLACK
    try:
        async with asyncio.timeout(deadline):
            result = await _handle(
                invocation, stackl, backend, registry, job_id, timeout, tags, secrets
            )
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # every failure is a result: STACKL core awaits one
        result = failed_result(invocation, _message(exc))
        if not isinstance(exc, RunnerAgentError | TimeoutError):
            log.exception("invocation failed unexpectedly")
    result["error_message"] = _redact(str(result.get("error_message", "")), secrets)
    log.info("%s: %s %s", _name(invocation), result["status"], result["error_message"])
    return result


async def _handle(
    invocation: Any,
    stackl: StacklClient,
    backend: Backend,
    registry: AgentRegistry,
    job_id: str | None,
    timeout: float | None,
    tags: Sequence[str],
    secrets: dict[str, str],
) -> dict[str, Any]:
    parsed, mapped = await prepare(
        invocation,
        stackl=stackl,
        registry=registry,
        timeout=timeout,
        tags=tags,
        decode_secrets=backend.decode_secrets,
    )
    secrets.update(mapped.secret_env)
    log.info(
        "%s %s: agent %s, identity %s%s",
        parsed.action,
        parsed.stack_instance,
        parsed.agent,
        mapped.task.identity,
        f" (ignored: {', '.join(mapped.ignored)})" if mapped.ignored else "",
    )
    report = await backend.run(
        mapped,
        dispatch_id=None if job_id is None else dispatch_id_for(job_id),
        timeout=timeout,
    )
    result = report_to_result(report, parsed.raw, mapped.ignored)
    if result["status"] == "READY" and report.outputs and parsed.action != "delete":
        await asyncio.to_thread(stackl.add_outputs, report_to_outputs(report, parsed.raw))
    return result


def _message(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | TimedOut):
        return f"{TIMEOUT_MESSAGE}: {exc}" if str(exc) else TIMEOUT_MESSAGE
    if isinstance(exc, InvalidInput):
        return "invalid invocation: " + "; ".join(str(p) for p in exc.problems)
    if isinstance(exc, LockedError):
        return f"locked: {exc}"
    if isinstance(exc, GitLabError):
        return f"GitLab: {exc}"
    if isinstance(exc, StacklError):
        return f"STACKL: {exc}"
    if isinstance(exc, RunnerAgentError):
        return str(exc)
    return f"internal error: {type(exc).__name__}: {exc}"


def _name(invocation: Any) -> str:
    if isinstance(invocation, Mapping):
        return "/".join(
            str(invocation.get(k, "?"))
            for k in (
                "stack_instance",
                "service",
                "functional_requirement",
                "infrastructure_target",
            )
        )
    return "<not an invocation>"
