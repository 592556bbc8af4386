"""The dispatch package: one generic package version per dispatch holds its bundle and reports.

``runner-agent-dispatch/<dispatch_id>/``:

- ``bundle.json``: the tasks, uploaded by the dispatcher before the pipeline exists. Secrets stay
  ``${env:NAME}`` placeholders; the jobs resolve them from masked CI variables.
- ``report-<CI_JOB_ID>.json``: each task job's report.
- ``summary.json``: every report merged, what ``reports(handle)`` reads in one request;
  ``summary-<k>.json`` per child pipeline when a dispatch was split (see :func:`summarize`).

Beside the pipelines, the plan job writes ``parts.json`` (``runner_agent.pipeline.parts``):
which summary file each child pipeline's collect job uploads and which of the bundle's tasks it
covers. The summarize job gets it with the plan job's artifacts, so it reads exactly those files.

One package per dispatch (not one for bundles and one for reports) because the bundle upload
creates the package before any job runs: GitLab answers 500 to concurrent uploads that race to
create a new package version, and every task job of a dispatch uploads at the same time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from runner_agent.core.errors import GitLabError, InvalidInput, Problem
from runner_agent.gitlab.api import connect
from runner_agent.gitlab.port import GitLab, NotFound
from runner_agent.gitlab.retry import RetryPolicy
from runner_agent.model.tasks import Task, tasks_from_data
from runner_agent.pipeline.parts import (
    API_VERSION,
    DISPATCH_ID,
    PARTS_FILE,
    SUMMARY_NAME,
    Part,
    Parts,
    dump,
    load_parts,
)
from runner_agent.report.files import loads
from runner_agent.report.model import Report, account_for, load_reports, merge_reports

if TYPE_CHECKING:
    from runner_agent.model.agents import AgentRegistry

__all__ = [
    "API_VERSION",
    "BUNDLE_FILE",
    "DISPATCH_PACKAGE",
    "PARTS_FILE",
    "SUMMARY_FILE",
    "Bundle",
    "BundleTasks",
    "JobContext",
    "Part",
    "Parts",
    "build_bundle",
    "bundle_identities",
    "dump",
    "fetch_bundle",
    "fetch_bundle_tasks",
    "job_context",
    "load_parts",
    "parse_bundle",
    "publish_reports",
    "publish_summary",
    "read_bundle",
    "read_summary",
    "signature",
    "summarize",
]

DISPATCH_PACKAGE = "runner-agent-dispatch"
BUNDLE_FILE = "bundle.json"
SUMMARY_FILE = "summary.json"
CHECKSUM = re.compile(r"^sha256:[0-9a-f]{64}$")
_NO_REPORT = "no report arrived from its job"

Warn = Callable[[str], None]


def checksum(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def signature(tasks: Sequence[Task], ref: str, *, plan_first: bool = False) -> str:
    """What makes two dispatches identical: the same tasks, in order, on the same ref, and
    both behind an approval or neither (a gated dispatch never joins an ungated one)."""
    document: dict[str, Any] = {"ref": ref, "tasks": [t.to_dict() for t in tasks]}
    if plan_first:
        document["plan_first"] = True
    return hashlib.sha256(dump(document)).hexdigest()


@dataclass(frozen=True)
class Bundle:
    """A dispatch's tasks as uploaded: ``data`` is exactly the bytes ``checksum`` covers."""

    dispatch_id: str
    ref: str
    signature: str
    identities: tuple[str, ...]
    commands: Mapping[str, tuple[str, ...]]  # identity -> its tasks' commands ("" = digest)
    tasks: int
    data: bytes
    checksum: str
    plan_first: bool = False  # dispatch --plan: dry runs, then a manual gate per identity


def build_bundle(
    tasks: Sequence[Task],
    *,
    ref: str,
    now: datetime | None = None,
    dispatch_id: str | None = None,
    plan_first: bool = False,
) -> Bundle:
    """The bundle of validated tasks, with a new dispatch id (time, signature, randomness)
    unless the caller names one (a STACKL job's retry must find its first try's pipeline).
    Raises InvalidInput when the given id is not a dispatch id."""
    created = now or datetime.now(UTC)
    sig = signature(tasks, ref, plan_first=plan_first)
    if dispatch_id is None:
        dispatch_id = f"{created:%Y%m%dt%H%M%S}-{sig[:10]}-{secrets.token_hex(3)}"
    check_ids(dispatch_id)
    document: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "Bundle",
        "dispatch_id": dispatch_id,
        "created": created.isoformat(),
        "ref": ref,
        "signature": sig,
        "tasks": [t.to_dict() for t in tasks],
    }
    if plan_first:  # the plan job gates the run even when the pipeline's input says nothing
        document["plan_first"] = True
    data = dump(document)
    commands: dict[str, list[str]] = {}
    for t in tasks:
        commands.setdefault(t.identity, []).append(t.command or "")
    return Bundle(
        dispatch_id=dispatch_id,
        ref=ref,
        signature=sig,
        identities=tuple(sorted(commands)),
        commands={k: tuple(v) for k, v in commands.items()},
        tasks=len(tasks),
        data=data,
        checksum=checksum(data),
        plan_first=plan_first,
    )


def check_ids(dispatch_id: str, expected: str | None = None) -> None:
    """Raises InvalidInput unless the dispatch id (and checksum) have the published shapes."""
    problems = []
    if not DISPATCH_ID.fullmatch(dispatch_id):
        problems.append(Problem("dispatch_id", f"{dispatch_id!r} is not a dispatch id"))
    if expected is not None and not CHECKSUM.fullmatch(expected):
        problems.append(Problem("checksum", "expected sha256: and 64 lower-case hex digits"))
    if problems:
        raise InvalidInput(problems)


def parse_bundle(
    data: bytes, dispatch_id: str, expected: str, registry: AgentRegistry | None = None
) -> list[Task]:
    """The tasks of a downloaded bundle, after its checksum, version and id are verified.

    Raises InvalidInput when the checksum differs (nothing runs), the document is not a
    bundle of this dispatch, or a task is invalid for the agents installed here.
    """
    return read_bundle(data, dispatch_id, expected, registry).tasks


@dataclass(frozen=True)
class BundleTasks:
    """A verified bundle's tasks, and whether they wait for approval (``dispatch --plan``)."""

    tasks: list[Task]
    plan_first: bool


def read_bundle(
    data: bytes, dispatch_id: str, expected: str, registry: AgentRegistry | None = None
) -> BundleTasks:
    """:func:`parse_bundle`, with the bundle's ``plan_first``. Raises InvalidInput."""
    check_ids(dispatch_id, expected)
    source = f"bundle {dispatch_id}"
    if not hmac.compare_digest(checksum(data), expected):
        raise InvalidInput(Problem(source, "checksum mismatch: the bundle was altered; refused"))
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise InvalidInput(Problem(source, f"not JSON: {exc}")) from exc
    if not isinstance(document, dict) or document.get("apiVersion") != API_VERSION:
        raise InvalidInput(Problem(source, f"not a {API_VERSION} bundle", field="apiVersion"))
    if document.get("dispatch_id") != dispatch_id:
        raise InvalidInput(Problem(source, "belongs to another dispatch", field="dispatch_id"))
    plan_first = document.get("plan_first", False)
    if not isinstance(plan_first, bool):
        raise InvalidInput(Problem(source, "must be true or false", field="plan_first"))
    return BundleTasks(tasks_from_data(document.get("tasks") or [], source, registry), plan_first)


# --- the job side ------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobContext:
    """A GitLab job's view of its dispatch: the API (job token) and the dispatch it serves."""

    api: GitLab
    dispatch_id: str | None
    job_id: str


def job_context(
    environ: Mapping[str, str],
    api: GitLab | None = None,
    *,
    retry_policy: RetryPolicy | None = None,
) -> JobContext | None:
    """The job's context when running inside a GitLab job with a job token, else None.

    ``RA_DISPATCH_ID`` names the dispatch (the agent project's pipeline passes it down); a
    job of a manual run has none and uploads nothing but state.
    """
    if environ.get("GITLAB_CI") != "true" or not environ.get("CI_JOB_TOKEN"):
        return None
    dispatch_id = environ.get("RA_DISPATCH_ID") or None
    if dispatch_id is not None:
        check_ids(dispatch_id)
    return JobContext(
        api=api
        or connect(environ, project=environ.get("CI_PROJECT_ID"), retry_policy=retry_policy),
        dispatch_id=dispatch_id,
        job_id=environ.get("CI_JOB_ID", "0"),
    )


def fetch_bundle_tasks(
    dispatch_id: str,
    expected: str,
    *,
    environ: Mapping[str, str],
    registry: AgentRegistry | None = None,
    api: GitLab | None = None,
) -> list[Task]:
    """The plan job's first step: download the dispatch's bundle with the job token, verify it,
    validate its tasks. Raises InvalidInput (bad ids, checksum, tasks) or GitLabError."""
    return fetch_bundle(dispatch_id, expected, environ=environ, registry=registry, api=api).tasks


def fetch_bundle(
    dispatch_id: str,
    expected: str,
    *,
    environ: Mapping[str, str],
    registry: AgentRegistry | None = None,
    api: GitLab | None = None,
) -> BundleTasks:
    """:func:`fetch_bundle_tasks`, with the bundle's ``plan_first``. Raises InvalidInput,
    GitLabError."""
    check_ids(dispatch_id, expected)
    client = api or connect(environ, project=environ.get("CI_PROJECT_ID"))
    try:
        data = client.get_package_file(DISPATCH_PACKAGE, dispatch_id, BUNDLE_FILE)
    except NotFound as exc:
        raise InvalidInput(Problem(f"bundle {dispatch_id}", "not in the package registry")) from exc
    return read_bundle(data, dispatch_id, expected, registry)


def _upload(ctx: JobContext, file_name: str, data: bytes, what: str, warn: Warn) -> bool:
    if ctx.dispatch_id is None:
        return False
    try:
        ctx.api.put_package_file(DISPATCH_PACKAGE, ctx.dispatch_id, file_name, data)
    except GitLabError as exc:
        warn(
            f"warning: could not upload the {what} to the package registry ({exc}); "
            "it stays in this job's artifacts"
        )
        return False
    return True


def publish_reports(reports: Sequence[Mapping[str, Any]], ctx: JobContext, warn: Warn) -> bool:
    """Upload a task job's report(s): ``report-<job id>.json``, or ``report-<job id>-<n>.json``
    when the job ran several tasks. Never raises: a failed upload is said through ``warn``
    (the job's artifacts keep the reports); returns whether every upload succeeded."""
    if len(reports) == 1:
        return _upload(ctx, f"report-{ctx.job_id}.json", dump(reports[0]), "report", warn)
    done = [
        _upload(ctx, f"report-{ctx.job_id}-{n}.json", dump(r), "report", warn)
        for n, r in enumerate(reports)
    ]
    return all(done)


def publish_summary(
    file_name: str, summary: Mapping[str, Any], ctx: JobContext, warn: Warn
) -> bool:
    """Upload a collect job's summary under its own file name (``summary.json`` or
    ``summary-<k>.json`` for part k of a split dispatch). Never raises; see publish_reports."""
    name = PurePosixPath(file_name).name
    if not SUMMARY_NAME.fullmatch(name):
        warn(f"warning: {name!r} is not a summary file name; not uploaded")
        return False
    return _upload(ctx, name, dump(summary), "summary", warn)


def bundle_identities(api: GitLab, dispatch_id: str) -> list[str]:
    """The identities of a dispatch's tasks, in bundle order, once per task. Raises NotFound,
    ValueError when the file is not a bundle."""
    bundle = json.loads(api.get_package_file(DISPATCH_PACKAGE, dispatch_id, BUNDLE_FILE))
    try:
        return [str(t["identity"]) for t in bundle["tasks"]]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{BUNDLE_FILE} of dispatch {dispatch_id} is not a bundle") from exc


def read_summary(api: GitLab, dispatch_id: str, file_name: str = SUMMARY_FILE) -> dict[str, Any]:
    """A summary from the registry. Raises NotFound, or GitLabError when it is not a summary."""
    data = api.get_package_file(DISPATCH_PACKAGE, dispatch_id, file_name)
    try:
        summary = loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise GitLabError(f"{file_name} of dispatch {dispatch_id} is not JSON") from exc
    if not isinstance(summary, dict) or not isinstance(summary.get("reports"), list):
        raise GitLabError(f"{file_name} of dispatch {dispatch_id} is not a summary")
    return summary


def summarize(ctx: JobContext, parts: Parts | None = None, max_parts: int = 1000) -> dict[str, Any]:
    """The parent pipeline's last job: merge the parts' summaries into ``summary.json``.

    Reads the bundle (the tasks to expect), then with ``parts`` (the plan job's ``parts.json``)
    exactly each part's summary file: a part whose summary is missing makes its own tasks
    errors, the other parts' reports are kept. Without ``parts``, ``summary.json`` or
    ``summary-1.json``, ``summary-2.json``... until every task is accounted for or a file is
    missing: a gap hides the parts after it. Either way a task whose report never arrived is
    reported as an error. Uploads and returns the merged summary.

    Raises GitLabError when the registry cannot be read, InvalidInput without a dispatch id or
    when ``parts`` belongs to another dispatch or does not match the bundle.
    """
    if ctx.dispatch_id is None:
        raise InvalidInput(Problem("RA_DISPATCH_ID", "not set: this job serves no dispatch"))
    expected = bundle_identities(ctx.api, ctx.dispatch_id)
    if parts is None:
        found = _read_in_order(ctx.api, ctx.dispatch_id, len(expected), max_parts)
        reports = account_for(expected, found, _NO_REPORT)
    else:
        if parts.dispatch_id != ctx.dispatch_id or parts.tasks != len(expected):
            raise InvalidInput(Problem(PARTS_FILE, "made for another dispatch or bundle"))
        reports = []
        for part in parts.parts:
            found = _read_part(ctx.api, ctx.dispatch_id, part.summary)
            reports += account_for([expected[i] for i in part.tasks], found, _NO_REPORT)
    summary = merge_reports(reports)
    ctx.api.put_package_file(DISPATCH_PACKAGE, ctx.dispatch_id, SUMMARY_FILE, dump(summary))
    return summary


def _read_part(api: GitLab, dispatch_id: str, file_name: str) -> list[Report]:
    """A part's reports; none when its collect job uploaded no summary. A report that does
    not load is left out (its task then counts as not reported)."""
    try:
        found = read_summary(api, dispatch_id, file_name)["reports"]
    except NotFound:
        return []
    return load_reports(found)


def _read_in_order(api: GitLab, dispatch_id: str, tasks: int, max_parts: int) -> list[Report]:
    """Without the plan's parts: the summaries in order, up to the first missing part."""
    reports = _read_part(api, dispatch_id, SUMMARY_FILE)
    for k in range(1, max_parts + 1):
        if len(reports) >= tasks:
            break
        try:
            part = read_summary(api, dispatch_id, f"summary-{k}.json")
        except NotFound:
            break
        reports.extend(load_reports(part["reports"]))
    return reports
