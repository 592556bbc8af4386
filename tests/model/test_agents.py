"""Agent metadata and the config an agent accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runner_agent.cli import main
from runner_agent.core.errors import InvalidInput
from runner_agent.model.tasks import tasks_from_data


def probe(**fields: Any) -> dict[str, Any]:
    return {"identity": "edge/probe", "agent": "probe", **fields}


def test_config_cannot_set_reserved_variables(registry: Any) -> None:
    for key in ("ansible_connection", "runner_agent_no_log", "hostvars"):
        with pytest.raises(InvalidInput) as caught:
            tasks_from_data([probe(config={key: "x"})], registry=registry)
        assert f"config.{key}" in str(caught.value) and "reserved name" in str(caught.value)


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
