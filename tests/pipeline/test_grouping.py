"""Tasks into jobs of several tasks (``--tasks-per-job``): the grouping rules."""

from __future__ import annotations

from typing import Any

import pytest

from runner_agent.core.errors import InvalidInput
from runner_agent.model.tasks import Task, tasks_from_data
from runner_agent.pipeline.grouping import group_jobs, lock_shard


def task(identity: str, *tags: str, **fields: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"identity": identity, "agent": "kv_file", "command": "update"}
    item["config"] = {"path": f"/srv/ra/{identity.replace('/', '-')}.json", "values": {"k": 1}}
    if tags:
        item["runner"] = {"tags": list(tags)}
    return {**item, **fields}


def tasks(*items: dict[str, Any]) -> list[Task]:
    return tasks_from_data(items)


def mixed(count: int) -> list[Task]:
    return tasks(*(task(f"site/i{i % 37}", f"dc{i % 37 % 3}") for i in range(count)))


def test_every_task_lands_in_exactly_one_job() -> None:
    groups = group_jobs(mixed(500), per_job=20)
    placed = sorted(i for g in groups for i in g.tasks)
    assert placed == list(range(500))


def test_an_identitys_tasks_share_one_job_in_their_order() -> None:
    items = mixed(500)
    groups = group_jobs(items, per_job=20)
    homes: dict[str, set[int]] = {}
    for number, group in enumerate(groups):
        assert list(group.tasks) == sorted(group.tasks)
        for i in group.tasks:
            homes.setdefault(items[i].identity, set()).add(number)
    assert all(len(jobs) == 1 for jobs in homes.values())


def test_only_tasks_with_the_same_runner_tags_share_a_job() -> None:
    items = mixed(300)
    for group in group_jobs(items, per_job=50):
        assert {tuple(sorted(items[i].tags)) for i in group.tasks} == {group.tags}


def test_a_job_holds_at_most_the_tasks_asked_unless_one_identity_has_more() -> None:
    items = tasks(*(task(f"a/{i}") for i in range(30)), *(task("big/one") for _ in range(12)))
    groups = group_jobs(items, per_job=5)
    big = [g for g in groups if any(items[i].identity == "big/one" for i in g.tasks)]
    assert len(big) == 1 and len(big[0].tasks) == 12
    assert all(len(g.tasks) <= 5 for g in groups if g not in big)


def test_shards_stay_within_the_limit_and_a_job_holds_one_shard() -> None:
    items = mixed(1000)
    groups = group_jobs(items, per_job=100, shards=8)
    assert len({g.shard for g in groups}) <= 8
    for group in groups:
        assert {lock_shard(items[i].identity, 8) for i in group.tasks} == {group.shard}


def test_an_identity_maps_to_the_same_shard_in_every_dispatch() -> None:
    assert lock_shard("site/web", 16) == lock_shard("site/web", 16)
    assert len({lock_shard(f"site/{i}", 16) for i in range(1000)}) == 16


def test_an_identity_whose_tags_change_is_cut_where_they_change() -> None:
    items = tasks(task("x/a", "dc1"), task("x/a", "dc2"), task("x/a", "dc1"))
    groups = group_jobs(items, per_job=10)
    assert sorted(g.tasks for g in groups) == [(0,), (1,), (2,)]


@pytest.mark.parametrize(("per_job", "shards"), [(0, 16), (5, 0), (5, 257)])
def test_bad_limits_are_refused(per_job: int, shards: int) -> None:
    with pytest.raises(InvalidInput):
        group_jobs(mixed(3), per_job=per_job, shards=shards)
