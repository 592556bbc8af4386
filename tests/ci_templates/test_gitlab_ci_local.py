"""Rendered pipelines run for real: gitlab-ci-local's shell jobs change real local endpoints."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from ci_templates.ci_local import Ci
from endpoints import EtcdPrefix

from runner_agent.cli import main
from runner_agent.core.resources import templates_dir

NASTY = 'it\'s "x": #1 ${HOME} $(touch MARKER) `touch MARKER` !reference [a] &a *a zürich 🚀\nend'


def _render(ci: Ci, task_file: str, *extra: str) -> None:
    pipeline = str(ci.repo / ".runner-agent" / "pipeline.yml")
    args = ["render", str(ci.repo / task_file), "-f", pipeline, "--project-dir", str(ci.repo)]
    assert main([*args, *extra]) == 0


def _times(report: dict[str, Any]) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(report["started"]), datetime.fromisoformat(report["finished"])


def test_child_pipeline_runs_tasks_in_order_and_collects_a_failure(
    ci: Ci, etcd: EtcdPrefix, tmp_path: Path, yaml_text: Callable[[Any], str]
) -> None:
    out = tmp_path / "out"
    (tmp_path / "blocker").write_text("a file, so no folder can be made under it")
    web = {"agent": "kv_file", "identity": "acme/web", "command": "update"}
    tasks = [
        {**web, "config": {"path": f"{out}/web.json", "values": {"port": 8080, "step": "one"}}},
        {
            "identity": "acme/cache",
            "agent": "kv_etcd",
            "command": "update",
            "config": {"endpoint": etcd.endpoint, "prefix": etcd.prefix, "values": {"ttl": "60"}},
        },
        {**web, "config": {"path": f"{out}/web.json", "values": {"step": "two", "note": NASTY}}},
        {
            "identity": "acme/broken",
            "agent": "kv_file",
            "command": "update",
            "config": {"path": f"{tmp_path}/blocker/x.json", "values": {"a": 1}},
        },
        {  # follows the failing task of its identity: skipped, as a local run would
            "identity": "acme/broken",
            "agent": "kv_file",
            "command": "uninstall",
            "config": {"path": f"{tmp_path}/blocker/x.json"},
        },
    ]
    ci.write({"tasks/set.yml": yaml_text(tasks)})
    _render(ci, "tasks/set.yml")
    ci.commit()

    result = ci.run("--file", ".runner-agent/pipeline.yml")

    log = result.stdout + result.stderr
    assert result.returncode != 0, log  # a task failed, so the pipeline failed
    summary = ci.json(".runner-agent/summary.json")  # the collect job ran all the same
    assert summary["tasks"] == 5 and summary["missing"] == 0
    assert [f["identity"] for f in summary["failed"]] == ["acme/broken"]
    assert summary["counts"] == {"success": 3, "failed": 1, "skipped": 1}
    page = (ci.repo / ".runner-agent" / "report.html").read_text(encoding="utf-8")
    assert 'class="task s-failed" id="task-4" open>' in page  # the page, failures open
    follower = ci.json(".runner-agent/reports/0004.json")
    # in the job of its identity: the run skips it, as a local run of the same tasks would
    assert follower["status"] == "skipped" and "acme/broken failed earlier" in follower["error"]
    # the other tasks changed their endpoints, the same identity in task order, data literal
    assert (out / "web.json").exists() and etcd.get() == {"ttl": "60"}
    assert json.loads((out / "web.json").read_text()) == {"step": "two", "note": NASTY}
    assert not list(ci.repo.rglob("MARKER")) and not (Path.home() / "MARKER").exists()
    # same identity: the second started only after the first had finished
    first, second = (ci.json(f".runner-agent/reports/000{i}.json") for i in (0, 2))
    assert _times(first)[1] <= _times(second)[0]
    reports = ci.repo / ".runner-agent" / "reports"
    # one dotenv per job, every identity's last status first; JUnit per task, whatever the job
    lines = [line for env in sorted(reports.glob("*.env")) for line in env.read_text().split()]
    # acme/broken failed, then its follower was skipped: its last task is what shows
    for status in ("WEB_STATUS=success", "CACHE_STATUS=success", "BROKEN_STATUS=skipped"):
        assert f"RA_ACME_{status}" in lines
    for env in reports.glob("*.env"):
        kinds = [line.split("=")[0].endswith("_STATUS") for line in env.read_text().split()]
        assert kinds == sorted(kinds, reverse=True), env  # statuses, then outputs
    assert all((reports / f"000{i}.junit.xml").is_file() for i in range(5))


@pytest.mark.parametrize("max_jobs", [500, 2], ids=["one-child", "split-into-two-parts"])
def test_parent_pipeline_plans_and_triggers_from_manual_inputs(
    ci: Ci, tmp_path: Path, yaml_text: Callable[[Any], str], max_jobs: int
) -> None:
    out = tmp_path / "out"
    tasks = [
        {
            "identity": f"acme/app{n}",
            "agent": "kv_file",
            "command": "install",
            "config": {"path": f"{out}/app{n}.env", "format": "env", "values": {"MODE": "blue"}},
        }
        for n in (1, 2)
    ]
    parent = (templates_dir() / "agent-project.gitlab-ci.yml").read_text()
    ci.write({".gitlab-ci.yml": parent, "tasks/app.yml": yaml_text(tasks)})
    ci.commit()

    result = ci.run(
        "--input",
        "task_file=tasks/app.yml",
        "--input",
        f"max_jobs={max_jobs}",
        "--variable=CI_PIPELINE_SOURCE=web",  # Build > Pipelines > Run pipeline
        "--ignore-predefined-vars=CI_PIPELINE_SOURCE",
    )

    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert "runner-agent-plan" in log and "acme/app2:install:1" in log
    assert [(out / f"app{n}.env").read_text() for n in (1, 2)] == ["MODE=blue\n"] * 2
    plan_artifact = ci.repo / ".gitlab-ci-local/artifacts/runner-agent-plan/.runner-agent"
    assert (plan_artifact / "pipeline.yml").is_file()
    assert (plan_artifact / "tasks" / "0001.json").is_file()
    summaries = ["summary.json"] if max_jobs == 500 else ["summary-1.json", "summary-2.json"]
    for name in summaries:
        assert ci.json(f".runner-agent/{name}")["status"] == "success"
    if max_jobs == 2:
        assert "runner-agent-fetch" in log and "runner-agent-part-2" in log
