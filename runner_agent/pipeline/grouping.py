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
  one shard only. What a user gives up: two identities in one shard never run at the same
  time in two pipelines, though they are unrelated; with S shards and one dispatch running,
  at most S jobs per tag set run at once. More shards lift that, at the price of more jobs
  (at least one per shard used).
- **Bounded.** A job holds at most ``per_job`` tasks, except that an identity with more tasks
  than that stays whole in a job of its own.

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

__all__ = ["DEFAULT_SHARDS", "DEFAULT_TASKS_PER_JOB", "JobGroup", "group_jobs", "lock_shard"]

DEFAULT_SHARDS = 16
# provisional: chosen from benchmarks/bench_batch.py and explained in docs/scaling.md
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
    open_jobs: dict[tuple[tuple[str, ...], str], list[list[int]]] = {}
    cut: set[str] = set()  # identities already placed in part
    for identity, tags, indexes in _units(tasks):
        key = (tags, lock_shard(identity, shards))
        jobs = open_jobs.setdefault(key, [])
        if not jobs or len(jobs[-1]) + len(indexes) > per_job or identity in cut:
            jobs.append([])
        jobs[-1].extend(indexes)
        cut.add(identity)
    out = [
        JobGroup(tags, shard, tuple(sorted(job)))
        for (tags, shard), jobs in open_jobs.items()
        for job in jobs
    ]
    return sorted(out, key=lambda group: group.tasks[0])


def _units(tasks: Sequence[Task]) -> list[tuple[str, tuple[str, ...], list[int]]]:
    """Each identity's tasks in order, cut where the runner tags change (tasks for different
    runners cannot share a job; the pipeline orders such parts with ``needs``)."""
    units: list[tuple[str, tuple[str, ...], list[int]]] = []
    last: dict[str, int] = {}  # identity -> its unit being filled
    for index, task in enumerate(tasks):
        tags = tuple(sorted(task.tags))
        at = last.get(task.identity)
        if at is None or units[at][1] != tags:
            last[task.identity] = at = len(units)
            units.append((task.identity, tags, []))
        units[at][2].append(index)
    return units
