"""Where a job's per-task reports go: ``run --report-dir`` names them after the task files,
the one job of a small dispatch by position, as the rendered pipeline names its task files
(``0000.json`` on), so both paths leave the same files for GitLab."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner_agent.core.errors import InvalidInput
from runner_agent.model.agents import default_registry
from runner_agent.model.tasks import tasks_from_data
from runner_agent.report.files import numbered_report_paths, task_report_paths


def _task(identity: str) -> dict[str, object]:
    return {"identity": identity, "agent": "kv_file", "config": {"path": "out.json", "values": {}}}


def test_positions_are_the_rendered_task_files_names() -> None:
    assert [p.name for p in numbered_report_paths(3, Path("r"))] == [
        "0000.json",
        "0001.json",
        "0002.json",
    ]
    assert numbered_report_paths(10_001, Path("r"))[-1] == Path("r/10000.json")
    assert numbered_report_paths(0, Path("r")) == ()


@settings(deadline=None, max_examples=50)
@given(st.integers(min_value=1, max_value=30_000))
def test_numbered_names_are_unique_and_sort_in_the_tasks_order(count: int) -> None:
    names = [p.name for p in numbered_report_paths(count, Path("r"))]
    assert len(set(names)) == count and sorted(names) == names


def test_task_files_name_their_reports_and_a_shared_name_is_refused() -> None:
    registry = default_registry()
    one = tasks_from_data([_task("acme/a")], "tasks/0003.json", registry)
    several = tasks_from_data([_task("acme/b"), _task("acme/c")], "web.yml", registry)
    got = task_report_paths([*one, *several], Path("r"))
    assert [p.name for p in got] == ["0003.json", "web-0.json", "web-1.json"]
    twin = tasks_from_data([_task("acme/d")], "other/0003.json", registry)
    with pytest.raises(InvalidInput, match="would both report to"):
        task_report_paths([*one, *twin], Path("r"))
