"""The runtime beside other runs and broken state: locks, read-only commands, bad documents."""

from __future__ import annotations

import threading
from typing import Any

from runner_agent.model.tasks import tasks_from_data
from runner_agent.report.model import Status
from runner_agent.run.ansible_exec import run_playbook
from runner_agent.run.runtime import RunContext, run_tasks


def probe(**fields: Any) -> dict[str, Any]:
    return {"identity": "edge/probe", "agent": "probe", **fields}


def run(ctx: RunContext, *items: dict[str, Any]) -> list[Any]:
    return run_tasks(tasks_from_data(items, registry=ctx.registry), ctx)


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
