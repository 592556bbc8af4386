"""A small dispatch as ONE job, through the stand-in and gitlab-ci-local: the agent project's
``runner-agent-job`` fetches and verifies the bundle, runs the tasks on their own runner tags,
and publishes the reports and summary.json; no plan job, child pipeline or summary job. ``wait``,
``reports``, ``status``, ``cancel`` and coalescing work as on the parent/child path, which the
rest of the dispatches still take."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
import yaml
from fake_gitlab import CANARY_TOKEN
from standin import GIT, Cli, GitLabStandIn, _agents, _descendants, _processes, _timeout_errors

from runner_agent.gitlab.bundle import DISPATCH_PACKAGE, SUMMARY_FILE
from runner_agent.gitlab.state_store import STATE_PACKAGE
from runner_agent.pipeline.ci_schema import MAX_JOB_TIMEOUT
from runner_agent.pipeline.grouping import lock_shard
from runner_agent.pipeline.render import _duration

ONE_JOB = "runner-agent-job"


def kv_file(identity: str, path: Path, values: dict[str, Any], **extra: Any) -> Any:
    return {
        "identity": identity,
        "agent": "kv_file",
        "config": {"path": str(path), "values": values},
        **extra,
    }


def _write(tmp_path: Path, name: str, tasks: list[Any]) -> Path:
    path = tmp_path / f"{name}.yml"
    path.write_text(yaml.safe_dump(tasks, sort_keys=False))
    return path


def _dispatch_wait(cli: Cli, path: Path, *flags: str) -> tuple[int, Any, Any]:
    """``dispatch --wait -o json``: exit code, summary printed, handle."""
    code, out, err = cli("dispatch", str(path), *flags, "--wait", "--interval", "1", "-o", "json")
    handles = [line for line in err.splitlines() if line.startswith("{")]
    assert out.strip() and handles, err
    return code, json.loads(out), json.loads(handles[-1])


def _job_names(standin: GitLabStandIn, pipeline_id: int) -> list[str]:
    return [str(job["name"]) for job in standin.jobs.get(pipeline_id, [])]


@pytest.mark.parametrize(
    ("flags", "tags"),
    [((), ["ra-linux", "ra-site/a"]), (("--variables",), ["ra-linux"]), ((), [])],
    ids=["inputs", "variables", "untagged"],
)
def test_a_small_dispatch_is_one_job_on_the_tasks_own_runners(
    standin: GitLabStandIn, cli: Cli, tmp_path: Path, flags: tuple[str, ...], tags: list[str]
) -> None:
    target = tmp_path / "out" / "web.json"
    runner = {"runner": {"tags": tags}} if tags else {}
    path = _write(tmp_path, "small", [kv_file("acme/web", target, {"port": 80}, **runner)])

    code, summary, handle = _dispatch_wait(cli, path, *flags)

    assert (code, summary["counts"], summary["missing"]) == (0, {"success": 1}, 0), summary
    assert json.loads(target.read_text()) == {"port": 80}
    pipeline = handle["pipeline_id"]
    assert _job_names(standin, pipeline) == [ONE_JOB] and pipeline not in standin.bridges
    (job,) = standin.jobs[pipeline]
    # GitLab's tags for the job: the tasks' own; untagged tasks take RA_JOB_TAG's default
    assert job["tag_list"] == (tags or ["runner-agent"])
    sent = standin.routed("create_pipeline")[0].json()
    assert ("variables" in sent) == ("--variables" in flags)
    # reports reads the summary the one job uploaded, in one request
    assert standin.package(DISPATCH_PACKAGE, handle["dispatch_id"], SUMMARY_FILE) is not None
    code, again, _ = cli("reports", json.dumps(handle), "-o", "json")
    assert code == 0 and json.loads(again) == summary
    code, shown, _ = cli("status", json.dumps(handle), "-o", "json")
    assert code == 0 and json.loads(shown)["phase"] == "succeeded"
    assert json.loads(shown)["children"] == []


def test_a_failed_task_exits_as_it_does_locally(
    standin: GitLabStandIn, cli: Cli, tmp_path: Path
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, so no folder can be made under it")
    path = _write(tmp_path, "broken", [kv_file("acme/broken", blocker / "x.json", {"a": 1})])
    local, _, _ = cli("run", str(path), "--local", "--state-dir", str(tmp_path / "state"))

    code, summary, handle = _dispatch_wait(cli, path)

    assert local == 1 and code == local
    assert [r["status"] for r in summary["reports"]] == ["failed"]
    assert _job_names(standin, handle["pipeline_id"]) == [ONE_JOB]
    assert standin.pipelines[handle["pipeline_id"]]["status"] == "failed"


def _agent_running(standin: GitLabStandIn, pipeline_id: int) -> bool:
    tree = _processes()
    return any(
        any("ansible" in tree[p][1] for p in _descendants(tree, pid))
        for pid in _agents(tree, standin.runs[pipeline_id].checkout)
    )


def test_cancel_midway_stops_the_one_job_and_reports_say_so(
    standin: GitLabStandIn, cli: Cli, tmp_path: Path
) -> None:
    slow = {"identity": "acme/slow", "agent": "probe", "config": {"sleep": 120}}
    path = _write(tmp_path, "slow", [slow])
    code, out, err = cli("dispatch", str(path), "-o", "json")
    assert code == 0, err
    handle = json.loads(out)
    deadline = time.monotonic() + 120
    while not _agent_running(standin, handle["pipeline_id"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _agent_running(standin, handle["pipeline_id"]), "the agent never started"

    code, canceled, err = cli("cancel", out.strip(), "-o", "json")
    assert code == 0 and json.loads(canceled)["status"] in ("canceling", "canceled"), err
    code, _, err = cli("wait", out.strip(), "--interval", "1")
    assert code == 1 and "canceled" in err
    code, text, err = cli("reports", out.strip(), "-o", "json")

    # as on the parent/child path: the task's report could not be uploaded (the token was
    # revoked), so reports says the pipeline ended canceled, from the job's artifacts where
    # the runner kept them, else with no report at all
    assert code == 1
    if text:
        summary = json.loads(text)
        assert [(r["identity"], r["status"]) for r in summary["reports"]] == [
            ("acme/slow", "error")
        ]
    else:
        assert "ended canceled and no task reported" in err
    run = standin.runs[handle["pipeline_id"]]
    assert run.job_token in standin.refused_job_tokens  # its uploads came after the cancel
    own = json.loads((run.checkout / ".runner-agent" / "summary.json").read_text())
    assert "interrupted before it finished" in own["reports"][0]["error"]
    assert standin.pipelines[handle["pipeline_id"]]["status"] == "canceled"
    assert handle["pipeline_id"] not in standin.bridges  # no child pipeline to cancel
    assert standin.package(STATE_PACKAGE, "acme+slow", "state.json") is None


def test_an_identical_dispatch_joins_the_one_job_and_a_different_one_is_locked(
    standin: GitLabStandIn, cli: Cli, tmp_path: Path
) -> None:
    slow = {"identity": "acme/held", "agent": "probe", "config": {"sleep": 120}}
    path = _write(tmp_path, "held", [slow])
    code, first, err = cli("dispatch", str(path), "-o", "json")
    assert code == 0, err
    code, second, err = cli("dispatch", str(path), "-o", "json")
    assert code == 0 and json.loads(second) == json.loads(first), err
    other = _write(tmp_path, "other", [{**slow, "config": {"sleep": 1}}])
    code, _, err = cli("dispatch", str(other), "-o", "json")

    assert code == 3 and "acme/held" in err
    assert len(standin.created_pipelines()) == 1
    cli("cancel", first.strip())
    cli("wait", first.strip(), "--interval", "1")


def test_tasks_on_two_sets_of_runners_take_the_parent_child_path(
    standin: GitLabStandIn, cli: Cli, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    tasks = [
        kv_file("acme/a", out / "a.json", {"a": 1}, runner={"tags": ["ra-one"]}),
        kv_file("acme/b", out / "b.json", {"b": 2}, runner={"tags": ["ra-two"]}),
    ]
    code, summary, handle = _dispatch_wait(cli, _write(tmp_path, "two", tasks))

    assert (code, summary["counts"]) == (0, {"success": 2}), summary
    names = _job_names(standin, handle["pipeline_id"])
    assert "runner-agent-plan" in names and ONE_JOB not in names
    assert [b["name"] for b in standin.bridges[handle["pipeline_id"]]] == ["runner-agent-run"]
    assert json.loads((out / "b.json").read_text()) == {"b": 2}


def test_without_its_default_tag_the_one_job_would_wait_for_a_runner_forever(
    standin: GitLabStandIn, cli: Cli, tmp_path: Path
) -> None:
    # why RA_JOB_TAG has a default: GitLab keeps a tag naming an unset variable as "$RA_JOB_TAG",
    # a tag no runner has (the stand-in models it: the job stays pending)
    shipped = (standin.project_repo / ".gitlab-ci.yml").read_text()
    bare = shipped.replace('  RA_JOB_TAG: "runner-agent"\n', "", 1)
    assert bare != shipped
    (standin.project_repo / ".gitlab-ci.yml").write_text(bare)
    subprocess.run([*GIT, "commit", "-qam", "no default tag"], cwd=standin.project_repo, check=True)
    path = _write(tmp_path, "untagged", [kv_file("acme/u", tmp_path / "u.json", {"u": 1})])

    code, _, err = cli("dispatch", str(path), "--wait", "--timeout", "40s", "--interval", "1")

    assert code == 5 and "still pending" in err
    (run,) = standin.runs.values()
    assert [(job["name"], job["tag_list"]) for job in standin.jobs[run.pipeline_id]] == [
        (ONE_JOB, ["$RA_JOB_TAG"])
    ]
    assert not (tmp_path / "u.json").exists()  # no runner took the job


def _same_shard(count: int) -> list[str]:
    """Identities of one lock shard: tasks of several identities that still fit in one job."""
    shard = lock_shard("acme/j0", 16)
    return [n for n in (f"acme/j{i}" for i in range(400)) if lock_shard(n, 16) == shard][:count]


def test_the_one_job_keeps_what_a_grouped_job_keeps(
    standin: GitLabStandIn, cli: Cli, tmp_path: Path
) -> None:
    """Reports stay per task whatever the grouping (issue 13): a report and a JUnit file per
    task, the job's dotenv report (statuses and outputs within GitLab's limits), log sections,
    the HTML page and summary.json, as the task jobs of a grouped pipeline leave them."""
    identities = _same_shard(2)
    out = tmp_path / "out"
    tasks = [
        kv_file(i, out / f"{i.split('/')[1]}.json", {"n": n}) for n, i in enumerate(identities)
    ]

    code, summary, handle = _dispatch_wait(cli, _write(tmp_path, "two", tasks))

    assert (code, summary["counts"]) == (0, {"success": 2}), summary
    pipeline = handle["pipeline_id"]
    assert _job_names(standin, pipeline) == [ONE_JOB]
    run = standin.runs[pipeline]
    kept = run.checkout / ".gitlab-ci-local" / "artifacts" / ONE_JOB
    reports = kept / ".runner-agent" / "reports"
    assert sorted(p.name for p in reports.iterdir()) == [
        "0000.json",
        "0000.junit.xml",
        "0001.json",
        "0001.junit.xml",
    ]
    for n, identity in enumerate(identities):
        report = json.loads((reports / f"000{n}.json").read_text())
        assert (report["identity"], report["status"]) == (identity, "success")
        case = ElementTree.parse(reports / f"000{n}.junit.xml").getroot().find(".//testcase")
        assert case is not None and identity in str(case.get("classname")) + str(case.get("name"))
    # the job's one dotenv report (artifacts:reports:dotenv), as gitlab-ci-local keeps it
    (env,) = (kept / ".gitlab-ci-reports" / "dotenv").rglob("*.env")
    lines = env.read_text().splitlines()
    for identity in identities:
        name = identity.upper().replace("/", "_")
        written = (out / f"{identity.split('/')[1]}.json").read_bytes()
        assert f"RA_{name}_STATUS=success" in lines
        assert f"RA_{name}_SHA256={hashlib.sha256(written).hexdigest()}" in lines
    page = (kept / ".runner-agent" / "report.html").read_text()
    assert all(identity in page for identity in identities)
    assert json.loads((kept / ".runner-agent" / "summary.json").read_text()) == summary
    # a log section per command run, which GitLab folds (doc/ci/jobs/job_logs.md);
    # gitlab-ci-local reads the markers and logs "<name>_started" and "<name> took <n>ms"
    log = (run.checkout / ".gitlab-ci-local" / "output" / f"{ONE_JOB}.log").read_text()
    started = re.findall(r"^(ra_\d+)_started$", log, re.MULTILINE)
    ended = re.findall(r"^(ra_\d+) took \d+ms$", log, re.MULTILINE)
    commands = sum(len(r["commands_run"]) for r in summary["reports"])
    assert started == ended and len(set(started)) == commands >= 2


def test_the_stand_in_refuses_a_one_job_timeout_over_a_month_as_gitlab_does(
    standin: GitLabStandIn,
) -> None:
    """Why ``one_job`` sends longer dispatches down the parent/child path: GitLab refuses the
    whole pipeline when the one job's timeout passes a month (Project::MAX_BUILD_TIMEOUT)."""

    def create(timeout: str) -> int:
        request = urllib.request.Request(
            f"{standin.base}/api/v4/projects/42/pipeline",
            data=json.dumps({"ref": "main", "inputs": {"job_timeout": timeout}}).encode(),
            headers={"PRIVATE-TOKEN": CANARY_TOKEN, "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as refused:
            error = json.loads(refused.read())
            assert error == {
                "message": {"base": [f"jobs:{ONE_JOB}:timeout config should not exceed the limit"]}
            }
            return refused.code

    assert create("731h") == 400 and standin.created_pipelines() == []
    shipped = (standin.project_repo / ".gitlab-ci.yml").read_text()
    # the bound the grouped render caps a job at (ci_schema) passes
    assert _timeout_errors(shipped, {"job_timeout": _duration(MAX_JOB_TIMEOUT)}) == []
