"""The runtime beside other runs and broken state: locks, read-only commands, bad documents."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from runner_agent.model.tasks import tasks_from_data
from runner_agent.report.model import Status
from runner_agent.run.ansible_exec import run_playbook
from runner_agent.run.runtime import RunContext, run_tasks


def probe(**fields: Any) -> dict[str, Any]:
    return {"identity": "edge/probe", "agent": "probe", **fields}


def run(ctx: RunContext, *items: dict[str, Any]) -> list[Any]:
    return run_tasks(tasks_from_data(items, registry=ctx.registry), ctx)


def test_unreadable_state_is_an_error_report_and_other_tasks_run(
    ctx: RunContext, tmp_path: Path
) -> None:
    broken = tmp_path / "state" / "edge" / "probe.json"
    broken.parent.mkdir(parents=True)
    broken.write_text("{not json")
    bad, good = run(ctx, probe(), probe(identity="edge/other"))
    assert bad.status is Status.ERROR and "unreadable state document" in bad.error
    assert good.status is Status.SUCCESS
    assert broken.read_text() == "{not json"


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
