"""The grouping rules through ``render``, for any task set (Hypothesis): every task exactly
once, an identity's tasks whole and in order (a job, or a chain of jobs joined by ``needs``
where its runner tags change), tags respected, lock shards within the limit, a job never
above ``tasks_per_job`` but for one identity's own tasks, and the YAML valid for GitLab."""

from __future__ import annotations

import re
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner_agent.model.tasks import Task
from runner_agent.pipeline import ci_schema
from runner_agent.pipeline.grouping import lock_shard
from runner_agent.pipeline.render import RenderedPipeline, RenderOptions, render_child

IDENTITIES = [f"acme/{c}" for c in "abcdefgh"] + ["x'; rm -rf / #", "Ünï/ç@de"]
TAG_SETS = [(), ("dc1",), ("dc2",), ("dc1", "etcd"), ("etcd", "dc1")]
_FILE = re.compile(r"'\.runner-agent/tasks/(\d{4})\.json'")
_SCRIPT = re.compile(
    r"runner-agent run( '\.runner-agent/tasks/\d{4}\.json')+ --report-dir '\.runner-agent/"
    r"reports' --dotenv '\.runner-agent/reports/\d{4}\.env'( --after '\.runner-agent/reports/"
    r"\d{4}\.json')*"
)


@st.composite
def task_sets(draw: st.DrawFn) -> list[Task]:
    count = draw(st.integers(1, 60))
    out = []
    for _ in range(count):
        identity = draw(st.sampled_from(IDENTITIES))
        reads = draw(st.lists(st.sampled_from(IDENTITIES), max_size=2, unique=True))
        out.append(
            Task(
                identity,
                "kv_file",
                draw(st.sampled_from([None, "install", "update", "cycle"])),
                tags=draw(st.sampled_from(TAG_SETS)),
                timeout=draw(st.sampled_from([60, 600, 3600])),
                outputs_from=tuple(r for r in reads if r != identity),
            )
        )
    return out


def _jobs(pipeline: RenderedPipeline) -> dict[str, Any]:
    doc = yaml.safe_load(pipeline.text)
    return {name: doc[name] for name in pipeline.job_tasks}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(task_sets(), st.integers(1, 25), st.integers(1, 8))
def test_render_keeps_the_grouping_rules(tasks: list[Task], per_job: int, shards: int) -> None:
    opts = RenderOptions(tasks_per_job=per_job, lock_shards=shards, max_jobs=500)
    pipelines = render_child(tasks, opts)  # validates against GitLab's schema and rules
    placed: list[int] = []
    home: dict[int, tuple[int, str]] = {}  # task -> (pipeline, job)
    for number, pipeline in enumerate(pipelines):
        assert ci_schema.problems(pipeline.text) == []
        for name, job in _jobs(pipeline).items():
            indexes = pipeline.job_tasks[name]
            # the script runs exactly the job's task files, in order, and only paths we made
            (script,) = job["script"]
            assert _SCRIPT.fullmatch(script), script
            assert [int(i) for i in _FILE.findall(script)] == list(indexes)
            assert list(indexes) == sorted(indexes)  # the tasks' order
            tags = {tuple(sorted(tasks[i].tags)) for i in indexes}
            assert len(tags) == 1 and tuple(job.get("tags", ())) == tags.pop()
            assert job["resource_group"] == lock_shard(tasks[indexes[0]].identity, shards)
            assert {lock_shard(tasks[i].identity, shards) for i in indexes} == {
                job["resource_group"]
            }
            if len(indexes) > per_job:  # only one identity's tasks, kept whole
                assert len({tasks[i].identity for i in indexes}) == 1
            placed.extend(indexes)
            home.update({i: (number, name) for i in indexes})
    assert sorted(placed) == list(range(len(tasks)))  # every task exactly once
    groups = {g for p in pipelines for g in (_jobs(p)[n]["resource_group"] for n in p.job_tasks)}
    assert groups <= {f"runner-agent/shard-{n:03d}" for n in range(shards)}
    _order_holds(tasks, pipelines, home)


def _order_holds(
    tasks: list[Task], pipelines: list[RenderedPipeline], home: dict[int, tuple[int, str]]
) -> None:
    """A task that follows another of its identity, or reads outputs of an identity run
    before it, is in the same job or a job that needs that one, in the same pipeline."""
    needs = {
        (number, name): {n["job"] for n in job.get("needs", []) if "pipeline" not in n}
        for number, p in enumerate(pipelines)
        for name, job in _jobs(p).items()
    }
    scripts = {
        (number, name): job["script"][0]
        for number, p in enumerate(pipelines)
        for name, job in _jobs(p).items()
    }
    last: dict[str, int] = {}
    for index, task in enumerate(tasks):
        for before in (task.identity, *task.outputs_from):
            if before not in last:
                continue
            was, now = home[last[before]], home[index]
            assert was[0] == now[0], "split across pipelines"
            assert was == now or was[1] in needs[now], (before, was, now)
            if was != now:  # `run --after` gets the report of exactly that task
                assert f"--after '.runner-agent/reports/{last[before]:04d}.json'" in scripts[now]
        last[task.identity] = index


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(task_sets(), st.integers(1, 25), st.integers(4, 12))
def test_splitting_keeps_jobs_whole(tasks: list[Task], per_job: int, max_jobs: int) -> None:
    from runner_agent.core.errors import InvalidInput

    try:
        pipelines = render_child(tasks, RenderOptions(tasks_per_job=per_job, max_jobs=max_jobs))
    except InvalidInput as exc:  # a chain longer than a pipeline: refused, named
        assert "do not fit in one pipeline" in str(exc)
        return
    seen = [i for p in pipelines for indexes in p.job_tasks.values() for i in indexes]
    assert sorted(seen) == list(range(len(tasks)))
    for pipeline in pipelines:
        assert len(pipeline.job_tasks) <= max_jobs - 1  # the collect job takes one
        assert f"--expect {len(pipeline.tasks)}" in pipeline.text
        assert set(pipeline.task_files) == {
            f".runner-agent/tasks/{i:04d}.json" for i in pipeline.tasks
        }
