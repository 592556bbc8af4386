"""The agent job's lifecycle with the real ansible-runner and a test agent built from
Ansible's own modules (fast, no endpoint needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner_agent.model.tasks import tasks_from_data
from runner_agent.report.model import Status
from runner_agent.run.runtime import RunContext, run_tasks


def task(**fields: Any) -> dict[str, Any]:
    return {"identity": "test/probe", "agent": "probe", "version": "1", **fields}


def run(ctx: RunContext, *items: dict[str, Any]) -> list[Any]:
    return run_tasks(tasks_from_data(items, registry=ctx.registry), ctx)


def state_bytes(tmp_path: Path, identity: str = "test/probe") -> bytes | None:
    path = tmp_path / "state" / f"{identity}.json"
    return path.read_bytes() if path.exists() else None


def test_digest_installs_then_updates_then_reinstalls_on_version_bump(
    ctx: RunContext, tmp_path: Path
) -> None:
    (first,) = run(ctx, task(config={"message": "one"}))
    assert [c.command for c in first.commands] == ["install", "update"]
    assert first.status is Status.SUCCESS
    assert first.outputs["installed_by"] == "test/probe"
    state = ctx.store.read("test/probe")
    assert state and state.installed and state.installed_version == "1"

    (second,) = run(ctx, task(config={"message": "two"}))
    assert [c.command for c in second.commands] == ["update"]
    assert ctx.store.read("test/probe").outputs["message"] == "two"  # type: ignore[union-attr]

    (third,) = run(ctx, task(version="2"))
    assert [c.command for c in third.commands] == ["install", "update"]
    after = ctx.store.read("test/probe")
    assert after and after.installed_version == "2"
    assert [h["commands"] for h in after.history] == [
        ["install", "update"],
        ["update"],
        ["install", "update"],
    ]


def test_uninstall_custom_command_and_cycle_drift(ctx: RunContext) -> None:
    reports = run(
        ctx,
        task(),
        task(command="hello", config={"message": "world"}),
        task(command="cycle"),
        task(command="uninstall"),
    )
    assert [r.status for r in reports] == [Status.SUCCESS] * 4
    assert reports[1].outputs == {"greeting": "hello world"}
    assert reports[2].drift == {"localhost": [{"key": "message", "change": "changed"}]}
    state = ctx.store.read("test/probe")
    assert state is not None
    assert not state.installed and state.installed_version is None and state.outputs == {}
    assert state.last_command == "uninstall"


def test_outputs_from_feeds_another_identity(ctx: RunContext) -> None:
    producer = task(identity="test/db", config={"message": "db.internal", "count": 5})
    consumer = task(
        identity="test/web",
        outputs_from=["test/db"],
        config={"message": "host=${outputs:test/db:message}", "count": "${outputs:test/db:count}"},
    )
    reads: list[str] = []
    real_read = ctx.store.read

    def read(identity: str) -> Any:
        reads.append(identity)
        return real_read(identity)

    ctx.store.read = read  # type: ignore[method-assign]
    reports = run(ctx, producer, consumer)
    assert [r.status for r in reports] == [Status.SUCCESS, Status.SUCCESS]
    assert reports[1].outputs["message"] == "host=db.internal"
    assert reports[1].outputs["count"] == 5
    # the consumer read test/db's state once for its two keys (each a request in a job)
    # the check before anything runs, the producer's own digest, the consumer's lookup
    assert reads.count("test/db") == 1 + 1 + 1


def test_missing_output_is_an_error_and_state_stays(ctx: RunContext, tmp_path: Path) -> None:
    (report,) = run(
        ctx, task(outputs_from=["test/none"], config={"message": "${outputs:test/none:x}"})
    )
    assert report.status is Status.ERROR
    assert "has no output 'x'" in report.error
    assert state_bytes(tmp_path) is None


def test_failing_task_reports_and_leaves_state(ctx: RunContext, tmp_path: Path) -> None:
    run(ctx, task())
    before = state_bytes(tmp_path)
    (report,) = run(
        ctx,
        task(config={"fail": True, "message": "boom"}),
        task(command="hello", config={"message": "x"}),
    )[:1]
    assert report.status is Status.FAILED
    (failure,) = report.commands[-1].failed_tasks
    assert failure.host == "localhost" and "probe failed with boom" in failure.message
    assert report.commands[-1].hosts["localhost"].failed == 1
    assert state_bytes(tmp_path) == before


def test_task_after_failure_of_its_identity_is_skipped(ctx: RunContext) -> None:
    reports = run(ctx, task(config={"fail": True}), task(command="hello", config={"message": "x"}))
    assert [r.status for r in reports] == [Status.FAILED, Status.SKIPPED]
    assert "test/probe failed earlier" in reports[1].error


def test_timeout_reports_error_and_leaves_state(ctx: RunContext, tmp_path: Path) -> None:
    (report,) = run(ctx, task(timeout=3, config={"sleep": 60}))
    assert report.status is Status.ERROR and report.timed_out
    assert "timed out" in report.error
    assert report.duration < 30
    assert state_bytes(tmp_path) is None


def test_unreachable_host_is_a_failure(ctx: RunContext, tmp_path: Path) -> None:
    hosts = {
        "all": {
            "hosts": {
                "ghost": {
                    "ansible_host": "127.0.0.1",
                    "ansible_port": 1,
                    "ansible_connection": "ssh",
                    "ansible_ssh_common_args": "-o BatchMode=yes",
                }
            }
        }
    }
    (report,) = run(ctx, task(hosts=hosts, config={"ping": True}))
    assert report.status is Status.FAILED
    assert report.commands[0].hosts["ghost"].unreachable == 1
    assert report.commands[0].failed_tasks[0].unreachable
    assert state_bytes(tmp_path) is None


def test_private_data_dir_is_removed(ctx: RunContext, private_tmp: Path) -> None:
    run(ctx, task(config={"fail": True}))
    assert list(private_tmp.iterdir()) == []


def test_secret_never_reaches_report_state_or_output(ctx: RunContext, tmp_path: Path) -> None:
    secret = "canary-Zq9-s3cr3t"
    ok, failed = run(
        ctx,
        task(identity="test/ok", config={"message": "${env:RA_SECRET_CANARY}"}),
        task(identity="test/bad", config={"message": "x-${env:RA_SECRET_CANARY}-y", "fail": True}),
    )
    assert ok.status is Status.SUCCESS and failed.status is Status.FAILED
    assert ok.outputs["message"] == "********"
    for report in (ok, failed):
        path = tmp_path / "out" / f"{report.identity.replace('/', '_')}.json"
        json_path, junit_path = report.write(path)
        assert secret not in json_path.read_text() + junit_path.read_text()
        assert secret not in json.dumps(report.to_dict(results=True))
    assert "********" in failed.commands[-1].failed_tasks[0].message
    assert secret not in (tmp_path / "state" / "test" / "ok.json").read_text()
    printed = "\n".join(ctx.lines)  # type: ignore[attr-defined]
    assert printed and secret not in printed
