"""A dispatch after submit: its handle and phase; status, wait, reports and cancel.

``wait`` asks for the parent pipeline only (``strategy: depend`` makes it carry its children's
outcome), at most once per interval, the interval growing with the time waited. ``reports``
reads the merged summary from the package registry in one request; when it is missing (a job
could not upload it) it walks the pipeline's trigger jobs down to the collect jobs and reads
their artifacts instead; a small dispatch's pipeline has no trigger job, but its one job's
artifacts. Every function takes the client of the handle's project.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from runner_agent.core.errors import (
    EXIT_FAILED,
    GitLabError,
    InvalidInput,
    Problem,
    RunnerAgentError,
    TaskFailed,
    TimedOut,
)
from runner_agent.gitlab.bundle import DISPATCH_PACKAGE, bundle_identities, check_ids, read_summary
from runner_agent.gitlab.port import GitLab, NotFound
from runner_agent.gitlab.retry import within
from runner_agent.report.files import loads
from runner_agent.report.model import (
    Report,
    account_for,
    load_report,
    load_reports,
    merge_reports,
)
from runner_agent.report.outcome import exit_code

__all__ = [
    "Child",
    "DispatchReports",
    "DispatchStatus",
    "Handle",
    "NotFinished",
    "Phase",
    "cancel",
    "load_handle",
    "progress_printer",
    "reports",
    "status",
    "to_phase",
    "wait",
]

COLLECT_PREFIX = "runner-agent-collect"
ONE_JOB = "runner-agent-job"  # a small dispatch's only job (templates/gitlab-ci/)
MAX_DEPTH = 2  # GitLab nests child pipelines two levels deep at most


class NotFinished(RunnerAgentError):
    """The pipeline has not finished, so there is no summary yet."""

    exit_code = EXIT_FAILED


class Phase(StrEnum):
    """Where a dispatch stands, whatever GitLab calls it."""

    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"  # a manual job needs a person
    # dispatch --plan: a child pipeline stopped at its approval gate. GitLab shows no status of
    # its own for it above the child: see :func:`status`
    APPROVAL = "waiting_for_approval"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    SKIPPED = "skipped"

    @property
    def terminal(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELED, Phase.SKIPPED)

    @property
    def label(self) -> str:
        """The phase as a person reads it: ``waiting for approval``."""
        return self.value.replace("_", " ")


_PHASES = {
    "created": Phase.QUEUED,
    "waiting_for_resource": Phase.QUEUED,
    "preparing": Phase.QUEUED,
    "pending": Phase.QUEUED,
    "scheduled": Phase.QUEUED,
    "waiting_for_callback": Phase.QUEUED,
    "running": Phase.RUNNING,
    "canceling": Phase.RUNNING,
    "manual": Phase.WAITING,
    "success": Phase.SUCCEEDED,
    "failed": Phase.FAILED,
    "canceled": Phase.CANCELED,
    "skipped": Phase.SKIPPED,
}


def to_phase(status: str) -> Phase:
    """The phase of a GitLab pipeline status. Raises GitLabError on a status we do not know."""
    try:
        return _PHASES[status]
    except KeyError:
        raise GitLabError(f"GitLab reported an unknown pipeline status {status!r}") from None


@dataclass(frozen=True)
class Handle:
    """What a caller keeps to come back to a dispatch, from any process."""

    gitlab_url: str
    project: str
    pipeline_id: int
    dispatch_id: str
    ref: str
    web_url: str = ""
    plan: bool = False  # dispatch --plan: wait looks for the approval gate in the children

    def encode(self) -> str:
        data = asdict(self)
        if not self.plan:  # a handle without the gate reads as it always did
            del data["plan"]
        return json.dumps(data, sort_keys=True)

    @classmethod
    def decode(cls, text: str) -> Handle:
        """The handle from its JSON. Raises InvalidInput naming what is wrong."""
        try:
            data = json.loads(text)
            handle = cls(
                gitlab_url=str(data["gitlab_url"]),
                project=str(data["project"]),
                pipeline_id=int(data["pipeline_id"]),
                dispatch_id=str(data["dispatch_id"]),
                ref=str(data.get("ref", "")),
                web_url=str(data.get("web_url", "")),
                plan=data.get("plan", False) is True,
            )
        except (ValueError, TypeError, KeyError, RecursionError) as exc:
            raise InvalidInput(Problem("HANDLE", f"not a dispatch handle: {exc}")) from exc
        check_ids(handle.dispatch_id)
        return handle


def load_handle(value: str) -> Handle:
    """A handle given as its JSON text or as the path of a file holding it. Raises InvalidInput."""
    text = value.strip()
    if not text.startswith("{"):
        try:
            text = Path(value).read_text(encoding="utf-8")
        except (OSError, ValueError) as exc:  # ValueError: not UTF-8
            reason = exc.strerror if isinstance(exc, OSError) else exc
            raise InvalidInput(
                Problem("HANDLE", f"neither handle JSON nor a readable file: {reason}")
            ) from exc
    return Handle.decode(text)


@dataclass(frozen=True)
class Child:
    name: str
    pipeline_id: int
    status: str
    web_url: str


@dataclass(frozen=True)
class DispatchStatus:
    handle: Handle
    phase: Phase
    status: str
    web_url: str
    children: tuple[Child, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "dispatch_id": self.handle.dispatch_id,
            "pipeline_id": self.handle.pipeline_id,
            "phase": self.phase.value,
            "status": self.status,
            "web_url": self.web_url,
            "children": [asdict(c) for c in self.children],
        }


@dataclass(frozen=True)
class DispatchReports:
    """A dispatch's reports: the merged summary and each task's :class:`Report`."""

    handle: Handle
    summary: Mapping[str, Any]
    reports: tuple[Report, ...]
    source: str  # "registry" (the summary), "artifacts" or "registry reports" (per job)

    @property
    def ok(self) -> bool:
        return self.summary.get("status") == "success"

    @property
    def exit_code(self) -> int:
        """The tasks' exit code, as a local run of them would end (report.outcome)."""
        return exit_code(self.reports, missing=int(self.summary.get("missing") or 0))


Progress = Callable[[DispatchStatus, float], None]


def status(api: GitLab, handle: Handle, *, children: bool = True) -> DispatchStatus:
    """The pipeline's phase, and its child pipelines' (one more request). Raises GitLabError.

    A child pipeline stopped at a manual job with ``allow_failure: false`` (the approval gate
    of ``dispatch --plan``) is ``manual``, but its trigger job stays ``running`` and so does
    the parent: with ``strategy: depend`` the bridge only takes its child's status once that
    is success, failed, canceled or skipped (app/models/ci/bridge.rb
    ``inherit_status_from_downstream!``; app/services/ci/create_downstream_pipeline_service.rb
    leaves a dependent bridge running). So a running pipeline whose children (or their
    children, for a split dispatch) include a ``manual`` one is :attr:`Phase.APPROVAL`. The
    children are read when asked, or for a planned handle while the pipeline runs.
    """
    pipeline = api.get_pipeline(handle.pipeline_id)
    state = str(pipeline.get("status", ""))
    phase = to_phase(state)
    kids: list[Child] = []
    if children or (handle.plan and phase is Phase.RUNNING):
        kids = _children(api, handle.pipeline_id)
        # a split dispatch's gates are a level further down: looked for in planned runs only
        if phase is Phase.RUNNING and _awaits_approval(api, kids, 1 if handle.plan else MAX_DEPTH):
            phase = Phase.APPROVAL
    web_url = str(pipeline.get("web_url") or handle.web_url)
    return DispatchStatus(handle, phase, state, web_url, tuple(kids) if children else ())


def _children(api: GitLab, pipeline_id: int) -> list[Child]:
    kids = []
    for bridge in api.list_bridges(pipeline_id):
        down = bridge.get("downstream_pipeline") or {}
        if down.get("id"):
            kids.append(
                Child(
                    str(bridge.get("name", "")),
                    int(down["id"]),
                    str(down.get("status", "")),
                    str(down.get("web_url", "")),
                )
            )
    return kids


def _awaits_approval(api: GitLab, kids: list[Child], depth: int) -> bool:
    """Whether a child pipeline, or a running child's own child, stopped at a manual job."""
    for child in kids:
        if child.status == "manual":
            return True
        below = child.status == "running" and depth < MAX_DEPTH
        if below and _awaits_approval(api, _children(api, child.pipeline_id), depth + 1):
            return True
    return False


def cancel(api: GitLab, handle: Handle) -> DispatchStatus:
    """Cancel the pipeline and its unfinished child pipelines. GitLab answers 200 whatever the
    state, so this is harmless to repeat. Raises GitLabError."""
    api.cancel_pipeline(handle.pipeline_id)
    for child in status(api, handle).children:
        if not to_phase(child.status).terminal:
            api.cancel_pipeline(child.pipeline_id)
    return status(api, handle)


def wait(
    api: GitLab,
    handle: Handle,
    *,
    timeout: float | None = None,
    approval_timeout: float | None = None,
    interval: float = 10.0,
    max_interval: float = 60.0,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> DispatchStatus:
    """Poll the parent pipeline until it is finished: one request per pause, the pause a
    quarter of the time waited so far, within ``interval`` and ``max_interval``.

    Time spent waiting for approval (:attr:`Phase.APPROVAL`, from one poll that saw it to the
    next) does not count against ``timeout``: a person may take a day to approve. With
    ``approval_timeout`` that wait has its own limit. Raises TimedOut at either deadline,
    GitLabError.
    """
    start = clock()
    approval = 0.0  # seconds spent waiting for approval, left out of the timeout
    seen: tuple[float, Phase] | None = None  # the previous poll: when, and what it saw
    while True:
        deadline = None if timeout is None else start + timeout + approval
        # a request's own retries end by the deadline too (a long rate-limit wait included)
        left = None if deadline is None else max(deadline - clock(), 1.0)
        with nullcontext() if left is None else within(left):
            now_status = status(api, handle, children=False)
        now = clock()
        if seen is not None and seen[1] is Phase.APPROVAL:
            approval += now - seen[0]
        seen = (now, now_status.phase)
        if progress is not None:
            progress(now_status, now - start)
        if now_status.phase.terminal:
            return now_status
        if approval_timeout is not None and approval >= approval_timeout:
            raise TimedOut(
                f"pipeline {handle.pipeline_id} waited for approval longer than "
                f"{approval_timeout:g}s: {now_status.web_url}; nothing was applied unless "
                "someone approved meanwhile; the handle stays valid (runner-agent wait HANDLE)"
            )
        deadline = None if timeout is None else start + timeout + approval
        if deadline is not None and now >= deadline and now_status.phase is not Phase.APPROVAL:
            raise TimedOut(
                f"pipeline {handle.pipeline_id} is still {now_status.status} after {timeout:g}s: "
                f"{now_status.web_url}; the handle stays valid (runner-agent wait HANDLE)"
            )
        # a quarter of the time waited so far: the end is seen within a quarter of the run's
        # length (never sooner than ``interval``), at a request count that grows with its log
        nap = min(max_interval, max(interval, 0.1, (now - start) / 4))
        if deadline is not None and now_status.phase is not Phase.APPROVAL:
            nap = min(nap, max(deadline - now, 0.0))
        if approval_timeout is not None and now_status.phase is Phase.APPROVAL:
            nap = min(nap, max(approval_timeout - approval, 0.0))
        sleep(nap)


def reports(api: GitLab, handle: Handle) -> DispatchReports:
    """Every task's report: one request when the summary is in the registry.

    Raises NotFinished while the pipeline runs, TaskFailed when it ended without any report,
    GitLabError.
    """
    try:
        summary = read_summary(api, handle.dispatch_id)
        source = "registry"
    except NotFound:
        ended = status(api, handle, children=False)
        if not ended.phase.terminal:
            raise NotFinished(
                f"pipeline {handle.pipeline_id} is {ended.status}: no summary yet "
                f"({ended.web_url}); use runner-agent wait HANDLE"
            ) from None
        # no summary (cancelled, or the last job never ran): the collect jobs' artifacts, and
        # when they do not account for every task, the reports the task jobs uploaded
        expected = _bundle_identities(api, handle)
        collected = _artifact_reports(api, handle.pipeline_id, 0)
        got, source = _latest(collected), "artifacts"
        if expected is None or len(got) < len(expected):
            uploaded = _uploaded_reports(api, handle.dispatch_id)
            source = "artifacts and registry reports" if got else "registry reports"
            got = _latest([*collected, *uploaded])
        if not got:
            raise TaskFailed(
                f"pipeline {handle.pipeline_id} ended {ended.status} and no task reported: "
                f"{ended.web_url}"
            ) from None
        why = f"no report: the pipeline ended {ended.status} before this task's job reported"
        summary = merge_reports(account_for(expected, got, why))
    loaded = tuple(load_report(r) for r in summary.get("reports", []))
    return DispatchReports(handle, summary, loaded, source)


def _artifact_reports(api: GitLab, pipeline_id: int, depth: int) -> list[dict[str, Any]]:
    """The reports in the summaries of the collect jobs below a pipeline, and of the one job
    of a small dispatch (in the pipeline itself, which then has no child)."""
    found: list[dict[str, Any]] = []
    bridges = api.list_bridges(pipeline_id) if depth < MAX_DEPTH else []
    if depth > 0 or not bridges:
        for job in api.list_pipeline_jobs(pipeline_id):
            name = str(job.get("name", ""))
            summarises = name.startswith(COLLECT_PREFIX) if depth > 0 else name == ONE_JOB
            if summarises and job.get("artifacts"):
                found.extend(_summary_reports(api, int(job["id"])))
    for bridge in bridges:
        down = bridge.get("downstream_pipeline") or {}
        if down.get("id"):
            found.extend(_artifact_reports(api, int(down["id"]), depth + 1))
    return found


def _latest(found: list[Any]) -> list[Report]:
    """One report per task: a retried job's report replaces the first attempt's (same task
    file, later finish); reports that do not load are left out."""
    kept: dict[tuple[str, str], Report] = {}
    for n, report in enumerate(load_reports(found)):
        key = (report.identity, report.source or f"#{n}")  # no source: never the same task
        if key not in kept or report.finished >= kept[key].finished:
            kept[key] = report
    return list(kept.values())


def _uploaded_reports(api: GitLab, dispatch_id: str) -> list[Any]:
    """The documents task jobs uploaded to the dispatch's package (``report-<job>[-n].json``),
    as JSON; :func:`_latest` keeps those that are reports."""
    found: list[Any] = []
    names = api.list_package_files(DISPATCH_PACKAGE, dispatch_id)
    for name in sorted({n for n in names if n.startswith("report-") and n.endswith(".json")}):
        try:
            data = api.get_package_file(DISPATCH_PACKAGE, dispatch_id, name)
            found.append(loads(data.decode("utf-8")))  # a job's upload: NaN is not a report
        except (NotFound, ValueError, RecursionError):
            continue
    return found


def _bundle_identities(api: GitLab, handle: Handle) -> list[str] | None:
    """The identities of the dispatch's tasks, in order; None when the bundle is gone."""
    try:
        return bundle_identities(api, handle.dispatch_id)
    except (NotFound, ValueError):
        return None


def _summary_reports(api: GitLab, job_id: int) -> list[dict[str, Any]]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(api.download_job_artifacts(job_id)))
    except (NotFound, zipfile.BadZipFile):
        return []
    found: list[dict[str, Any]] = []
    with archive:
        for name in archive.namelist():
            base = name.rsplit("/", 1)[-1]
            if not (base.startswith("summary") and base.endswith(".json")):
                continue
            try:
                data = loads(archive.read(name).decode("utf-8"))
            except (ValueError, RecursionError):
                continue
            if isinstance(data, dict) and isinstance(data.get("reports"), list):
                found.extend(r for r in data["reports"] if isinstance(r, dict))
    return found


def progress_printer(stream: IO[str]) -> Progress:
    """Progress while waiting: on a terminal one line rewritten at every poll; elsewhere (a
    CI log, a file) a line each time the pipeline's status changes, so logs stay short."""
    isatty = getattr(stream, "isatty", None)
    live = callable(isatty) and bool(isatty())
    last: list[str] = []

    def show(status: DispatchStatus, elapsed: float) -> None:
        minutes, seconds = divmod(int(elapsed), 60)
        shown = status.status or status.phase.value
        if status.phase is Phase.APPROVAL:
            shown = f"{Phase.APPROVAL.label} (see the plan, then start the approve jobs)"
        line = f"pipeline {status.handle.pipeline_id}: {shown} ({minutes}m{seconds:02d}s)"
        if live:
            end = "\n" if status.phase.terminal else ""
            stream.write(f"\r\x1b[2K{line}{end}")
        elif last[-1:] != [shown]:
            stream.write(line + "\n")
        last[:] = [shown]
        stream.flush()

    return show
