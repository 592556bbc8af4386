"""dispatch --check and a dispatched rollback: what the bundle's tasks tell each job's `run`."""

from __future__ import annotations

import json
from pathlib import Path

from fake_gitlab import FakeGitLab
from gitlab_helpers import RunCli, kv_task, write_tasks

from runner_agent.gitlab.bundle import DISPATCH_PACKAGE, parse_bundle
from runner_agent.gitlab.state_store import STATE_FILE, STATE_PACKAGE, state_version
from runner_agent.model.agents import AgentRegistry
from runner_agent.model.revisions import add_revision
from runner_agent.model.state import State


def test_dispatch_check_sends_dry_run_tasks(
    fake: FakeGitLab, run_cli: RunCli, registry: AgentRegistry, tmp_path: Path
) -> None:
    tasks = write_tasks(tmp_path / "t.yml", kv_task())
    code, out, err = run_cli(
        "dispatch", str(tasks), "-p", "42", "--ref", "main", "--check", "-o", "json"
    )
    assert code == 0, err
    handle = json.loads(out)
    data = fake.package(DISPATCH_PACKAGE, handle["dispatch_id"], "bundle.json")
    assert data is not None
    checksum = fake.routed("create_pipeline")[0].json()["inputs"]["checksum"]
    (task,) = parse_bundle(data, handle["dispatch_id"], checksum, registry)
    assert task.check


def test_a_dry_run_in_flight_is_not_joined_by_the_real_run(
    fake: FakeGitLab, run_cli: RunCli, tmp_path: Path
) -> None:
    tasks = write_tasks(tmp_path / "t.yml", kv_task())
    code, _, _ = run_cli("dispatch", str(tasks), "-p", "42", "--ref", "main", "--check")
    assert code == 0
    code, _, err = run_cli("dispatch", str(tasks), "-p", "42", "--ref", "main")
    assert code == 3, err  # a different run on the identity: refused, never mistaken for it
    assert len(fake.created_pipelines()) == 1


def test_rollback_outside_a_job_is_dispatched_as_one_task(
    fake: FakeGitLab, run_cli: RunCli, registry: AgentRegistry, tmp_path: Path
) -> None:
    state = State("acme/web")
    add_revision(state, {"task": kv_task(), "hosts": {}, "after": {}, "command": "install"})
    add_revision(state, {"task": kv_task(), "hosts": {}, "after": {}, "command": "update"})
    document = json.dumps(state.to_dict()).encode()
    fake.put_package(STATE_PACKAGE, state_version("acme/web"), STATE_FILE, document)

    code, out, err = run_cli("rollback", "acme/web", "-p", "42", "--ref", "main", "-o", "json")

    assert code == 0, err
    handle = json.loads(out)
    data = fake.package(DISPATCH_PACKAGE, handle["dispatch_id"], "bundle.json")
    assert data is not None
    checksum = fake.routed("create_pipeline")[0].json()["inputs"]["checksum"]
    (task,) = parse_bundle(data, handle["dispatch_id"], checksum, registry)
    assert task.rollback == {"to": "previous", "force": False}
    assert task.identity == "acme/web" and not task.check


def test_a_bad_revision_is_refused_before_anything_is_sent(
    fake: FakeGitLab, run_cli: RunCli
) -> None:
    state = State("acme/web")
    add_revision(state, {"task": kv_task(), "hosts": {}, "after": {}})
    document = json.dumps(state.to_dict()).encode()
    fake.put_package(STATE_PACKAGE, state_version("acme/web"), STATE_FILE, document)
    code, _, err = run_cli("rollback", "acme/web", "-p", "42", "--to", "latest")
    assert code == 2, err
    assert not fake.created_pipelines()
