"""The round trip in both ways of passing a dispatch's ids: pipeline inputs and, for GitLabs
without them (or with ``--variables``), pipeline variables. Both must end with every report:
in variables mode GitLab forwards a trigger job's YAML variables, global ones included, to
the child pipeline as pipeline variables that outrank the child's own (see
docs/gitlab-compat.md, "Variables into child pipelines")."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from fake_gitlab import Storage, storage_served
from standin import GIT, Cli, GitLabStandIn


def _dispatch(cli: Cli, tmp_path: Path, tasks: list[Any], *flags: str) -> tuple[int, Any]:
    path = tmp_path / "tasks.yml"
    path.write_text(yaml.safe_dump(tasks, sort_keys=False))
    code, out, err = cli("dispatch", str(path), *flags, "--wait", "--interval", "1", "-o", "json")
    assert out.strip(), err
    return code, json.loads(out)


@pytest.mark.parametrize("flags", [(), ("--variables",)], ids=["inputs", "variables"])
def test_dispatch_ends_with_every_report_in_either_mode(
    standin: GitLabStandIn, cli: Cli, tmp_path: Path, flags: tuple[str, ...]
) -> None:
    target = tmp_path / "out" / "web.json"
    tasks = [
        {
            "identity": "acme/web",
            "agent": "kv_file",
            "config": {"path": str(target), "values": {"a": 1}},
        },
        {
            "identity": "acme/db",
            "agent": "kv_file",
            "config": {"path": str(tmp_path / "db.json"), "values": {"b": 2}},
        },
    ]
    code, summary = _dispatch(cli, tmp_path, tasks, *flags)
    assert (code, summary["missing"], summary["counts"]) == (0, 0, {"success": 2}), summary
    assert json.loads(target.read_text()) == {"a": 1}
    assert len(standin.created_pipelines()) == 1
    sent = standin.routed("create_pipeline")[0].json()
    assert ("variables" in sent) == ("--variables" in flags)


def test_a_dispatch_past_the_active_jobs_limit_fails_as_gitlab_fails_it(
    standin: GitLabStandIn, cli: Cli, tmp_path: Path
) -> None:
    standin.ci_active_jobs = 5  # plan, bridge, summary + 2 task jobs and collect: 6
    tasks = [
        {
            "identity": f"acme/s{n}",
            "agent": "kv_file",
            "config": {"path": str(tmp_path / f"{n}.json"), "values": {"n": n}},
        }
        for n in range(2)
    ]
    path = tmp_path / "tasks.yml"
    path.write_text(yaml.safe_dump(tasks, sort_keys=False))
    code, _, err = cli("dispatch", str(path), "--wait", "--interval", "1", "-o", "json")
    (run,) = standin.runs.values()
    assert run.active_jobs == 6 and code != 0 and "no task reported" in err
    pipeline = standin.pipelines[run.pipeline_id]
    assert pipeline["status"] == "failed"
    assert pipeline["_failure_reason"] == "job_activity_limit_exceeded"


def test_a_header_key_the_gitlab_version_lacks_is_refused_at_creation(
    standin: GitLabStandIn, cli: Cli, tmp_path: Path
) -> None:
    shipped = (standin.project_repo / ".gitlab-ci.yml").read_text()
    described = shipped.replace("spec:\n", 'spec:\n  description: "agents"\n', 1)
    (standin.project_repo / ".gitlab-ci.yml").write_text(described)
    subprocess.run([*GIT, "commit", "-qam", "describe"], cwd=standin.project_repo, check=True)
    standin.version = "18.9.0"
    task = {"identity": "acme/h", "agent": "kv_file", "config": {"path": str(tmp_path / "h")}}
    path = tmp_path / "tasks.yml"
    path.write_text(yaml.safe_dump([{**task, "command": "uninstall"}]))
    code, _, err = cli("dispatch", str(path))
    assert code == 4 and "unknown keys: description" in err
    assert standin.created_pipelines() == [] and standin.runs == {}


def test_downloads_redirected_to_object_storage_reach_it_without_any_token(
    standin: GitLabStandIn, cli: Cli, tmp_path: Path
) -> None:
    storage = Storage()
    with storage_served(storage):  # 127.0.0.2: another host than the GitLab on 127.0.0.1
        standin.storage = storage
        target = tmp_path / "r.json"
        task = {
            "identity": "acme/r",
            "agent": "kv_file",
            "config": {"path": str(target), "values": {"r": 1}},
        }
        code, summary = _dispatch(cli, tmp_path, [task])
    assert (code, summary["counts"]) == (0, {"success": 1}), summary
    assert storage.seen  # the plan job's bundle, the task job's state read, the reports
    secret = {"private-token", "job-token", "authorization"}
    assert not [k for headers in storage.seen for k in headers if k.lower() in secret]
