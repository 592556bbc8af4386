"""The whole product in one run: ``runner-agent dispatch --wait`` through the real python-gitlab
client to a GitLab stand-in on 127.0.0.1, which runs the agent project's pipeline (the shipped
template) with gitlab-ci-local; its jobs are the agents, change real files and a real etcd, and
report back through the stand-in's package registry with a job token."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import yaml
from endpoints import EtcdPrefix
from fake_gitlab import CANARY_TOKEN
from standin import JOB_TOKEN, Cli, GitLabStandIn

from runner_agent.gitlab.bundle import DISPATCH_PACKAGE
from runner_agent.gitlab.state_store import STATE_PACKAGE


def kv_file(identity: str, path: Path, values: dict[str, Any] | None, **extra: Any) -> Any:
    config: dict[str, Any] = {"path": str(path)}
    if values is not None:
        config["values"] = values
    return {"identity": identity, "agent": "kv_file", "config": config, **extra}


def kv_etcd(identity: str, etcd: EtcdPrefix, values: dict[str, str]) -> Any:
    config = {"endpoint": etcd.endpoint, "prefix": etcd.prefix, "values": values}
    return {"identity": identity, "agent": "kv_etcd", "config": config}


def dispatch_and_wait(
    cli: Cli, tmp_path: Path, name: str, tasks: list[Any]
) -> tuple[int, Any, str]:
    """``dispatch --wait -o json``: the exit code, the summary printed, the handle."""
    path = tmp_path / f"{name}.yml"
    path.write_text(yaml.safe_dump(tasks, sort_keys=False))
    code, out, err = cli("dispatch", str(path), "--wait", "--interval", "1", "-o", "json")
    handles = [line for line in err.splitlines() if line.startswith("{")]
    assert handles, err
    return code, json.loads(out), handles[-1]


def outcome(summary: Any) -> list[tuple[str, str, list[str]]]:
    return [(r["identity"], r["status"], r["commands_run"]) for r in summary["reports"]]


def test_dispatch_wait_round_trip_changes_the_endpoints_and_reports_what_happened(
    standin: GitLabStandIn, cli: Cli, etcd: EtcdPrefix, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, so no folder can be made under it")
    web, legacy = out / "web.json", out / "legacy.json"

    # a first dispatch installs two identities; their state lives in GitLab from now on
    code, first, _ = dispatch_and_wait(
        cli,
        tmp_path,
        "first",
        [
            kv_file("acme/web", web, {"port": 8080, "mode": "blue"}, version="1.0"),
            kv_file("acme/legacy", legacy, {"OLD": "1"}),
        ],
    )
    assert code == 0, first
    assert outcome(first) == [
        ("acme/web", "success", ["install", "update"]),
        ("acme/legacy", "success", ["install", "update"]),
    ]
    assert json.loads(legacy.read_text()) == {"OLD": "1"}

    # then the mixed set: a version bump, an uninstall, an outputs_from chain, a custom
    # command after the bump of its identity, and one task that fails
    mixed = [
        kv_file("acme/web", web, {"port": 9090, "mode": "green"}, version="1.1"),
        {**kv_file("acme/legacy", legacy, None), "command": "uninstall"},
        kv_etcd("acme/cache", etcd, {"ttl": "60", "size": "512"}),
        kv_file(
            "acme/app",
            out / "app.json",
            {
                "cache_prefix": "${outputs:acme/cache:prefix}",
                "cache_revision": "${outputs:acme/cache:revision}",
            },
            outputs_from=["acme/cache"],
        ),
        {**kv_file("acme/web", web, None), "command": "backup"},
        kv_file("acme/broken", blocker / "x.json", {"a": 1}),
    ]
    code, summary, handle = dispatch_and_wait(cli, tmp_path, "mixed", mixed)

    assert code == 1  # one task failed
    assert summary["tasks"] == 6 and summary["missing"] == 0
    assert summary["counts"] == {"success": 5, "failed": 1}
    assert sorted(outcome(summary)) == sorted(
        [
            ("acme/web", "success", ["install", "update"]),  # 1.0 -> 1.1: install again
            ("acme/legacy", "success", ["uninstall"]),
            ("acme/cache", "success", ["install", "update"]),
            ("acme/app", "success", ["install", "update"]),
            ("acme/web", "success", ["backup"]),
            ("acme/broken", "failed", ["install"]),
        ]
    )
    by_identity = {(r["identity"], r["commands_run"][-1]): r for r in summary["reports"]}
    (failure,) = summary["failed"]
    assert failure["identity"] == "acme/broken"
    assert failure["error"].endswith(f"{blocker / 'x.json'}: Not a directory")  # said clearly
    broken = by_identity[("acme/broken", "install")]["commands"][0]
    assert broken["failed_tasks"] and broken["hosts"]["localhost"]["failed"] == 1
    assert by_identity[("acme/web", "update")]["version"] == "1.1"

    # the real endpoints changed as the reports say
    assert json.loads(web.read_text()) == {"mode": "green", "port": 9090}
    assert not legacy.exists()
    assert etcd.get() == {"size": "512", "ttl": "60"}
    cache = by_identity[("acme/cache", "update")]["outputs"]
    assert json.loads((out / "app.json").read_text()) == {
        "cache_prefix": etcd.prefix,
        "cache_revision": cache["revision"],
    }
    backup = Path(by_identity[("acme/web", "backup")]["outputs"]["backup_path"])
    assert json.loads(backup.read_text()) == {"mode": "green", "port": 9090}  # after the bump
    assert blocker.read_text().startswith("a file")

    # `reports` returns exactly that, from any process, in one request
    calls = len(standin.calls)
    code, again, _ = cli("reports", handle, "-o", "json")
    assert code == 1 and json.loads(again) == summary
    assert len(standin.calls) == calls + 1
    code, text, _ = cli("reports", handle)
    assert "acme/broken" in text and "failed" in text

    code, status_out, _ = cli("status", handle, "-o", "json")
    status = json.loads(status_out)
    assert code == 0 and status["status"] == "failed" and status["phase"] == "failed"
    assert [c["status"] for c in status["children"]] == ["failed"]

    # state in the registry: the bump recorded, the uninstalled identity no longer installed
    states = {
        ver: json.loads(standin.package(STATE_PACKAGE, ver, "state.json") or b"{}")
        for ver in ("acme+web", "acme+legacy", "acme+broken")
    }
    assert states["acme+web"]["installed_version"] == "1.1"
    assert states["acme+legacy"]["installed"] is False
    assert states["acme+broken"] == {}  # a failed install leaves no state

    # one pipeline per dispatch; the agents spoke with their pipeline's job token only, and
    # state and reports were written by them, never with the operator's token
    assert len(standin.created_pipelines()) == 2
    assert "GITLAB_TOKEN" not in standin.runner_env
    job_calls = standin.job_calls()
    assert {c.route for c in job_calls} == {"package"} and standin.refused_job_tokens == []
    tokens = {c.headers["JOB-TOKEN"] for c in job_calls}
    assert tokens == {run.job_token for run in standin.runs.values()}
    operator = [c for c in standin.calls if "PRIVATE-TOKEN" in c.headers]
    written = {c.path.split("/packages/generic/")[1] for c in operator if c.method == "PUT"}
    allowed = (f"{DISPATCH_PACKAGE}/", "runner-agent-locks/")  # bundle, in-flight marker
    assert written and all(w.startswith(allowed) for w in written)
    assert not [w for w in written if "/report-" in w or w.endswith("/summary.json")]
    _assert_no_token_left(standin)


def _assert_no_token_left(standin: GitLabStandIn) -> None:
    """Neither token in what the runner kept (checkouts, logs, artifacts) or GitLab stored."""
    for path in standin.workdir.rglob("*"):
        if path.is_file() and not path.name.endswith("-variables.yml"):
            data = path.read_bytes()
            assert CANARY_TOKEN.encode() not in data, path
            assert JOB_TOKEN.encode() not in data, path
    for (_, _, name), versions in standin.packages.items():
        for data in versions:
            assert CANARY_TOKEN.encode() not in data and JOB_TOKEN.encode() not in data, name


def test_faults_lose_no_report_and_start_no_second_pipeline(
    standin: GitLabStandIn, cli: Cli, etcd: EtcdPrefix, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    sleeper = {"agent": "probe", "config": {"sleep": 60}}
    tasks = [
        kv_file("acme/a", out / "a.json", {"n": 1}),
        {"identity": "acme/term", **sleeper},
        {"identity": "acme/dead", **sleeper},
        kv_etcd("acme/d", etcd, {"k": "v"}),
    ]
    # the dispatcher's requests: the bundle upload refused, the creation's answer lost after
    # GitLab created the pipeline, polls rate limited, refused and cut
    standin.inject("PUT", "package", "503", caller="private")
    standin.inject("POST", "create_pipeline", "reset!")
    standin.inject("GET", "pipeline", "429", "502", "reset", caller="private")
    # the jobs' requests: bundle and state reads refused and cut, uploads refused, rate
    # limited, and cut after GitLab stored the file
    standin.inject("GET", "package", "500", "reset", caller="job")
    standin.inject("PUT", "package", "503", "429", "reset!", caller="job")
    # two agents die midway: one stopped as a runner stops a job, one with its machine
    term = standin.kill_job_midway("0001.json", signal.SIGTERM)
    dead = standin.kill_job_midway("0002.json", signal.SIGKILL)

    code, summary, handle = dispatch_and_wait(cli, tmp_path, "faults", tasks)

    assert term.done.is_set() and dead.done.is_set()
    assert standin.pending_faults() == []  # every fault was met
    assert len(standin.created_pipelines()) == 1  # no second pipeline
    assert code == 1
    assert summary["tasks"] == 4
    assert sorted(outcome(summary)) == sorted(
        [
            ("acme/a", "success", ["install", "update"]),
            ("acme/term", "error", []),
            ("acme/dead", "error", []),
            ("acme/d", "success", ["install", "update"]),
        ]
    )
    errors = {r["identity"]: r["error"] for r in summary["reports"]}
    assert "interrupted before it finished" in errors["acme/term"]
    assert "no report arrived from its job" in errors["acme/dead"]
    assert json.loads((out / "a.json").read_text()) == {"n": 1}
    assert etcd.get() == {"k": "v"}
    # the killed agents wrote no state: the next dispatch runs them again
    assert standin.package(STATE_PACKAGE, "acme+term", "state.json") is None
    assert standin.package(STATE_PACKAGE, "acme+dead", "state.json") is None
    code, again, _ = cli("reports", handle, "-o", "json")
    assert code == 1 and json.loads(again) == summary


def test_cancel_stops_the_agents_and_reports_say_what_each_task_did(
    standin: GitLabStandIn, cli: Cli, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    tasks = [
        kv_file("acme/quick", out / "quick.json", {"n": 1}),
        {"identity": "acme/slow", "agent": "probe", "config": {"sleep": 120}},
    ]
    path = tmp_path / "tasks.yml"
    path.write_text(yaml.safe_dump(tasks))
    code, handle, err = cli("dispatch", str(path), "-o", "json")
    assert code == 0, err
    dispatch_id = json.loads(handle)["dispatch_id"]
    deadline = time.monotonic() + 120
    while not _uploaded(standin, dispatch_id) and time.monotonic() < deadline:
        time.sleep(0.2)  # until the quick task has reported and the slow one is running
    assert _uploaded(standin, dispatch_id), "the quick task never reported"

    code, canceled, err = cli("cancel", handle.strip(), "-o", "json")
    assert code == 0 and json.loads(canceled)["status"] in ("canceling", "canceled"), err
    code, _, err = cli("wait", handle.strip(), "--interval", "1")
    assert code == 1 and "canceled" in err
    code, text, _ = cli("reports", handle.strip(), "-o", "json")

    summary = json.loads(text)
    assert code == 1 and summary["tasks"] == 2
    assert sorted(outcome(summary)) == [
        ("acme/quick", "success", ["install", "update"]),
        ("acme/slow", "error", []),
    ]
    errors = {r["identity"]: r["error"] for r in summary["reports"]}
    # GitLab revokes a cancelled job's token: the stopped agent's own report (it wrote one)
    # could not be uploaded, so the dispatch names the task as never reported
    assert errors["acme/slow"] == (
        "no report: the pipeline ended canceled before this task's job reported"
    )
    run = standin.runs[json.loads(handle)["pipeline_id"]]
    assert run.job_token in standin.refused_job_tokens
    own = json.loads((run.checkout / ".runner-agent" / "reports" / "0001.json").read_text())
    assert own["status"] == "error" and "interrupted before it finished" in own["error"]
    assert json.loads((out / "quick.json").read_text()) == {"n": 1}
    assert standin.pipelines[json.loads(handle)["pipeline_id"]]["status"] == "canceled"
    assert standin.package(STATE_PACKAGE, "acme+slow", "state.json") is None


def _uploaded(standin: GitLabStandIn, dispatch_id: str) -> bool:
    return any(
        pkg == DISPATCH_PACKAGE and ver == dispatch_id and name.startswith("report-")
        for pkg, ver, name in list(standin.packages)
    )
