"""The dispatcher: ``submit -> Handle``, then ``status``, ``wait``, ``reports``, ``cancel``.

``submit`` validates and renders the tasks locally first (invalid input: InvalidInput, and not
one request), uploads the bundle to the package registry, and creates ONE pipeline in the agent
project passing only ids: ``dispatch_id`` and ``checksum``, as pipeline inputs or (for GitLab
versions without them) as variables ``RA_DISPATCH_ID`` and ``RA_CHECKSUM``. The agent project
names such a pipeline ``runner-agent <dispatch_id>`` (``workflow:name``), which is how a submit
whose creation request failed after being sent finds out whether GitLab created it.

A small dispatch, whose tasks fit in one job (:func:`one_job`), also passes ``one_job`` and the
job's runner tags, lock and timeout: the agent project then runs ONE job on those runners
(``runner-agent-job``: fetch, verify, run, publish) instead of plan, child pipeline and summary.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from runner_agent.core.errors import GitLabError, InvalidInput, Problem
from runner_agent.gitlab import compat, follow
from runner_agent.gitlab.api import connect, same_gitlab
from runner_agent.gitlab.bundle import BUNDLE_FILE, DISPATCH_PACKAGE, Bundle, build_bundle
from runner_agent.gitlab.follow import (
    Child,
    DispatchReports,
    DispatchStatus,
    Handle,
    Phase,
    load_handle,
    to_phase,
)
from runner_agent.gitlab.inflight import (
    Coalescer,
    Entry,
    FileLedger,
    InFlight,
    Ledger,
    MemoryLedger,
    default_ledger_path,
    find_by_name,
    lock_key,
    read_marker,
    write_marker,
)
from runner_agent.gitlab.port import AmbiguousRequest, ApiError, GitLab
from runner_agent.gitlab.retry import RetryPolicy
from runner_agent.model.tasks import Task, check_tasks
from runner_agent.pipeline.ci_schema import MAX_JOB_TIMEOUT
from runner_agent.pipeline.grouping import DEFAULT_TASKS_PER_JOB, JobGroup, group_jobs
from runner_agent.pipeline.render import TIMEOUT_MARGIN, RenderOptions, _duration, render_child

__all__ = [
    "Child",
    "DispatchReports",
    "DispatchStatus",
    "Dispatcher",
    "Handle",
    "OneJob",
    "Phase",
    "TriggerMode",
    "from_environ",
    "load_handle",
    "one_job",
    "pipeline_name",
    "plan_problems",
    "to_phase",
]

log = logging.getLogger("runner_agent.gitlab.dispatch")

NAME_PREFIX = "runner-agent "


def pipeline_name(dispatch_id: str) -> str:
    """The ``workflow:name`` the agent project gives a dispatched pipeline."""
    return NAME_PREFIX + dispatch_id


def plan_problems(tasks: Sequence[Task]) -> list[Problem]:
    """Why tasks cannot wait for approval: a dry run changes nothing, so there is nothing
    to approve (``dispatch --plan --check``)."""
    return [
        Problem(t.source, "is a dry run (check): --plan applies it after approval", t.document)
        for t in tasks
        if t.check
    ]


class TriggerMode(StrEnum):
    INPUTS = "inputs"  # POST /pipeline from GitLab 17.10, the trigger API from 17.11
    VARIABLES = "variables"  # older GitLab, or where inputs are not wanted


# What the agent project's inputs job_tags and job_lock accept (templates/gitlab-ci/
# agent-project.gitlab-ci.yml): a tag GitLab would expand ($), or could not match exactly,
# takes the parent/child path instead, where the tags are YAML scalars of the child pipeline.
_TAG = re.compile(r"[A-Za-z0-9._:/-]{1,255}")
_LOCK = re.compile(r"runner-agent/[A-Za-z0-9._/-]{1,200}")
# the YAML's default job_timeout, "1h 5m": variables cannot set a timeout, so in variables
# mode the tasks' deadlines must fit in it
VARIABLES_TIMEOUT = 3900


@dataclass(frozen=True)
class OneJob:
    """The one job of a small dispatch: its runner tags, lock (resource_group) and timeout."""

    tags: tuple[str, ...]
    lock: str
    timeout: int  # seconds: the tasks' deadlines one after the other, and a margin

    def timeout_text(self) -> str:
        """As GitLab's ``timeout`` reads it, such as ``1h 5m`` (the task jobs' own form)."""
        return _duration(self.timeout)


def one_job(
    tasks: Sequence[Task],
    mode: TriggerMode,
    per_job: int = DEFAULT_TASKS_PER_JOB,
    *,
    plan_first: bool = False,
) -> OneJob | None:
    """The one job that runs ``tasks``, or None when they take the parent/child path.

    They fit in one job when :func:`~runner_agent.pipeline.grouping.group_jobs` makes exactly
    one job of them (one set of runner tags, one lock shard, at most ``per_job`` tasks). Then
    every tag and the lock must have the shapes the agent project's inputs check; in
    variables mode (an older GitLab) the job takes one tag at most (RA_JOB_TAG) and the
    tasks' deadlines must fit in the YAML's own timeout, and in any mode in GitLab's longest
    job timeout (a month): past it the parent/child path caps them. Never with ``plan_first``
    (``dispatch --plan``): the dry runs and their plan need their own jobs before the
    approve jobs (docs/safety.md).
    """
    if plan_first:
        return None
    groups: list[JobGroup] = group_jobs(tasks, per_job)
    if len(groups) != 1:
        return None
    group = groups[0]
    job = OneJob(group.tags, group.shard, sum(t.timeout for t in tasks) + TIMEOUT_MARGIN)
    if not all(_TAG.fullmatch(tag) for tag in job.tags) or not _LOCK.fullmatch(job.lock):
        return None
    if job.timeout > MAX_JOB_TIMEOUT:
        # GitLab refuses a job timeout over a month (pipeline/ci_schema.py); the parent/child
        # path renders these tasks, within that bound, as the grouped jobs do
        return None
    if mode is TriggerMode.VARIABLES and (len(job.tags) > 1 or job.timeout > VARIABLES_TIMEOUT):
        return None
    return job


_COALESCER: Coalescer[Handle] = Coalescer()
_LEDGERS: dict[tuple[str, str], MemoryLedger] = {}
_LEDGERS_LOCK = threading.Lock()


def _process_ledger(url: str, project: str) -> MemoryLedger:
    with _LEDGERS_LOCK:
        return _LEDGERS.setdefault((url, project), MemoryLedger())


@dataclass
class Dispatcher:
    """Submits tasks to one agent project and follows them. Side effects are injected."""

    api: GitLab
    ledger: Ledger | None = None  # default: one ledger per project shared by the process
    mode: TriggerMode | None = None  # None: inputs where the GitLab version takes them
    trigger_token: str | None = None
    render_options: RenderOptions = field(default_factory=lambda: RenderOptions(validate=True))
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    warn: Callable[[str], None] = log.warning
    settle: float = 3.0  # how long GitLab may take to show a pipeline whose creation we lost
    ambiguous_rounds: int = 3
    # tasks per job (`dispatch --tasks-per-job`): decides whether the dispatch fits in one
    # job, and goes to the agent project as the input tasks_per_job (the variable
    # RA_TASKS_PER_JOB in variables mode); None: the project's own default, nothing sent
    tasks_per_job: int | None = None
    allow_one_job: bool = True  # False: always plan job + child pipeline (an older agent project)

    def __post_init__(self) -> None:
        compat.require_access_token(self.api.connection, "runner-agent dispatch")  # no request
        if self.tasks_per_job is not None:  # checked and rendered as the plan job will
            self.render_options = replace(self.render_options, tasks_per_job=self.tasks_per_job)
        self._ledger: Ledger = self.ledger or _process_ledger(self.api.url, self.api.project)
        self._mode = self.mode or TriggerMode.INPUTS

    @classmethod
    def for_machine(cls, api: GitLab, environ: Mapping[str, str], **kwargs: Any) -> Dispatcher:
        """A dispatcher whose ledger is this user's in-flight file for the project (a memory
        ledger when the cache folder cannot be written)."""
        path = default_ledger_path(api.url, api.project, dict(environ))
        ledger: Ledger = FileLedger(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError:
            ledger = _process_ledger(api.url, api.project)
        return cls(api=api, ledger=ledger, **kwargs)

    def wait(
        self,
        handle: Handle,
        *,
        timeout: float | None = None,
        approval_timeout: float | None = None,
        interval: float = 10.0,
        max_interval: float = 60.0,
        progress: Callable[[DispatchStatus, float], None] | None = None,
    ) -> DispatchStatus:
        """Poll until the pipeline finishes: at most one request per interval, the interval
        growing to ``max_interval``; waiting for approval counts only against
        ``approval_timeout`` (see :func:`follow.wait`). Raises TimedOut at a deadline,
        GitLabError."""
        return follow.wait(
            self.api_for(handle),
            handle,
            timeout=timeout,
            approval_timeout=approval_timeout,
            interval=interval,
            max_interval=max_interval,
            progress=progress,
            clock=self.clock,
            sleep=self.sleep,
        )

    def reports(self, handle: Handle) -> DispatchReports:
        """Every task's report, in one request when the summary is in the registry. Raises
        NotFinished while the pipeline runs, TaskFailed when it ended without any report."""
        return follow.reports(self.api_for(handle), handle)

    # --- submit ---------------------------------------------------------------------------

    def check(self, tasks: Sequence[Task], *, plan_first: bool = False) -> None:
        """Everything checked before the first request: the tasks validate together and render
        as the plan job will render them. Raises InvalidInput; makes no request."""
        if not tasks:
            raise InvalidInput(Problem("<tasks>", "no task to dispatch"))
        problems = check_tasks(tasks)
        if plan_first:
            problems.extend(plan_problems(tasks))
        if problems:
            raise InvalidInput(problems)
        render_child(tasks, replace(self.render_options, plan_first=plan_first))

    def submit(
        self,
        tasks: Sequence[Task],
        *,
        ref: str | None = None,
        dispatch_id: str | None = None,
        plan_first: bool = False,
    ) -> Handle:
        """Start one pipeline for the tasks, or join the identical run in flight.

        In order: the checks (no request); GitLab's version, which decides inputs or
        variables (the one request before any other); the ref (the project's default branch
        unless given); then, under this machine's ledger lock, the runs in flight decide: join
        the identical one, or refuse when a different one holds an identity; else upload the
        bundle, create ONE pipeline, record the run for other machines. Identical submits
        from threads of this process share one such call. ``dispatch_id`` names the new run
        (default: a fresh id); the caller looks for a pipeline of that name first when the id
        may have been used already. ``plan_first`` (``dispatch --plan``): the pipeline dry-runs
        the tasks, publishes the plan and waits at one manual job per identity
        (docs/safety.md); the bundle and the pipeline's input both say so.

        Raises InvalidInput before any request when the tasks are invalid; LockedError, with
        nothing triggered, when a different run for one of the identities is in flight;
        GitLabError when GitLab refuses or cannot be reached.
        """
        self.check(tasks, plan_first=plan_first)
        self._mode = self._choose_mode()  # the one check of GitLab before any other request
        per_job = self.tasks_per_job or DEFAULT_TASKS_PER_JOB
        job = None
        if self.allow_one_job:
            job = one_job(tasks, self._mode, per_job, plan_first=plan_first)
        bundle = build_bundle(
            tasks, ref=ref or self._default_ref(), dispatch_id=dispatch_id, plan_first=plan_first
        )
        key = (self.api.url, self.api.project, bundle.signature)
        return _COALESCER.run(key, lambda: self._join_or_start(bundle, job))

    def _join_or_start(self, bundle: Bundle, job: OneJob | None = None) -> Handle:
        with self._ledger.locked() as ledger:
            inflight = InFlight(ledger, self.api, now=self.clock())
            marker_key = lock_key(bundle.identities)
            run = inflight.join(bundle)  # this machine's runs
            if run is None:  # another machine's, through the project's registry
                run = inflight.join_marker(bundle, read_marker(self.api, marker_key))
            if run is None:
                self.api.put_package_file(
                    DISPATCH_PACKAGE, bundle.dispatch_id, BUNDLE_FILE, bundle.data
                )
                run = self._entry(bundle, self._create_pipeline(bundle, job))
                write_marker(self.api, marker_key, run, self.warn)
            inflight.record(run)
        return _handle(run)

    def _choose_mode(self) -> TriggerMode:
        route = compat.Route.TRIGGER if self.trigger_token else compat.Route.CREATE
        takes_inputs = compat.preflight(self.api, "runner-agent dispatch", route)
        if self.mode is TriggerMode.INPUTS and not takes_inputs:
            raise compat.UnsupportedGitLab(
                f"{route.value} takes inputs from GitLab {compat.INPUTS_SINCE[route]}; "
                f"this one is {compat.server_version(self.api)}: pass the ids as variables"
            )
        if self.mode is not None:
            return self.mode
        return TriggerMode.INPUTS if takes_inputs else TriggerMode.VARIABLES

    def _default_ref(self) -> str:
        branch = self.api.get_project().get("default_branch")
        if not branch:
            raise InvalidInput(Problem("--ref", "the project has no default branch: pass --ref"))
        return str(branch)

    def _create_pipeline(self, bundle: Bundle, job: OneJob | None = None) -> dict[str, Any]:
        """Exactly one pipeline: when a creation failed after it was sent, look the pipeline up
        by its name before posting again. Raises GitLabError when every round failed."""
        name = pipeline_name(bundle.dispatch_id)
        failure: AmbiguousRequest | None = None
        for _ in range(self.ambiguous_rounds):
            try:
                return self._post(bundle, job)
            except AmbiguousRequest as exc:
                failure = exc
                self.warn(f"warning: {exc}; looking for pipeline {name!r} before trying again")
            found = find_by_name(self.api, name, self.sleep, self.settle)
            if found is not None:
                return found
        raise GitLabError(f"could not create the pipeline: {failure}")

    def _post(self, bundle: Bundle, job: OneJob | None = None) -> dict[str, Any]:
        # plan_first is sent only when asked: an agent project without the input then refuses
        # the pipeline (400) rather than run it ungated; other dispatches stay as they were
        per_job = self.tasks_per_job
        if self._mode is TriggerMode.INPUTS:
            inputs: dict[str, Any] = {
                "dispatch_id": bundle.dispatch_id,
                "checksum": bundle.checksum,
            }
            if job is not None:
                inputs |= {
                    "one_job": "true",
                    "job_lock": job.lock,
                    "job_timeout": job.timeout_text(),
                }
                if job.tags:  # else the YAML's default: RA_JOB_TAG
                    inputs["job_tags"] = list(job.tags)
            if bundle.plan_first:
                inputs["plan_first"] = True
            if per_job is not None:  # a `type: number` input takes a JSON number
                inputs["tasks_per_job"] = per_job
            ids: dict[str, Any] = {"inputs": inputs}
        else:
            variables = {"RA_DISPATCH_ID": bundle.dispatch_id, "RA_CHECKSUM": bundle.checksum}
            if job is not None:
                variables |= {"RA_ONE_JOB": "true", "RA_JOB_LOCK": job.lock}
                if job.tags:
                    variables["RA_JOB_TAG"] = job.tags[0]
            if bundle.plan_first:
                variables["RA_PLAN_FIRST"] = "true"
            if per_job is not None:  # a pipeline variable outranks the plan job's own
                variables["RA_TASKS_PER_JOB"] = str(per_job)
            ids = {"variables": variables}
        if self.trigger_token:
            return self.api.trigger_pipeline(self.trigger_token, bundle.ref, **ids)
        return self.api.create_pipeline(bundle.ref, **ids)

    def _entry(self, bundle: Bundle, pipeline: Mapping[str, Any]) -> Entry:
        expected = pipeline_name(bundle.dispatch_id)
        # the creation answer (Entities::Ci::Pipeline) has no name; GET .../pipelines/:id does.
        # Only a check: the pipeline exists, so a failed read must not fail the submit.
        try:
            named = self.api.get_pipeline(int(pipeline["id"])).get("name")
        except ApiError as exc:
            named = expected
            self.warn(f"warning: could not read the new pipeline's name: {exc}")
        if named != expected:
            self.warn(
                f"warning: the pipeline is named {named!r}, not {expected!r}: "
                "set workflow:name in the agent project (see docs/dispatch.md), or a lost "
                "answer from GitLab could start a second pipeline"
            )
        return Entry(
            dispatch_id=bundle.dispatch_id,
            signature=bundle.signature,
            identities=bundle.identities,
            pipeline_id=int(pipeline["id"]),
            web_url=str(pipeline.get("web_url", "")),
            gitlab_url=self.api.url,
            project=str(pipeline.get("project_id") or self.api.project),
            ref=bundle.ref,
            created=self.clock(),
            plan_first=bundle.plan_first,
        )

    # --- follow -------------------------------------------------------------------------------

    def api_for(self, handle: Handle) -> GitLab:
        """The client for the handle's project. Raises InvalidInput when the handle belongs to
        another GitLab than the one configured."""
        if not same_gitlab(handle.gitlab_url, self.api.url):
            raise InvalidInput(
                Problem(
                    "HANDLE",
                    f"the handle belongs to {handle.gitlab_url}, not to the configured "
                    f"{self.api.url}: set GITLAB_URL and GITLAB_TOKEN for the handle's GitLab, "
                    "or pass --gitlab-config-section",
                )
            )
        return self.api.for_project(handle.project)

    def status(self, handle: Handle, *, children: bool = True) -> DispatchStatus:
        """The pipeline's phase and its children's. Raises GitLabError."""
        return follow.status(self.api_for(handle), handle, children=children)

    def cancel(self, handle: Handle) -> DispatchStatus:
        """Cancel the run, children included; harmless to repeat. Raises GitLabError."""
        return follow.cancel(self.api_for(handle), handle)


def from_environ(
    environ: Mapping[str, str],
    *,
    project: str | None = None,
    section: str | None = None,
    config_files: list[str] | None = None,
    handle: Handle | None = None,
    retry_policy: RetryPolicy | None = None,
    **options: Any,
) -> Dispatcher:
    """A dispatcher configured as :func:`runner_agent.gitlab.api.connect` says, for the
    handle's project when one is given, with this machine's in-flight ledger. Raises
    InvalidInput when nothing names a GitLab, a token or a project; makes no request."""
    api = connect(
        environ,
        project=handle.project if handle else project,
        section=section,
        config_files=config_files,
        retry_policy=retry_policy,
    )
    return Dispatcher.for_machine(api, environ, **options)


def _handle(entry: Entry) -> Handle:
    return Handle(
        gitlab_url=entry.gitlab_url,
        project=entry.project,
        pipeline_id=entry.pipeline_id,
        dispatch_id=entry.dispatch_id,
        ref=entry.ref,
        web_url=entry.web_url,
        plan=entry.plan_first,
    )
