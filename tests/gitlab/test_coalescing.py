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

from fake_gitlab import CANARY_TOKEN, FakeGitLab, served
from gitlab_helpers import RunCli, kv_task, make_tasks, write_tasks

from runner_agent.gitlab.dispatch import Dispatcher, Handle
from runner_agent.gitlab.inflight import FileLedger
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
