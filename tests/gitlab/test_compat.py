"""The version matrix and the token policy (runner_agent.gitlab.compat), against a fake GitLab
that answers as each version does: GET /version, ``inputs`` dropped where a route does not take
them yet, a job token refused where doc/ci/jobs/ci_job_token.md does not allow it."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_gitlab import CANARY_TOKEN, FakeGitLab
from gitlab_helpers import JOB_ENV, RunCli, kv_task, make_tasks, write_tasks

from runner_agent.core.errors import GitLabError
from runner_agent.gitlab.api import connect
from runner_agent.gitlab.dispatch import Dispatcher, Handle, TriggerMode
from runner_agent.gitlab.inflight import MemoryLedger
from runner_agent.model.agents import AgentRegistry


def _job_token_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITLAB_TOKEN", raising=False)
    monkeypatch.delenv("GITLAB_URL", raising=False)
    for key, value in JOB_ENV.items():
        monkeypatch.setenv(key, value)


def test_dispatch_with_only_a_job_token_stops_before_any_request(
    fake: FakeGitLab, run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _job_token_only(monkeypatch)
    code, _, err = run_cli("dispatch", str(write_tasks(tmp_path / "t.yml")), "-p", "42")
    assert code == 2 and fake.calls == []
    assert "CI_JOB_TOKEN" in err and "project access token" in err and "GITLAB_TOKEN" in err


@pytest.mark.parametrize("command", ["status", "wait", "reports", "cancel"])
def test_following_a_dispatch_with_only_a_job_token_stops_before_any_request(
    fake: FakeGitLab, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    _job_token_only(monkeypatch)
    handle = Handle("http://localhost", "42", 7, "20250101t000000-abc-def", "main")
    code, _, err = run_cli(command, handle.encode())
    assert code == 2 and fake.calls == [] and "access token" in err


def test_a_gitlab_older_than_the_oldest_supported_is_refused_naming_both_versions(
    fake: FakeGitLab, run_cli: RunCli, tmp_path: Path
) -> None:
    fake.version = "16.10.3-ee"
    code, _, err = run_cli("dispatch", str(write_tasks(tmp_path / "t.yml")), "-p", "42")
    assert code == 4 and "16.10.3-ee" in err and "16.11" in err
    assert [c.route for c in fake.calls] == ["version"]


@pytest.mark.parametrize(
    ("version", "trigger", "sent"),
    [
        ("16.11.0", False, "variables"),
        ("17.9.8", False, "variables"),
        ("17.10.0", False, "inputs"),
        ("17.10.0", True, "variables"),  # the trigger API takes inputs from 17.11
        ("17.11.0", True, "inputs"),
        ("18.6.0", False, "inputs"),
    ],
)
def test_the_ids_go_as_inputs_only_where_the_version_takes_them(
    fake: FakeGitLab,
    dispatcher: Dispatcher,
    registry: AgentRegistry,
    version: str,
    trigger: bool,
    sent: str,
) -> None:
    fake.version = version
    if trigger:
        dispatcher.trigger_token = fake.trigger_token
    dispatcher.submit(make_tasks(registry), ref="main")
    route = "trigger_pipeline" if trigger else "create_pipeline"
    (call,) = fake.routed(route)
    assert call.accepted is not None and sent in call.accepted  # what GitLab read
    assert fake.created_pipelines()[0]["name"].startswith("runner-agent 2")


def test_inputs_asked_of_a_gitlab_without_them_are_refused_not_dropped(
    fake: FakeGitLab, dispatcher: Dispatcher, registry: AgentRegistry
) -> None:
    fake.version = "17.9.0"
    dispatcher.mode = TriggerMode.INPUTS
    with pytest.raises(GitLabError, match=r"17\.10.*17\.9\.0"):
        dispatcher.submit(make_tasks(registry), ref="main")
    assert fake.created_pipelines() == []


def test_the_version_is_read_once_per_process(
    fake: FakeGitLab, dispatcher: Dispatcher, registry: AgentRegistry
) -> None:
    dispatcher.submit(make_tasks(registry), ref="main")
    again = Dispatcher(api=dispatcher.api, ledger=MemoryLedger(), sleep=dispatcher.sleep)
    again.submit(make_tasks(registry, kv_task("acme/db")), ref="main")
    assert len(fake.routed("version")) == 1 and len(fake.created_pipelines()) == 2


def test_a_dispatcher_cannot_be_built_on_a_job_token(fake: FakeGitLab) -> None:
    api = connect({**JOB_ENV, "CI_JOB_TOKEN": CANARY_TOKEN}, project="42")
    with pytest.raises(Exception, match="access token"):
        Dispatcher(api=api, ledger=MemoryLedger())
    assert fake.calls == []


@pytest.mark.parametrize(("version", "inputs"), [("17.10.1", False), ("17.11.0", True)])
def test_a_schedule_gets_inputs_only_where_the_version_takes_them(
    fake: FakeGitLab, run_cli: RunCli, version: str, inputs: bool
) -> None:
    fake.version = version
    code, _, err = run_cli("schedule", "create", "acme/web", "--every", "30m", "-p", "42")
    assert code == 0, err
    (schedule,) = fake.schedules.values()
    assert bool(schedule["inputs"]) == inputs
    assert bool(schedule["variables"]) == (not inputs)


@pytest.mark.parametrize("args", [("create", "acme/web", "--every", "30m"), ("list",)])
def test_schedules_with_only_a_job_token_stop_before_any_request(
    fake: FakeGitLab, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    _job_token_only(monkeypatch)
    code, _, err = run_cli("schedule", *args, "-p", "42")
    assert code == 2 and fake.calls == [] and "access token" in err


@pytest.mark.parametrize(("version", "refused"), [("17.11.0", True), ("18.6.0", True)])
def test_a_trigger_token_where_no_one_may_use_variables_fails_clearly(
    fake: FakeGitLab,
    run_cli: RunCli,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    version: str,
    refused: bool,
) -> None:
    fake.version, fake.pipeline_variables_role = version, "no_one_allowed"
    monkeypatch.setenv("RA_TRIGGER", fake.trigger_token)
    tasks = str(write_tasks(tmp_path / "t.yml"))
    code, _, err = run_cli("dispatch", tasks, "-p", "42", "--trigger-token-env", "RA_TRIGGER")
    if refused:
        assert code == 4 and "TRIGGER_PAYLOAD" in err and "without --trigger-token-env" in err
        assert fake.trigger_token not in err
    else:
        assert code == 0, err


def test_variables_where_no_one_may_use_them_fail_clearly(
    fake: FakeGitLab, run_cli: RunCli, tmp_path: Path
) -> None:
    fake.pipeline_variables_role = "no_one_allowed"
    tasks = str(write_tasks(tmp_path / "t.yml"))
    code, _, err = run_cli("dispatch", tasks, "-p", "42", "--variables")
    assert code == 4 and "without --variables" in err and "Developer" in err


def test_a_failed_name_check_after_creation_does_not_fail_the_submit(
    fake: FakeGitLab, dispatcher: Dispatcher, registry: AgentRegistry, warnings: list[str]
) -> None:
    fake.inject("GET", "pipeline", "403")  # not retried
    handle = dispatcher.submit(make_tasks(registry), ref="main")
    assert handle.pipeline_id == fake.created_pipelines()[0]["id"]
    assert any("could not read the new pipeline's name" in w for w in warnings)
