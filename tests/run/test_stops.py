"""A stop (SIGTERM, Ctrl-C) during a run: Ansible ends, private files go, the report stays true."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner_agent.model.tasks import tasks_from_data
from runner_agent.report.model import Status
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
    sleeper = probe(config={"sleep": 60, "message": "${env:RA_SECRET_SIG}"})
    task.write_text(yaml.safe_dump([sleeper, probe(identity="edge/next")]))
    report = tmp_path / "out" / "report.json"
    # a short folder: mitogen's socket goes into the private dir only when its path fits
    temp = Path(tempfile.mkdtemp(prefix="ra-sig-"))
    env = {**os.environ, "TMPDIR": str(temp), "RA_SECRET_SIG": "sig-canary-4417"}
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
    # independent, so it shared the first command's run: it too ran install, and says so
    assert second.status is Status.ERROR and [c.command for c in second.commands] == ["install"]
    assert ctx.store.read("edge/probe") is None and ctx.store.read("edge/next") is None


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
