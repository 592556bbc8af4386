"""Schedules: cycle as GitLab pipeline schedules (STACKL is tested in tests/stackl)."""

from __future__ import annotations

import json
import re

import pytest
from fake_gitlab import FakeGitLab
from gitlab_helpers import RunCli

from runner_agent.core.errors import InvalidInput
from runner_agent.gitlab.api import GitLabAPI
from runner_agent.gitlab.schedules import create_schedule, frequency_to_cron, validate_cron

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


@pytest.mark.parametrize("every", ["7m", "1m", "5h", "2d", "10", "m", "-1h", "10s"])
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
