"""Running one playbook: what reaches Ansible is data, never templated or run."""

from __future__ import annotations

from typing import Any

from runner_agent.model.tasks import tasks_from_data
from runner_agent.report.model import Status
from runner_agent.run.runtime import RunContext, run_tasks


def probe(**fields: Any) -> dict[str, Any]:
    return {"identity": "edge/probe", "agent": "probe", **fields}


def run(ctx: RunContext, *items: dict[str, Any]) -> list[Any]:
    return run_tasks(tasks_from_data(items, registry=ctx.registry), ctx)


def test_inventory_values_are_data_and_localhost_is_local(ctx: RunContext) -> None:
    template = "{{ lookup('pipe', 'id') }}"
    hosts = {"all": {"hosts": {"localhost": {"note": template}}, "vars": {"other": template}}}
    (report,) = run(ctx, probe(hosts=hosts))
    assert report.status is Status.SUCCESS, report.error
    assert report.outputs["host_note"] == template  # never templated, never run
