"""Schedules (cycle as GitLab pipeline schedules) and STACKL (invocations in, results out)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from pathlib import Path

import pytest
from fake_gitlab import FakeGitLab
from gitlab_helpers import RunCli

from runner_agent.core.errors import InvalidInput
from runner_agent.gitlab.api import GitLabAPI
from runner_agent.gitlab.bundle import DISPATCH_PACKAGE, dump
from runner_agent.gitlab.dispatch import Dispatcher
from runner_agent.gitlab.schedules import create_schedule, frequency_to_cron, validate_cron
from runner_agent.model.agents import AgentRegistry
from runner_agent.model.tasks import Task
from runner_agent.report.model import (
    CommandResult,
    FailedTask,
    HostStats,
    Report,
    Status,
    merge_reports,
)
from runner_agent.stackl import (
    handle_invocation,
    identity_for,
    invocation_to_tasks,
    report_to_outputs,
    report_to_result,
)

# --- schedules -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("every", "pattern"),
    [
        ("10m", r"^[0-9]-59/10 \* \* \* \*$"),
        ("30m", r"^[0-9]{1,2}-59/30 \* \* \* \*$"),
        ("1h", r"^[0-9]{1,2} \* \* \* \*$"),
        ("6h", r"^[0-9]{1,2} \*/6 \* \* \*$"),
        ("1d", r"^[0-9]{1,2} [0-9]{1,2} \* \* \*$"),
        ("7d", r"^[0-9]{1,2} [0-9]{1,2} \* \* [0-6]$"),
    ],
)
def test_frequencies_become_valid_spread_cron(every: str, pattern: str) -> None:
    cron = frequency_to_cron(every, "acme/web")
    assert re.match(pattern, cron) and validate_cron(cron) == cron
    assert frequency_to_cron(every, "acme/web") == cron  # stable per identity


@pytest.mark.parametrize("every", ["7m", "1m", "5m", "5h", "2d", "10", "m", "-1h", "10s"])
def test_bad_frequencies_are_invalid_input(every: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        frequency_to_cron(every)
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(
    "cron", ["* * * *", "61 * * * *", "* 24 * * *", "a * * * *", "*/x * * * *"]
)
def test_bad_cron_is_invalid_input(cron: str) -> None:
    with pytest.raises(InvalidInput):
        validate_cron(cron)


def test_schedule_create_sends_inputs_and_is_idempotent(fake: FakeGitLab, api: GitLabAPI) -> None:
    first = create_schedule(api, "acme/web", "*/10 * * * *", ref="main")
    again = create_schedule(api, "acme/web", "*/10 * * * *", ref="main")
    assert again.id == first.id and again.existed and not first.existed
    body = fake.routed("create_schedule")[0].json()
    assert body == {
        "description": "runner-agent cycle acme/web",
        "ref": "main",
        "cron": "*/10 * * * *",
        "cron_timezone": "UTC",
        "active": True,
        "inputs": [
            {"name": "identity", "value": "acme/web"},
            {"name": "command", "value": "cycle"},
        ],
    }
    assert len(fake.routed("create_schedule")) == 1


def test_schedule_with_variables_and_a_task_file(fake: FakeGitLab, api: GitLabAPI) -> None:
    created = create_schedule(
        api, "acme/db", "15 3 * * *", ref="main", task_file="tasks/db.yml", variables=True
    )
    assert "inputs" not in fake.routed("create_schedule")[0].json()
    assert [(v["key"], v["value"]) for v in fake.schedules[created.id]["variables"]] == [
        ("RA_TASK_FILE", "tasks/db.yml"),
        ("RA_COMMAND", "cycle"),
    ]
    with pytest.raises(InvalidInput, match="task-file"):
        create_schedule(api, "acme/db", "* * * * *", ref="main", task_file="../x.yml")


def test_schedule_cli(fake: FakeGitLab, run_cli: RunCli) -> None:
    code, out, _ = run_cli(
        "schedule", "create", "acme/web", "--every", "30m", "-p", "42", "-o", "json"
    )
    created = json.loads(out)
    assert code == 0 and created["ref"] == "refs/heads/main"  # the project's default branch
    fake.schedules[999] = {**fake.schedules[created["id"]], "id": 999, "description": "nightly"}
    code, out, _ = run_cli("schedule", "list", "-p", "42")
    assert code == 0 and "runner-agent cycle acme/web" in out and "nightly" not in out
    code, out, _ = run_cli("schedule", "delete", str(created["id"]), "-p", "42")
    assert code == 0 and "deleted" in out
    code, out, _ = run_cli("schedule", "delete", str(created["id"]), "-p", "42")
    assert code == 0 and "already gone" in out
    code, _, err = run_cli("schedule", "create", "acme/web", "--every", "7m", "-p", "42")
    assert code == 2 and "divide 60" in err
    code, _, _ = run_cli("schedule", "create", "acme/web", "-p", "42")
    assert code == 2


# --- STACKL --------------------------------------------------------------------------------

INVOCATION = {
    "action": "create",
    "stack_instance": "Shop Prod",
    "service": "web",
    "functional_requirement": "config_file",
    "infrastructure_target": "vsphere.brussels.cluster1",
    "tool": "kv_file",
    "hosts": ["localhost"],
    "provisioning_parameters": {"path": "/tmp/ra/shop.json", "values": {"port": 80}},
}


def test_invocations_become_tasks(registry: AgentRegistry) -> None:
    (task,) = invocation_to_tasks(INVOCATION, registry=registry)
    assert task.identity == "shop-prod/web/config_file" and task.command is None
    assert task.config["values"] == {"port": 80} and list(task.hosts) == ["localhost"]
    update = invocation_to_tasks({**INVOCATION, "action": "update"}, registry=registry)
    delete = invocation_to_tasks({**INVOCATION, "action": "delete"}, registry=registry)
    assert (update[0].command, delete[0].command) == ("update", "uninstall")
    mapped = invocation_to_tasks(
        {**INVOCATION, "tool": "ansible"},
        registry=registry,
        agents={"ansible": "kv_file"},
        tags=["brussels"],
    )
    assert mapped[0].agent == "kv_file" and mapped[0].tags == ("brussels",)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"action": "destroy"}, "not create, update or delete"),
        ({"tool": ""}, "tool"),
        ({"tool": "no_such_agent"}, "no_such_agent"),
        ({"service": "!!!"}, "leaves nothing"),
        ({"provisioning_parameters": {"values": {}}}, "path"),
    ],
)
def test_bad_invocations_are_invalid_input(
    change: dict[str, object], words: str, registry: AgentRegistry
) -> None:
    with pytest.raises(InvalidInput, match=words):
        invocation_to_tasks({**INVOCATION, **change}, registry=registry)


def _report(status: Status, outputs: dict[str, object] | None = None) -> Report:
    failed = [] if status is Status.SUCCESS else [FailedTask("localhost", "write", "disk full")]
    command = CommandResult(
        "update", status, hosts={"localhost": HostStats(ok=2)}, failed_tasks=failed
    )
    return Report(
        identity_for(INVOCATION), "kv_file", "1.0.0", status, [command], outputs=outputs or {}
    )


def test_reports_become_automation_results_and_outputs() -> None:
    ok = report_to_result(_report(Status.SUCCESS), INVOCATION)
    assert ok == {
        "service": "web",
        "functional_requirement": "config_file",
        "status": "READY",
        "error_message": "",
        "hosts": ["localhost"],
    }
    bad = report_to_result(_report(Status.FAILED))
    assert bad["status"] == "FAILED" and bad["error_message"] == "localhost: write: disk full"
    assert bad["service"] == "web"  # from the identity when no invocation is given
    outputs = report_to_outputs(_report(Status.SUCCESS, {"url": "http://shop"}), INVOCATION)
    assert outputs == {
        "stack_instance": "Shop Prod",
        "service": "web",
        "infrastructure_target": "vsphere.brussels.cluster1",
        "outputs": {"url": "http://shop"},
    }


def test_handle_invocation_runs_locally_or_through_gitlab(
    fake: FakeGitLab, dispatcher: Dispatcher, registry: AgentRegistry
) -> None:
    def runner(tasks: Sequence[Task]) -> list[Report]:
        return [_report(Status.SUCCESS, {"url": "local"})]

    result, outputs = asyncio.run(handle_invocation(INVOCATION, runner=runner, registry=registry))
    assert result["status"] == "READY" and outputs["outputs"] == {"url": "local"}

    original = fake._do_create_pipeline_post

    def create_and_finish(m: object, call: object) -> object:
        answer = original(m, call)  # type: ignore[arg-type]
        body = json.loads(answer[2])
        fake.set_status(body["id"], "failed")
        summary = merge_reports([_report(Status.FAILED)])
        name = fake.pipelines[body["id"]]["name"]  # the creation answer has no name
        fake.put_package(DISPATCH_PACKAGE, name.split()[1], "summary.json", dump(summary))
        return answer

    fake._do_create_pipeline_post = create_and_finish  # type: ignore[method-assign]
    result, outputs = asyncio.run(
        handle_invocation(INVOCATION, dispatcher=dispatcher, registry=registry, ref="main")
    )
    assert result["status"] == "FAILED" and "disk full" in result["error_message"]
    with pytest.raises(InvalidInput, match="exactly one"):
        asyncio.run(handle_invocation(INVOCATION, registry=registry))


def test_dispatch_from_stackl_cli(fake: FakeGitLab, run_cli: RunCli, tmp_path: Path) -> None:
    path = tmp_path / "invocation.json"
    path.write_text(json.dumps(INVOCATION))
    code, out, _ = run_cli("dispatch", "--from-stackl", str(path), "-p", "42", "--ref", "main")
    assert code == 0 and "dispatched" in out
    assert len(fake.created_pipelines()) == 1
    code, _, err = run_cli("dispatch", str(path), "--from-stackl", str(path), "-p", "42")
    assert code == 2 and "one of them" in err
