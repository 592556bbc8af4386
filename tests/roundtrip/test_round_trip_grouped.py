"""A dispatch in jobs of several tasks (``--tasks-per-job``), end to end through the stand-in
and the real gitlab-ci-local, in both ways of passing it (the input ``tasks_per_job``, and
the variable ``RA_TASKS_PER_JOB`` for GitLabs without inputs): the value given decides the jobs,
and still a report, a JUnit file and dotenv variables per task."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from fake_gitlab import CANARY_TOKEN
from standin import Cli, GitLabStandIn

from runner_agent.pipeline.grouping import lock_shard

SYSTEM_JOBS = ("runner-agent-plan", "runner-agent-summary", "runner-agent-collect")


def _names() -> list[str]:
    """Three identities of one lock shard: only tasks_per_job decides how they are grouped."""
    names = [
        f"n{i}" for i in range(200) if lock_shard(f"acme/n{i}", 16) == lock_shard("acme/n0", 16)
    ]
    return names[:3]


def _tasks(tmp_path: Path) -> list[dict[str, Any]]:
    out = []
    for step in (1, 2):  # each identity twice: its two tasks stay in one job, in order
        for name in _names():
            path = tmp_path / "out" / f"{name}.json"
            out.append(
                {
                    "identity": f"acme/{name}",
                    "agent": "kv_file",
                    "command": "install" if step == 1 else "update",
                    "config": {"path": str(path), "values": {"step": step, "name": name}},
                }
            )
    return out


@pytest.mark.parametrize("flags", [(), ("--variables",)], ids=["inputs", "variables"])
def test_a_grouped_dispatch_reports_every_task(
    standin: GitLabStandIn, cli: Cli, tmp_path: Path, flags: tuple[str, ...]
) -> None:
    tasks = _tasks(tmp_path)
    path = tmp_path / "tasks.yml"
    path.write_text(yaml.safe_dump(tasks, sort_keys=False))
    # 2 per job: a job per identity (the default, 20, would make one job of all three)
    args = ("dispatch", str(path), "--tasks-per-job", "2", *flags, "--wait", "--interval", "1")
    code, out, err = cli(*args, "-o", "json")
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["tasks"], summary["missing"], summary["counts"]) == (6, 0, {"success": 6})
    # every task has its own report, in the tasks' order, and the endpoints the last values
    assert [(r["identity"], r["commands_run"][-1]) for r in summary["reports"]] == [
        (t["identity"], t["command"]) for t in tasks
    ]
    for name in _names():
        assert json.loads((tmp_path / "out" / f"{name}.json").read_text())["step"] == 2
    sent = standin.routed("create_pipeline")[0].json()
    if flags:
        assert {"key": "RA_TASKS_PER_JOB", "value": "2"} in sent["variables"]
    else:
        assert sent["inputs"]["tasks_per_job"] == 2

    # the child pipeline: a job per identity, each with its tasks' files
    (child,) = [p for p in standin.pipelines if standin.pipelines[p]["source"] == "parent_pipeline"]
    task_jobs = [j for j in standin.jobs[child] if j["name"] not in SYSTEM_JOBS]
    assert len(task_jobs) == 3  # the value given, not the project's default, was used
    # what each job kept, as gitlab-ci-local stores it (a folder per job, its name encoded)
    (run,) = standin.runs.values()
    kept = [d for d in (run.checkout / ".gitlab-ci-local" / "artifacts").iterdir() if d.is_dir()]
    per_job = [sorted(p.name for p in d.glob(".runner-agent/reports/*.json")) for d in kept]
    per_job = [names for names in per_job if names]
    assert len(per_job) == len(task_jobs)  # each task job kept its own tasks' reports
    assert sorted(n for names in per_job for n in names) == [f"000{i}.json" for i in range(6)]
    junit = sorted(p.name for d in kept for p in d.glob(".runner-agent/reports/*.junit.xml"))
    assert junit == [f"000{i}.junit.xml" for i in range(6)]
    # one dotenv report per job (artifacts:reports:dotenv), every identity's status in one
    dotenv = [p for d in kept for p in d.glob(".gitlab-ci-reports/dotenv/**/*.env")]
    assert len(dotenv) == len(task_jobs)
    lines = {line for p in dotenv for line in p.read_text().splitlines()}
    assert {f"RA_ACME_{n.upper()}_STATUS=success" for n in _names()} <= lines
    for name in _names():  # the outputs of the identity's last task
        written = (tmp_path / "out" / f"{name}.json").read_bytes()
        assert f"RA_ACME_{name.upper()}_SHA256={hashlib.sha256(written).hexdigest()}" in lines


@pytest.mark.parametrize(
    ("inputs", "error"),
    [
        ({"tasks_per_job": "6"}, "`tasks_per_job` input: provided value is not a number"),
        ({"tasks_per_jobs": 6}, "unknown input arguments: tasks_per_jobs"),
    ],
)
def test_the_stand_in_refuses_inputs_as_gitlab_does(
    standin: GitLabStandIn, inputs: dict[str, Any], error: str
) -> None:
    """The rule the dispatcher relies on (it sends a JSON number), as GitLab checks it against
    the agent project's spec:inputs before creating anything."""
    request = urllib.request.Request(
        f"{standin.base}/api/v4/projects/42/pipeline",
        data=json.dumps({"ref": "main", "inputs": inputs}).encode(),
        headers={"PRIVATE-TOKEN": CANARY_TOKEN, "Content-Type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 400
    assert json.loads(refused.value.read()) == {"message": {"base": [error]}}
    assert standin.created_pipelines() == []
