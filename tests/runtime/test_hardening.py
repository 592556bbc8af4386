"""Edges found in review: signals, untrusted inventories, reserved names, broken state and
metadata, read-only commands beside a lock, and what JUnit and collect make of them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
import yaml

from runner_agent.cli import main
from runner_agent.core.errors import InvalidInput
from runner_agent.model.tasks import tasks_from_data
from runner_agent.report.model import Status, junit
from runner_agent.run.ansible_exec import run_playbook
from runner_agent.run.runtime import Interrupted, RunContext, run_tasks

FIXTURE_AGENTS = Path(__file__).resolve().parents[1] / "fixtures" / "agents"


def probe(**fields: Any) -> dict[str, Any]:
    return {"identity": "edge/probe", "agent": "probe", **fields}


def run(ctx: RunContext, *items: dict[str, Any]) -> list[Any]:
    return run_tasks(tasks_from_data(items, registry=ctx.registry), ctx)


@pytest.mark.parametrize("signals", [1, 2], ids=["sigterm", "sigterm-then-another"])
def test_sigterm_ends_ansible_and_removes_private_files(tmp_path: Path, signals: int) -> None:
    task = tmp_path / "t.yml"
    sleeper = probe(config={"sleep": 60, "message": "${env:SIG_SECRET}"})
    task.write_text(yaml.safe_dump([sleeper, probe(identity="edge/next")]))
    report = tmp_path / "out" / "report.json"
    # a short folder: mitogen's socket goes into the private dir only when its path fits
    temp = Path(tempfile.mkdtemp(prefix="ra-sig-"))
    env = {**os.environ, "TMPDIR": str(temp), "SIG_SECRET": "sig-canary-4417"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runner_agent",
            "run",
            str(task),
            "--local",
            "--state-dir",
            str(tmp_path / "state"),
            "--agents-path",
            str(FIXTURE_AGENTS),
            "--report",
            str(report),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not any(temp.glob("runner-agent-*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(3)  # Ansible is inside the sleeping task by now
    proc.send_signal(signal.SIGTERM)
    if signals == 2:  # impatient: a second one while the first is being handled
        time.sleep(0.03)
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "sig-canary-4417" not in out + err
    assert list(temp.iterdir()) == []  # private data dir (extravars with the secret) gone
    temp.rmdir()
    marker = str(temp)
    survivors = [
        p
        for p in Path("/proc").glob("[0-9]*/cmdline")
        if marker in p.read_bytes().decode(errors="replace")
    ]
    assert survivors == []
    assert not (tmp_path / "state" / "edge" / "probe.json").exists()
    # the report still says what happened to every task: killed midway loses no report
    text = report.read_text()
    summary = json.loads(text)
    statuses = [(r["identity"], r["status"]) for r in summary["reports"]]
    assert statuses == [("edge/probe", "error"), ("edge/next", "skipped")]
    assert "interrupted before it finished" in summary["reports"][0]["error"]
    assert "sig-canary-4417" not in text


def test_a_stop_between_commands_keeps_what_ran_and_writes_no_state(ctx: RunContext) -> None:
    def runner(spec: Any, **kwargs: Any) -> Any:
        if spec.command == "update":  # install has run: the stop comes during update
            raise KeyboardInterrupt
        return run_playbook(spec, **kwargs)

    ctx.playbook_runner = runner
    with pytest.raises(Interrupted) as stopped:
        run(ctx, probe(), probe(identity="edge/next"))
    first, second = stopped.value.reports
    assert first.status is Status.ERROR and "interrupted before it finished" in first.error
    assert [c.command for c in first.commands] == ["install"]  # it did run, and says so
    assert second.status is Status.SKIPPED
    assert ctx.store.read("edge/probe") is None


def test_a_stop_after_the_state_is_written_leaves_a_true_report(ctx: RunContext) -> None:
    real_lock = ctx.store.lock

    @contextlib.contextmanager
    def lock(identity: str, command: str, wait: bool = False) -> Iterator[None]:
        with real_lock(identity, command, wait=wait):
            yield
        raise KeyboardInterrupt  # the signal lands as the lock is let go

    ctx.store.lock = lock  # type: ignore[method-assign]
    with pytest.raises(Interrupted) as stopped:
        run(ctx, probe())
    (report,) = stopped.value.reports
    state = ctx.store.read("edge/probe")
    assert state is not None and state.installed  # written, so the report says success
    assert report.status is Status.SUCCESS and report.error == ""
    assert [c.command for c in report.commands] == ["install", "update"]


def test_inventory_values_are_data_and_localhost_is_local(ctx: RunContext) -> None:
    template = "{{ lookup('pipe', 'id') }}"
    hosts = {"all": {"hosts": {"localhost": {"note": template}}, "vars": {"other": template}}}
    (report,) = run(ctx, probe(hosts=hosts))
    assert report.status is Status.SUCCESS, report.error
    assert report.outputs["host_note"] == template  # never templated, never run


def test_config_cannot_set_reserved_variables(registry: Any) -> None:
    for key in ("ansible_connection", "runner_agent_no_log", "hostvars"):
        with pytest.raises(InvalidInput) as caught:
            tasks_from_data([probe(config={key: "x"})], registry=registry)
        assert f"config.{key}" in str(caught.value) and "reserved name" in str(caught.value)


def test_read_only_command_runs_beside_a_held_lock(ctx: RunContext) -> None:
    run(ctx, probe())
    held, cycle_ran = threading.Event(), threading.Event()

    def holder() -> None:  # another run of the identity, busy until the cycle has run
        with ctx.store.lock("edge/probe", "update"):
            held.set()
            cycle_ran.wait(120)

    def runner(spec: Any, **kwargs: Any) -> Any:
        result = run_playbook(spec, **kwargs)
        cycle_ran.set()
        return result

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(30)
    (locked,) = run(ctx, probe(command="hello", config={"message": "x"}))
    ctx.playbook_runner = runner
    (cycle,) = run(ctx, probe(command="cycle"))
    thread.join()
    assert locked.status is Status.LOCKED and "locked by update" in locked.error
    assert cycle.status is Status.SUCCESS and cycle.drift
    state = ctx.store.read("edge/probe")
    assert state is not None and state.last_command == "cycle"  # recorded once free


def test_junit_shows_tasks_that_ran_no_command_and_timeouts(ctx: RunContext) -> None:
    failed, skipped = run(
        ctx, probe(config={"fail": True}), probe(command="hello", config={"message": "x"})
    )
    (slow,) = run(ctx, probe(identity="edge/slow", timeout=2, config={"sleep": 60}))
    root = ET.fromstring(junit([failed, skipped, slow]))
    suites = {s.get("name"): s for s in root}
    assert suites["edge/probe"].find("testcase/skipped") is not None
    assert suites["edge/probe"].get("skipped") == "1"
    timeout_suite = suites["edge/slow install"]
    assert timeout_suite.get("errors") == "1"
    assert "timed out" in (timeout_suite.find("testcase/error").get("message") or "")  # type: ignore[union-attr]


def test_broken_agent_metadata_is_invalid_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    role = tmp_path / "agents" / "broken"
    (role / "meta").mkdir(parents=True)
    (role / "tasks").mkdir()
    (role / "tasks" / "update.yml").write_text("[]\n")
    (role / "meta" / "runner_agent.yml").write_text("version: '1'\n")
    (role / "meta" / "argument_specs.yml").write_text("argument_specs:\n  update: just text\n")
    assert main(["agents", "--agents-path", str(tmp_path / "agents")]) == 2
    err = capsys.readouterr().err
    assert "argument_specs.yml" in err and "argument_specs.update must be a mapping" in err


def test_collect_does_not_count_a_summary_in_the_folder_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    report = {"identity": "a/b", "agent": "probe", "status": "success", "commands": []}
    (reports / "0000.json").write_text(json.dumps(report))
    assert main(["collect", str(reports), "--summary", str(reports / "summary.json")]) == 0
    assert main(["collect", str(reports), "--output", "json"]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 2)[-1])["tasks"] == 1
