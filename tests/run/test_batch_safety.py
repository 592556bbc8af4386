"""Change safety (issue 14) in the batch runtime: dry runs and real runs of several tasks share
one ansible-playbook run, and each task's diff, state and revision stay its own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from runner_agent.model.tasks import tasks_from_data
from runner_agent.report.model import Report, Status
from runner_agent.run.plays import PlaybookSpec, playbook_text
from runner_agent.run.runtime import RunContext, run_tasks


def file_task(identity: str, path: Path, values: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "identity": identity,
        "agent": "kv_file",
        "config": {"path": str(path), "format": "json", "values": values},
        **extra,
    }


def run(ctx: RunContext, *items: dict[str, Any]) -> list[Report]:
    return run_tasks(tasks_from_data(items, registry=ctx.registry), ctx)


def ansible_runs(ctx: RunContext) -> int:
    lines: list[str] = ctx.lines  # type: ignore[attr-defined]
    return sum("PLAY RECAP" in line for line in lines)


def shared_runs(ctx: RunContext, *reports: Report) -> bool:
    """Each command of the tasks ran in one run with the same command of the others (a new
    identity's install, then update: two runs for any number of tasks)."""
    commands = {tuple(c.command for c in r.commands) for r in reports}
    return commands == {("install", "update")} and ansible_runs(ctx) == 2


def test_a_dry_run_beside_a_real_run_writes_only_the_real_ones(
    ctx: RunContext, tmp_path: Path
) -> None:
    dry_path, real_path = tmp_path / "dry.json", tmp_path / "real.json"
    dry_path.write_text('{"port": 80}')
    dry, real = run(
        ctx,
        file_task("acme/dry", dry_path, {"port": 81}, check=True),
        file_task("acme/real", real_path, {"port": 82}),
    )
    assert shared_runs(ctx, dry, real)
    assert dry.status is Status.SUCCESS and dry.check and dry.revision is None
    assert dry_path.read_text() == '{"port": 80}'
    assert ctx.store.read("acme/dry") is None
    assert real.status is Status.SUCCESS and not real.check and real.revision == 1
    assert json.loads(real_path.read_text()) == {"port": 82}
    state = ctx.store.read("acme/real")
    assert state is not None and [r["number"] for r in state.revisions] == [1]


def test_changes_of_tasks_sharing_a_run_name_the_real_host_and_only_their_own_keys(
    ctx: RunContext, tmp_path: Path
) -> None:
    first, second = run(
        ctx,
        file_task("acme/a", tmp_path / "a.json", {"alpha": 1}, check=True),
        file_task("acme/b", tmp_path / "b.json", {"beta": 2}, check=True),
    )
    assert shared_runs(ctx, first, second)
    assert first.key_changes == {"localhost": [{"key": "alpha", "change": "added", "after": 1}]}
    assert second.key_changes == {"localhost": [{"key": "beta", "change": "added", "after": 2}]}


def test_a_dry_run_play_is_in_check_mode_and_never_prints_a_diff() -> None:
    spec = PlaybookSpec(
        agent="kv_file",
        roles_path="roles",
        command="update",
        extravars={},
        inventory={},
        timeout=60,
        check=True,
    )
    (play,) = yaml.safe_load(playbook_text([spec]))
    assert play["check_mode"] is True
    assert "diff" not in play
