"""One identity rule, the schema's: tasks, outputs_from, ${outputs:} placeholders and
schedules accept and refuse the same identities."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runner_agent.core.errors import InvalidInput
from runner_agent.core.resources import schema_path
from runner_agent.gitlab.schedules import create_schedule
from runner_agent.model.identity import IDENTITY_PATTERN, is_identity
from runner_agent.model.placeholders import Placeholder, find_placeholders
from runner_agent.model.tasks import tasks_from_data

GOOD = ["acme/web", "a", "shop-prod/web/config_file", "x.y_z-1/2"]
BAD = ["", "Acme/web", "/acme", "acme/", "acme//web", "../etc", "acme/-web", "a b", "a" * 201]


class NoGitLab:
    """Any request fails the test: a bad identity is refused before one is sent."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a request was made: {name}")


def test_the_rule_is_the_task_schemas() -> None:
    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    assert schema["$defs"]["identity"]["pattern"] == IDENTITY_PATTERN


@pytest.mark.parametrize("identity", GOOD)
def test_a_good_identity_passes_everywhere(identity: str) -> None:
    assert is_identity(identity)
    task = {"identity": "acme/app", "agent": "probe", "outputs_from": [identity]}
    tasks_from_data([{**task, "config": {"v": f"${{outputs:{identity}:key}}"}}])
    ((_, found),) = list(find_placeholders({"v": f"${{outputs:{identity}:key}}"}))
    assert isinstance(found, Placeholder) and found.name == identity


@pytest.mark.parametrize("identity", BAD)
def test_a_bad_identity_is_refused_everywhere(identity: str) -> None:
    assert not is_identity(identity)
    with pytest.raises(InvalidInput, match="identity"):
        tasks_from_data([{"identity": identity, "agent": "probe"}])
    with pytest.raises(InvalidInput):
        tasks_from_data([{"identity": "acme/app", "agent": "probe", "outputs_from": [identity]}])
    ((_, found),) = list(find_placeholders({"v": f"${{outputs:{identity}:key}}"}))
    assert not isinstance(found, Placeholder) or found.name != identity
    with pytest.raises(InvalidInput, match="not a valid identity"):
        create_schedule(NoGitLab(), identity, "0 * * * *", ref="main")  # type: ignore[arg-type]
