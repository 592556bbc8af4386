"""Tasks into jobs of several tasks each (``--tasks-per-job N``): pure, no network.

A job runs its tasks with one ``runner-agent run``, which shares ansible-playbook runs
between them (runner_agent/run/batch.py). The rules:

- **Tags.** Tasks are grouped by their runner tags: a job runs on one runner, so only tasks
  with the same tags share it.
- **Identities whole and in order.** Every task of one identity goes to the same job, in the
  order given, so the order holds on any engine (``needs`` is only an order hint in some)
  and the job's run skips an identity's later tasks when an earlier one failed. An identity
  whose tasks name different runner tags is cut where they change, each part in a job of its
  own; the pipeline orders those parts with ``needs``.
- **Lock shards.** ``resource_group`` takes one key per job, and it must serialise every
  identity the job holds against other pipelines' jobs holding the same identity. So each
  identity hashes to one of ``shards`` keys (:func:`lock_shard`), and a job holds identities of
  one shard only. Every job takes its shard, one task per job included, so pipelines of any
  grouping exclude each other; the shard count must be one value per project
  (docs/decisions.md). What a user gives up: two identities in one shard never run at the
  same time, though they are unrelated, and at most S task jobs of the project run at once
  (the key holds no tags). More shards lift that, at the price of more jobs (at least one per
  shard and tag set used).
- **Bounded.** A job holds at most ``per_job`` tasks, except that an identity with more tasks
  than that stays whole in a job of its own.
- **No job waits for a job that waits for it.** A job waits (``needs``) for the jobs holding
  tasks its tasks follow: the identity's earlier part, and the identities whose outputs they
  read (``outputs_from``). So an identity's run of tasks is also cut where a task reads an
  identity that ran a task since the run began, and a part joins an open job only when every
  job it waits for was opened before that one: each ``needs`` points to an older job, and the
  jobs form no cycle (gitlab-ci-local would wait forever; GitLab refuses the pipeline).

The GitLab facts: ``resource_group`` allows one running job per key in a project across
pipelines (doc/ci/resource_groups/index.md in gitlab-org/gitlab); ``tags`` pick the runner
(doc/ci/yaml/index.md, ``tags``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from runner_agent.core.errors import InvalidInput, Problem
from runner_agent.model.tasks import Task

__all__ = [
    "DEFAULT_SHARDS",
    "DEFAULT_TASKS_PER_JOB",
    "MAX_SHARDS",
    "JobGroup",
    "group_jobs",
    "lock_shard",
]

DEFAULT_SHARDS = 16
# chosen from `benchmarks/bench_grouping.py --timed`: docs/scaling.md, "Tasks per job"
DEFAULT_TASKS_PER_JOB = 20
MAX_SHARDS = 256


@dataclass(frozen=True)
class JobGroup:
    """One job's share of the tasks: indexes into the task list, in the order given."""

    tags: tuple[str, ...]
    shard: str  # the job's resource_group
    tasks: tuple[int, ...]


def lock_shard(identity: str, shards: int) -> str:
    """The resource_group key an identity belongs to: stable across dispatches and machines."""
    digest = hashlib.sha256(identity.encode()).digest()
    return f"runner-agent/shard-{int.from_bytes(digest[:8], 'big') % shards:03d}"


def group_jobs(tasks: Sequence[Task], per_job: int, shards: int = DEFAULT_SHARDS) -> list[JobGroup]:
    """The jobs for ``tasks``: every task exactly once, by the rules of the module.

    Jobs come in the order of their first task. Raises InvalidInput for a ``per_job`` below 1
    or a ``shards`` outside 1..256.
    """
    if per_job < 1:
        raise InvalidInput(Problem("--tasks-per-job", f"must be at least 1, not {per_job}"))
    if not 1 <= shards <= MAX_SHARDS:
        raise InvalidInput(Problem("--lock-shards", f"must be 1 to {MAX_SHARDS}, not {shards}"))
    open_jobs: dict[tuple[tuple[str, ...], str], int] = {}  # key -> its last job
    jobs: list[tuple[tuple[str, ...], str, list[int]]] = []  # in the order they were opened
    home: list[int] = []  # unit -> its job
    for unit in _units(tasks):
        shard = lock_shard(unit.identity, shards)
        at = open_jobs.get((unit.tags, shard))
        waits = max((home[d] for d in unit.after), default=-1)
        if at is None or len(jobs[at][2]) + len(unit.indexes) > per_job or unit.cut or waits > at:
            at = open_jobs[(unit.tags, shard)] = len(jobs)
            jobs.append((unit.tags, shard, []))
        jobs[at][2].extend(unit.indexes)
        home.append(at)
    out = [JobGroup(tags, shard, tuple(sorted(indexes))) for tags, shard, indexes in jobs]
    return sorted(out, key=lambda group: group.tasks[0])


@dataclass
class _Unit:
    """One identity's tasks in order that can share a job: same runner tags, and none reads
    an identity that ran a task since the first of them."""

    identity: str
    tags: tuple[str, ...]
    first: int
    indexes: list[int]
    cut: bool  # an earlier part of the identity exists: start a job of its own
    after: set[int]  # the units whose tasks these follow


def _units(tasks: Sequence[Task]) -> list[_Unit]:
    """Each identity's tasks in order, cut where the runner tags change (tasks for different
    runners cannot share a job; the pipeline orders such parts with ``needs``) or where a
    task reads an identity that ran a task since the part began (that task runs between)."""
    units: list[_Unit] = []
    last: dict[str, int] = {}  # identity -> its unit being filled
    latest: dict[str, int] = {}  # identity -> its latest task so far
    for index, task in enumerate(tasks):
        tags = tuple(sorted(task.tags))
        at = previous = last.get(task.identity)
        reads = [i for i in task.outputs_from if i != task.identity and i in latest]
        if at is None or units[at].tags != tags or any(latest[i] > units[at].first for i in reads):
            units.append(_Unit(task.identity, tags, index, [], at is not None, set()))
            at = last[task.identity] = len(units) - 1
            if previous is not None:  # the identity's earlier part
                units[at].after.add(previous)
        units[at].indexes.append(index)
        units[at].after.update(last[i] for i in reads if last[i] != at)
        latest[task.identity] = index
    return units
