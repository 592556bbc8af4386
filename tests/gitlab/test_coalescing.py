"""Identical submits share one pipeline; divergent ones are refused (exit 3) and trigger nothing:
from threads, from processes on one machine (the flock-ed ledger), from other machines (the
marker in the registry)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from fake_gitlab import CANARY_TOKEN, FakeGitLab, served
from gitlab_helpers import Clock, RunCli, kv_task, make_tasks, write_tasks

from runner_agent.core.errors import LockedError
from runner_agent.gitlab.api import GitLabAPI
from runner_agent.gitlab.dispatch import Dispatcher, Handle
from runner_agent.gitlab.inflight import FileLedger, MemoryLedger
from runner_agent.model.agents import AgentRegistry

CLI = "import sys\nfrom runner_agent.cli import main\nsys.exit(main(sys.argv[1:]))\n"


def test_identical_submits_from_threads_share_one_pipeline(
    fake: FakeGitLab, dispatcher: Dispatcher, registry: AgentRegistry
) -> None:
    fake.delay["create_pipeline"] = 0.2  # keep the first submit in flight while others arrive
    handles: list[Handle] = []
    errors: list[BaseException] = []

    def submit() -> None:
        try:
            handles.append(dispatcher.submit(make_tasks(registry), ref="main"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == [] and len(handles) == 8
    assert len(fake.created_pipelines()) == 1 and len(set(handles)) == 1
    assert len(fake.routed("package", "PUT")) == 2  # one bundle, one marker


def test_a_divergent_submit_is_refused_and_triggers_nothing(
    fake: FakeGitLab, dispatcher: Dispatcher, registry: AgentRegistry
) -> None:
    first = dispatcher.submit(make_tasks(registry), ref="main")
    fake.set_status(first.pipeline_id, "running")
    before = len(fake.calls)
    with pytest.raises(LockedError) as caught:
        dispatcher.submit(make_tasks(registry, kv_task(command="uninstall")), ref="main")
    assert caught.value.exit_code == 3 and first.web_url in str(caught.value)
    assert [c.route for c in fake.calls[before:]] == ["pipeline"]  # one status check, no PUT/POST
    assert len(fake.created_pipelines()) == 1
    with pytest.raises(LockedError):  # an overlapping batch is divergent too
        dispatcher.submit(make_tasks(registry, kv_task(), kv_task("acme/db")), ref="main")


def test_a_finished_run_no_longer_blocks_or_coalesces(
    fake: FakeGitLab, dispatcher: Dispatcher, registry: AgentRegistry
) -> None:
    first = dispatcher.submit(make_tasks(registry), ref="main")
    fake.set_status(first.pipeline_id, "success")
    second = dispatcher.submit(make_tasks(registry, kv_task(command="uninstall")), ref="main")
    fake.set_status(second.pipeline_id, "failed")
    third = dispatcher.submit(make_tasks(registry), ref="main")
    assert len({first.pipeline_id, second.pipeline_id, third.pipeline_id}) == 3


def test_other_machines_join_or_are_refused_through_the_registry_marker(
    fake: FakeGitLab, api: GitLabAPI, clock: Clock, registry: AgentRegistry
) -> None:
    machine_a = Dispatcher(api, ledger=MemoryLedger(), clock=clock, sleep=clock.sleep)
    machine_b = Dispatcher(api, ledger=MemoryLedger(), clock=clock, sleep=clock.sleep)
    first = machine_a.submit(make_tasks(registry), ref="main")
    before = len(fake.calls)
    assert machine_b.submit(make_tasks(registry), ref="main") == first
    assert [c.route for c in fake.calls[before:]] == ["package", "pipeline"]  # marker, status
    with pytest.raises(LockedError, match="pipelines/"):
        machine_b.submit(make_tasks(registry, kv_task(command="cycle")), ref="main")
    assert len(fake.created_pipelines()) == 1


def test_divergent_dispatch_cli_exits_3_naming_the_pipeline(
    fake: FakeGitLab, run_cli: RunCli, tmp_path: Path
) -> None:
    update = write_tasks(tmp_path / "update.yml")
    code, out, _ = run_cli("dispatch", str(update), "-p", "42", "--ref", "main", "-o", "json")
    handle = Handle.decode(out)
    assert code == 0
    uninstall = write_tasks(tmp_path / "uninstall.yml", kv_task(command="uninstall"))
    code, out, err = run_cli("dispatch", str(uninstall), "-p", "42", "--ref", "main")
    assert code == 3 and handle.web_url in err and out == ""
    assert len(fake.created_pipelines()) == 1
    code, out, _ = run_cli("dispatch", str(update), "-p", "42", "--ref", "main", "-o", "json")
    assert code == 0 and Handle.decode(out) == handle  # identical: joined


def test_the_file_ledger_survives_damage(tmp_path: Path) -> None:
    ledger = FileLedger(tmp_path / "inflight" / "x.json")
    with ledger.locked() as raw:
        raw["a"] = {"dispatch_id": "a"}
    ledger.path.write_text("{not json")
    with ledger.locked() as raw:
        assert raw == {}


def _dispatch_process(base: str, cache: Path, task_file: Path) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "GITLAB_URL": base,
        "GITLAB_TOKEN": CANARY_TOKEN,
        "XDG_CACHE_HOME": str(cache),
        "RUNNER_AGENT_PROJECT": "42",
    }
    args = [sys.executable, "-c", CLI, "dispatch", str(task_file), "--ref", "main", "-o", "json"]
    return subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_two_processes_on_one_machine_share_one_pipeline(tmp_path: Path) -> None:
    fake = FakeGitLab()
    fake.delay["create_pipeline"] = 1.5  # the first holds the ledger while the second starts
    update = write_tasks(tmp_path / "update.yml")
    uninstall = write_tasks(tmp_path / "uninstall.yml", kv_task(command="uninstall"))
    cache = tmp_path / "cache"
    with served(fake) as base:
        procs = [_dispatch_process(base, cache, update) for _ in range(2)]
        results = [p.communicate(timeout=60) for p in procs]
        divergent = _dispatch_process(base, cache, uninstall).communicate(timeout=60)
    codes = [p.returncode for p in procs]
    assert codes == [0, 0], results
    handles = {Handle.decode(out) for out, _ in results}
    assert len(handles) == 1 and len(fake.created_pipelines()) == 1
    assert "a different run is in flight" in divergent[1]
    assert len(fake.created_pipelines()) == 1
    ledger = next((cache / "runner-agent" / "inflight").glob("*.json"))
    assert [e["pipeline_id"] for e in json.loads(ledger.read_text()).values()] == [
        handles.pop().pipeline_id
    ]
    for out, err in [*results, divergent]:
        assert CANARY_TOKEN not in out + err
