"""submit: validated locally first, then the requests it sends, and exactly one pipeline per
dispatch whatever fails along the way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_gitlab import FakeGitLab
from gitlab_helpers import CANARY_SECRET, Clock, RunCli, kv_task, make_tasks, write_tasks

from runner_agent.core.errors import GitLabError, InvalidInput
from runner_agent.gitlab.api import GitLabAPI
from runner_agent.gitlab.bundle import DISPATCH_PACKAGE, parse_bundle
from runner_agent.gitlab.dispatch import Dispatcher, Handle, TriggerMode, load_handle
from runner_agent.gitlab.inflight import LOCK_PACKAGE, MemoryLedger, lock_key
from runner_agent.model.agents import AgentRegistry
from runner_agent.model.tasks import tasks_from_data


def test_submit_sends_six_requests_and_only_ids(
    fake: FakeGitLab, dispatcher: Dispatcher, registry: AgentRegistry
) -> None:
    handle = dispatcher.submit(make_tasks(registry), ref="main")
    assert [(c.method, c.route) for c in fake.calls] == [
        ("GET", "version"),  # once per process: inputs or variables, supported at all
        ("GET", "package"),  # the identity set's marker: is a run in flight elsewhere?
        ("PUT", "package"),  # the bundle
        ("POST", "create_pipeline"),
        ("GET", "pipeline"),  # its name: the creation answer has none
        ("PUT", "package"),  # the marker, for other machines
    ]
    lock = lock_key(["acme/web"])
    assert fake.calls[1].path.endswith(f"/{LOCK_PACKAGE}/{lock}/inflight.json")
    assert fake.calls[2].path == (
        f"/projects/42/packages/generic/{DISPATCH_PACKAGE}/{handle.dispatch_id}/bundle.json"
    )
    body = fake.calls[3].json()
    assert body["ref"] == "main" and set(body) == {"ref", "inputs"}
    assert body["inputs"]["dispatch_id"] == handle.dispatch_id
    assert (
        body["inputs"]["checksum"].startswith("sha256:") and len(body["inputs"]["checksum"]) == 71
    )
    pipeline = fake.created_pipelines()[0]
    assert pipeline["name"] == f"runner-agent {handle.dispatch_id}"
    assert handle == Handle(
        "http://localhost", "42", pipeline["id"], handle.dispatch_id, "main", pipeline["web_url"]
    )
    assert load_handle(handle.encode()) == handle


def test_the_bundle_verifies_and_keeps_secrets_as_placeholders(
    fake: FakeGitLab,
    dispatcher: Dispatcher,
    registry: AgentRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RA_SECRET_DB_PASSWORD", CANARY_SECRET)
    handle = dispatcher.submit(make_tasks(registry), ref="main")
    data = fake.package(DISPATCH_PACKAGE, handle.dispatch_id, "bundle.json")
    assert data is not None and CANARY_SECRET.encode() not in data
    checksum = fake.routed("create_pipeline")[0].json()["inputs"]["checksum"]
    tasks = parse_bundle(data, handle.dispatch_id, checksum, registry)
    assert tasks[0].config["values"]["password"] == "${env:RA_SECRET_DB_PASSWORD}"
    assert json.loads(data)["apiVersion"] == "runner-agent/v1"


def test_variables_mode_and_trigger_token(
    fake: FakeGitLab, api: object, clock: Clock, registry: AgentRegistry
) -> None:

    assert isinstance(api, GitLabAPI)
    d = Dispatcher(
        api, ledger=MemoryLedger(), mode=TriggerMode.VARIABLES, clock=clock, sleep=clock.sleep
    )
    handle = d.submit(make_tasks(registry), ref="main")
    variables = fake.routed("create_pipeline")[0].json()["variables"]
    # one task fits in one job: the job's lock comes too (no tag: the YAML's RA_JOB_TAG)
    keys = ["RA_DISPATCH_ID", "RA_CHECKSUM", "RA_ONE_JOB", "RA_JOB_LOCK"]
    assert [v["key"] for v in variables] == keys
    assert variables[0]["value"] == handle.dispatch_id
    t = Dispatcher(api, ledger=MemoryLedger(), trigger_token=fake.trigger_token, clock=clock)
    t.submit(make_tasks(registry, kv_task("acme/other")), ref="main")
    trig = fake.routed("trigger_pipeline")[0].json()
    assert trig["token"] == fake.trigger_token and set(trig["inputs"]) == {
        "dispatch_id",
        "checksum",
        "one_job",
        "job_lock",
        "job_timeout",
    }


def test_the_default_ref_is_the_projects_default_branch(
    fake: FakeGitLab, dispatcher: Dispatcher, registry: AgentRegistry
) -> None:
    handle = dispatcher.submit(make_tasks(registry))
    assert fake.calls[1].route == "project" and handle.ref == "main"


def test_invalid_input_sends_nothing(fake: FakeGitLab, dispatcher: Dispatcher) -> None:
    two_agents = [kv_task(), {**kv_task(), "agent": "kv_etcd", "config": {}}]
    with pytest.raises(InvalidInput, match="no task"):
        dispatcher.submit([])
    with pytest.raises(InvalidInput, match="identity 'acme/web' uses agent"):
        dispatcher.submit(tasks_from_data(two_agents, "<t>", None))
    assert fake.calls == []


def test_dispatch_cli_refuses_bad_files_before_any_request(
    fake: FakeGitLab, run_cli: RunCli, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("identity: Acme/../web\nagent: kv_file\n")
    code, _, err = run_cli("dispatch", str(bad), "-p", "42", "--ref", "main")
    assert code == 2 and "identity" in err and fake.calls == []
    unknown = write_tasks(tmp_path / "u.yml", {**kv_task(), "agent": "nope"})
    code, _, err = run_cli("dispatch", str(unknown), "-p", "42")
    assert code == 2 and "nope" in err and fake.calls == []


STEPS = [("GET", "package"), ("PUT", "package"), ("POST", "create_pipeline")]
FAULTS = ["429", "500", "502", "503", "reset", "timeout!", "connect-timeout"]
AFTER_SENDING = ["500!", "502!", "503!", "reset!", "timeout!"]


@pytest.mark.parametrize(
    ("method", "route", "faults"),
    [(m, r, (f,)) for m, r in STEPS for f in FAULTS]
    + [("POST", "create_pipeline", (f,)) for f in AFTER_SENDING]
    + [
        ("POST", "create_pipeline", ("500!", "503")),  # answer lost, then the lookup is refused
        ("POST", "create_pipeline", ("502", "reset")),  # refused twice: posted a third time
        ("PUT", "package", ("500!", "reset!", "429")),
    ],
)
def test_exactly_one_pipeline_whatever_fails(
    method: str,
    route: str,
    faults: tuple[str, ...],
    fake: FakeGitLab,
    dispatcher: Dispatcher,
    registry: AgentRegistry,
) -> None:
    fake.inject(method, route, *faults)
    if faults == ("500!", "503"):
        fake.inject("GET", "pipelines", "503")
    handle = dispatcher.submit(make_tasks(registry), ref="main")
    created = fake.created_pipelines()
    assert len(created) == 1, [c.route for c in fake.calls]
    assert handle.pipeline_id == created[0]["id"]
    assert fake.package(DISPATCH_PACKAGE, handle.dispatch_id, "bundle.json") is not None
    assert fake.package(LOCK_PACKAGE, lock_key(["acme/web"]), "inflight.json") is not None


def test_a_lost_answer_is_looked_up_after_gitlab_had_time_to_settle(
    fake: FakeGitLab, dispatcher: Dispatcher, registry: AgentRegistry, clock: Clock
) -> None:
    fake.inject("POST", "create_pipeline", "timeout!")
    handle = dispatcher.submit(make_tasks(registry), ref="main")
    lookups = fake.routed("pipelines")
    assert len(lookups) == 1 and lookups[0].query["name"] == [f"runner-agent {handle.dispatch_id}"]
    assert sum(clock.sleeps) >= dispatcher.settle  # settle, then the lookup found it
    assert len(fake.routed("create_pipeline")) == 1


def test_when_the_lookup_cannot_be_trusted_nothing_is_posted_again(
    fake: FakeGitLab, dispatcher: Dispatcher, registry: AgentRegistry
) -> None:
    fake.inject("POST", "create_pipeline", "500!")
    fake.inject("GET", "pipelines", *["503"] * 20)
    with pytest.raises(GitLabError, match="may or may not exist"):
        dispatcher.submit(make_tasks(registry), ref="main")
    assert len(fake.routed("create_pipeline")) == 1 and len(fake.created_pipelines()) == 1


def test_a_project_without_workflow_name_is_warned_about(
    fake: FakeGitLab, dispatcher: Dispatcher, registry: AgentRegistry, warnings: list[str]
) -> None:
    fake.name_pipelines = False
    dispatcher.submit(make_tasks(registry), ref="main")
    assert any("workflow:name" in w for w in warnings)


def test_a_gitlab_error_after_retries_is_exit_4(
    fake: FakeGitLab, dispatcher: Dispatcher, registry: AgentRegistry
) -> None:
    fake.inject("PUT", "package", *["503"] * 7)
    with pytest.raises(GitLabError) as caught:
        dispatcher.submit(make_tasks(registry), ref="main")
    assert caught.value.exit_code == 4 and fake.created_pipelines() == []
