"""The whole product in one run: ``runner-agent dispatch --wait`` through the real python-gitlab
client to a GitLab stand-in on 127.0.0.1, which runs the agent project's pipeline (the shipped
template) with gitlab-ci-local; its jobs are the agents, change real files and a real etcd, and
report back through the stand-in's package registry with a job token."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from endpoints import EtcdPrefix
from fake_gitlab import CANARY_TOKEN
from harness import operator_cli, running_standin
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
    cli: Cli, tmp_path: Path, name: str, tasks: list[Any], *flags: str
) -> tuple[int, Any, str]:
    """``dispatch --wait -o json``: the exit code, the summary printed, the handle."""
    path = tmp_path / f"{name}.yml"
    path.write_text(yaml.safe_dump(tasks, sort_keys=False))
    args = ("dispatch", str(path), *flags, "--wait", "--interval", "1", "-o", "json")
    code, out, err = cli(*args)
    handles = [line for line in err.splitlines() if line.startswith("{")]
    assert handles, err
    return code, json.loads(out), handles[-1]


def outcome(summary: Any) -> list[tuple[str, str, list[str]]]:
    return [(r["identity"], r["status"], r["commands_run"]) for r in summary["reports"]]


@dataclass(frozen=True)
class MixedRun:
    """Two dispatches through the stand-in: a first one installs two identities, then a mixed
    set: a version bump, an uninstall, an outputs_from chain, a custom command after the bump
    of its identity, and one task that fails."""

    standin: GitLabStandIn
    cli: Cli
    etcd: EtcdPrefix
    out: Path
    blocker: Path
    first_code: int
    first: Any
    code: int
    summary: Any
    handle: str

    def by_identity(self) -> dict[tuple[str, str], Any]:
        return {(r["identity"], r["commands_run"][-1]): r for r in self.summary["reports"]}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory, etcd_server: str) -> Iterator[MixedRun]:
    tmp_path = tmp_path_factory.mktemp("round-trip")
    etcd = EtcdPrefix(etcd_server)
    out, blocker = tmp_path / "out", tmp_path / "blocker"
    blocker.write_text("a file, so no folder can be made under it")
    web, legacy = out / "web.json", out / "legacy.json"
    with running_standin(tmp_path) as standin, pytest.MonkeyPatch.context() as monkeypatch:
        cli = operator_cli(standin, monkeypatch, tmp_path)
        first_code, first, _ = dispatch_and_wait(
            cli,
            tmp_path,
            "first",
            [
                kv_file("acme/web", web, {"port": 8080, "mode": "blue"}, version="1.0"),
                kv_file("acme/legacy", legacy, {"OLD": "1"}),
            ],
        )
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
        try:
            yield MixedRun(
                standin, cli, etcd, out, blocker, first_code, first, code, summary, handle
            )
        finally:
            etcd.clear()


def test_a_first_dispatch_installs_every_identity(mixed: MixedRun) -> None:
    assert mixed.first_code == 0, mixed.first
    assert outcome(mixed.first) == [
        ("acme/web", "success", ["install", "update"]),
        ("acme/legacy", "success", ["install", "update"]),
    ]


def test_every_task_of_the_mixed_set_reports_what_it_ran(mixed: MixedRun) -> None:
    assert mixed.code == 1  # one task failed
    assert mixed.summary["tasks"] == 6 and mixed.summary["missing"] == 0
    assert mixed.summary["counts"] == {"success": 5, "failed": 1}
    assert sorted(outcome(mixed.summary)) == sorted(
        [
            ("acme/web", "success", ["install", "update"]),  # 1.0 -> 1.1: install again
            ("acme/legacy", "success", ["uninstall"]),
            ("acme/cache", "success", ["install", "update"]),
            ("acme/app", "success", ["install", "update"]),
            ("acme/web", "success", ["backup"]),
            ("acme/broken", "failed", ["install"]),
        ]
    )
    assert mixed.by_identity()[("acme/web", "update")]["version"] == "1.1"


def test_a_failed_task_says_clearly_why(mixed: MixedRun) -> None:
    (failure,) = mixed.summary["failed"]
    assert failure["identity"] == "acme/broken"
    assert failure["error"].endswith(f"{mixed.blocker / 'x.json'}: Not a directory")
    broken = mixed.by_identity()[("acme/broken", "install")]["commands"][0]
    assert broken["failed_tasks"] and broken["hosts"]["localhost"]["failed"] == 1


def test_the_endpoints_changed_as_the_reports_say(mixed: MixedRun) -> None:
    assert json.loads((mixed.out / "web.json").read_text()) == {"mode": "green", "port": 9090}
    assert not (mixed.out / "legacy.json").exists()
    assert mixed.etcd.get() == {"size": "512", "ttl": "60"}
    cache = mixed.by_identity()[("acme/cache", "update")]["outputs"]
    assert json.loads((mixed.out / "app.json").read_text()) == {
        "cache_prefix": mixed.etcd.prefix,
        "cache_revision": cache["revision"],
    }
    backup = Path(mixed.by_identity()[("acme/web", "backup")]["outputs"]["backup_path"])
    assert json.loads(backup.read_text()) == {"mode": "green", "port": 9090}  # after the bump
    assert mixed.blocker.read_text().startswith("a file")


def test_reports_return_the_summary_from_any_process_in_one_request(mixed: MixedRun) -> None:
    calls = len(mixed.standin.calls)
    code, again, _ = mixed.cli("reports", mixed.handle, "-o", "json")
    assert code == 1 and json.loads(again) == mixed.summary
    assert len(mixed.standin.calls) == calls + 1
    code, text, _ = mixed.cli("reports", mixed.handle)
    assert "acme/broken" in text and "failed" in text


def test_status_shows_the_pipeline_and_its_child(mixed: MixedRun) -> None:
    code, status_out, _ = mixed.cli("status", mixed.handle, "-o", "json")
    status = json.loads(status_out)
    assert code == 0 and status["status"] == "failed" and status["phase"] == "failed"
    assert [c["status"] for c in status["children"]] == ["failed"]


def test_state_lives_in_the_package_registry(mixed: MixedRun) -> None:
    states = {
        ver: json.loads(mixed.standin.package(STATE_PACKAGE, ver, "state.json") or b"{}")
        for ver in ("acme+web", "acme+legacy", "acme+broken")
    }
    assert states["acme+web"]["installed_version"] == "1.1"
    assert states["acme+legacy"]["installed"] is False
    assert states["acme+broken"] == {}  # a failed install leaves no state


def test_each_dispatch_starts_one_pipeline(mixed: MixedRun) -> None:
    assert len(mixed.standin.created_pipelines()) == 2


def test_the_agents_speak_only_with_their_pipelines_job_token(mixed: MixedRun) -> None:
    assert "GITLAB_TOKEN" not in mixed.standin.runner_env
    job_calls = mixed.standin.job_calls()
    assert {c.route for c in job_calls} == {"package"} and mixed.standin.refused_job_tokens == []
    tokens = {c.headers["JOB-TOKEN"] for c in job_calls}
    assert tokens == {run.job_token for run in mixed.standin.runs.values()}


def test_the_operator_writes_only_the_bundle_and_the_in_flight_marker(mixed: MixedRun) -> None:
    operator = [c for c in mixed.standin.calls if "PRIVATE-TOKEN" in c.headers]
    written = {c.path.split("/packages/generic/")[1] for c in operator if c.method == "PUT"}
    allowed = (f"{DISPATCH_PACKAGE}/", "runner-agent-locks/")  # bundle, in-flight marker
    assert written and all(w.startswith(allowed) for w in written)
    assert not [w for w in written if "/report-" in w or w.endswith("/summary.json")]


def test_no_token_is_left_where_the_runner_or_gitlab_keeps_things(mixed: MixedRun) -> None:
    """Neither token in what the runner kept (checkouts, logs, artifacts) or GitLab stored."""
    for path in mixed.standin.workdir.rglob("*"):
        if path.is_file() and not path.name.endswith("-variables.yml"):
            data = path.read_bytes()
            assert CANARY_TOKEN.encode() not in data, path
            assert JOB_TOKEN.encode() not in data, path
    for (_, _, name), versions in mixed.standin.packages.items():
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

    # a job per task (the input tasks_per_job): each killed job holds one task only
    code, summary, handle = dispatch_and_wait(
        cli, tmp_path, "faults", tasks, "--tasks-per-job", "1"
    )

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
