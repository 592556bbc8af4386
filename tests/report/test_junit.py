"""JUnit from real runs: tasks that ran no command, and timeouts."""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree as ET

from runner_agent.model.tasks import tasks_from_data
from runner_agent.report.model import junit
from runner_agent.run.runtime import RunContext, run_tasks


def probe(**fields: Any) -> dict[str, Any]:
    return {"identity": "edge/probe", "agent": "probe", **fields}


def run(ctx: RunContext, *items: dict[str, Any]) -> list[Any]:
    return run_tasks(tasks_from_data(items, registry=ctx.registry), ctx)


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
