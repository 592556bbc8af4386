"""The jobs a task set becomes: an identity's tasks whole and in order in one job (or in a
chain of jobs where its runner tags change), split at GitLab's limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from runner_agent.core.errors import InvalidInput
from runner_agent.model.agents import default_registry
from runner_agent.model.tasks import Task, load_tasks
from runner_agent.pipeline import ci_schema
from runner_agent.pipeline.grouping import lock_shard
from runner_agent.pipeline.render import (
    FETCH_JOB,
    INDEX_ID,
    RETRY_WHEN,
    RenderedPipeline,
    RenderOptions,
    render_child,
    render_index,
)

FIXTURES = Path(__file__).parent / "fixtures"
PLAN = "runner-agent-plan"


def _doc(pipeline: RenderedPipeline) -> dict[str, Any]:
    return yaml.load(pipeline.text, Loader=yaml.CSafeLoader)  # type: ignore[no-any-return]


def _job(doc: dict[str, Any], name: str) -> dict[str, Any]:
    """A job as GitLab sees it: the default: section merged under it."""
    return {**doc.get("default", {}), **doc[name]}


@pytest.fixture
def mixed() -> list[Task]:
    return load_tasks([FIXTURES / "mixed.yml"], default_registry())


def test_an_identity_in_one_job_then_collect(mixed: list[Task]) -> None:
    (pipeline,) = render_child(mixed, RenderOptions(tasks_from_job=PLAN))
    doc = _doc(pipeline)
    assert doc["stages"] == ["agents", "collect"]
    assert list(pipeline.jobs) == [
        "acme/web:install:0+1",
        "acme/cache:update:1",
        "acme/db:digest:3",
    ]
    assert pipeline.job_tasks == {
        "acme/web:install:0+1": (0, 2),
        "acme/cache:update:1": (1,),
        "acme/db:digest:3": (3,),
    }
    web = _job(doc, "acme/web:install:0+1")
    assert web["stage"] == "agents"
    assert web["tags"] == ["acme-dc1"]
    assert web["resource_group"] == lock_shard("acme/web", 16)
    assert web["timeout"] == "1h 35m"  # 30m + 1h of task deadlines + 5m for the job to report
    assert web["interruptible"] is False
    assert web["retry"] == {"max": 2, "when": list(RETRY_WHEN)}
    assert "script_failure" not in web["retry"]["when"]
    assert web["needs"] == [{"pipeline": "$PARENT_PIPELINE_ID", "job": PLAN}]
    assert web["artifacts"] == {
        "when": "always",
        "paths": [
            ".runner-agent/reports/0000.json",
            ".runner-agent/reports/0002.json",
            ".runner-agent/reports/0000.junit.xml",
            ".runner-agent/reports/0002.junit.xml",
        ],
        "reports": {
            "junit": [
                ".runner-agent/reports/0000.junit.xml",
                ".runner-agent/reports/0002.junit.xml",
            ],
            "dotenv": ".runner-agent/reports/0000.env",
        },
    }
    assert _job(doc, "acme/cache:update:1")["artifacts"]["reports"] == {
        "junit": ".runner-agent/reports/0001.junit.xml",
        "dotenv": ".runner-agent/reports/0001.env",
    }
    assert _job(doc, "acme/db:digest:3")["timeout"] == "1h 5m"
    assert "tags" not in doc["acme/db:digest:3"]
    assert set(pipeline.task_files) == {f".runner-agent/tasks/000{i}.json" for i in range(4)}


def test_script_runs_the_task_files_and_writes_reports_and_dotenv(mixed: list[Task]) -> None:
    (pipeline,) = render_child(mixed)
    doc = _doc(pipeline)
    assert doc["acme/cache:update:1"]["script"] == [
        "runner-agent run '.runner-agent/tasks/0001.json' "
        "--report-dir '.runner-agent/reports' --dotenv '.runner-agent/reports/0001.env'"
    ]
    # one `run` over the job's task files, in order: it shares ansible-playbook runs
    assert doc["acme/web:install:0+1"]["script"] == [
        "runner-agent run '.runner-agent/tasks/0000.json' '.runner-agent/tasks/0002.json' "
        "--report-dir '.runner-agent/reports' --dotenv '.runner-agent/reports/0000.env'"
    ]
    collect = _job(doc, "runner-agent-collect")
    assert collect["script"] == [
        "runner-agent collect '.runner-agent/reports' "
        "--summary '.runner-agent/summary.json' --html '.runner-agent/report.html' --expect 4"
    ]


def test_an_identity_cut_by_runner_tags_runs_in_order() -> None:
    tasks = [
        Task("acme/web", "kv_file", "install", tags=("dc1",)),
        Task("acme/db", "kv_file", "update", tags=("dc1",)),
        Task("acme/web", "kv_file", "update", tags=("dc2",)),
        Task("acme/web", "kv_file", "cycle", tags=("dc1",)),
    ]
    (pipeline,) = render_child(tasks, RenderOptions(tasks_per_job=20))
    doc = _doc(pipeline)
    assert pipeline.job_tasks == {
        "acme/web:install:0": (0,),
        "acme/db:update:1": (1,),
        "acme/web:update:2": (2,),
        "acme/web:cycle:3": (3,),
    }
    second = doc["acme/web:update:2"]
    # a follower hands its predecessor's report to `run --after`, which skips it on failure
    assert second["needs"] == [{"job": "acme/web:install:0", "artifacts": True}]
    assert second["when"] == "always"  # starts (and reports) even when the first failed
    assert second["script"][0].endswith("--after '.runner-agent/reports/0000.json'")
    third = doc["acme/web:cycle:3"]
    assert third["needs"] == [{"job": "acme/web:update:2", "artifacts": True}]
    assert third["script"][0].endswith("--after '.runner-agent/reports/0002.json'")
    for name in ("acme/web:install:0", "acme/db:update:1"):
        assert "needs" not in doc[name] and "when" not in doc[name]


def test_collect_job_runs_always_after_every_task(mixed: list[Task]) -> None:
    (pipeline,) = render_child(mixed)
    collect = _job(_doc(pipeline), "runner-agent-collect")
    assert collect["stage"] == "collect" and collect["when"] == "always"
    assert "needs" not in collect  # so it depends on every task job, past the 50-needs cap
    assert collect["tags"] == ["acme-dc1"]
    assert collect["script"] == [
        "runner-agent collect '.runner-agent/reports' "
        "--summary '.runner-agent/summary.json' --html '.runner-agent/report.html' --expect 4"
    ]
    assert collect["artifacts"] == {
        "when": "always",
        "expose_as": "runner-agent report",
        "paths": [".runner-agent/summary.json", ".runner-agent/report.html"],
    }
    assert pipeline.summary == ".runner-agent/summary.json"


def test_default_tags_apply_to_untagged_tasks_and_collect(mixed: list[Task]) -> None:
    (pipeline,) = render_child(mixed, RenderOptions(default_tags=("runner-agent",)))
    doc = _doc(pipeline)
    assert doc["acme/db:digest:3"]["tags"] == ["runner-agent"]
    assert doc["acme/web:install:0+1"]["tags"] == ["acme-dc1"]
    assert doc["runner-agent-collect"]["tags"] == ["runner-agent"]


def _tasks(identities: str) -> list[Task]:
    return [Task(f"acme/{c}", "kv_file", "update") for c in identities]


def test_split_by_job_count_keeps_chains_together() -> None:
    tasks = _tasks("abacdce")
    pipelines = render_child(tasks, RenderOptions(max_jobs=3, tasks_from_job=PLAN))
    assert [p.tasks for p in pipelines] == [(0, 1, 2), (3, 4, 5), (6,)]
    for number, pipeline in enumerate(pipelines, 1):
        doc = _doc(pipeline)
        assert len([k for k in doc if k not in ("stages", "default")]) <= 3
        assert f"runner-agent-collect-{number}" in doc
        assert pipeline.summary == f".runner-agent/summary-{number}.json"
        assert set(pipeline.task_files) == {
            f".runner-agent/tasks/{i:04d}.json" for i in pipeline.tasks
        }
        for name in pipeline.jobs:  # chains never need a job of another pipeline
            needs = doc[name]["needs"]
            # split: the task files come from the index pipeline's fetch job
            assert needs[0] == {"pipeline": f"${INDEX_ID}", "job": FETCH_JOB}
            assert all(n["job"] in doc for n in needs[1:])


def test_split_by_size() -> None:
    tasks = [Task(f"acme/{i}", "kv_file", "update", tags=("t" * 200,)) for i in range(300)]
    limit = 60_000
    pipelines = render_child(tasks, RenderOptions(max_bytes=limit))
    assert len(pipelines) > 2
    assert all(len(p.text.encode()) <= limit for p in pipelines)
    assert sorted(i for p in pipelines for i in p.tasks) == list(range(300))


def test_a_chain_larger_than_a_pipeline_is_refused() -> None:
    # one identity on runners that alternate: four jobs in a chain, three fit beside collect
    tasks = [Task("acme/a", "kv_file", "update", tags=(t,)) for t in "xyxy"]
    with pytest.raises(InvalidInput, match="do not fit in one pipeline"):
        render_child(tasks, RenderOptions(max_jobs=4))
    assert len(render_child(tasks, RenderOptions(max_jobs=5))) == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (RenderOptions(max_jobs=1), "at least 2"),
        (RenderOptions(tasks_per_job=0), "--tasks-per-job"),
        (RenderOptions(lock_shards=0), "--lock-shards"),
        (RenderOptions(lock_shards=257), "--lock-shards"),
        (RenderOptions(workdir="../out"), "not a relative folder"),
        (RenderOptions(workdir="/abs"), "not a relative folder"),
        (RenderOptions(runner_agent_cmd="runner-agent; rm -rf /"), "letters, digits"),
    ],
)
def test_bad_options_are_refused(options: RenderOptions, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        render_child(_tasks("a"), options)


def test_no_task_is_refused() -> None:
    with pytest.raises(InvalidInput, match="no task"):
        render_child([])


def test_what_gitlab_refuses_is_refused() -> None:
    with pytest.raises(InvalidInput, match="GitLab's CI schema"):
        render_child([Task("acme/web", "kv_file", tags=("",))])


def test_index_triggers_each_part_from_refetched_artifacts() -> None:
    files = [".runner-agent/pipeline-1.yml", ".runner-agent/pipeline-2.yml"]
    doc = yaml.safe_load(render_index(files, tasks_from_job=PLAN, tags=["runner-agent"]))
    assert doc["stages"] == ["fetch", "parts"]
    fetch = doc[FETCH_JOB]
    assert fetch["needs"] == [{"pipeline": "$PARENT_PIPELINE_ID", "job": PLAN}]
    assert fetch["artifacts"] == {"paths": [".runner-agent/"]}
    assert fetch["tags"] == ["runner-agent"]
    for n, file in enumerate(files, 1):
        part = doc[f"runner-agent-part-{n}"]
        assert part["trigger"] == {
            "include": [{"artifact": file, "job": FETCH_JOB}],
            "strategy": "depend",
        }
        # not PARENT_PIPELINE_ID: the one passed down from the parent would outrank it
        assert part["variables"] == {INDEX_ID: "$CI_PIPELINE_ID"}


def test_index_of_committed_parts_includes_them_locally() -> None:
    doc = yaml.safe_load(render_index(["ci/p-1.yml", "ci/p-2.yml"]))
    assert doc["stages"] == ["parts"]
    assert doc["runner-agent-part-2"]["trigger"]["include"] == [{"local": "ci/p-2.yml"}]
    assert ci_schema.problems(render_index(["ci/p-1.yml"])) == []


def test_a_task_reading_outputs_runs_after_their_producer() -> None:
    tasks = [
        Task("acme/db", "kv_etcd", "update"),
        Task("acme/other", "kv_file", "update"),
        Task("acme/web", "kv_file", "update", outputs_from=("acme/db", "acme/gone")),
        Task("acme/last", "kv_file", "update"),
    ]
    (pipeline,) = render_child(tasks)
    web = _doc(pipeline)["acme/web:update:2"]
    assert web["needs"] == [{"job": "acme/db:update:0", "artifacts": True}]
    assert web["when"] == "always"
    parts = render_child(tasks, RenderOptions(max_jobs=3))
    assert [p.tasks for p in parts] == [(0, 2), (1, 3)]


def test_a_job_timeout_is_its_tasks_deadlines_within_gitlabs_month() -> None:
    week = 7 * 24 * 3600  # the longest task deadline
    tasks = [Task(f"acme/t{i}", "kv_file", "update", timeout=week) for i in range(20)]
    (pipeline,) = render_child(tasks, RenderOptions(tasks_per_job=20, lock_shards=1))
    (job,) = [j for n, j in _doc(pipeline).items() if n in pipeline.job_tasks]
    assert job["timeout"] == "720h"  # 20 weeks of deadlines, capped at GitLab's 30 days
    longer = pipeline.text.replace('timeout: "720h"', 'timeout: "720h 1s"')
    assert any("30 days" in p.message for p in ci_schema.problems(longer))
    (two,) = render_child(tasks[:2], RenderOptions(tasks_per_job=20, lock_shards=1))
    assert [j["timeout"] for n, j in _doc(two).items() if n in two.job_tasks] == ["336h 5m"]
