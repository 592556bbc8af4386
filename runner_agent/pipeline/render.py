"""Tasks -> GitLab child pipeline YAML, from the Jinja2 templates in ``templates/gitlab-ci/``.

Pure: no network, no files read but the templates. Task data never enters the YAML as code:
each job's script runs ONE ``runner-agent run`` on the task files whose paths we make
(``<workdir>/tasks/0003.json``), so its tasks share ansible-playbook runs (run/batch.py), and
writes a report per task (``--report-dir``); the task files travel beside the YAML. The only
task values the YAML carries are runner tags, emitted as escaped YAML scalars; identities
appear only sanitised (job names). Templates can place nothing but values passed through the
``yaml`` filter: any other ``{{ ... }}`` raises, so a template edit cannot smuggle raw text in.

Layout (why it holds on every engine):
- stages ``agents`` then ``collect``. Tasks are grouped into jobs by :mod:`grouping` (runner
  tags, lock shard, at most ``tasks_per_job``): an identity's tasks run in one job in order,
  unless their runner tags change, which cuts it into a chain of jobs. A task that reads
  another identity's outputs (``outputs_from``) run in another job needs that job before it.
- ``resource_group`` is the job's lock shard (:func:`resource_group`): one running job per
  shard, so per identity, across pipelines on GitLab, whatever grouping each pipeline used.
  Inside one pipeline the order is made explicit, because gitlab-ci-local ignores
  resource groups: each job after another holding the same identity (or one it reads)
  ``needs`` it (one need per such job; :mod:`ci_schema` refuses more than GitLab's 50) and
  has ``when: always``; ``run --after`` skips only the tasks following a report that did not
  succeed. ``always`` because a follower that GitLab skips would leave gitlab-ci-local
  waiting forever, and because a queued job on a resource group also runs whatever the
  previous holder's result; the follower's own report tells what happened.
- the collect job sits in stage ``collect`` with ``when: always`` and no ``needs``, so it gets
  every task job's artifacts (``needs`` would cap it at 50 jobs).
- when the tasks come from a parent job's artifacts (``tasks_from_job``), every task job adds
  ``needs: [{pipeline: $PARENT_PIPELINE_ID, job: ...}]``: GitLab's way to fetch a parent's
  artifacts into a child pipeline. gitlab-ci-local ignores that need; its shell jobs see the
  files in the working tree.
- above ``max_jobs`` jobs (the collect job included) or ``max_bytes`` of YAML the tasks are
  split into several pipelines, keeping every identity's chain (and the tasks tied to it by
  ``outputs_from``) inside one; :func:`render_index` writes the pipeline that triggers them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

import jinja2

from runner_agent.core.errors import InvalidInput, Problem
from runner_agent.core.resources import templates_dir
from runner_agent.model.tasks import Task
from runner_agent.pipeline.ci_schema import MAX_CONFIG_BYTES, MAX_JOB_TIMEOUT, validate_text
from runner_agent.pipeline.grouping import (
    DEFAULT_SHARDS,
    MAX_SHARDS,
    JobGroup,
    group_jobs,
    lock_shard,
)

__all__ = [
    "RETRY_WHEN",
    "TIMEOUT_MARGIN",
    "RenderOptions",
    "RenderedPipeline",
    "environment_name",
    "gate_name",
    "job_name",
    "render_child",
    "render_index",
    "resource_group",
    "to_yaml",
]

# Only failures of the machinery: a task that failed must not run again by itself. These
# values are accepted by GitLab since 13.x, so older self-managed instances read them too.
RETRY_WHEN = (
    "runner_system_failure",
    "stuck_or_timeout_failure",
    "scheduler_failure",
    "api_failure",
    "unmet_prerequisites",
)
TIMEOUT_MARGIN = 300  # the job outlives Ansible's own deadline, so a timed-out task still reports
MAX_NAME = 255  # GitLab refuses longer job names
# When the tasks are split, an index pipeline fetches the task files again in this job, and
# passes its own id under this name: a variable passed down by a trigger job outranks one the
# index's YAML would set, so PARENT_PIPELINE_ID keeps naming the index's parent there.
FETCH_JOB = "runner-agent-fetch"
INDEX_ID = "RUNNER_AGENT_INDEX_PIPELINE_ID"
INDEX_SOURCE = {"pipeline": f"${INDEX_ID}", "job": FETCH_JOB}
COLLECT_TIMEOUT = "10m"
# the collect job's HTML report, linked from a merge request's page; GitLab wants letters,
# digits, '-', '_' and spaces here, and paths without '*', variables or a leading './'
EXPOSE_AS = "runner-agent report"
# With plan_first (dispatch --plan): the dry runs' summary job, its link on a merge request, and
# what a gate job's log says. The plan's files sit beside the summary (docs/safety.md).
PLAN_JOB = "runner-agent-plan-summary"
PLAN_EXPOSE_AS = "runner-agent plan"
GATE_PREFIX = "runner-agent-approve:"
CHECK_PREFIX = "check:"
GATE_SCRIPT = "echo 'approved: the apply jobs of this identity start now'"

# plain only what every YAML 1.1 and 1.2 reader takes for a string: no number, date, bool,
# null, .inf or .nan can start with a letter, '_', '/' or '.' followed by a non-digit
_PLAIN = re.compile(r"(?:[A-Za-z_/]|\.[A-Za-z_/.-])[A-Za-z0-9_./-]*(?::[A-Za-z0-9_./-]+)*")
_NOT_PLAIN = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", ".inf", ".nan"}
_ESCAPE = re.compile(r'[^\x20-\x7e]|["\\]')
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._/:-]+")
_GROUP_UNSAFE = re.compile(r"[^A-Za-z0-9._/ -]+")  # GitLab also allows $ { }, which it expands
_PATH = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9._-]*(?:/[A-Za-z0-9_.][A-Za-z0-9._-]*)*")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COMMAND = re.compile(r"[A-Za-z0-9_./=-]+(?: [A-Za-z0-9_./=-]+)*")


class _Yaml(str):
    """Text already serialised as YAML: the only thing a template may place."""


def _escape_char(m: re.Match[str]) -> str:
    ch = m.group()
    if ch in '"\\':
        return "\\" + ch
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _scalar(value: Any, flow: bool = False) -> str:
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int | float):
        return json.dumps(value, allow_nan=False)
    if not isinstance(value, str):
        raise TypeError(f"cannot place a {type(value).__name__} in YAML")
    plain = _PLAIN.fullmatch(value) and value.lower() not in _NOT_PLAIN
    if plain and not (flow and ":" in value):  # old libyaml refuses ':' in flow plain scalars
        return value
    # double-quoted, pure ASCII: every YAML reader (PyYAML, libyaml, Psych) reads it back as is
    return '"' + _ESCAPE.sub(_escape_char, value) + '"'


def _key(key: Any) -> str:
    text = _scalar(key, True)
    return text if len(text) <= 1000 else "? " + text  # YAML caps implicit keys at 1024


def to_yaml(value: Any, flow: bool = False) -> _Yaml:
    """One value as YAML text on one line: scalars, and lists and mappings in flow style."""
    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined raises here: a template named a value that is not there
    if isinstance(value, Mapping):
        items = ", ".join(f"{_key(k)}: {to_yaml(v, True)}" for k, v in value.items())
        return _Yaml("{" + items + "}")
    if isinstance(value, list | tuple):
        return _Yaml("[" + ", ".join(to_yaml(v, True) for v in value) + "]")
    return _Yaml(_scalar(value, flow))


def _only_serialised(value: Any) -> Any:
    if isinstance(value, _Yaml):
        return value
    raise jinja2.TemplateError(f"template placed {value!r} without the yaml filter")


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        finalize=_only_serialised,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # HTML escaping means nothing in YAML; finalize is our discipline
    )
    env.filters["yaml"] = to_yaml
    return env


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def job_name(identity: str, command: str | None, index: int) -> str:
    """A unique GitLab job name: sanitised identity and command, then the task index."""
    base = f"{identity}:{command or 'digest'}"
    safe = _NAME_UNSAFE.sub("_", base).lstrip(".") or "_"
    suffix = f":{index}"
    if len(safe) + len(suffix) > MAX_NAME:
        safe = safe[: MAX_NAME - len(suffix) - 9] + "~" + _short_hash(base)
    return safe + suffix


def resource_group(identity: str, shards: int = DEFAULT_SHARDS) -> str:
    """The GitLab resource group of an identity: its lock shard, whatever the grouping.

    One rule for every job (one task per job included) so that two pipelines rendered with
    different ``--tasks-per-job`` still exclude each other on a shared identity; a job of
    several identities takes the one shard they share (grouping.py keeps a job to one shard).
    The shard count must be the same for every pipeline of a project (docs/decisions.md).
    """
    return lock_shard(identity, shards)


def _identity_key(identity: str) -> str:
    """``runner-agent/<identity>`` as GitLab takes it for an environment name (and took it for
    a resource group before the lock shards): sanitised, shortened with a hash past 255."""
    safe = _GROUP_UNSAFE.sub("_", identity).strip("/ ")
    key = f"runner-agent/{safe}"
    if not safe or safe != identity or len(key) > MAX_NAME:  # GitLab refuses a trailing '/'
        key = key[: MAX_NAME - 9] + "-" + _short_hash(identity)
    return key


def environment_name(identity: str) -> str:
    """The GitLab environment of an identity, ``runner-agent/<identity>``, valid whatever the
    identity holds. GitLab validates environment names and resource group keys with the same
    rule (app/models/environment.rb, app/models/ci/resource_group.rb: at most 255 characters
    matching lib/gitlab/regex.rb ``environment_name_regex``: letters, digits, ``-_/${}.`` and
    spaces, not starting or ending with ``/``), so the mapping is the one resource groups
    took per identity before the lock shards: ``$``, ``{`` and ``}`` are left out too, since
    GitLab expands variables in both."""
    return _identity_key(identity)


def gate_name(identity: str) -> str:
    """The manual job that approves an identity's apply jobs (``dispatch --plan``)."""
    safe = _NAME_UNSAFE.sub("_", identity)
    name = GATE_PREFIX + safe
    if safe != identity or len(name) > MAX_NAME:
        name = name[: MAX_NAME - 9] + "~" + _short_hash(identity)
    return name


def _prefixed(prefix: str, name: str) -> str:
    """A job name with a prefix, shortened as :func:`job_name` does past GitLab's limit."""
    full = prefix + name
    if len(full) <= MAX_NAME:
        return full
    return full[: MAX_NAME - 9] + "~" + _short_hash(full)


def _duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{u}" for n, u in ((hours, "h"), (minutes, "m"), (secs, "s")) if n]
    return " ".join(parts) or "0s"


@dataclass(frozen=True)
class RenderOptions:
    """How tasks become jobs. ``workdir`` is relative to the project directory jobs run in."""

    # GitLab.com Free allows 500 jobs in active pipelines per project, all pipelines together
    # (doc/user/gitlab_com/_index.md; lib/gitlab/ci/pipeline/chain/limit/active_jobs.rb): 200
    # leaves room for the parent's jobs and a second dispatch beside this one
    max_jobs: int = 200
    max_bytes: int = MAX_CONFIG_BYTES
    runner_agent_cmd: str = "runner-agent"
    workdir: str = ".runner-agent"
    tasks_from_job: str | None = None
    default_tags: tuple[str, ...] = ()
    validate: bool = True
    variables: Mapping[str, str] = field(default_factory=dict)  # global variables of every pipeline
    # dispatch --plan / input plan_first: dry runs first, their plan, a manual gate per identity
    # (with its environment) that the identity's apply jobs need (docs/safety.md)
    plan_first: bool = False
    # tasks per job (grouping.py); 1 gives a job per identity (its tasks stay together). The
    # CLI's and the agent project's default is DEFAULT_TASKS_PER_JOB
    tasks_per_job: int = 1
    lock_shards: int = DEFAULT_SHARDS  # one value per project: see resource_group()

    def problems(self) -> list[Problem]:
        found = []
        for key in self.variables:
            if not _VARIABLE.fullmatch(key):
                found.append(Problem("variables", f"{key!r} is not a CI variable name"))
        if self.tasks_per_job < 1:
            found.append(Problem("--tasks-per-job", f"at least 1, not {self.tasks_per_job}"))
        if not 1 <= self.lock_shards <= MAX_SHARDS:
            found.append(Problem("--lock-shards", f"1 to {MAX_SHARDS}, not {self.lock_shards}"))
        if self.max_jobs < 2:
            found.append(Problem("--max-jobs", "at least 2: a task job and the collect job"))
        if not _PATH.fullmatch(self.workdir) or {".", ".."} & set(self.workdir.split("/")):
            found.append(Problem("workdir", f"{self.workdir!r} is not a relative folder path"))
        if not _COMMAND.fullmatch(self.runner_agent_cmd):
            found.append(Problem("--runner-agent", "letters, digits, ._/=- and single spaces"))
        return found


@dataclass(frozen=True)
class RenderedPipeline:
    """One child pipeline: its YAML and the task files its jobs read (path -> JSON bytes)."""

    text: str
    task_files: Mapping[str, bytes]
    jobs: Mapping[str, int] = field(default_factory=dict)  # task job name -> its first task
    summary: str = ""  # where its collect job writes the summary
    job_tasks: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # name -> its tasks

    @property
    def tasks(self) -> tuple[int, ...]:
        """The positions of this pipeline's tasks, in order."""
        return tuple(sorted(i for indexes in self.job_tasks.values() for i in indexes))


@dataclass(frozen=True)
class _Job:
    index: int  # its first task
    tasks: tuple[int, ...]
    identity: str
    group: str  # jobs of one group stay in one pipeline: their needs link them
    name: str
    tags: tuple[str, ...]
    resource_group: str
    timeout: str
    needs: tuple[Mapping[str, Any], ...]
    when: str | None
    script: tuple[str, ...]
    reports: tuple[str, ...]  # per task: its report JSON and JUnit XML
    junit: tuple[str, ...]
    dotenv: str
    stage: str = "agents"
    environment: Mapping[str, str] | None = None  # plan_first: runner-agent/<identity>
    variables: Mapping[str, str] | None = None


def _groups(tasks: Sequence[Task], together: Iterable[Sequence[int]] = ()) -> dict[str, str]:
    """Identity -> its group: identities linked by outputs_from, or sharing a job (the
    positions in ``together``), share a pipeline."""
    root: dict[str, str] = {t.identity: t.identity for t in tasks}

    def find(x: str) -> str:
        while root[x] != x:
            root[x] = root[root[x]]
            x = root[x]
        return x

    for task in tasks:
        for other in task.outputs_from:
            if other in root:
                root[find(other)] = find(task.identity)
    for indexes in together:
        for i in indexes[1:]:
            root[find(tasks[i].identity)] = find(tasks[indexes[0]].identity)
    return {identity: find(identity) for identity in root}


def _name(tasks: Sequence[Task], group: JobGroup) -> str:
    """A task's job name (identity, command, index); a job of several adds ``+N`` others."""
    first = tasks[group.tasks[0]]
    name = job_name(first.identity, first.command, group.tasks[0])
    more = f"+{len(group.tasks) - 1}" if len(group.tasks) > 1 else ""
    if len(name) + len(more) > MAX_NAME:
        name = name[: MAX_NAME - len(more) - 9] + "~" + _short_hash(name)
    return name + more


def _job_specs(
    tasks: Sequence[Task],
    opts: RenderOptions,
    width: int,
    source: Mapping[str, Any] | None,
    grouped: Sequence[JobGroup],
) -> list[_Job]:
    groups = _groups(tasks, (g.tasks for g in grouped))
    reports_dir = f"{opts.workdir}/reports"
    names = [_name(tasks, group) for group in grouped]
    home = {i: n for n, group in enumerate(grouped) for i in group.tasks}
    # per job: the jobs before it -> the tasks whose reports its tasks follow
    waits: list[dict[str, set[int]]] = [{} for _ in grouped]
    latest: dict[str, int] = {}  # identity -> its last task so far
    for index, task in enumerate(tasks):
        # after the identity's previous task, and after the tasks whose outputs it reads,
        # when those ran in another job (inside one job, `run` keeps the order itself)
        for i in dict.fromkeys((task.identity, *task.outputs_from)):
            if i in latest and home[latest[i]] != home[index]:
                waits[home[index]].setdefault(names[home[latest[i]]], set()).add(latest[i])
        latest[task.identity] = index
    jobs = []
    for group, name, before in zip(grouped, names, waits, strict=True):
        stems = [f"{i:0{width}d}" for i in group.tasks]
        # the jobs before it hand over their reports: `run --after` skips the tasks that
        # follow a report that did not succeed, as a local run of the same tasks would
        needs = ([source] if source else []) + [{"job": b, "artifacts": True} for b in before]
        if opts.plan_first:  # nothing of an identity applies before someone approves it
            for identity in dict.fromkeys(tasks[i].identity for i in group.tasks):
                needs.append({"job": gate_name(identity), "artifacts": False})
        after = "".join(
            f" --after '{reports_dir}/{i:0{width}d}.json'"
            for i in sorted(set().union(*before.values()))
        )
        files = " ".join(f"'{opts.workdir}/tasks/{stem}.json'" for stem in stems)
        env_file = f"{reports_dir}/{stems[0]}.env"
        script = (
            f"{opts.runner_agent_cmd} run {files} --report-dir '{reports_dir}' "
            f"--dotenv '{env_file}'{after}",
        )
        first = tasks[group.tasks[0]]
        jobs.append(
            _Job(
                index=group.tasks[0],
                tasks=group.tasks,
                identity=first.identity,
                group=groups[first.identity],
                name=name,
                tags=group.tags or opts.default_tags,
                resource_group=group.shard,
                # the tasks run one after another; GitLab caps a job at a month (ci_schema)
                timeout=_duration(
                    min(
                        sum(tasks[i].timeout for i in group.tasks) + TIMEOUT_MARGIN, MAX_JOB_TIMEOUT
                    )
                ),
                needs=tuple(needs),
                when="always" if before else None,
                script=script,
                reports=tuple(f"{reports_dir}/{stem}.json" for stem in stems),
                junit=tuple(f"{reports_dir}/{stem}.junit.xml" for stem in stems),
                dotenv=env_file,
                # plan_first: one identity per job (render_child), so the job is its environment's
                environment=(
                    {"name": environment_name(first.identity), "action": "start"}
                    if opts.plan_first
                    else None
                ),
            )
        )
    return jobs


def _check_job(
    job: _Job, opts: RenderOptions, width: int, source: Mapping[str, Any] | None
) -> _Job:
    """The dry run of an apply job (plan_first): same task files and runners, no lock (a dry
    run takes none), no environment. ``RA_DISPATCH_ID`` is blanked so it uploads no report to
    the dispatch's package, where ``reports`` would take it for the task's outcome."""
    stems = [f"{i:0{width}d}" for i in job.tasks]
    files = " ".join(f"'{opts.workdir}/tasks/{stem}.json'" for stem in stems)
    script = (f"{opts.runner_agent_cmd} run {files} --check --report-dir '{opts.workdir}/checks'",)
    return replace(
        job,
        name=_prefixed(CHECK_PREFIX, job.name),
        stage="check",
        resource_group="",
        needs=(source,) if source else (),
        when=None,
        script=script,
        reports=tuple(f"{opts.workdir}/checks/{stem}.json" for stem in stems),
        junit=(),
        dotenv="",
        environment=None,
        variables={"RA_DISPATCH_ID": ""},
    )


def _plan_blocks(
    jobs: Sequence[_Job],
    part: Sequence[int],
    opts: RenderOptions,
    width: int,
    source: Mapping[str, Any] | None,
    suffix: str,
    tags: Sequence[str],
) -> tuple[list[_Yaml], list[_Yaml], dict[str, Any]]:
    """A part's dry runs, one gate per identity and its plan summary job (plan_first)."""
    env = _environment()
    block = env.get_template("job.yml.j2")
    checks = [_Yaml(block.render(job=_check_job(jobs[i], opts, width, source))) for i in part]
    plan_job = f"{PLAN_JOB}{suffix}"
    files = [f"{opts.workdir}/plan{suffix}.{ext}" for ext in ("md", "html", "json")]
    gate = env.get_template("gate.yml.j2")
    gates = []
    for identity in dict.fromkeys(jobs[i].identity for i in part):
        gates.append(
            _Yaml(
                gate.render(
                    gate={
                        "name": gate_name(identity),
                        "tags": list(tags),
                        "needs": [{"job": plan_job, "artifacts": False}],
                        "environment": {"name": environment_name(identity), "action": "prepare"},
                        "script": [GATE_SCRIPT],
                    }
                )
            )
        )
    plan = {
        "name": plan_job,
        "tags": list(tags),
        "timeout": COLLECT_TIMEOUT,
        "variables": {"RA_DISPATCH_ID": ""},  # the plan is no summary of the dispatch
        "script": [
            f"{opts.runner_agent_cmd} collect '{opts.workdir}/checks' --summary '{files[2]}' "
            f"--html '{files[1]}' --markdown '{files[0]}' "
            f"--expect {sum(len(jobs[i].tasks) for i in part)}"
        ],
        "expose_as": PLAN_EXPOSE_AS,
        "paths": files,
    }
    return checks, gates, plan


def _task_file(task: Task) -> bytes:
    try:
        return (json.dumps(task.to_dict(), indent=2, ensure_ascii=False) + "\n").encode()
    except (TypeError, ValueError, UnicodeEncodeError) as exc:
        raise InvalidInput(
            Problem(task.source, f"cannot be written as a JSON task file: {exc}", task.document)
        ) from exc


def _partition(jobs: Sequence[_Job], sizes: Sequence[int], opts: RenderOptions) -> list[list[int]]:
    """Job indexes per pipeline; a group (linked by needs) never crosses pipelines."""
    groups: dict[str, list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault(job.group, []).append(i)
    room_jobs = opts.max_jobs - 1  # the collect job takes one
    room_bytes = opts.max_bytes - 8192  # header and collect job
    if opts.plan_first:  # the plan summary job; each task's dry run and each identity's gate
        room_jobs -= 1
        room_bytes -= 4096
    parts: list[list[int]] = [[]]
    used = [0, 0]
    for group, members in groups.items():
        weight = sum(sizes[i] for i in members)
        count = len(members)
        if opts.plan_first:
            count += len(members) + len({jobs[i].identity for i in members})
            weight *= 2
        if count > room_jobs or weight > room_bytes:
            raise InvalidInput(
                Problem(
                    "<tasks>",
                    f"identity {group!r} and the tasks tied to it do not fit in one pipeline",
                )
            )
        if used[0] + count > room_jobs or used[1] + weight > room_bytes:
            parts.append([])
            used = [0, 0]
        parts[-1].extend(members)
        used = [used[0] + count, used[1] + weight]
    return [sorted(p) for p in parts]


def _layout(
    tasks: Sequence[Task],
    opts: RenderOptions,
    width: int,
    source: Mapping[str, Any] | None,
    grouped: Sequence[JobGroup],
) -> tuple[list[_Job], list[str], list[list[int]]]:
    jobs = _job_specs(tasks, opts, width, source, grouped)
    block = _environment().get_template("job.yml.j2")
    blocks = [block.render(job=job) for job in jobs]
    return jobs, blocks, _partition(jobs, [len(b.encode()) for b in blocks], opts)


def render_child(
    tasks: Sequence[Task], options: RenderOptions | None = None
) -> list[RenderedPipeline]:
    """Render tasks into one child pipeline, or several above the job or size limits.

    Raises InvalidInput when there is no task, an option is wrong, an identity's tasks cannot
    fit in one pipeline, or the result breaks one of GitLab's rules (see :mod:`ci_schema`).
    """
    opts = options or RenderOptions()
    problems = opts.problems() + ([] if tasks else [Problem("<tasks>", "no task to render")])
    if problems:
        raise InvalidInput(problems)
    width = max(4, len(str(len(tasks) - 1)))
    env = _environment()
    # with plan_first a job holds one identity: its gate and environment are the identity's
    per_job = 1 if opts.plan_first else opts.tasks_per_job
    grouped = group_jobs(tasks, per_job, opts.lock_shards)
    source = None
    if opts.tasks_from_job:  # split, the parts fetch from the index pipeline's job instead
        split = len(grouped) >= opts.max_jobs
        source = (
            INDEX_SOURCE
            if split
            else {"pipeline": "$PARENT_PIPELINE_ID", "job": opts.tasks_from_job}
        )
    jobs, blocks, parts = _layout(tasks, opts, width, source, grouped)
    if len(parts) > 1 and source and source is not INDEX_SOURCE:  # split by size after all
        jobs, blocks, parts = _layout(tasks, opts, width, INDEX_SOURCE, grouped)
    pipelines = []
    for number, part in enumerate(parts, start=1):
        suffix = f"-{number}" if len(parts) > 1 else ""
        summary = f"{opts.workdir}/summary{suffix}.json"
        page = f"{opts.workdir}/report{suffix}.html"
        collect_tags = opts.default_tags or jobs[part[0]].tags
        positions = sorted(i for j in part for i in jobs[j].tasks)
        checks: list[_Yaml] = []
        gates: list[_Yaml] = []
        plan = None
        if opts.plan_first:
            checks, gates, plan = _plan_blocks(
                jobs, part, opts, width, source, suffix, collect_tags
            )
        text = env.get_template("child.yml.j2").render(
            checks=checks,
            gates=gates,
            plan=plan,
            blocks=[_Yaml(blocks[i]) for i in part],
            collect={
                "name": f"runner-agent-collect{suffix}",
                "tags": collect_tags,
                "timeout": COLLECT_TIMEOUT,
                "script": [
                    f"{opts.runner_agent_cmd} collect '{opts.workdir}/reports' "
                    f"--summary '{summary}' --html '{page}' --expect {len(positions)}"
                ],
                "expose_as": EXPOSE_AS,
                "paths": [summary, page],
            },
            retry_when=RETRY_WHEN,
            variables=dict(opts.variables),
        )
        if opts.validate:
            validate_text(text, f"<pipeline {number}>", max_jobs=opts.max_jobs)
        files = {
            f"{opts.workdir}/tasks/{i:0{width}d}.json": _task_file(tasks[i]) for i in positions
        }
        names = {jobs[j].name: jobs[j].index for j in part}
        job_tasks = {jobs[j].name: jobs[j].tasks for j in part}
        pipelines.append(RenderedPipeline(text, files, names, summary, job_tasks))
    return pipelines


def render_index(
    child_files: Sequence[str],
    *,
    tasks_from_job: str | None = None,
    tags: Iterable[str] = (),
    validate: bool = True,
    variables: Mapping[str, str] | None = None,
) -> str:
    """The pipeline that triggers several child pipelines (paths relative to the project).

    With ``tasks_from_job`` the children come from that job's artifacts in the parent
    pipeline: the index's fetch job takes them again, one level down, for the parts.
    """
    children = [{"name": f"runner-agent-part-{n}", "file": f} for n, f in enumerate(child_files, 1)]
    fetch = None
    if tasks_from_job:
        fetch = {
            "name": FETCH_JOB,
            "needs": [{"pipeline": "$PARENT_PIPELINE_ID", "job": tasks_from_job}],
            "paths": sorted({f.rsplit("/", 1)[0] + "/" for f in child_files if "/" in f}),
            "variables": {INDEX_ID: "$CI_PIPELINE_ID"},
        }
    text = (
        _environment()
        .get_template("index.yml.j2")
        .render(children=children, fetch=fetch, tags=list(tags), variables=dict(variables or {}))
    )
    if validate:
        validate_text(text, "<index pipeline>")
    return text
